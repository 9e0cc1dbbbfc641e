"""Reverse-mode rules of the control-flow calls (``scan``, ``cond``; mithril.ir.control_flow).

A call is several nodes (one per output), so the autodiff pass hands a rule every node
of the call and the cotangent of each output it has. The backward pass of a loop is a
loop and that of a branch a branch:

* ``scan``: the forward call also stacks the carry entering every step (its body gains
  those outputs), and a reverse ``scan`` runs the body's VJP over the steps, recomputing
  the step from the saved carry: O(T) work and memory. Its carries are the cotangents
  of the carries and the sums of the closed-over inputs' gradients; its ``ys`` are the
  gradients of the ``xs``.
* ``cond``: a ``cond`` on the same selector whose branches are the branches' VJPs.

The VJP of a sub-graph is the ordinary autodiff pass over a copy of it.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence

from ...errors import UnsupportedError
from ..control_flow import SubGraph, call_key
from ..graph import Graph, GraphBuilder, Node, Value, ValueRole
from .expand import expand
from .simplify import _substitute

#: the autodiff pass itself: ``differentiate(graph, wrt, cotangent_outputs)``
Differentiate = Callable[[Graph, Sequence[str], Sequence[str]], Graph]
#: ``rule(builder, graph, nodes of one call, {result: cotangent}, differentiate) -> a cotangent or None per input``
GroupRule = Callable[[GraphBuilder, Graph, list[Node], Mapping[int, Value], Differentiate], list[Value | None]]


def calls(nodes: Sequence[Node]) -> dict[tuple[object, ...], list[Node]]:
    """The nodes of each control-flow call, in graph order."""
    out: dict[tuple[object, ...], list[Node]] = {}
    for n in nodes:
        if n.primitive.subgraphs:
            out.setdefault(call_key(n), []).append(n)
    return out


def _zeros(b: GraphBuilder, like: Value) -> Value:
    return b.emit("broadcast_to", b.const(0.0, "float"), shape=like.known_shape)


def _vjp_graph(
    sub: SubGraph, wrt: Sequence[str], cotangent_outputs: Sequence[str], differentiate: Differentiate
) -> tuple[Graph, dict[str, Value], dict[str, Value], dict[str, Value]]:
    """A copy of ``sub`` with its backward pass: ``(graph, primal inputs, cotangents, gradients)`` by name.

    ``wrt`` names inputs and ``cotangent_outputs`` outputs of ``sub``; the graph's nodes are the
    copied forward and the backward, with composites expanded.
    """
    src = sub.graph
    copies: dict[int, Value] = {}
    primal: dict[str, Value] = {}
    for name, v in src.inputs.items():
        primal[name] = copies[v.uid] = Value(ValueRole.INPUT, name=name, kind=v.kind, shape=v.shape)
    tmp = Graph()
    for n in src.nodes:
        out = Value(ValueRole.NODE, name=n.output.name, kind=n.output.kind, shape=n.output.shape)
        clone = Node(n.primitive, [copies.get(v.uid, v) for v in n.inputs], dict(n.attrs), out, n.where)
        out.producer = clone
        copies[n.output.uid] = out
        tmp.nodes.append(clone)
    tmp.outputs = {k: copies.get(v.uid, v) for k, v in src.outputs.items()}
    tmp.params = {k: primal[k] for k in wrt}
    tmp.inputs = {k: v for k, v in primal.items() if k not in tmp.params}
    differentiate(tmp, wrt, cotangent_outputs)
    expand(tmp)
    return tmp, primal, dict(tmp.cotangents), dict(tmp.gradients)


def scan_vjp(
    b: GraphBuilder, graph: Graph, nodes: list[Node], cots: Mapping[int, Value], differentiate: Differentiate
) -> list[Value | None]:
    """The reverse ``scan`` of a forward ``scan`` call (see the module docstring)."""
    first = nodes[0]
    attrs = first.attrs
    body: SubGraph = attrs["body"]
    nc, nx, length = attrs["n_carry"], attrs["n_xs"], attrs["length"]
    ins = first.inputs
    in_names, out_names = list(body.graph.inputs), list(body.graph.outputs)
    n_out = len(out_names)

    # the forward call also stacks the carry entering every step
    saved_names = [f"saved_{k}" for k in in_names[:nc]]
    aug = Graph(inputs=dict(body.graph.inputs), nodes=list(body.graph.nodes))
    aug.outputs = {**body.graph.outputs, **{s: body.graph.inputs[k] for s, k in zip(saved_names, in_names)}}
    saving = SubGraph(aug, label=body.label)
    for n in nodes:
        n.attrs = {**n.attrs, "body": saving}
    saved: list[Value] = []
    at = graph.nodes.index(first) + 1
    for i, carry in enumerate(ins[:nc]):
        out = Value(ValueRole.NODE, name=f"{saved_names[i]}", kind=carry.kind, shape=(length, *carry.known_shape))
        node = Node(first.primitive, list(ins), {**first.attrs, "body": saving, "result": n_out + i}, out, first.where)
        out.producer = node
        graph.nodes.insert(at + i, node)
        saved.append(out)

    floats = [i for i, v in enumerate(ins) if v.kind == "float"]
    carry_d = [i for i in floats if i < nc]  # every float carry carries a cotangent
    xs_d = [i for i in floats if nc <= i < nc + nx and b.needs_grad(ins[i])]
    const_d = [i for i in floats if i >= nc + nx and b.needs_grad(ins[i])]
    ys_d = [k for k in range(nc, n_out) if body.graph.outputs[out_names[k]].kind == "float"]
    cot_outs = [out_names[i] for i in carry_d] + [out_names[k] for k in ys_d]
    wrt = [in_names[i] for i in carry_d + xs_d + const_d]
    tmp, primal, ct, gr = _vjp_graph(body, wrt, cot_outs, differentiate)

    # the backward body: carries (carry cotangents, gradient sums), xs (saved carries, xs, y cotangents), consts
    g = Graph(nodes=tmp.nodes)
    acc = {i: Value(ValueRole.INPUT, name=f"sum_d_{in_names[i]}", kind="float", shape=ins[i].shape) for i in const_d}
    for i in carry_d:
        g.inputs[f"d_{out_names[i]}"] = ct[out_names[i]]
    for i in const_d:
        g.inputs[f"sum_d_{in_names[i]}"] = acc[i]
    for k in in_names[: nc + nx]:
        g.inputs[k] = primal[k]
    for j in ys_d:
        g.inputs[f"d_{out_names[j]}"] = ct[out_names[j]]
    for k in in_names[nc + nx :]:
        g.inputs[k] = primal[k]
    gb = GraphBuilder(g, where=f"{first.where} (grad step)")
    for i in carry_d:
        g.outputs[f"d_{in_names[i]}"] = gr[in_names[i]]
    for i in const_d:
        g.outputs[f"sum_d_{in_names[i]}"] = gb.emit("add", acc[i], gr[in_names[i]])
    for i in xs_d:
        g.outputs[f"d_{in_names[i]}"] = gr[in_names[i]]
    backward = SubGraph(g, label=f"{body.label}_grad")

    def cot(k: int) -> Value:
        c = cots.get(k)
        if c is not None:
            return c
        v = body.graph.outputs[out_names[k]]
        return _zeros(b, ins[k] if k < nc else Value(ValueRole.NODE, kind=v.kind, shape=(length, *v.known_shape)))

    args = [cot(i) for i in carry_d] + [_zeros(b, ins[i]) for i in const_d]
    args += saved + list(ins[nc : nc + nx]) + [cot(k) for k in ys_d] + list(ins[nc + nx :])
    n_carry = len(carry_d) + len(const_d)
    outs = [
        b.emit("scan", *args, body=backward, n_carry=n_carry, n_xs=nc + nx + len(ys_d), length=length,
               reverse=not attrs["reverse"], result=k)
        for k in range(len(g.outputs))
    ]  # fmt: skip
    grads: list[Value | None] = [None] * len(ins)
    for j, i in enumerate(carry_d + const_d + xs_d):
        grads[i] = outs[j]
    return grads


def cond_vjp(
    b: GraphBuilder, graph: Graph, nodes: list[Node], cots: Mapping[int, Value], differentiate: Differentiate
) -> list[Value | None]:
    """A ``cond`` on the same selector over the branches' VJPs: gradients through the branch taken."""
    first = nodes[0]
    branches: tuple[SubGraph, ...] = first.attrs["branches"]
    ins = first.inputs
    operands = ins[1:]
    outs0 = branches[0].output_values
    ys_d = [k for k, v in enumerate(outs0) if v.kind == "float"]
    wrt_i = [i for i, v in enumerate(operands) if v.kind == "float" and b.needs_grad(v)]
    grad_branches = []
    for br in branches:
        in_names, out_names = list(br.graph.inputs), list(br.graph.outputs)
        tmp, primal, ct, gr = _vjp_graph(br, [in_names[i] for i in wrt_i], [out_names[k] for k in ys_d], differentiate)
        g = Graph(nodes=tmp.nodes)
        g.inputs = {**primal, **{f"d_{out_names[k]}": ct[out_names[k]] for k in ys_d}}
        g.outputs = {f"d_{in_names[i]}": gr[in_names[i]] for i in wrt_i}
        grad_branches.append(SubGraph(g, label=f"{br.label}_grad"))
    if not wrt_i:
        return [None] * len(ins)
    cot_args = [cots[k] if k in cots else _zeros(b, Value(ValueRole.NODE, shape=outs0[k].shape)) for k in ys_d]
    outs = [
        b.emit("cond", ins[0], *operands, *cot_args, branches=tuple(grad_branches), result=j) for j in range(len(wrt_i))
    ]
    grads: list[Value | None] = [None] * len(ins)
    for j, i in enumerate(wrt_i):
        grads[1 + i] = outs[j]
    return grads


