"""Reverse-mode autodiff as a graph pass.

The backward pass is appended to the graph as ordinary primitive nodes,
built from each primitive's gradient rule, so a backend with forward kernels
only gets gradients. Cotangents of outputs become graph sources
(``graph.cotangents``); gradients of params become results (``graph.gradients``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

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


def differentiate(graph: Graph, wrt: Iterable[str], cotangent_outputs: Iterable[str], *, eager: bool = True) -> Graph:
    """Append the backward pass for ``d(sum <cot, out>)/d(param)`` over the given outputs.

    Each forward node's VJP is emitted as soon as its outputs' cotangents are complete (all
    their readers differentiated), so a weight's gradient follows the VJP of the node that read
    it instead of waiting for the whole backward pass (the transposes of weights sit at the start
    of the forward). ``eager=False`` keeps plain reverse graph order. Either way a cotangent's
    contributions are summed in reverse graph order of their readers, so both orders give the same
    additions, bit for bit.
    """
    wrt = list(wrt)
    cot_names = list(cotangent_outputs)
    forward = list(graph.nodes)

    needs: dict[int, bool] = {}
    for k in wrt:
        needs[graph.params[k].uid] = True
    for n in forward:
        if n.output.kind == "float" and any(needs.get(v.uid, False) for v in n.inputs):
            needs[n.output.uid] = True

    b = GraphBuilder(graph, needs_grad=needs)
    # a control-flow call is several nodes: differentiated once, as one unit at its first node, when
    # every consumer of every output has given its cotangent
    cf_calls = control_flow.calls(forward)
    index = {id(n): i for i, n in enumerate(forward)}
    unit = list(range(len(forward)))
    for members in cf_calls.values():
        for m in members[1:]:
            unit[index[id(m)]] = index[id(members[0])]
    units = [u for u in range(len(forward)) if unit[u] == u]
    producer = {n.output.uid: unit[i] for i, n in enumerate(forward)}
    acc = _Cotangents(b)
    for u in reversed(units):
        for pos, x in enumerate(forward[u].inputs):
            if needs.get(x.uid, False):
                acc.expect(x.uid, u, pos)

    for name in cot_names:
        out = graph.outputs[name]
        c = Value(ValueRole.INPUT, name=f"{name}", kind=out.kind, shape=out.shape)
        graph.cotangents[name] = c
        if needs.get(out.uid, False):
            acc.seed(out.uid, c)

    # readers left per unit; producers per unit in graph order
    pending = [0] * len(forward)
    feeds: dict[int, list[int]] = {}
    for u in units:
        ps = sorted({producer[v.uid] for v in forward[u].inputs if v.uid in producer} - {u})
        feeds[u] = ps
        for w in ps:
            pending[w] += 1

    done = [False] * len(forward)

    def vjp(u: int) -> None:
        node = forward[u]
        grads: list[Value | None] | None = None
        if node.primitive.subgraphs:
            grads = _control_flow_vjp(b, graph, cf_calls[call_key(node)], acc.total, needs)
        else:
            g = acc.total.get(node.output.uid)
            if g is not None and needs.get(node.output.uid, False):
                if node.primitive.vjp is None:
                    raise UnsupportedError(
                        f"{node.where}: primitive {node.primitive.name!r} has no gradient rule; "
                        "it cannot be differentiated"
                    )
                b.where = f"{node.where} (grad)"
                grads = list(node.primitive.vjp(b, node, g))
                if len(grads) != len(node.inputs):
                    raise AssertionError(f"gradient rule of {node.primitive.name} returned {len(grads)} values")
        for pos, x in enumerate(node.inputs):
            if not needs.get(x.uid, False):
                continue
            gx = grads[pos] if grads is not None and pos < len(grads) else None
            if gx is not None and gx.shape != x.shape:
                raise AssertionError(
                    f"{node.where}: gradient of {node.primitive.name} has shape {gx.shape}, expected {x.shape}"
                )
            acc.give(x.uid, u, pos, gx)

    for start in reversed(units):
        if done[start]:
            continue
        stack = [start]
        while stack:  # depth first: a unit whose readers are all done goes next, the lowest index first
            u = stack.pop()
            if done[u]:
                continue
            done[u] = True
            vjp(u)
            if eager:
                for w in reversed(feeds[u]):
                    pending[w] -= 1
                    if pending[w] == 0:
                        stack.append(w)

    for k in wrt:
        p = graph.params[k]
        g = acc.total.get(p.uid)
        if g is None:
            b.where = f"{k} (grad)"
            g = b.emit("broadcast_to", const_value(0.0, "float"), shape=p.shape)
        graph.gradients[k] = g
    return graph


class _Cotangents:
    """Cotangent sums, each added up in a fixed order of its readers whatever order they come in."""

    def __init__(self, b: GraphBuilder) -> None:
        self.b = b
        self.total: dict[int, Value] = {}
        self._slots: dict[int, list[tuple[int, int]]] = {}
        self._next: dict[int, int] = {}
        self._early: dict[tuple[int, int, int], Value | None] = {}

    def expect(self, uid: int, unit: int, pos: int) -> None:
        """Reader ``unit`` gives (or not) a contribution to ``uid`` for its input ``pos``; call in sum order."""
        self._slots.setdefault(uid, []).append((unit, pos))

    def seed(self, uid: int, g: Value) -> None:
        self._add(uid, g)

    def give(self, uid: int, unit: int, pos: int, g: Value | None) -> None:
        """The contribution of reader ``unit`` (None: none); summed once those before it are in."""
        slots, i = self._slots[uid], self._next.get(uid, 0)
        if slots[i] != (unit, pos):
            self._early[(uid, unit, pos)] = g
            return
        while True:
            if g is not None:
                self._add(uid, g)
            i += 1
            if i == len(slots) or (uid, *slots[i]) not in self._early:
                break
            g = self._early.pop((uid, *slots[i]))
        self._next[uid] = i

    def _add(self, uid: int, g: Value) -> None:
        prev = self.total.get(uid)
        self.total[uid] = g if prev is None else self.b.emit("add", prev, g)


def _control_flow_vjp(
    b: GraphBuilder,
    graph: Graph,
    members: list[Node],
    cot: dict[int, Value],
    needs: dict[int, bool],
) -> list[Value | None] | None:
    """Cotangents of a control-flow call's inputs from those of its outputs (mithril.ir.passes.control_flow)."""
    first = members[0]
    cots: dict[int, Value] = {}
    for m in members:
        g = cot.get(m.output.uid)
        if g is not None and needs.get(m.output.uid, False):
            r = m.attrs["result"]
            cots[r] = g if r not in cots else b.emit("add", cots[r], g)
    if not cots:
        return None
    b.where = f"{first.where} (grad)"
    return list(control_flow.RULES[first.primitive.name](b, graph, members, cots, differentiate))


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
