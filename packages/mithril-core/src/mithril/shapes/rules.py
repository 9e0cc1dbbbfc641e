"""Reusable pieces of shape rules (see :mod:`mithril.primitives`)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ShapeMismatchError
from .symbolic import Dim, SymShape, Variadic, _raw, _view, bind_dim, unify, unify_dims


def broadcast_dim(dims: Sequence[Dim]) -> Dim | None:
    """The broadcast of one axis, or None when it cannot be decided yet."""
    roots = {id(d.find()): d.find() for d in dims}
    known = {r.value for r in roots.values() if r.value is not None}
    non_one = known - {1}
    if len(non_one) > 1:
        raise ShapeMismatchError(f"cannot broadcast dimensions {sorted(non_one)}")
    free = [r for r in roots.values() if r.value is None]
    if non_one:
        return Dim(next(iter(non_one)))
    if not free:
        return Dim(1)
    if len(free) == 1:
        return free[0]
    return None


def broadcast(shapes: Sequence[SymShape], out: SymShape) -> bool:
    """NumPy broadcasting; symbolic where it can be decided."""
    rs = [_view(s) for s in shapes]  # read only below: no copies of the dimension lists
    var_ops = [r for r in rs if r.variadic is not None]
    if not var_ops:
        rank = max(len(r.prefix) for r in rs)
        dims: list[Dim] = []
        done = True
        for ax in range(rank):
            col = [r.prefix[len(r.prefix) - rank + ax] for r in rs if len(r.prefix) - rank + ax >= 0]
            d = broadcast_dim(col)
            if d is None:
                done = False
                d = Dim()
            dims.append(d)
        unify(out, _raw(dims, None, []))
        return done
    # one variadic shared by every unknown-rank operand, and it dominates
    roots = {id(r.variadic.find()) for r in var_ops if r.variadic is not None}
    pre_lens = {len(r.prefix) for r in var_ops}
    if len(roots) != 1 or len(pre_lens) != 1:
        return False
    n_pre = pre_lens.pop()
    n_suf = min(len(r.suffix) for r in var_ops)
    known = [r for r in rs if r.variadic is None]
    if any(len(r.prefix) > n_suf for r in known):
        return False
    if n_pre and known:
        return False
    pre = [var_ops[0].prefix[i] for i in range(n_pre)]
    for r in var_ops[1:]:
        for a, b in zip(pre, r.prefix):
            unify_dims(a, b)
    suf: list[Dim] = []
    done = True
    for ax in range(n_suf):
        col = [r.suffix[len(r.suffix) - n_suf + ax] for r in var_ops]
        col += [r.prefix[len(r.prefix) - n_suf + ax] for r in known if len(r.prefix) - n_suf + ax >= 0]
        d = broadcast_dim(col)
        if d is None:
            done = False
            d = Dim()
        suf.append(d)
    # extra suffix dims of longer variadic operands are unknown-broadcast
    if any(len(r.suffix) != n_suf for r in var_ops):
        done = False
    unify(out, _raw(pre, var_ops[0].variadic, suf))
    return done and len(var_ops) == 1


def normalize_axis(axis: int, rank: int, where: str = "") -> int:
    if not -rank <= axis < rank:
        raise ShapeMismatchError(f"{where}axis {axis} out of range for rank {rank}")
    return axis % rank


def known_rank(shape: SymShape) -> list[Dim] | None:
    return shape.dims()


def with_rank(shape: SymShape, rank: int) -> list[Dim]:
    """Force a shape to have ``rank`` dims and return them."""
    known = shape.dims()
    if known is not None and len(known) == rank:
        return known
    dims = [Dim() for _ in range(rank)]
    unify(shape, _raw(dims, None, []))
    forced = shape.dims()
    assert forced is not None  # unified with a known-rank shape just above
    return forced


def at_least_rank(shape: SymShape, n_suffix: int) -> tuple[SymShape, list[Dim]] | None:
    """View ``shape`` as ``[*rest] + last n dims``; returns (rest, last dims), or None while undecidable.

    A shape with known leading dims, a variadic part and fewer than ``n`` trailing dims
    (``[N, C, ...]``, or the ``[d, ...]`` a slice of an operand of unknown rank has) cannot be split
    yet: ``[N, C, ...]`` may be ``[N, C]`` itself. A rule then waits (returns False) until the rank
    is known, instead of unifying with ``[..., d]`` (which would wrongly demand rank >= 3, and
    could not be decided either: the unification waits, and re-splitting recursed forever).
    """
    r = _view(shape)  # its lists are only sliced or shared below, never changed
    if r.variadic is not None and r.prefix and len(r.suffix) < n_suffix:
        return None
    if r.variadic is None:
        if len(r.prefix) < n_suffix:
            raise ShapeMismatchError(f"needs rank >= {n_suffix}, got rank {len(r.prefix)}")
        k = len(r.prefix) - n_suffix
        return _raw(r.prefix[:k], None, []), r.prefix[k:]
    if len(r.suffix) >= n_suffix:
        k = len(r.suffix) - n_suffix
        return _raw(r.prefix, r.variadic, r.suffix[:k]), r.suffix[k:]
    v = Variadic()
    tail = [Dim() for _ in range(n_suffix)]
    unify(shape, _raw([], v, tail))  # r is [*v', suffix]: binds v' to [*v, the missing dims]
    return at_least_rank(shape, n_suffix)


def set_dim(d: Dim, value: int) -> None:
    bind_dim(d, value)