RULES: dict[str, GroupRule] = {"scan": scan_vjp, "cond": cond_vjp}


# ------------------------------------------------------------------ backends without the kernels
def lower_for(graph: Graph, kernels: Container[str], backend: str) -> Graph:
    """Loops unrolled for a backend without a ``scan`` kernel (exact; the graph grows with the length);
    a ``cond`` without its kernel is refused naming the block."""
    while any(n.primitive.subgraphs and n.primitive.name not in kernels for n in graph.nodes):
        repl: dict[int, Value] = {}
        done: dict[tuple[object, ...], list[Value]] = {}
        nodes: list[Node] = []
        for n in graph.nodes:
            n.inputs = [repl.get(v.uid, v) for v in n.inputs]
            name = n.primitive.name
            if not n.primitive.subgraphs or name in kernels:
                nodes.append(n)
                continue
            if name != "scan":
                raise UnsupportedError(
                    f"{n.where}: {backend} has no kernel for the control-flow primitive {name!r}, so it cannot "
                    f"run this block (a backend supports it by providing a {name!r} kernel)"
                )
            key = call_key(n)
            if key not in done:
                scratch = Graph()
                done[key] = _unrolled(GraphBuilder(scratch, where=n.where), n)
                nodes.extend(scratch.nodes)
            repl[n.output.uid] = done[key][n.attrs["result"]]
        graph.nodes = nodes
        _substitute(graph, repl)
    return graph


