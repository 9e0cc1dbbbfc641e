"""Primitives that move data around: matmul, transpose, reshape, concat, slice..."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ShapeMismatchError
from ..shapes.kinds import unify_kinds
from ..shapes.rules import at_least_rank, broadcast, normalize_axis, with_rank
from ..shapes.symbolic import Dim, SymShape, Variadic, _raw, bind_dim, unify, unify_dims
from .base import REQUIRED, Term, primitive, same_node
from .default_rules import DEFAULT_RULES
from .grad_utils import unbroadcast

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value


def _kind_same(ins: Sequence[Term], out: Term) -> None:
    for t in ins:
        unify_kinds(t.kind, out.kind)


# ------------------------------------------------------------------ matmul
def _matmul_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    _kind_same(ins, out)
    a_split, b_split = at_least_rank(ins[0].shape, 2), at_least_rank(ins[1].shape, 2)
    if a_split is None or b_split is None:  # an operand [d, ...]: its last two dims wait for its rank
        return False
    (a_batch, (m, k)), (b_batch, (k2, n)) = a_split, b_split
    unify_dims(k, k2)
    batch = SymShape.unknown()
    done = broadcast([a_batch, b_batch], batch)
    r = batch.resolve()
    unify(out.shape, _raw(r.prefix, r.variadic, r.suffix + [m, n]))
    return done


def _swap_last(b: GraphBuilder, x: Value) -> Value:
    rank = len(x.known_shape)
    perm = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    return b.emit("transpose", x, axes=perm)


def _vjp_matmul(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    x, y = node.inputs
    gx = b.emit("matmul", g, _swap_last(b, y)) if b.needs_grad(x) else None
    if b.needs_grad(y) and len(y.known_shape) == 2 and len(x.known_shape) > 2:
        # x [..., M, K] @ W [K, N]: dW = x2.T @ g2 over the flattened batch, one GEMM instead of a
        # batched product [..., K, N] summed afterwards
        k, n = y.known_shape
        x2 = b.emit("reshape", x, shape=(-1, k))
        gy: Value | None = b.emit("matmul", _swap_last(b, x2), b.emit("reshape", g, shape=(-1, n)))
    else:
        gy = b.emit("matmul", _swap_last(b, x), g) if b.needs_grad(y) else None
    return [
        unbroadcast(b, gx, x.known_shape) if gx is not None else None,
        unbroadcast(b, gy, y.known_shape) if gy is not None else None,
    ]


primitive(
    "matmul",
    ("left", "right"),
    _matmul_rule,
    vjp=_vjp_matmul,
    doc="NumPy matmul for operands of rank >= 2 (batch dims broadcast)",
)


# --------------------------------------------------------------- transpose
def _transpose_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    _kind_same(ins, out)
    axes = attrs["axes"]
    if axes is None:
        dims = ins[0].shape.dims()
        if dims is None:
            return False
        unify(out.shape, _raw(list(reversed(dims)), None, []))
        return True
    rank = len(axes)
    if sorted(a % rank for a in axes) != list(range(rank)):
        raise ShapeMismatchError(f"axes {axes} is not a permutation")
    dims = with_rank(ins[0].shape, rank)
    unify(out.shape, _raw([dims[a] for a in axes], None, []))
    return True


def _vjp_transpose(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    rank = len(node.inputs[0].known_shape)
    axes = node.attrs["axes"] or tuple(reversed(range(rank)))
    inv = [0] * rank
    for i, a in enumerate(axes):
        inv[a % rank] = i
    return [b.emit("transpose", g, axes=tuple(inv))]


primitive(
    "transpose",
    ("input",),
    _transpose_rule,
    attrs={"axes": None},
    vjp=_vjp_transpose,
    recompute=same_node,
    view=True,
    doc="permute axes (None reverses them)",
)


# ----------------------------------------------------------------- reshape
def _reshape_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    _kind_same(ins, out)
    shape = tuple(attrs["shape"])
    if sum(1 for d in shape if d == -1) > 1:
        raise ShapeMismatchError(f"shape {shape} has more than one -1")
    dims = with_rank(out.shape, len(shape))
    for d, s in zip(dims, shape):
        if s != -1:
            bind_dim(d, s)
    src = ins[0].shape.concrete()
    if src is None:
        return False
    total = math.prod(src)
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0 or total % known:
            raise ShapeMismatchError(f"cannot reshape {list(src)} into {list(shape)}")
        bind_dim(dims[shape.index(-1)], total // known)
    elif known != total:
        raise ShapeMismatchError(f"cannot reshape {list(src)} ({total} elements) into {list(shape)}")
    return True


primitive(
    "reshape",
    ("input",),
    _reshape_rule,
    attrs={"shape": REQUIRED},
    vjp=lambda b, n, g: [b.emit("reshape", g, shape=n.inputs[0].shape)],
    recompute=same_node,
    view=True,
    doc="reshape; one entry may be -1",
)


def _flatten_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    _kind_same(ins, out)
    start, end = attrs["start_axis"], attrs["end_axis"]
    dims = ins[0].shape.dims()
    if dims is None:
        if start >= 0 and end == -1:
            r = ins[0].shape.resolve()
            if len(r.prefix) >= start:
                unify(out.shape, _raw(r.prefix[:start] + [Dim()], None, []))
        return False
    rank = len(dims)
    s = normalize_axis(start, rank, "flatten: ")
    e = normalize_axis(end, rank, "flatten: ")
    if e < s:
        raise ShapeMismatchError(f"flatten: end_axis {end} before start_axis {start}")
    merged = Dim()
    unify(out.shape, _raw(dims[:s] + [merged] + dims[e + 1 :], None, []))
    vals = [d.known for d in dims[s : e + 1]]
    known = [v for v in vals if v is not None]
    if len(known) != len(vals):
        return False
    bind_dim(merged, math.prod(known))
    return True


primitive(
    "flatten",
    ("input",),
    _flatten_rule,
    attrs={"start_axis": 1, "end_axis": -1},
    vjp=lambda b, n, g: [b.emit("reshape", g, shape=n.inputs[0].shape)],
    recompute=same_node,
    view=True,
    doc="merge axes start_axis..end_axis into one (as torch.flatten)",
)


def _broadcast_to_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    _kind_same(ins, out)
    target = SymShape.of(list(attrs["shape"]))
    unify(out.shape, target)
    tmp = SymShape.unknown()
    done = broadcast([ins[0].shape, target], tmp)
    unify(tmp, target)
    return done


primitive(
    "broadcast_to",
    ("input",),
    _broadcast_to_rule,
    attrs={"shape": REQUIRED},
    vjp=lambda b, n, g: [unbroadcast(b, g, n.inputs[0].shape)],
    recompute=same_node,
    view=True,
    doc="NumPy broadcast_to",
)


# ------------------------------------------------------------------ concat
def _concat_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    _kind_same(ins, out)
    axis = attrs["axis"]
    ranks = [t.shape.rank for t in ins] + [out.shape.rank]
    rank = next((r for r in ranks if r is not None), None)
    if rank is None:
        return False
    ax = normalize_axis(axis, rank, "concat: ")
    all_dims = [with_rank(t.shape, rank) for t in ins]
    out_dims = with_rank(out.shape, rank)
    for i in range(rank):
        if i != ax:
            for dims in all_dims:
                unify_dims(dims[i], out_dims[i])
    sizes = [d[ax].known for d in all_dims]
    known = [s for s in sizes if s is not None]
    if len(known) != len(sizes):
        return False
    bind_dim(out_dims[ax], sum(known))
    return True


def _vjp_concat(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    ax = node.attrs["axis"] % len(node.output.known_shape)
    grads, offset = [], 0
    for x in node.inputs:
        size = x.known_shape[ax]
        starts = tuple(offset if i == ax else None for i in range(ax + 1))
        stops = tuple(offset + size if i == ax else None for i in range(ax + 1))
        grads.append(b.emit("slice", g, starts=starts, stops=stops, steps=(None,) * (ax + 1)))
        offset += size
    return grads


primitive(
    "concat",
    ("inputs",),
    _concat_rule,
    attrs={"axis": 0},
    vjp=_vjp_concat,
    variadic=True,
    doc="join along an existing axis",
)


# ------------------------------------------------------------------- slice
def _slice_len(n: int, start: int | None, stop: int | None, step: int | None) -> int:
    return len(range(n)[slice(start, stop, step)])


def _slice_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    _kind_same(ins, out)
    starts, stops, steps = attrs["starts"], attrs["stops"], attrs["steps"]
    if not len(starts) == len(stops) == len(steps):
        raise ShapeMismatchError("slice: starts, stops and steps differ in length")
    if any(s == 0 for s in steps):
        raise ShapeMismatchError("slice: step 0")
    n = len(starts)
    r = ins[0].shape.resolve()
    if r.variadic is None and len(r.prefix) < n:
        raise ShapeMismatchError(f"slice over {n} axes of a rank-{len(r.prefix)} input")
    if len(r.prefix) < n:
        if r.suffix:  # [..., m, n] (a matmul of operands of unknown rank): the sliced axes are unknown, wait
            return False
        r_dims = [Dim() for _ in range(n)]
        unify(ins[0].shape, _raw(r_dims, Variadic(), []))
        r = ins[0].shape.resolve()
    head, tail_var, tail = r.prefix[:n], r.variadic, r.prefix[n:]
    new_head: list[Dim] = []
    done = True
    for d, a, z, s in zip(head, starts, stops, steps):
        if a is None and z is None and (s is None or s == 1):
            new_head.append(d)
        elif d.known is not None:
            new_head.append(Dim(_slice_len(d.known, a, z, s)))
        else:
            new_head.append(Dim())
            done = False
    unify(out.shape, _raw(new_head + tail, tail_var, r.suffix))
    return done


primitive(
    "slice",
    ("input",),
    _slice_rule,
    attrs={"starts": REQUIRED, "stops": REQUIRED, "steps": REQUIRED},
    vjp=lambda b, n, g: [b.emit("slice_grad", g, input_shape=n.inputs[0].shape, **n.attrs)],
    doc="input[starts[0]:stops[0]:steps[0], ...] over the leading len(starts) axes (None allowed)",
)


def _slice_grad_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    _kind_same(ins, out)
    unify(out.shape, SymShape.of(list(attrs["input_shape"])))
    return True


primitive(
    "slice_grad",
    ("grad",),
    _slice_grad_rule,
    attrs={"input_shape": REQUIRED, "starts": REQUIRED, "stops": REQUIRED, "steps": REQUIRED},
    vjp=lambda b, n, g: [b.emit("slice", g, starts=n.attrs["starts"], stops=n.attrs["stops"], steps=n.attrs["steps"])],
    expand=DEFAULT_RULES["slice_grad"],
    doc="zeros(input_shape) with grad written at the slice (the transpose of slice)",
)
