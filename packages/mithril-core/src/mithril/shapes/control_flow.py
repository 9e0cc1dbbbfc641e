"""Shape links of control-flow nodes (mithril.ir.control_flow) with their sub-graphs' terms.

A term is anything with a ``shape`` (:class:`SymShape`) and a ``kind`` (:class:`KindVar`),
as :class:`mithril.primitives.Term`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..errors import DTypeMismatchError, ShapeMismatchError
from .kinds import KindVar, unify_kinds
from .symbolic import Dim, SymShape, Variadic, unify


class TermLike(Protocol):
    shape: SymShape
    kind: KindVar


class _Term:
    def __init__(self, shape: SymShape, kind: KindVar) -> None:
        self.shape, self.kind = shape, kind


def _unify(a: TermLike, b: TermLike, what: str) -> None:
    try:
        unify(a.shape, b.shape)
        unify_kinds(a.kind, b.kind)
    except ShapeMismatchError as e:
        raise ShapeMismatchError(f"{what}: shapes {a.shape} and {b.shape} disagree: {e}") from None
    except DTypeMismatchError as e:
        raise DTypeMismatchError(f"{what}: kinds {a.kind} and {b.kind} disagree: {e}") from None


def _stacked(t: TermLike, length: Dim) -> TermLike:
    """``[length, *t]``: the term of a per-step value stacked over the steps."""
    v = Variadic()
    unify(t.shape, SymShape((), v, ()))
    return _Term(SymShape([length], v, ()), t.kind)


def link_scan(
    body_in: Sequence[TermLike],
    body_out: Sequence[TermLike],
    in_names: Sequence[str],
    out_names: Sequence[str],
    ins: Sequence[TermLike],
    out: TermLike,
    attrs: Mapping[str, Any],
    length: Dim,
) -> None:
    """Unify a scan node's terms with its body's: carries, sliced ``xs``, consts and the ``result`` output."""
    n_carry, n_xs, result = attrs["n_carry"], attrs["n_xs"], attrs["result"]
    if len(ins) != len(body_in):
        raise ShapeMismatchError(f"scan takes {len(body_in)} inputs ({', '.join(in_names)}), got {len(ins)}")
    if not 0 <= result < len(body_out):
        raise ShapeMismatchError(f"scan result {result} out of range: the body has {len(body_out)} outputs")
    if len(body_out) < n_carry:
        raise ShapeMismatchError(f"the scan body returns {len(body_out)} values, fewer than its {n_carry} carries")
    for i in range(n_carry):
        _unify(body_in[i], body_out[i], f"carry {in_names[i]!r} (returned as {out_names[i]!r})")
        _unify(ins[i], body_in[i], f"initial value of carry {in_names[i]!r}")
    for i in range(n_carry, n_carry + n_xs):
        _unify(ins[i], _stacked(body_in[i], length), f"sequence input {in_names[i]!r} (steps on axis 0)")
    for i in range(n_carry + n_xs, len(ins)):
        _unify(ins[i], body_in[i], f"input {in_names[i]!r}")
    want: TermLike = body_out[result] if result < n_carry else _stacked(body_out[result], length)
    _unify(out, want, f"output {out_names[result]!r}")


def link_branch(
    label: str,
    body_in: Sequence[TermLike],
    body_out: Sequence[TermLike],
    out_names: Sequence[str],
    ins: Sequence[TermLike],
    out: TermLike,
    result: int,
) -> None:
    """Unify a cond node's operands and ``result`` output with one branch's terms."""
    operands = ins[1:]
    if len(operands) != len(body_in):
        raise ShapeMismatchError(f"{label} takes {len(body_in)} operands, got {len(operands)}")
    if not 0 <= result < len(body_out):
        raise ShapeMismatchError(f"cond result {result} out of range: {label} has {len(body_out)} outputs")
    for i, (a, b) in enumerate(zip(operands, body_in)):
        _unify(a, b, f"{label}: operand {i}")
    _unify(out, body_out[result], f"{label}: output {out_names[result]!r}")