def _unrolled(b: GraphBuilder, node: Node) -> list[Value]:
    """A scan call as ``length`` copies of its body: ``[*final carries, *stacked ys]``."""
    attrs = node.attrs
    body: SubGraph = attrs["body"]
    nc, nx, length = attrs["n_carry"], attrs["n_xs"], attrs["length"]
    carry = list(node.inputs[:nc])
    xs, consts = node.inputs[nc : nc + nx], node.inputs[nc + nx :]
    ys: list[list[Value]] = [[] for _ in range(len(body.graph.outputs) - nc)]
    steps = range(length - 1, -1, -1) if attrs["reverse"] else range(length)
    for t in steps:
        x_t = [
            b.emit("reshape", b.emit("slice", x, starts=(t,), stops=(t + 1,), steps=(None,)), shape=x.known_shape[1:])
            for x in xs
        ]
        outs = _inline(b, body.graph, [*carry, *x_t, *consts])
        carry = outs[:nc]
        for column, y in zip(ys, outs[nc:]):
            column.append(b.emit("reshape", y, shape=(1, *y.known_shape)))
    if attrs["reverse"]:
        for column in ys:
            column.reverse()
    stacked = [column[0] if len(column) == 1 else b.emit("concat", *column, axis=0) for column in ys]
    return [*carry, *stacked]


def _inline(b: GraphBuilder, g: Graph, args: Sequence[Value]) -> list[Value]:
    """Copies of ``g``'s nodes reading ``args`` as its inputs; its outputs."""
    copies = {v.uid: a for v, a in zip(g.inputs.values(), args)}
    for n in g.nodes:
        out = Value(ValueRole.NODE, kind=n.output.kind, shape=n.output.shape)
        clone = Node(n.primitive, [copies.get(v.uid, v) for v in n.inputs], dict(n.attrs), out, n.where)
        out.producer = clone
        copies[n.output.uid] = out
        b.graph.nodes.append(clone)
    return [copies.get(v.uid, v) for v in g.outputs.values()]
