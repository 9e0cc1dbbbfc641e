"""Exact padding of a partial batch: padded rows that contribute nothing to the loss, metrics or gradients.

A batch smaller than the compiled one is padded (with copies of its own rows, so every value stays
finite) and a per-row weight input :data:`ROW_WEIGHT_INPUT` (1 for a real row, 0 for padding) is
added to the graph. Every reduction over the batch axis that feeds the loss or a metric is
rewritten to weigh rows: ``sum(v)`` becomes ``sum(v * w)`` and ``mean(v)`` becomes
``sum(v * w) / (sum(w) * other reduced sizes)``. Padded rows then add exact zeros, so the loss,
metrics and gradients are those of the unpadded batch up to rounding.

That holds only when examples do not interact. :func:`refusal` proves it from the graph or says
why not: every value is classified as

* ``FREE``: independent of the batch (params, constants, anything computed from them only);
* ``ROW``: axis 0 is the batch axis and row ``i`` depends only on row ``i`` of the inputs (and
  ``FREE`` values), through primitives known to act row by row;
* ``AGG``: a rewritten reduction over the batch axis, and anything computed from it with ``FREE``
  values: exactly the unpadded value.

Anything else refuses: an unknown primitive touching a ``ROW`` value, a ``ROW`` value mixed with
an ``AGG`` one (BatchNorm's batch statistics), a reduction over the batch axis other than
``sum``/``mean``, state updates that depend on the batch, random primitives (their draws depend on
the batch shape), and constants or attributes that change with the batch size (checked by
classifying a second graph built for one more row).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum

import numpy as np

from ..ir.graph import Graph, GraphBuilder, Node, Value, ValueRole

#: the per-row weight input of a padded step: 1.0 for a real row, 0.0 for padding
ROW_WEIGHT_INPUT = "#row_weight"


class Cls(Enum):
    FREE = "free"
    ROW = "row"
    AGG = "agg"


#: primitives applied element by element, with NumPy broadcasting (``where`` and comparisons included)
ELEMENTWISE = frozenset(
    {
        *("abs", "add", "cast", "cos", "div", "equal", "erf", "exp", "gelu", "greater", "greater_equal"),
        *("identity", "leaky_relu", "less", "less_equal", "log", "maximum", "minimum", "mul", "neg"),
        *("not_equal", "pow", "relu", "sigmoid", "sign", "sin", "sqrt", "sub", "tanh", "where"),
    }
)
#: row-wise when their input (the first) is ``ROW`` and every other input ``FREE``: the batch axis stays axis 0
_ROW_FIRST = frozenset({"conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "linear"})
#: reshapes: row-wise when input and output both have the batch on axis 0
_RESHAPES = frozenset({"reshape", "flatten", "unflatten", "reshape_as"})


class Refused(Exception):
    """Why padding would not be exact (the message names the node)."""


def _axes(attrs_axis: object, rank: int) -> tuple[int, ...]:
    if attrs_axis is None:
        return tuple(range(rank))
    axes = attrs_axis if isinstance(attrs_axis, (tuple, list)) else (attrs_axis,)
    return tuple(int(a) % rank if rank else 0 for a in axes)


def classify(graph: Graph, batch: int) -> dict[int, Cls]:
    """The class of every value of ``graph`` (inputs with ``batch`` rows); raises :class:`Refused`."""
    cls: dict[int, Cls] = {}
    for name, v in graph.inputs.items():
        if not v.shape or v.shape[0] != batch:
            raise Refused(f"input {name!r} of shape {list(v.shape or ())} has no batch axis of {batch}")
        cls[v.uid] = Cls.ROW
    for v in (*graph.params.values(), *graph.state.values()):
        cls[v.uid] = Cls.FREE
    for node in graph.nodes:
        cls[node.output.uid] = _node_class(node, [cls.get(v.uid, Cls.FREE) for v in node.inputs], batch)
    for name, v in graph.outputs.items():
        if cls.get(v.uid, Cls.FREE) is Cls.ROW:
            raise Refused(f"output {name!r} is per example, not reduced over the batch")
    for name, v in graph.state_updates.items():
        if cls.get(v.uid, Cls.FREE) is not Cls.FREE:
            raise Refused(f"the update of state {name!r} depends on the batch (batch statistics)")
    return cls


def _node_class(node: Node, ins: list[Cls], batch: int) -> Cls:
    prim, out = node.primitive.name, node.output
    what = f"{node.where or 'the graph'} ({prim})"
    if node.primitive.random:
        raise Refused(f"{what}: a random primitive draws per batch shape")
    if Cls.ROW not in ins:
        return Cls.AGG if Cls.AGG in ins else Cls.FREE
    if Cls.AGG in ins:
        raise Refused(f"{what}: a batch statistic is combined with per-example values (examples interact)")
    shape = out.known_shape
    if prim in ("sum", "mean", "max", "min", "argmax"):
        rank = len(node.inputs[0].known_shape)
        if 0 in _axes(node.attrs.get("axis"), rank):
            if prim in ("sum", "mean") and node.inputs[0].kind == "float":
                return Cls.AGG
            raise Refused(f"{what}: a {prim} over the batch axis (only float sums and means are weighed)")
        return _row(what, shape, batch)
    if prim == "positions" and _axes(node.attrs["axis"], len(node.inputs[0].known_shape)) != (0,):
        return Cls.FREE  # 0..n-1 along a non-batch axis
    if prim == "tril_mask" and len(node.inputs[0].known_shape) >= 3:
        return Cls.FREE  # a mask over the last two axes
    if not shape or shape[0] != batch:
        raise Refused(f"{what}: the output {list(shape)} has no batch axis of {batch}")
    if prim in ELEMENTWISE:
        for v, c in zip(node.inputs, ins):
            s = v.known_shape
            if c is Cls.ROW and len(s) != len(shape):
                raise Refused(f"{what}: a per-example operand {list(s)} is broadcast to {list(shape)}")
            if c is Cls.FREE and len(s) == len(shape) and s[0] != 1:
                raise Refused(f"{what}: a batch-free operand {list(s)} spans the batch axis")
        return Cls.ROW
    if prim in _ROW_FIRST or prim in ("softmax", "log_softmax", "normalize", "normalize_affine"):
        if ins[0] is not Cls.ROW or any(c is not Cls.FREE for c in ins[1:]):
            raise Refused(f"{what}: only its first input may be per example")
        if prim in ("softmax", "log_softmax") and _axes(node.attrs["axis"], len(shape)) == (0,):
            raise Refused(f"{what}: a softmax over the batch axis")
        if prim.startswith("normalize") and 0 in _axes(node.attrs["axes"], len(shape)):
            raise Refused(f"{what}: normalises over the batch axis")
        if prim == "normalize_affine" and any(
            len(v.known_shape) == len(shape) and v.known_shape[0] != 1 for v in node.inputs[1:]
        ):
            raise Refused(f"{what}: a weight spans the batch axis")
        return Cls.ROW
    if prim in _RESHAPES:
        if node.inputs[0].known_shape[:1] != (batch,) or ins[0] is not Cls.ROW:
            raise Refused(f"{what}: reshapes across the batch axis")
        return Cls.ROW
    if prim == "transpose":
        axes = node.attrs.get("axes")
        if (axes is None and len(shape) > 1) or (axes is not None and int(axes[0]) % len(shape) != 0):
            raise Refused(f"{what}: moves the batch axis")
        return Cls.ROW
    if prim == "broadcast_to":
        if len(node.inputs[0].known_shape) != len(shape):
            raise Refused(f"{what}: broadcasts a per-example value to {list(shape)}")
        return Cls.ROW
    if prim == "matmul":
        return _matmul(what, node, ins, shape)
    if prim == "concat":
        if _axes(node.attrs["axis"], len(shape)) == (0,) or any(c is not Cls.ROW for c in ins):
            raise Refused(f"{what}: joins along the batch axis or with batch-free values")
        return Cls.ROW
    if prim == "slice":
        starts, stops, steps = node.attrs["starts"], node.attrs["stops"], node.attrs["steps"]
        if starts and (
            starts[0] not in (None, 0) or steps[0] not in (None, 1) or (stops[0] is not None and stops[0] < batch)
        ):
            raise Refused(f"{what}: slices the batch axis")
        return Cls.ROW
    if prim == "gather_last":
        if ins[1] is not Cls.ROW or len(node.inputs[1].known_shape) == 0:
            raise Refused(f"{what}: per-example values gathered with batch-free indices")
        return Cls.ROW
    if prim == "gather_rows":
        if ins[0] is not Cls.FREE:
            raise Refused(f"{what}: gathers rows of a per-example table")
        return Cls.ROW
    if prim == "index_range":
        if (
            node.inputs[1] is not None
            and ins[1] is Cls.ROW
            and int(node.attrs["like_axis"]) % len(node.inputs[1].known_shape) == 0
        ):
            raise Refused(f"{what}: indices into the batch axis")
        return Cls.ROW if ins[0] is Cls.ROW else Cls.FREE
    raise Refused(f"{what}: not known to act on each example separately")


def _row(what: str, shape: tuple[int, ...], batch: int) -> Cls:
    if not shape or shape[0] != batch:
        raise Refused(f"{what}: the output {list(shape)} has no batch axis of {batch}")
    return Cls.ROW


def _matmul(what: str, node: Node, ins: list[Cls], shape: tuple[int, ...]) -> Cls:
    a, b = node.inputs
    ra, rb = len(a.known_shape), len(b.known_shape)
    for v, r, c in ((a, ra, ins[0]), (b, rb, ins[1])):
        if c is Cls.ROW and (r != len(shape) or (v is b and r < 3)):
            raise Refused(f"{what}: contracts or broadcasts the batch axis")
    for v, r, c in ((a, ra, ins[0]), (b, rb, ins[1])):
        if c is Cls.FREE and r == len(shape) and r >= 3 and v.known_shape[0] != 1:
            raise Refused(f"{what}: a batch-free operand {list(v.known_shape)} spans the batch axis")
    return Cls.ROW


def refusal(build: Callable[[int], Graph], batch: int) -> str | None:
    """Why padding to ``batch`` rows would not be exact, or None. ``build(n)`` returns the graph for ``n`` rows."""
    n = batch
    try:
        g1 = build(batch)
        n = batch + 1
        g2 = build(n)
        c1, c2 = classify(g1, batch), classify(g2, n)
        _same_but_batch(g1, c1, g2, c2)
    except Refused as e:
        return str(e)
    except Exception as e:  # e.g. a model that fixes its batch size in a reshape
        return f"the graph cannot be built for {n} rows ({type(e).__name__}: {e})"
    return None


def _same_but_batch(g1: Graph, c1: dict[int, Cls], g2: Graph, c2: dict[int, Cls]) -> None:
    """The two graphs differ only in their batch axis: same nodes, classes, constants, batch-free shapes."""
    if len(g1.nodes) != len(g2.nodes) or list(g1.outputs) != list(g2.outputs):
        raise Refused("the graph's structure depends on the batch size")
    for n1, n2 in zip(g1.nodes, g2.nodes):
        what = f"{n1.where or 'the graph'} ({n1.primitive.name})"
        if n1.primitive is not n2.primitive or len(n1.inputs) != len(n2.inputs):
            raise Refused(f"{what}: the graph's structure depends on the batch size")
        k1, k2 = c1[n1.output.uid], c2[n2.output.uid]
        if k1 is not k2:
            raise Refused(f"{what}: classified differently for another batch size")
        if k1 is not Cls.ROW and n1.output.shape != n2.output.shape:
            raise Refused(
                f"{what}: a batch-free value of shape {list(n1.output.known_shape)} depends on the batch size"
            )
        if k1 is Cls.ROW and n1.output.known_shape[1:] != n2.output.known_shape[1:]:
            raise Refused(f"{what}: a per-example shape depends on the batch size")
        if k1 is not Cls.ROW and not _same_attrs(n1.attrs, n2.attrs):
            raise Refused(f"{what}: an attribute depends on the batch size")
        for v1, v2 in zip(n1.inputs, n2.inputs):
            if v1.role is ValueRole.CONST and (
                v2.role is not ValueRole.CONST or not np.array_equal(np.asarray(v1.data), np.asarray(v2.data))
            ):
                raise Refused(f"{what}: a constant depends on the batch size ({v1.data!r} vs {v2.data!r})")


def _same_attrs(a: dict[str, object], b: dict[str, object]) -> bool:
    try:
        return a.keys() == b.keys() and all(bool(np.all(a[k] == b[k])) for k in a)
    except Exception:
        return False


def weigh_rows(graph: Graph, batch: int) -> Value:
    """Add the input :data:`ROW_WEIGHT_INPUT` ``[batch]`` and weigh every sum and mean over the batch
    axis by it (call after :func:`refusal` said None for this graph). Returns the weight input."""
    cls = classify(graph, batch)
    w = Value(ValueRole.INPUT, name=ROW_WEIGHT_INPUT, kind="float", shape=(batch,))
    graph.inputs[ROW_WEIGHT_INPUT] = w
    nodes, graph.nodes = graph.nodes, []
    b = GraphBuilder(graph, where="row weights")
    count: Value | None = None
    shaped: dict[int, Value] = {}
    replaced: dict[int, Value] = {}
    for node in nodes:
        node.inputs = [replaced.get(v.uid, v) for v in node.inputs]
        x = node.inputs[0] if node.inputs else None
        if (
            node.primitive.name not in ("sum", "mean")
            or x is None
            or cls.get(x.uid) is not Cls.ROW
            or cls[node.output.uid] is not Cls.AGG
        ):
            graph.nodes.append(node)
            continue
        rank = len(x.known_shape)
        axes = _axes(node.attrs.get("axis"), rank)
        if rank not in shaped:
            shaped[rank] = w if rank == 1 else b.emit("reshape", w, shape=(batch,) + (1,) * (rank - 1))
        b.where = node.where
        total = b.emit(
            "sum", b.emit("mul", x, shaped[rank]), axis=node.attrs.get("axis"), keepdims=node.attrs["keepdims"]
        )
        if node.primitive.name == "mean":
            if count is None:
                count = b.emit("sum", w, axis=None, keepdims=False)
            rest = math.prod(x.known_shape[a] for a in axes if a != 0)
            denom = count if rest == 1 else b.emit("mul", count, b.const(float(rest), "float"))
            total = b.emit("div", total, denom)
        replaced[node.output.uid] = total
    graph.outputs = {k: replaced.get(v.uid, v) for k, v in graph.outputs.items()}
    graph.state_updates = {k: replaced.get(v.uid, v) for k, v in graph.state_updates.items()}
    return w


def row_weights(rows: int, batch: int) -> np.ndarray:
    """``[batch]`` weights: 1.0 for the first ``rows`` rows, 0.0 for the padding after them."""
    out = np.zeros(batch, np.float64)
    out[:rows] = 1.0
    return out


__all__ = ["ROW_WEIGHT_INPUT", "Cls", "Refused", "classify", "refusal", "row_weights", "weigh_rows"]
