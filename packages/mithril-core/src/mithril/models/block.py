"""Blocks: the unit a logical model is built from.

A :class:`Block` has named terminals (inputs and outputs) with symbolic
shapes. :class:`PrimitiveBlock` wraps one primitive; :class:`~mithril.models.Model`
composes blocks. ``Block(...)(input="x", output="y")`` (or ``.connect``) records
how its terminals attach when the block is added to a model.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._gc import gc_paused_long_lived
from ..errors import ModelBuildError, UnknownKeyError, UnknownTerminalError
from ..primitives.base import Primitive, Term, registry
from ..shapes.kinds import KindVar
from ..shapes.symbolic import Constraint, SymShape, add_constraint, transaction
from .clone_plan import copy_by_dict
from .connections import Connection, TerminalRef
from .templates import templated

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Self  # typing.Self needs Python 3.11

    from .model import Model


class Block:
    """Base of primitive blocks and models."""

    canonical_input: str | None = "input"
    canonical_output: str | None = "output"
    #: instances with the same constructor arguments are clones (mithril.models.templates)
    _template: bool = False

    def __init_subclass__(cls, template: bool = False, **kwargs: Any) -> None:
        """Wrap the class's own constructor: no collector passes while it builds its subgraph
        (mithril._gc); with ``template=True`` later instances with the same arguments are clones of
        an earlier one (mithril.models.templates)."""
        super().__init_subclass__(**kwargs)
        cls._template = template  # per class: a subclass clones only if it says so itself
        if "__init__" in cls.__dict__:
            cls.__init__ = gc_paused_long_lived(templated(cls.__dict__["__init__"]))  # type: ignore[method-assign]  # wraps its own constructor

    def __init__(self, *, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise ModelBuildError(f"block name must be a non-empty string without '.', got {name!r}")
        self.name = name
        self._parent: Model | None = None
        self._local_name: str | None = None
        self._binding: dict[str, Connection] = {}
        self._pending: dict[str, Any] | None = None

    # ------------------------------------------------------------ terminals
    def input_terminals(self) -> list[str]:
        raise NotImplementedError

    def output_terminals(self) -> list[str]:
        raise NotImplementedError

    def terminal_term(self, name: str) -> Term:
        raise NotImplementedError

    def terminals(self) -> list[str]:
        return self.input_terminals() + self.output_terminals()

    def shapes(self) -> dict[str, list[object]]:
        """Current symbolic shape of every terminal (ints, symbols, '...')."""
        return {t: self.terminal_term(t).shape.to_list() for t in self.terminals()}

    # ----------------------------------------------------------- connecting
    def __call__(self, **connections: Any) -> Self:
        """Say how terminals attach when this block is added: ``Relu()(input="x", output="y")``."""
        if self._parent is not None:
            raise ModelBuildError(f"{self.display_name} is already in a model; connect before adding it")
        known = set(self.terminals())
        bad = sorted(set(connections) - known)
        if bad:
            raise UnknownKeyError(f"{self.display_name} has no terminal(s) {bad}; its terminals are {sorted(known)}")
        self._pending = {**(self._pending or {}), **connections}
        return self

    connect = __call__

    def __getattr__(self, item: str) -> TerminalRef:
        if item.startswith("_"):
            raise AttributeError(item)
        try:
            names = self.terminals()
        except Exception:
            raise AttributeError(item) from None
        if item in names:
            return TerminalRef(self, item)
        close = difflib.get_close_matches(item, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownTerminalError(
            f"{self.display_name} ({type(self).__name__}) has no attribute or terminal "
            f"{item!r}{hint}; its terminals are {sorted(names)}"
        )

    # --------------------------------------------------------------- naming
    @property
    def display_name(self) -> str:
        """Path of the block from the outermost model, e.g. ``model.linear_1``."""
        parts = []
        b: Block | None = self
        while b is not None:
            parts.append(b._local_name or b.name or type(b).__name__)
            b = b._parent
        return ".".join(reversed(parts))

    def __str__(self) -> str:
        return f"{self.display_name} ({type(self).__name__})"


copy_by_dict(Block)


class PrimitiveBlock(Block, template=True):
    """A block that is exactly one primitive call."""

    def __init__(
        self, primitive: str | Primitive, *, n_inputs: int | None = None, name: str | None = None, **attrs: Any
    ) -> None:
        super().__init__(name=name)
        prim = registry.get(primitive) if isinstance(primitive, str) else primitive
        self.primitive = prim
        self.attrs = prim.bind_attrs(attrs, where=type(self).__name__)
        if prim.variadic:
            if n_inputs is None or n_inputs < 1:
                raise ModelBuildError(f"{prim.name} needs n_inputs >= 1")
            self._inputs = [f"{prim.inputs[0]}_{i}" for i in range(n_inputs)]
        else:
            self._inputs = list(prim.inputs)
        if self.canonical_input not in self._inputs:
            self.canonical_input = self._inputs[0]
        self._terms: dict[str, Term] = {t: Term(SymShape.unknown(), KindVar()) for t in self._inputs}
        self._terms[prim.output] = Term(SymShape.unknown(), KindVar())
        self.canonical_output = prim.output
        ins = [self._terms[t] for t in self._inputs]
        out = self._terms[prim.output]
        with transaction():
            add_constraint(
                Constraint(lambda: prim.rule(ins, out, self.attrs), [t.shape for t in ins] + [out.shape], self)
            )

    def input_terminals(self) -> list[str]:
        return list(self._inputs)

    def output_terminals(self) -> list[str]:
        return [self.primitive.output]

    def terminal_term(self, name: str) -> Term:
        try:
            return self._terms[name]
        except KeyError:
            raise UnknownKeyError(f"{self.display_name} has no terminal {name!r}") from None

    def __repr__(self) -> str:
        attrs = ", ".join(f"{k}={v!r}" for k, v in self.attrs.items())
        return f"{type(self).__name__}({attrs})"


def primitive_block(name: str, **attrs: Any) -> PrimitiveBlock:
    """A block for any registered primitive, plugins' included: ``primitive_block("swish")``."""
    return PrimitiveBlock(name, **attrs)


def attrs_of(block: Block) -> Mapping[str, Any]:
    return getattr(block, "attrs", {})
