"""Primitives resolved by the compiler itself; they never reach a backend.

* ``identity``: an alias, removed before lowering.
* ``mode_switch(train, eval)``: picks a branch by the compiled mode (BatchNorm, Dropout).
* ``numel(input; axis)``: the number of elements over ``axis``, a float scalar known
  once shapes are concrete (folded to a constant).
* ``same_dim(input, like; axis, like_axis, block, names)``: ``input`` itself, its dimension ``axis``
  made equal to ``like``'s dimension ``like_axis`` (a :class:`~mithril.errors.ShapeMismatchError` naming
  ``block`` and both terminals when they differ). BatchNorm without ``num_features`` ties its
  per-channel params and state to the input's channels with it; it expands to nothing.
* ``same_shape(input, like; drop_axis, block, names)``: ``input`` itself, once its shape is
  ``like``'s (without axis ``drop_axis`` where it is given); otherwise a
  :class:`~mithril.errors.ShapeMismatchError` naming ``block`` and both terminals (``names``) with
  their shapes. A loss puts it on its target so that mismatched shapes are an error rather than a
  silent broadcast. It waits for both shapes to be concrete (it relates nothing before, so a mismatch
  is always reported here rather than by the rule of some later primitive), and expands to nothing.
* ``batch_statistics(input; axes, block)``: ``input`` itself, whose statistics over ``axes`` a
  normalisation computes from the batch (BatchNorm in training mode). With fewer than 2 values per
  channel they are meaningless (a variance of 0 or NaN written into the running statistics), so
  that is a :class:`~mithril.errors.ShapeMismatchError` naming ``block`` at compile, as torch
  refuses it. Only a graph that computes batch statistics holds it; it expands to nothing.
* ``index_range(input, like; like_axis, ignore, block, names)``: ``input`` itself, int indices into
  axis ``like_axis`` of ``like`` (an embedding's rows, a loss's classes). When ``input`` is an input
  of the model, ``evaluate`` checks its values lie in range (or equal ``ignore``) before anything
  runs (:class:`~mithril.ir.graph.IndexCheck`); a constant is checked at compile. It expands to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import BatchStatisticsError, ShapeMismatchError
from ..shapes.kinds import bind_kind, unify_kinds
from ..shapes.symbolic import Dim, SymShape, unify, unify_dims
from .base import Term, primitive

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value


def _identity_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    unify(ins[0].shape, out.shape)
    unify_kinds(ins[0].kind, out.kind)
    return True


def _switch_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    for t in ins:
        unify(t.shape, out.shape)
        unify_kinds(t.kind, out.kind)
    return True


def _numel_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    unify(out.shape, SymShape.of([]))
    bind_kind(out.kind, "float")
    return True


identity = primitive("identity", ("input",), _identity_rule, vjp=lambda b, n, g: [g], compile_time=True)
mode_switch = primitive("mode_switch", ("train", "eval"), _switch_rule, compile_time=True)
numel = primitive("numel", ("input",), _numel_rule, attrs={"axis": None}, compile_time=True, nondiff=("input",))


def _same_shape_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    unify_kinds(ins[0].kind, out.kind)
    got, like = ins[0].shape.concrete(), ins[1].shape.concrete()
    if got is None or like is None:
        return False  # decided once both are concrete, never by unification with other rules' shapes
    axis = attrs["drop_axis"]
    block = attrs["block"] or "same_shape"
    a, b = attrs["names"]
    if axis is None:
        if list(got) != list(like):
            raise ShapeMismatchError(
                f"{block}: {a} and {b} must have the same shape, got {a} {list(got)} and {b} {list(like)}"
            )
    elif len(like) <= axis or list(got) != list(like[:axis]) + list(like[axis + 1 :]):
        want = f"{a} {list(like[:axis]) + list(like[axis + 1 :])}" if len(like) > axis else f"{b} of rank >= {axis + 1}"
        raise ShapeMismatchError(
            f"{block}: {a} must have the shape of {b} without its axis {axis}, got {a} "
            f"{list(got)} and {b} {list(like)} (expected {want})"
        )
    unify(out.shape, ins[0].shape)
    return True


same_shape = primitive(
    "same_shape",
    ("input", "like"),
    _same_shape_rule,
    attrs={"drop_axis": None, "block": "", "names": ("input", "like")},
    expand=lambda b, n: n.inputs[0],
    nondiff=("like",),
    shape_only=("like",),
    doc="input, once its shape is like's (without axis drop_axis); a named error otherwise",
)


def _dim_at(shape: SymShape, axis: int, what: str) -> Dim | None:
    """Dimension ``axis`` (negative: from the end) of ``shape``, None while its rank does not tell."""
    r = shape.resolve()
    if r.variadic is None:
        if not -len(r.prefix) <= axis < len(r.prefix):
            raise ShapeMismatchError(f"{what} has rank {len(r.prefix)}: it has no axis {axis}")
        return r.prefix[axis]
    if axis >= 0:
        return r.prefix[axis] if len(r.prefix) > axis else None
    return r.suffix[axis] if len(r.suffix) >= -axis else None


def _same_dim_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    unify_kinds(ins[0].kind, out.kind)
    unify(out.shape, ins[0].shape)
    block = attrs["block"] or "same_dim"
    a_name, b_name = attrs["names"]
    a = _dim_at(ins[0].shape, attrs["axis"], f"{block}: {a_name} {ins[0].shape!r}")
    b = _dim_at(ins[1].shape, attrs["like_axis"], f"{block}: {b_name} {ins[1].shape!r}")
    if a is None or b is None:
        return False
    if a.known is not None and b.known is not None and a.known != b.known:
        raise ShapeMismatchError(
            f"{block}: {a_name} axis {attrs['axis']} is {a.known} but {b_name} axis "
            f"{attrs['like_axis']} is {b.known} ({a_name} {ins[0].shape!r}, {b_name} "
            f"{ins[1].shape!r})"
        )
    unify_dims(a, b)
    return True


same_dim = primitive(
    "same_dim",
    ("input", "like"),
    _same_dim_rule,
    attrs={"axis": 0, "like_axis": 0, "block": "", "names": ("input", "like")},
    expand=lambda b, n: n.inputs[0],
    nondiff=("like",),
    shape_only=("like",),
    doc="input, its dimension axis tied to like's dimension like_axis (expands to nothing)",
)


def _index_range_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    bind_kind(ins[0].kind, "int")
    unify_kinds(ins[0].kind, out.kind)
    unify(out.shape, ins[0].shape)
    return True


index_range = primitive(
    "index_range",
    ("input", "like"),
    _index_range_rule,
    attrs={"like_axis": 0, "ignore": None, "block": "", "names": ("input", "like")},
    expand=lambda b, n: n.inputs[0],
    nondiff=("input", "like"),
    shape_only=("like",),
    doc="int indices input into axis like_axis of like, range-checked by evaluate",
)


def _batch_statistics_expand(b: GraphBuilder, node: Node) -> Value:
    shape = node.inputs[0].known_shape
    count = 1
    for a in node.attrs["axes"]:
        count *= shape[a]
    if count < 2:
        where = node.where.rsplit(".", 1)[0] if "." in node.where else node.where
        what = "an empty batch" if count == 0 else "1 value per channel"
        raise BatchStatisticsError(
            f"{where} ({node.attrs['block']}): input of shape {list(shape)} has {what} over axes "
            f"{list(node.attrs['axes'])}; batch statistics need more than 1 value per channel (in training "
            f"mode, or without running statistics); give a larger batch or evaluate with training=False"
        )
    return node.inputs[0]


batch_statistics = primitive(
    "batch_statistics",
    ("input",),
    _identity_rule,
    attrs={"axes": (0,), "block": ""},
    expand=_batch_statistics_expand,
    vjp=lambda b, n, g: [g],
    doc="input, whose batch statistics over axes are computed: >= 2 values per channel",
)
