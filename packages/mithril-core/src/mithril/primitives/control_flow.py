"""Control-flow primitives: ``scan`` (a loop over a sequence axis) and ``cond`` (a branch).

Both own sub-graphs (:attr:`Primitive.subgraphs`). Their shape rules ask the sub-graph
objects in their attributes to link their terms (:mod:`mithril.ir.control_flow` for the
concrete bodies of the IR; :mod:`mithril.models.control_flow` for the logical bodies of
the ``scan_model`` / ``cond_model`` composites, which expand into ``scan`` / ``cond``
once shapes are concrete). A node gives the output number ``result``; nodes differing
only in ``result`` are one call, whose kernel returns every output:

* ``scan(*carry_init, *xs, *consts, body, n_carry, n_xs, length, reverse) -> (*carry_T, *ys)``,
  ``body`` a function ``(*carry, *x_t, *consts) -> (*carry', *y_t)``; ``xs`` are read along
  axis 0 (backwards with ``reverse``), ``ys`` stacked along a new axis 0 at the step's index;
* ``cond(selector, *operands, branches) -> outputs of branches[clamp(int(selector))]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import DTypeMismatchError
from ..shapes.rules import with_rank
from .base import REQUIRED, Term, primitive

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value


def _count(name: str, minimum: int) -> Any:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
        return v

    return check


def _normalize_scan(attrs: dict[str, Any]) -> dict[str, Any]:
    for k in ("n_carry", "n_xs", "result"):
        attrs[k] = _count(k, 0)(attrs[k])
    if attrs["length"] is not None:
        attrs["length"] = _count("length", 1)(attrs["length"])
    attrs["reverse"] = bool(attrs["reverse"])
    return attrs


def _normalize_cond(attrs: dict[str, Any]) -> dict[str, Any]:
    attrs["result"] = _count("result", 0)(attrs["result"])
    if not isinstance(attrs["branches"], tuple) or not attrs["branches"]:
        raise ValueError(f"branches must be a non-empty tuple of sub-graphs, got {attrs['branches']!r}")
    return attrs


def _scan_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    return bool(attrs["body"].link_scan(ins, out, attrs))


def _cond_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    if not ins:
        raise DTypeMismatchError("cond needs a selector")
    with_rank(ins[0].shape, 0)
    if ins[0].kind.known == "float":
        raise DTypeMismatchError("the selector of cond must be a bool or int scalar, got a float")
    for i, branch in enumerate(attrs["branches"]):
        branch.link_branch(i, ins, out, attrs["result"])
    return True


def _expand_control_flow(b: GraphBuilder, node: Node) -> Value:
    """A logical body concretises itself and emits the IR node (mithril.models.control_flow)."""
    owner = node.attrs["body"] if "body" in node.attrs else node.attrs["branches"][0]
    return owner.expand(b, node)  # type: ignore[no-any-return]  # the body is a models-layer object (Any here)


def _grouped_vjp(b: GraphBuilder, node: Node, g: Value) -> list[Value | None]:
    raise AssertionError("the autodiff pass differentiates control flow per call (mithril.ir.passes.control_flow)")


_SCAN_ATTRS = {"body": REQUIRED, "n_carry": REQUIRED, "n_xs": REQUIRED, "length": REQUIRED, "reverse": False}
_SCAN_DOC = "a loop: body over axis 0 of xs with carried state; result k of (*final carries, *stacked ys)"
_COND_DOC = "branches[selector] (clamped; a bool picks branch 1 when true) applied to the operands; result k"

scan = primitive(
    "scan",
    ("inputs",),
    _scan_rule,
    attrs={**_SCAN_ATTRS, "result": 0},
    variadic=True,
    subgraphs=("body",),
    vjp=_grouped_vjp,
    normalize=_normalize_scan,
    doc=_SCAN_DOC,
)
cond = primitive(
    "cond",
    ("inputs",),
    _cond_rule,
    attrs={"branches": REQUIRED, "result": 0},
    variadic=True,
    subgraphs=("branches",),
    vjp=_grouped_vjp,
    nondiff=(),
    normalize=_normalize_cond,
    doc=_COND_DOC,
)
scan_model = primitive(
    "scan_model",
    ("inputs",),
    _scan_rule,
    attrs={**_SCAN_ATTRS, "length": None, "result": 0},
    variadic=True,
    normalize=_normalize_scan,
    expand=_expand_control_flow,
    doc="the logical form of scan (a Model as body: mithril.models.Scan); expands into scan",
)
cond_model = primitive(
    "cond_model",
    ("inputs",),
    _cond_rule,
    attrs={"branches": REQUIRED, "result": 0},
    variadic=True,
    normalize=_normalize_cond,
    expand=_expand_control_flow,
    doc="the logical form of cond (Models as branches: mithril.models.Cond / Switch); expands into cond",
)

__all__ = ["cond", "cond_model", "scan", "scan_model"]
