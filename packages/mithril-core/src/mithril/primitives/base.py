"""What a primitive is: terminals, attributes, shape/dtype rule, gradient rule.

A primitive is defined once, in the core or in a plugin. Backends provide a
kernel per primitive name: ``kernel(*inputs, **attrs) -> array``, inputs in
the order of :attr:`Primitive.inputs` (a variadic primitive takes any number).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ModelBuildError, PluginError, UnknownKeyError
from ..shapes.kinds import KindVar
from ..shapes.symbolic import SymShape

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value


@dataclass(slots=True)
class Term:
    """The symbolic view of one terminal seen by a shape rule."""

    shape: SymShape
    kind: KindVar


ShapeRule = Callable[[Sequence[Term], Term, Mapping[str, Any]], bool]
"""``rule(inputs, output, attrs) -> done``: unify/bind what it can; True once finished."""

GradRule = Callable[["GraphBuilder", "Node", "Value"], Sequence["Value | None"]]
"""``vjp(builder, node, cotangent) -> one cotangent (or None) per input``."""

ExpandRule = Callable[["GraphBuilder", "Node"], "Value | Mapping[str, Value]"]
"""``expand(builder, node) -> value`` (or ``{result name: value}``): the node as other primitives."""

RecomputeRule = Callable[["GraphBuilder", "Node", Mapping[str, "Value"]], "Value | None"]
"""``recompute(builder, node, siblings) -> value`` (or None where it cannot): the node's value again, from
element-wise primitives only; ``siblings`` are the other results of the same call, by result name."""


@dataclass
class Primitive:
    """A logical operation with one output.

    ``inputs`` names the terminals in kernel order (for ``variadic`` primitives,
    one name standing for any number of inputs). ``attrs`` maps attribute names
    to defaults (``REQUIRED`` for none). ``nondiff`` lists inputs that never
    receive gradients (indices, masks).
    """

    name: str
    inputs: tuple[str, ...]
    rule: ShapeRule
    attrs: dict[str, Any] = field(default_factory=dict)
    vjp: GradRule | None = None
    variadic: bool = False
    nondiff: tuple[str, ...] = ()
    doc: str = ""
    output: str = "output"
    #: resolved by the compiler (identity, mode_switch, numel); never lowered
    compile_time: bool = False
    #: a fused form the compiler emits only for backends that have its kernel
    optional: bool = False
    #: canonicalises attributes (``axis=1`` -> ``(1,)``, ``stride=2`` -> ``(2, 2)``)
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    #: a composite: replaced, once shapes are concrete, by the subgraph of other primitives this rule
    #: emits (mithril.ir.passes.expand); it needs no kernel and no vjp of its own
    expand: ExpandRule | None = None
    #: several results: the attribute ``result`` picks the one a node outputs. A composite's ``expand``
    #: returns all of them by name; calls that differ only in ``result`` expand once, or, where the
    #: backend has a kernel, make one kernel call that returns a tuple in ``results`` order
    results: tuple[str, ...] = ()
    #: not a pure function of its inputs: draws from the per-call random stream (mithril.ir.randomness).
    #: Passes never merge (CSE), fold, recompute (checkpointing) or drop such a node as an identity;
    #: its kernel takes the node's key first: ``kernel(key, *inputs, **attrs)``
    random: bool = False
    #: how to compute the value again with element-wise primitives, which a fusing JIT inlines into the
    #: kernels that read it: the rematerialisation pass (mithril.ir.passes.remat) recomputes such values
    #: in the backward pass instead of keeping them. :func:`same_node` for element-wise primitives and views
    recompute: RecomputeRule | None = None
    #: inputs read only for their shape (never their elements)
    shape_only: tuple[str, ...] = ()
    #: the output is the input's elements rearranged (reshape, transpose): backends return a view, so
    #: keeping the output keeps the input in memory too
    view: bool = False
    #: attributes holding sub-graphs (control flow: ``scan``'s body, ``cond``'s branches; see
    #: :mod:`mithril.ir.control_flow`). The node has an int ``result`` attribute, the index of the output it
    #: gives; nodes that differ only in ``result`` are one call, whose kernel returns a tuple of every output
    #: and receives each sub-graph as a Python function
    subgraphs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.results and ((self.expand is None and not self.optional) or "result" not in self.attrs):
            raise ValueError(
                f"primitive {self.name!r}: results need a 'result' attribute and an expand rule "
                f"(or optional=True: emitted only for backends with the kernel)"
            )

    def bind_attrs(self, given: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """Fill defaults, reject unknown attributes."""
        unknown = set(given) - set(self.attrs)
        if unknown:
            raise ModelBuildError(
                f"{where or self.name}: unknown attribute(s) {sorted(unknown)}; {self.name} takes {sorted(self.attrs)}"
            )
        out = {}
        for k, default in self.attrs.items():
            if k in given:
                out[k] = given[k]
            elif default is REQUIRED:
                raise ModelBuildError(f"{where or self.name}: attribute {k!r} is required")
            else:
                out[k] = default
        out = {k: _tuples(v) for k, v in out.items()}
        if self.results and out["result"] not in self.results:
            raise ModelBuildError(f"{where or self.name}: result must be one of {self.results}, got {out['result']!r}")
        if self.normalize is not None:
            try:
                out = self.normalize(out)
            except (TypeError, ValueError) as e:
                raise ModelBuildError(f"{where or self.name}: invalid attributes {out}: {e}") from None
        return out

    def kernel_call(self) -> str:
        """How Mithril calls a kernel of this primitive, e.g. ``kernel(input, *, beta)``."""
        ins = [f"*{self.inputs[0]}" if self.variadic else ", ".join(self.inputs)]
        if self.random:
            ins.insert(0, "key")
        attrs = self.kernel_attrs()
        if attrs:
            ins.append(", ".join(attrs) if self.variadic else "*, " + ", ".join(attrs))
        return f"kernel({', '.join(filter(None, ins))})"

    def kernel_attrs(self) -> tuple[str, ...]:
        """The attributes a kernel receives as keywords (all but ``result`` of a multi-result primitive)."""
        return tuple(a for a in self.attrs if not ((self.results or self.subgraphs) and a == "result"))

    def kernel_signature_problem(self, kernel: Callable[..., Any]) -> str | None:
        """Why ``kernel`` cannot be called as Mithril calls it (:meth:`kernel_call`), or None.

        Kernels whose signature Python cannot read (C functions) pass unchecked.
        """
        return _signature_problem(self, kernel)

    @property
    def differentiable(self) -> bool:
        """Has a gradient rule, or is a composite (its expansion is differentiated)."""
        return self.vjp is not None or self.expand is not None

    def __repr__(self) -> str:
        return f"Primitive({self.name!r})"


def _signature_problem(prim: Primitive, kernel: Callable[..., Any]) -> str | None:
    import inspect

    try:
        sig = inspect.signature(kernel)
    except (TypeError, ValueError):  # a builtin or C function without a readable signature
        return None
    n = (2 if prim.variadic else len(prim.inputs)) + (1 if prim.random else 0)
    try:
        sig.bind(*range(n), **dict.fromkeys(prim.kernel_attrs()))
    except TypeError as e:
        return f"its signature {sig} does not accept {prim.kernel_call()}: {e}"
    return None


def same_node(b: GraphBuilder, node: Node, siblings: Mapping[str, Value]) -> Value:
    """The recompute rule of element-wise primitives and views: the same call again."""
    return b.emit(node.primitive.name, *node.inputs, **node.attrs)


def _tuples(v: Any) -> Any:
    """Lists become tuples (attributes are hashed and written into generated code)."""
    if isinstance(v, list):
        return tuple(_tuples(e) for e in v)
    return v


def axes_normalizer(*names: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``axis=1`` -> ``(1,)`` for the named attributes (None stays None)."""

    def norm(attrs: dict[str, Any]) -> dict[str, Any]:
        for n in names:
            v = attrs.get(n)
            if isinstance(v, int):
                attrs[n] = (v,)
            elif v is not None:
                attrs[n] = tuple(int(a) for a in v)
        return attrs

    return norm


