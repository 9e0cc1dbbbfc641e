"""Connections (wires inside a model), IOKey, terminal references, initializers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..dtypes import DType
from ..errors import ModelBuildError
from ..primitives.base import Term
from ..shapes.kinds import KindVar
from ..shapes.symbolic import SymShape

if TYPE_CHECKING:  # pragma: no cover
    from .block import Block
    from .model import Model

ROLE_ORDER = {"input": 0, "state": 1, "param": 2}


@dataclass(frozen=True)
class Initializer:
    """How ``randomize_params`` fills a parameter, following torch.nn defaults.

    ``fn(backend, shape, fan_in_shape)``; ``fan_in_of`` names a sibling terminal
    whose shape gives the fan-in (a bias uses its weight's).
    """

    fn: Callable[[Any, tuple[int, ...], tuple[int, ...] | None], Any]
    fan_in_of: str | None = None
    label: str = ""

    def __repr__(self) -> str:
        return self.label or getattr(self.fn, "__name__", "init")


def fan_in(shape: Sequence[int]) -> int:
    """torch's fan-in: dim 1 times the receptive field (product of dims 2:)."""
    if len(shape) < 2:
        return int(shape[0]) if shape else 1
    return int(shape[1]) * math.prod(shape[2:])


def _uniform_fan_in(backend: Any, shape: tuple[int, ...], ref: tuple[int, ...] | None) -> Any:
    bound = 1.0 / math.sqrt(max(fan_in(ref if ref is not None else shape), 1))
    return backend.uniform(-bound, bound, shape)


def _ones(backend: Any, shape: tuple[int, ...], ref: tuple[int, ...] | None) -> Any:
    return backend.ones(*shape)


def _zeros(backend: Any, shape: tuple[int, ...], ref: tuple[int, ...] | None) -> Any:
    return backend.zeros(*shape)


def _normal(backend: Any, shape: tuple[int, ...], ref: tuple[int, ...] | None) -> Any:
    return backend.randn(*shape)


#: U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's kaiming_uniform_(a=sqrt(5)) for weights
uniform_fan_in = Initializer(_uniform_fan_in, label="uniform(±1/sqrt(fan_in))")
ones = Initializer(_ones, label="ones")
zeros = Initializer(_zeros, label="zeros")
normal = Initializer(_normal, label="normal(0, 1)")


def bias_of(weight: str) -> Initializer:
    """U(-1/sqrt(fan_in of weight), ...): torch's default bias init."""
    return Initializer(_uniform_fan_in, fan_in_of=weight, label=f"uniform(±1/sqrt(fan_in of {weight}))")


def _shape_spec(shape: Any, at: str) -> list[Any]:
    """An IOKey's shape: a sequence of ints >= 0, None (unknown), names (shared symbols) and one "..."."""
    ok = isinstance(shape, Sequence) and not isinstance(shape, (str, bytes))
    items = list(shape) if ok else []
    for d in items:
        if d is None or (isinstance(d, str) and d):
            continue
        if isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0:
            continue
        ok = False
    if ok and sum(1 for d in items if isinstance(d, str) and (d == "..." or d.startswith("*"))) > 1:
        ok = False
    if not ok:
        raise ModelBuildError(
            f"{at}: shape must be a list of dimensions (ints >= 0, None for unknown, names, "
            f"at most one '...'), got {shape!r}"
        )
    return [int(d) if isinstance(d, (int, np.integer)) else d for d in items]


class IOKey:
    """Names a terminal's connection and, optionally, declares what it holds.

    ``IOKey("x", shape=[None, 3])`` names the connection ``x`` and fixes its
    shape (None is an unknown dimension, "..." any number of them).
    ``value=`` makes it a constant; ``expose=True`` makes an internal
    connection an output of the model; ``role="param"``/``"state"`` and
    ``init=`` declare a parameter (used when writing blocks).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        shape: Sequence[int | str | None] | None = None,
        dtype: DType | str | None = None,
        value: Any = None,
        expose: bool | None = None,
        role: str | None = None,
        init: Initializer | None = None,
        differentiable: bool = True,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ModelBuildError(f"IOKey name must be a non-empty string, got {name!r}")
        at = f"IOKey({name!r})"
        if role not in (None, "input", "param", "state"):
            raise ModelBuildError(f"{at}: role must be 'input', 'param' or 'state', got {role!r}")
        self.name = name
        self.shape = None if shape is None else _shape_spec(shape, at)
        self.kind = dtype.kind if isinstance(dtype, DType) else dtype
        if self.kind not in (None, "float", "int", "bool"):
            raise ModelBuildError(f"{at}: dtype must be an ml dtype or a kind ('float', 'int', 'bool'), got {dtype!r}")
        self.value = value
        self.expose = expose
        self.role = role
        self.init = init
        self.differentiable = differentiable

    def __repr__(self) -> str:
        return f"IOKey({self.name!r}{', shape=' + str(self.shape) if self.shape is not None else ''})"


class Connection:
    """A wire of one model: at most one producer, any number of consumers."""

    __slots__ = (
        "consumers",
        "declared_kind",
        "declared_shapes",
        "differentiable",
        "expose",
        "init",
        "model",
        "name",
        "producer",
        "role",
        "sub_conns",
        "term",
        "value",
    )

    def __init__(self, model: Model, name: str | None = None, term: Term | None = None) -> None:
        self.model = model
        self.name = name
        self.term = Term(SymShape.unknown(), KindVar()) if term is None else term
        self.declared_shapes: list[list[Any]] = []
        self.declared_kind: str | None = None
        self.value: Any = None  # constant data, if any
        self.producer: tuple[Block, str] | None = None
        self.consumers: list[tuple[Block, str]] = []
        self.role = "input"
        self.init: Initializer | None = None
        self.expose: bool | None = None
        self.differentiable = True

    @property
    def is_const(self) -> bool:
        return self.value is not None

    def describe(self) -> str:
        if self.name:
            return repr(self.name)
        if self.producer is not None:
            b, t = self.producer
            return f"{b.display_name}.{t}"
        if self.consumers:
            b, t = self.consumers[0]
            return f"{b.display_name}.{t}"
        return "<unconnected>"

    def __repr__(self) -> str:
        return f"<Connection {self.describe()} {self.term.shape}>"


class TerminalRef:
    """``block.output``: a reference to a terminal of a block already in a model."""

    __slots__ = ("block", "terminal")

    def __init__(self, block: Block, terminal: str) -> None:
        self.block = block
        self.terminal = terminal

    @property
    def shape(self) -> list[object]:
        """The terminal's current symbolic shape, readable."""
        return self.block.terminal_term(self.terminal).shape.to_list()

    def __repr__(self) -> str:
        return f"{self.block.display_name}.{self.terminal}"

    # arithmetic sugar: builds blocks in the model that owns the terminal
    def _binary(self, prim: str, other: Any, reverse: bool = False) -> TerminalRef:
        model = self.block._parent
        if model is None:
            raise ModelBuildError(f"{self!r}: add the block to a model before using its terminals in expressions")
        return model._binary(prim, self, other, reverse)

    def __add__(self, o: Any) -> TerminalRef:
        return self._binary("add", o)

    def __radd__(self, o: Any) -> TerminalRef:
        return self._binary("add", o, True)

    def __sub__(self, o: Any) -> TerminalRef:
        return self._binary("sub", o)

    def __rsub__(self, o: Any) -> TerminalRef:
        return self._binary("sub", o, True)

    def __mul__(self, o: Any) -> TerminalRef:
        return self._binary("mul", o)

    def __rmul__(self, o: Any) -> TerminalRef:
        return self._binary("mul", o, True)

    def __truediv__(self, o: Any) -> TerminalRef:
        return self._binary("div", o)

    def __rtruediv__(self, o: Any) -> TerminalRef:
        return self._binary("div", o, True)

    def __matmul__(self, o: Any) -> TerminalRef:
        return self._binary("matmul", o)

    def __pow__(self, o: Any) -> TerminalRef:
        return self._binary("pow", o)


def is_constant_like(x: Any) -> bool:
    return isinstance(x, (int, float, bool, np.ndarray, np.generic)) or (
        isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(e, (int, float, list, tuple)) for e in x)
    )
