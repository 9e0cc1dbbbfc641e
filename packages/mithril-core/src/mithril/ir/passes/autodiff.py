"""Reverse-mode autodiff as a graph pass.

The backward pass is appended to the graph as ordinary primitive nodes,
built from each primitive's gradient rule, so a backend with forward kernels
only gets gradients. Cotangents of outputs become graph sources
(``graph.cotangents``); gradients of params become results (``graph.gradients``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from ...errors import UnsupportedError
from ..control_flow import call_key
from ..graph import Graph, GraphBuilder, Node, Value, ValueRole, const_value
from . import control_flow


def differentiable_params(graph: Graph, nondiff: Iterable[str] = ()) -> list[str]:
    """Names of trainable float params."""
    skip = set(nondiff)
    return [k for k, v in graph.params.items() if v.kind == "float" and k not in skip]


def reachable_outputs(graph: Graph, wrt: Iterable[str]) -> set[str]:
    """Output names that depend on any of ``wrt``."""
    live = {graph.params[k].uid for k in wrt}
    for n in graph.nodes:
        if any(v.uid in live for v in n.inputs):
            live.add(n.output.uid)
    return {k for k, v in graph.outputs.items() if v.uid in live}


def differentiate(graph: Graph, wrt: Iterable[str], cotangent_outputs: Iterable[str]) -> Graph:
    """Append the backward pass for ``d(sum <cot, out>)/d(param)`` over the given outputs."""
    wrt = list(wrt)
    cot_names = list(cotangent_outputs)
    forward = list(graph.nodes)

    needs: dict[int, bool] = {}
    for k in wrt:
        needs[graph.params[k].uid] = True
    for n in forward:
        if n.output.kind == "float" and any(needs.get(v.uid, False) for v in n.inputs):
            needs[n.output.uid] = True

    cot: dict[int, Value] = {}
    b = GraphBuilder(graph, needs_grad=needs)

    def accumulate(v: Value, g: Value) -> None:
        prev = cot.get(v.uid)
        cot[v.uid] = g if prev is None else b.emit("add", prev, g)

    for name in cot_names:
        out = graph.outputs[name]
        c = Value(ValueRole.INPUT, name=f"{name}", kind=out.kind, shape=out.shape)
        graph.cotangents[name] = c
        if needs.get(out.uid, False):
            accumulate(out, c)

    # a control-flow call is several nodes: differentiated once, at its first node, when every
    # consumer of every output has given its cotangent
    cf_calls = control_flow.calls(forward)
    for node in reversed(forward):
        if node.primitive.subgraphs:
            members = cf_calls[call_key(node)]
            if node is members[0]:
                _control_flow_vjp(b, graph, members, cot, needs, accumulate)
            continue
        g = cot.get(node.output.uid)
        if g is None or not needs.get(node.output.uid, False):
            continue
        if node.primitive.vjp is None:
            raise UnsupportedError(
                f"{node.where}: primitive {node.primitive.name!r} has no gradient rule; it cannot be differentiated"
            )
        b.where = f"{node.where} (grad)"
        grads = node.primitive.vjp(b, node, g)
        if len(grads) != len(node.inputs):
            raise AssertionError(f"gradient rule of {node.primitive.name} returned {len(grads)} values")
        for x, gx in zip(node.inputs, grads):
            if gx is None or not needs.get(x.uid, False):
                continue
            if gx.shape != x.shape:
                raise AssertionError(
                    f"{node.where}: gradient of {node.primitive.name} has shape {gx.shape}, expected {x.shape}"
                )
            accumulate(x, gx)

    for k in wrt:
        p = graph.params[k]
        g = cot.get(p.uid)
        if g is None:
            b.where = f"{k} (grad)"
            g = b.emit("broadcast_to", const_value(0.0, "float"), shape=p.shape)
        graph.gradients[k] = g
    return graph


def _control_flow_vjp(
    b: GraphBuilder,
    graph: Graph,
    members: list[Node],
    cot: dict[int, Value],
    needs: dict[int, bool],
    accumulate: Callable[[Value, Value], None],
) -> None:
    """Cotangents of a control-flow call's inputs from those of its outputs (mithril.ir.passes.control_flow)."""
    first = members[0]
    cots: dict[int, Value] = {}
    for m in members:
        g = cot.get(m.output.uid)
        if g is not None and needs.get(m.output.uid, False):
            r = m.attrs["result"]
            cots[r] = g if r not in cots else b.emit("add", cots[r], g)
    if not cots:
        return
    b.where = f"{first.where} (grad)"
    grads = control_flow.RULES[first.primitive.name](b, graph, members, cots, differentiate)
    for x, gx in zip(first.inputs, grads):
        if gx is not None and needs.get(x.uid, False):
            accumulate(x, gx)


def checkpoint(graph: Graph, n_forward: int) -> Graph:
    """Gradient checkpointing: the backward pass recomputes forward activations.

    The first ``n_forward`` nodes are the forward pass; they are cut into about
    sqrt(n) segments whose last outputs are kept. A backward node that reads an
    activation inside a segment gets a recomputed copy of that segment, inserted
    right before it, so activations inside segments need not live until the
    backward pass.
    """
    forward, backward = graph.nodes[:n_forward], graph.nodes[n_forward:]
    if n_forward < 4 or not backward:
        return graph
    size = max(2, math.isqrt(n_forward))
    seg_of: dict[int, int] = {}
    kept: set[int] = {v.uid for v in graph.outputs.values()} | {v.uid for v in graph.state_updates.values()}
    kept |= {n.output.uid for n in forward if n.primitive.random}  # a redraw would differ: keep the draw
    for i, n in enumerate(forward):
        seg_of[n.output.uid] = i // size
        if i % size == size - 1:
            kept.add(n.output.uid)
    segments: dict[int, list[Node]] = {}
    for n in forward:
        segments.setdefault(seg_of[n.output.uid], []).append(n)

    recomputed: dict[int, Value] = {}
    new_backward: list[Node] = []
    for bn in backward:
        for v in bn.inputs:
            s = seg_of.get(v.uid)
            if s is None or v.uid in kept or v.uid in recomputed:
                continue
            for fn in segments[s]:  # recompute the whole segment once
                if fn.primitive.random:  # its kept output is read instead
                    continue
                ins = [recomputed.get(x.uid, x) for x in fn.inputs]
                out = Value(ValueRole.NODE, kind=fn.output.kind, shape=fn.output.shape)
                clone = Node(fn.primitive, ins, dict(fn.attrs), out, fn.where + " (recomputed)")
                out.producer = clone
                recomputed[fn.output.uid] = out
                new_backward.append(clone)
        bn.inputs = [recomputed.get(v.uid, v) for v in bn.inputs]
        new_backward.append(bn)
    graph.nodes = forward + new_backward
    return graph
