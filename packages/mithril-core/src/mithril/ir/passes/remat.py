"""Rematerialisation: the backward pass recomputes cheap forward values instead of keeping them.

Under a JIT that fuses element-wise chains into the kernels that read them
(torch.compile's inductor, XLA), every forward value the backward pass reads is
written to memory in the forward pass and read back later. When such a value is
an element-wise function of values the backward pass holds anyway, recomputing
it inside the backward kernels is free in memory traffic and saves the write:
BatchNorm -> ReLU keeps the convolution's output and the batch statistics, which
its gradient needs in any case, and not the ReLU's output as well.

A forward value ``v`` is recomputed when

* its node has a ``recompute`` rule (:attr:`~mithril.primitives.base.Primitive.recompute`:
  element-wise primitives and views; normalize's output from its saved mean and
  rstd) and is not random;
* everything that rule reads is *available* in the backward pass without keeping
  anything new: sources, constants, results, forward values the backward pass
  reads itself, or values recomputable in turn;
* it is in memory for no other reason: it is not a result, every backward node
  that reads it is element-wise itself (has a recompute rule, so the
  recomputation fuses into it) or reads only its shape, and the same holds for
  the views of it (``reshape``, ``transpose``: :attr:`~mithril.primitives.base.Primitive.view`).
  A value that feeds, say, a convolution's weight gradient stays kept: recomputing
  it would write it again.

The recomputed nodes go right before the first backward node that reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..graph import Graph, GraphBuilder, Node, Value, ValueRole
from .expand import result_call


def rematerialize(graph: Graph, n_forward: int) -> Graph:
    """Recompute cheap forward values in the backward pass (see the module doc); the graph, changed in place.

    The first ``n_forward`` nodes are the forward pass, the rest the backward pass
    (including the nodes gradient rules emit that read no cotangent, such as
    ``greater(y, 0)`` for a ReLU: they are computed there, not kept), except the
    other results of a forward multi-result call (LayerNorm's mean and rstd, asked
    for by its gradient rule): they come out of the forward call.
    """
    calls = {result_call(n) for n in graph.nodes[:n_forward] if n.primitive.results}
    forward = graph.nodes[:n_forward] + [
        n for n in graph.nodes[n_forward:] if n.primitive.results and result_call(n) in calls
    ]
    backward = {id(n) for n in graph.nodes} - {id(n) for n in forward}
    if not backward:
        return graph
    produced = {n.output.uid: n.output for n in forward}
    consumers: dict[int, list[tuple[Node, int]]] = {}  # backward reads, by value
    for n in graph.nodes:
        if id(n) in backward:
            for i, v in enumerate(n.inputs):
                consumers.setdefault(v.uid, []).append((n, i))
    readers = {uid: reads for uid, reads in consumers.items() if uid in produced}  # of forward values
    results = {v.uid for v in graph.results()}

    siblings = _siblings(forward)
    plans: dict[int, list[Node] | None] = {}

    def plan_of(v: Value) -> list[Node] | None:
        """How to recompute forward value ``v`` from available values (None: it cannot be)."""
        if v.uid not in plans:
            plans[v.uid] = None  # no cycles in a DAG; this only guards re-entry
            plan = _plan(v.producer, siblings) if v.producer is not None else None
            if plan is not None and all(available(x) for x in _leaves(plan)):
                plans[v.uid] = plan
        return plans[v.uid]

    def kept(v: Value) -> bool:
        """In the backward pass without recomputing: a source, a constant, a result or a value it reads."""
        return v.role is not ValueRole.NODE or v.uid in results or v.uid in readers

    def available(v: Value) -> bool:
        return kept(v) or (v.uid in produced and plan_of(v) is not None)

    # in memory anyway: results, values a non-element-wise backward node reads (directly or through
    # backward views: a matmul of a reshape reads the recomputation materialised), and what those view
    def fuses(uid: int) -> bool:
        """Every backward read of ``uid`` fuses a recomputation: element-wise, shape-only, or a view that does."""
        return uid not in results and all(
            fuses(n.output.uid) if n.primitive.view else _fuses_or_shape_only(n, i) for n, i in consumers.get(uid, ())
        )

    pinned = set(results) | {uid for uid in readers if not fuses(uid)}
    for n in reversed(forward):
        if n.primitive.view and n.output.uid in pinned:
            pinned.add(n.inputs[0].uid)
    chosen = {uid for uid in readers if uid not in pinned and plan_of(produced[uid]) is not None}
    if not chosen:
        return graph

    done: dict[int, Value] = {}

    def materialize(v: Value, into: list[Node]) -> Value:
        """``v`` in the backward pass: itself where kept, else its recomputation (appended to ``into``)."""
        if v.uid in done:
            return done[v.uid]
        if v.uid not in chosen and kept(v):
            return v
        plan = plans[v.uid]
        assert plan is not None
        inner = {m.output.uid for m in plan}
        for m in plan:
            m.inputs = [x if x.uid in inner else materialize(x, into) for x in m.inputs]
            into.append(m)
        done[v.uid] = plan[-1].output
        return done[v.uid]

    nodes: list[Node] = []
    for n in graph.nodes:
        if id(n) in backward:
            n.inputs = [materialize(v, nodes) if v.uid in chosen else v for v in n.inputs]
        nodes.append(n)
    graph.nodes = nodes
    return graph


def _siblings(nodes: list[Node]) -> dict[tuple[Any, ...], dict[str, Value]]:
    """Multi-result calls (:func:`~mithril.ir.passes.expand.result_call`) -> {result: value}."""
    out: dict[tuple[Any, ...], dict[str, Value]] = {}
    for n in nodes:
        if n.primitive.results:
            out.setdefault(result_call(n), {})[n.attrs["result"]] = n.output
    return out


def _plan(n: Node, siblings: Mapping[tuple[Any, ...], dict[str, Value]]) -> list[Node] | None:
    """The nodes that recompute ``n``'s value (reading forward values), or None."""
    rule = n.primitive.recompute
    if rule is None or n.primitive.random:
        return None
    scratch = Graph()
    b = GraphBuilder(scratch, where=f"{n.where} (recomputed)")
    sib = siblings.get(result_call(n), {}) if n.primitive.results else {}
    out = rule(b, n, {k: v for k, v in sib.items() if v is not n.output})
    if out is None or not scratch.nodes or scratch.nodes[-1].output is not out:
        return None
    if out.shape != n.output.shape or out.kind != n.output.kind:
        raise AssertionError(f"{n.where}: the recompute rule of {n.primitive.name} gave {out!r} for {n.output!r}")
    if any(m.primitive.recompute is None for m in scratch.nodes):
        return None  # only element-wise primitives fuse for free
    return scratch.nodes


def _leaves(plan: list[Node]) -> list[Value]:
    inner = {m.output.uid for m in plan}
    return [v for m in plan for v in m.inputs if v.uid not in inner]


def _fuses_or_shape_only(n: Node, i: int) -> bool:
    prim = n.primitive
    if prim.recompute is not None:
        return True
    return not prim.variadic and prim.inputs[i] in prim.shape_only
