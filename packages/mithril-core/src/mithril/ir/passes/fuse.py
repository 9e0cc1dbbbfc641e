"""Algebraic simplification and fusion over concrete graphs.

* transposes of transposes compose (or vanish);
* ``transpose(matmul(a, b))`` becomes ``matmul(b', a')`` when it saves a transpose;
* ``add(matmul(x, transpose(w)), b)`` becomes the optional fused primitive
  ``linear(x, w, b)`` when the backend has a kernel for it (torch.nn.functional.linear
  semantics). Backends without the kernel keep the unfused graph: one mechanism,
  no backend names in the core;
* ``max_pool2d(x)`` and its gradient ``max_pool2d_grad(x, g)`` become one
  ``max_pool2d_with_indices(x)`` call, whose ``indices`` result the gradient reads
  (``max_pool2d_grad_indices(x, indices, g)``), instead of pooling ``x`` twice, where
  the backend has both kernels;
* a convolution's weight gradient ``conv2d_weight_grad(x, g)``, its input gradient
  ``conv2d_input_grad(g, w)`` and its bias gradient ``sum(g, axis=(0, 2, 3))`` become one
  ``conv2d_backward(x, w, g)`` call (torch: one ``convolution_backward``, which also
  reads ``g`` once) where the backend has the kernel.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from ...primitives.base import registry
from ...primitives.nn import _CONV
from ..graph import Graph, Node, Value, ValueRole
from .simplify import _freeze, _substitute, prune


def _perm(node: Node) -> tuple[int, ...]:
    rank = len(node.inputs[0].known_shape)
    axes = node.attrs["axes"]
    return tuple(reversed(range(rank))) if axes is None else tuple(a % rank for a in axes)


def _is_swap_last(perm: tuple[int, ...]) -> bool:
    n = len(perm)
    return n >= 2 and perm == tuple(range(n - 2)) + (n - 1, n - 2)


def _use_counts(graph: Graph) -> dict[int, int]:
    uses: dict[int, int] = {}
    for n in graph.nodes:
        for v in n.inputs:
            uses[v.uid] = uses.get(v.uid, 0) + 1
    for v in graph.results():
        uses[v.uid] = uses.get(v.uid, 0) + 1
    return uses


def _new_node(
    name: str, inputs: list[Value], attrs: dict[str, Any], shape: tuple[int, ...], kind: str | None, where: str
) -> Node:
    out = Value(ValueRole.NODE, kind=kind, shape=shape)
    node = Node(registry.get(name), inputs, attrs, out, where)
    out.producer = node
    return node


def simplify_transposes(graph: Graph) -> Graph:
    """Compose transpose chains and push transposes through 2-D matmuls."""
    uses = _use_counts(graph)
    repl: dict[int, Value] = {}
    out_nodes: list[Node] = []

    def r(v: Value) -> Value:
        while v.uid in repl:
            v = repl[v.uid]
        return v

    def transposed(v: Value, where: str) -> Value:
        p = v.producer
        if p is not None and p.primitive.name == "transpose" and _is_swap_last(_perm(p)):
            return p.inputs[0]
        vs = v.known_shape
        shape = vs[:-2] + (vs[-1], vs[-2])
        t = _new_node(
            "transpose",
            [v],
            {"axes": tuple(range(len(shape) - 2)) + (len(shape) - 1, len(shape) - 2)},
            shape,
            v.kind,
            where,
        )
        out_nodes.append(t)
        return t.output

    for node in graph.nodes:
        node.inputs = [r(v) for v in node.inputs]
        if node.primitive.name == "transpose":
            src = node.inputs[0].producer
            if src is not None and src.primitive.name == "transpose":
                inner, outer = _perm(src), _perm(node)
                composed = tuple(inner[a] for a in outer)
                x = src.inputs[0]
                if composed == tuple(range(len(composed))):
                    repl[node.output.uid] = x
                    continue
                node.inputs = [x]
                node.attrs = {**node.attrs, "axes": composed}
            elif (
                src is not None
                and src.primitive.name == "matmul"
                and _is_swap_last(_perm(node))
                and uses.get(src.output.uid, 0) == 1
                and len(node.output.known_shape) == 2
                and all(len(v.known_shape) == 2 for v in src.inputs)
                and any(v.producer is not None and v.producer.primitive.name == "transpose" for v in src.inputs)
            ):
                a, b = src.inputs
                new = _new_node(
                    "matmul",
                    [transposed(b, node.where), transposed(a, node.where)],
                    {},
                    node.output.known_shape,
                    node.output.kind,
                    node.where,
                )
                out_nodes.append(new)
                repl[node.output.uid] = new.output
                continue
        out_nodes.append(node)
    graph.nodes = out_nodes
    _apply(graph, repl)
    return graph


def fuse_linear(graph: Graph, kernels: Container[str]) -> Graph:
    """``add(matmul(x, transpose(w)), b)`` -> ``linear(x, w, b)`` where the backend has a kernel."""
    if "linear" not in kernels:
        return graph
    uses = _use_counts(graph)
    repl: dict[int, Value] = {}
    out_nodes: list[Node] = []
    for node in graph.nodes:
        node.inputs = [repl.get(v.uid, v) for v in node.inputs]
        if node.primitive.name == "add":
            for h, b in (node.inputs, node.inputs[::-1]):
                mm = h.producer
                if mm is None or mm.primitive.name != "matmul" or uses.get(h.uid, 0) != 1:
                    continue
                x, t = mm.inputs
                tp = t.producer
                if tp is None or tp.primitive.name != "transpose" or len(t.known_shape) != 2:
                    continue
                w = tp.inputs[0]
                if len(b.known_shape) != 1 or b.known_shape[0] != w.known_shape[0] or node.output.shape != h.shape:
                    continue
                fused = _new_node(
                    "linear",
                    [x, w, b],
                    {},
                    node.output.known_shape,
                    node.output.kind,
                    node.where,
                )
                out_nodes.append(fused)
                repl[node.output.uid] = fused.output
                break
            else:
                out_nodes.append(node)
            continue
        out_nodes.append(node)
    graph.nodes = out_nodes
    _apply(graph, repl)
    return graph


def fusable(kernels: Container[str]) -> frozenset[str]:
    """Gradient primitives a fusion pass here may take over for a backend with these kernels: they stay
    unexpanded until the fusion passes have run (their default rules expand what is left, see
    :mod:`mithril.primitives.default_rules`)."""
    names: set[str] = set()
    if all(k in kernels for k in ("max_pool2d_with_indices", "max_pool2d_grad_indices")):
        names.add("max_pool2d_grad")
    if "conv2d_backward" in kernels:
        names |= {"conv2d_input_grad", "conv2d_weight_grad"}
    return frozenset(names)


def fuse_pool_indices(graph: Graph, kernels: Container[str]) -> Graph:
    """Max pooling saves its argmax indices for its gradient where the backend has the kernels."""
    if not all(k in kernels for k in ("max_pool2d_with_indices", "max_pool2d_grad_indices")):
        return graph
    grads = {(n.inputs[0].uid, _freeze(n.attrs)) for n in graph.nodes if n.primitive.name == "max_pool2d_grad"}
    if not grads:
        return graph
    indices: dict[tuple[Any, ...], Value] = {}
    out_nodes: list[Node] = []

    def saved(x: Value, attrs: dict[str, Any], pooled: Value, where: str) -> Value:
        """The indices of pooling ``x`` (``pooled``: a value of the pooled shape)."""
        key = (x.uid, _freeze(attrs))
        if key not in indices:
            node = _new_node(
                "max_pool2d_with_indices", [x], {**attrs, "result": "indices"}, pooled.known_shape, "int", where
            )
            out_nodes.append(node)
            indices[key] = node.output
        return indices[key]

    for node in graph.nodes:
        name = node.primitive.name
        if name == "max_pool2d" and (node.inputs[0].uid, _freeze(node.attrs)) in grads:
            attrs = dict(node.attrs)
            node.primitive, node.attrs = registry.get("max_pool2d_with_indices"), {**attrs, "result": "output"}
            out_nodes.append(node)
            saved(node.inputs[0], attrs, node.output, node.where)
            continue
        if name == "max_pool2d_grad":
            x, g = node.inputs
            idx = saved(x, node.attrs, g, node.where)
            node.primitive, node.inputs = registry.get("max_pool2d_grad_indices"), [x, idx, g]
        out_nodes.append(node)
    graph.nodes = out_nodes
    return graph


def fuse_conv_backward(graph: Graph, kernels: Container[str]) -> Graph:
    """A convolution's weight, input and bias gradients from one ``g`` -> one ``conv2d_backward`` call.

    Anchored on ``conv2d_weight_grad(x, g)``, whose weight ``w`` is found through the
    forward ``conv2d(x, w)``; the input gradient and the bias sum join where present.
    """
    if "conv2d_backward" not in kernels:
        return graph
    fused = registry.get("conv2d_backward")

    def conv_attrs(n: Node) -> dict[str, Any]:
        return {k: n.attrs[k] for k in _CONV}

    weights: dict[tuple[Any, ...], Value] = {}
    input_grads: dict[tuple[Any, ...], Node] = {}
    bias_sums: dict[int, Node] = {}
    for n in graph.nodes:
        name = n.primitive.name
        if name == "conv2d":
            x, w = n.inputs
            weights.setdefault((x.uid, w.shape, _freeze(conv_attrs(n))), w)
        elif name == "conv2d_input_grad":
            g, w = n.inputs
            input_grads.setdefault((g.uid, w.uid, n.attrs["input_shape"], _freeze(conv_attrs(n))), n)
        elif name == "sum" and _is_channel_sum(n):
            bias_sums.setdefault(n.inputs[0].uid, n)
    for n in list(graph.nodes):
        if n.primitive.name != "conv2d_weight_grad":
            continue
        x, g = n.inputs
        attrs = conv_attrs(n)
        weight = weights.get((x.uid, n.attrs["weight_shape"], _freeze(attrs)))
        if weight is None:
            continue
        group = {"weight": n}
        gi = input_grads.pop((g.uid, weight.uid, x.shape, _freeze(attrs)), None)
        if gi is not None:
            group["input"] = gi
        gb = bias_sums.pop(g.uid, None)
        if gb is not None and gb.output.shape == (weight.known_shape[0],):
            group["bias"] = gb
        if len(group) == 1:
            continue
        for result, member in group.items():  # bind_attrs puts ``wanted`` in the results' order
            member.primitive, member.inputs = fused, [x, weight, g]
            member.attrs = fused.bind_attrs({**attrs, "wanted": tuple(group), "result": result}, where=member.where)
    return graph


def _is_channel_sum(n: Node) -> bool:
    """``sum(g, axis=(0, 2, 3))`` of a 4-d ``g``: a conv bias gradient."""
    shape = n.inputs[0].shape
    axes = n.attrs["axis"]
    return (
        shape is not None
        and len(shape) == 4
        and axes is not None
        and not n.attrs["keepdims"]
        and sorted(a % 4 for a in axes) == [0, 2, 3]
    )


def _apply(graph: Graph, repl: dict[int, Value]) -> None:
    _substitute(graph, repl)
    prune(graph)
