"""A generated function that rebuilds a freshly constructed block's object graph (block templates).

:func:`plan` walks a block as its constructor left it (inner blocks, connections, terms, symbolic
shapes, dimensions, kinds, pending constraints and their closures) and writes the Python source of
a function that makes a new copy of every mutable object with the same attributes and the same
sharing: one line per object made (``o3 = _new(K[7])``), containers and closures built from those,
then the attributes. Immutable values (numbers, strings, primitives, initializers, dtypes, code) are
read from a constants list ``K``, so blocks of the same structure with other numbers share one
compiled function. Running it is a tenth of what running the constructor again costs: no shape
rule runs, nothing is unified, no undo record is written.

Only the types listed here are copied; any other object raises :class:`Unclonable` (the caller then
runs the constructor every time). Dimensions and variadic parts get fresh ids.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from ..primitives.base import Primitive, Term
from ..shapes import symbolic
from ..shapes.kinds import KindVar
from ..shapes.symbolic import Constraint, Dim, SymShape, Variadic
from .connections import Connection, Initializer, TerminalRef

#: values shared by the copies: immutable, or owned by the registry
_SHARED: tuple[type, ...] = (
    int,
    float,
    complex,
    str,
    bytes,
    type,
    frozenset,
    Primitive,
    Initializer,
    enum.Enum,
    np.generic,
    np.dtype,
    types.BuiltinFunctionType,
    types.CodeType,
)

Fill = Callable[[Any], None]
"""``fill(target)``: make ``target`` (new, empty) a copy."""

_compiled: dict[str, Callable[..., None]] = {}


class Unclonable(Exception):
    """The object graph holds something a plan cannot copy."""


def plan(root: Any) -> tuple[Fill, tuple[Primitive, ...]]:
    """A function ``fill(target)`` making ``target`` (a new, empty instance of ``type(root)``) a copy of
    ``root`` as it is now, and the primitives the copies share."""
    p = _Planner(root)
    source = p.source()
    fn = _compiled.get(source)
    if fn is None:
        namespace: dict[str, Any] = {}
        exec(compile(source, "<mithril block template>", "exec"), namespace)  # generated here, from types only
        fn = _compiled[source] = namespace["fill"]
    consts = p.consts
    new, uid, cell, ft = object.__new__, symbolic._ids.__next__, types.CellType, types.FunctionType

    def fill(target: Any) -> None:
        fn(target, consts, new, uid, id, ft, cell)

    return fill, tuple(c for c in consts if isinstance(c, Primitive))


class _Planner:
    def __init__(self, root: Any) -> None:
        self.names: dict[int, str] = {id(root): "o0"}
        self.consts: list[Any] = []
        self.create: list[str] = []
        self.build: list[str] = []
        self.fill: list[str] = []
        self.active: set[int] = set()
        self.todo: list[tuple[Any, str]] = [(root, "o0")]
        self.n = 1
        while self.todo:
            obj, name = self.todo.pop()
            self._fill(obj, name)

    def source(self) -> str:
        body = self.create + self.build + self.fill
        return "def fill(o0, K, _new, _uid, _id, _FT, _cell):\n" + "".join(f"    {line}\n" for line in body)

    # ------------------------------------------------------------ values
    def const(self, v: Any) -> str:
        self.consts.append(v)
        return f"K[{len(self.consts) - 1}]"

    def _name(self) -> str:
        name = f"o{self.n}"
        self.n += 1
        return name

    def ref(self, v: Any) -> str:
        """An expression for ``v`` in the copy."""
        if v is None or v is True or v is False:
            return repr(v)
        name = self.names.get(id(v))
        if name is not None:
            return name
        t = type(v)
        if t in _OBJECTS or _is_block(v):
            name = self.names[id(v)] = self._name()
            self.create.append(f"{name} = _new({self.const(t)})")
            self.todo.append((v, name))
            return name
        if t is tuple:
            items = [self.ref(x) for x in v]
            return "(" + "".join(f"{x}, " for x in items) + ")"
        if isinstance(v, _SHARED):
            return self.const(v)
        if t is list:
            return self._container(v, lambda: "[" + ", ".join(self.ref(x) for x in v) + "]")
        if t is dict:
            return self._container(v, lambda: self._dict(v))
        if t is set:
            return self._container(v, lambda: f"set({self.const(frozenset(v))})")
        if t is np.ndarray:
            return self._container(v, lambda: f"{self.const(v.copy())}.copy()")
        if t is types.FunctionType:
            if v.__closure__ is None:
                return self.const(v)
            return self._container(v, lambda: self._function(v))
        raise Unclonable(f"{t.__module__}.{t.__qualname__}")

    def _container(self, v: Any, expr: Callable[[], str]) -> str:
        if id(v) in self.active:
            raise Unclonable("a container that contains itself")
        self.active.add(id(v))
        text = expr()
        self.active.discard(id(v))
        name = self.names[id(v)] = self._name()
        self.build.append(f"{name} = {text}")
        return name

    def _dict(self, d: dict[Any, Any]) -> str:
        items = []
        for k, v in d.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise Unclonable("a dict key that is not a string")
            items.append(f"{self.const(k)}: {self.ref(v)}")
        return "{" + ", ".join(items) + "}"

    def _watchers(self, w: dict[int, Constraint] | None) -> str:
        """A watcher dict: keyed by id(constraint), which the copy's constraints change."""
        if w is None:
            return "None"
        name = self.names.get(id(w))
        if name is not None:
            return name  # a dict two symbols share (merged watchers)
        if any(k != id(c) for k, c in w.items()):
            raise Unclonable("a watcher dict not keyed by its constraints")
        return self._container(w, lambda: "{" + ", ".join(f"_id({r}): {r}" for r in map(self.ref, w.values())) + "}")

    def _function(self, f: types.FunctionType) -> str:
        assert f.__closure__ is not None
        cells = []
        for c in f.__closure__:
            try:
                contents = c.cell_contents
            except ValueError:  # an empty cell
                cells.append("_cell()")
                continue
            cells.append(f"_cell({self.ref(contents)})")
        args = ", ".join(self.const(x) for x in (f.__code__, f.__globals__, f.__name__, f.__defaults__))
        text = f"_FT({args}, ({''.join(c + ', ' for c in cells)}))"
        if f.__kwdefaults__:
            raise Unclonable("a closure with keyword defaults")
        return text

    # ----------------------------------------------------------- objects
    def _set(self, name: str, attr: str, expr: str) -> None:
        self.fill.append(f"{name}.{attr} = {expr}")

    def _fill(self, obj: Any, name: str) -> None:
        t = type(obj)
        if t is Dim:
            self._set(name, "parent", self.ref(obj.parent))
            self._set(name, "value", self.ref(obj.value))
            self._set(name, "uid", "_uid()")
            self._set(name, "watchers", self._watchers(obj.watchers))
        elif t is Variadic:
            self._set(name, "parent", self.ref(obj.parent))
            self._set(name, "binding", self.ref(obj.binding))
            self._set(name, "uid", "_uid()")
            self._set(name, "watchers", self._watchers(obj.watchers))
        elif t in (KindVar, SymShape, Constraint, Connection, TerminalRef, Term):
            for attr in t.__slots__:
                if hasattr(obj, attr):
                    self._set(name, attr, self.ref(getattr(obj, attr)))
        else:  # a block: the instance dict
            for attr, v in obj.__dict__.items():
                if not attr.isidentifier():
                    raise Unclonable(f"attribute {attr!r}")
                self._set(name, attr, self.ref(v))


_OBJECTS = frozenset({Dim, Variadic, KindVar, SymShape, Constraint, Connection, TerminalRef, Term})

#: base classes whose instances are copied by their instance dict (blocks: registered by mithril.models.block)
_DICT_TYPES: list[type] = []


def copy_by_dict(cls: type) -> None:
    """Copy instances of ``cls`` and its subclasses attribute by attribute."""
    _DICT_TYPES.append(cls)


def _is_block(v: Any) -> bool:
    return isinstance(v, tuple(_DICT_TYPES))