def pairs_normalizer(*names: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``stride=2`` -> ``(2, 2)`` for the named attributes."""

    def norm(attrs: dict[str, Any]) -> dict[str, Any]:
        for n in names:
            v = attrs.get(n)
            if isinstance(v, int):
                attrs[n] = (v, v)
            elif v is not None:
                t = tuple(int(a) for a in v)
                if len(t) != 2:
                    raise ValueError(f"{n} must be an int or a pair, got {v!r}")
                attrs[n] = t
        return attrs

    return norm


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class PrimitiveRegistry:
    """Name -> :class:`Primitive`; the core's and those plugins register."""

    def __init__(self) -> None:
        self._table: dict[str, Primitive] = {}
        self._origin: dict[str, str] = {}
        #: called before an unknown name is refused; :mod:`mithril.plugins` sets it to load the entry points
        #: (a plugin may define the primitive), so this layer never imports the plugin machinery above it
        self.on_unknown: Callable[[], None] | None = None

    def register(self, prim: Primitive, origin: str = "mithril") -> Primitive:
        old = self._table.get(prim.name)
        if old is not None and old is not prim:
            raise PluginError(
                f"primitive {prim.name!r} from {origin!r} clashes with the one from {self._origin[prim.name]!r}"
            )
        self._table[prim.name] = prim
        self._origin[prim.name] = origin
        return prim

    def get(self, name: str) -> Primitive:
        prim = self._table.get(name)
        if prim is None and self.on_unknown is not None:
            self.on_unknown()
            prim = self._table.get(name)
        if prim is None:
            raise UnknownKeyError(f"no primitive named {name!r} is registered") from None
        return prim

    def __contains__(self, name: str) -> bool:
        return name in self._table

    def is_registered(self, prim: Primitive) -> bool:
        """``prim`` is the primitive registered under its name."""
        return self._table.get(prim.name) is prim

    def names(self) -> list[str]:
        return sorted(self._table)

    def origin(self, name: str) -> str:
        return self._origin[name]


registry = PrimitiveRegistry()


def primitive(name: str, inputs: Sequence[str], rule: ShapeRule, **kw: Any) -> Primitive:
    """Define and register a core primitive."""
    return registry.register(Primitive(name, tuple(inputs), rule, **kw))
