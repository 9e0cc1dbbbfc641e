"""Small rewriting passes: alias removal, shape-derived constants, pruning, CSE."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...dtypes import DType
from ...primitives.reference import REFERENCE
from ..graph import Graph, Node, Value, ValueRole, const_value


def _substitute(graph: Graph, repl: dict[int, Value]) -> None:
    """Replace uses of values by ``repl`` (uid -> value), following chains."""
    if not repl:
        return

    def r(v: Value) -> Value:
        while v.uid in repl:
            v = repl[v.uid]
        return v

    for n in graph.nodes:
        n.inputs = [r(v) for v in n.inputs]
    for attr in ("outputs", "state_updates", "gradients"):
        d = getattr(graph, attr)
        for k in d:
            d[k] = r(d[k])


def remove_identities(graph: Graph) -> Graph:
    """Drop ``identity`` nodes, using their input directly."""
    repl = {n.output.uid: n.inputs[0] for n in graph.nodes if n.primitive.name == "identity"}
    graph.nodes = [n for n in graph.nodes if n.primitive.name != "identity"]
    _substitute(graph, repl)
    return graph


def fold_shape_constants(graph: Graph) -> Graph:
    """``numel`` nodes become constants now that shapes are concrete; a ``reshape``/``unflatten`` with a
    -1 of an empty array (where -1 means nothing) gets its concrete sizes."""
    repl: dict[int, Value] = {}
    keep = []
    for n in graph.nodes:
        name = n.primitive.name
        if name in ("reshape", "unflatten") and n.output.shape is not None and 0 in n.output.shape:
            if name == "reshape" and -1 in n.attrs["shape"]:
                n.attrs = {**n.attrs, "shape": tuple(n.output.shape)}
            elif name == "unflatten" and -1 in n.attrs["sizes"]:
                ax = n.attrs["axis"] % len(n.inputs[0].known_shape)
                n.attrs = {**n.attrs, "sizes": tuple(n.output.known_shape[ax : ax + len(n.attrs["sizes"])])}
        if name == "numel":
            shape = n.inputs[0].known_shape
            axis = n.attrs["axis"]
            axes = range(len(shape)) if axis is None else [a % len(shape) for a in axis]
            repl[n.output.uid] = const_value(float(math.prod(shape[a] for a in axes)), "float")
        else:
            keep.append(n)
    graph.nodes = keep
    _substitute(graph, repl)
    return graph


def prune(graph: Graph) -> Graph:
    """Keep only the nodes that some result depends on."""
    live: set[int] = {v.uid for v in graph.results()}
    keep: list[Node] = []
    for n in reversed(graph.nodes):
        if n.output.uid in live:
            keep.append(n)
            live.update(v.uid for v in n.inputs)
    keep.reverse()
    graph.nodes = keep
    return graph


def _freeze(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(e) for e in x)
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    return x


def _const_key(v: Value) -> Any:
    data = v.data
    if isinstance(data, (int, float, bool)):
        return ("c", type(data).__name__, data, v.kind)
    arr = np.asarray(data)
    if arr.size <= 16:
        return ("c", str(arr.dtype), arr.shape, arr.tobytes(), v.kind)
    return ("v", v.uid)


def cse(graph: Graph) -> Graph:
    """Common-subexpression elimination: same primitive, inputs and attributes (random nodes never merge)."""
    seen: dict[Any, Value] = {}
    const_seen: dict[Any, Value] = {}
    repl: dict[int, Value] = {}
    keep: list[Node] = []

    def r(v: Value) -> Value:
        while v.uid in repl:
            v = repl[v.uid]
        if v.role is ValueRole.CONST:
            k = _const_key(v)
            v = const_seen.setdefault(k, v)
        return v

    for n in graph.nodes:
        n.inputs = [r(v) for v in n.inputs]
        if n.primitive.random:  # two draws are two values, whatever their inputs
            keep.append(n)
            continue
        key = (n.primitive.name, tuple(v.uid for v in n.inputs), _freeze(n.attrs))
        prev = seen.get(key)
        if prev is not None:
            repl[n.output.uid] = prev
        else:
            seen[key] = n.output
            keep.append(n)
    graph.nodes = keep
    _substitute(graph, repl)
    return graph


def fold_constants(graph: Graph, backend: Any) -> Graph:
    """Evaluate nodes whose inputs are all constants: with the backend's kernels, else the NumPy reference."""
    repl: dict[int, Value] = {}
    keep: list[Node] = []
    kernels = backend.kernels
    calls: dict[Any, Any] = {}  # one kernel call per group of a multi-result primitive's nodes
    for n in graph.nodes:
        ins = [repl.get(v.uid, v) for v in n.inputs]
        n.inputs = ins
        if n.primitive.random or n.primitive.subgraphs or not ins or not all(v.role is ValueRole.CONST for v in ins):
            keep.append(n)  # a random node is drawn per call, never at compile time; control flow stays
            continue
        fn = kernels.get(n.primitive.name)
        arrays = [np.asarray(v.data, dtype=_np_dtype(backend, v.kind)) for v in ins]
        if fn is not None and n.primitive.results:
            # a multi-result primitive's kernel returns every result, in ``results`` order, and
            # takes no ``result`` attribute (the convention of mithril.codegen.python_source)
            attrs = {k: v for k, v in n.attrs.items() if k != "result"}
            key = (n.primitive.name, tuple(v.uid for v in ins), _freeze(attrs))
            if key not in calls:
                calls[key] = fn(*[backend.constant(a) for a in arrays], **attrs)
            data = backend.to_numpy(calls[key][n.primitive.results.index(n.attrs["result"])])
        elif fn is not None:
            data = backend.to_numpy(fn(*[backend.constant(a) for a in arrays], **n.attrs))
        elif n.primitive.name in REFERENCE:  # a backend without kernels (GGML): the NumPy reference
            data = np.asarray(REFERENCE[n.primitive.name](*arrays, **n.attrs)).astype(_np_dtype(backend, n.output.kind))
        else:
            keep.append(n)
            continue
        c = const_value(data, n.output.kind)
        c.shape = n.output.shape
        repl[n.output.uid] = c
    graph.nodes = keep
    _substitute(graph, repl)
    return graph


def _np_dtype(backend: Any, kind: str | None) -> Any:
    if kind == "int":
        return np.int64
    if kind == "bool":
        return np.bool_
    return backend.dtype.numpy if backend.dtype is not DType.bfloat16 else np.float32
