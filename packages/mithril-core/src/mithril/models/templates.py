"""Block templates: instances of a block class built with the same arguments are copies.

Building a block solves its terminals' symbolic shapes: every primitive's rule runs, connections
are unified, watchers are attached. For the same class and the same arguments the result is the
same up to fresh symbols. A class that says so (``class Linear(Model, template=True)``) runs its
constructor for the first two instances of an argument set; from the second one a generated
function that rebuilds its object graph is made (:mod:`mithril.models.clone_plan`), and later
instances are filled by it: no rule runs, nothing is unified. The 1000-layer MLP of the compile
suite builds in 69 ms instead of 259 (``benchmarks/profile_build.py 1000``, CPU time).

Where the constructor runs instead:

* classes that do not declare ``template=True`` (each class for itself: a subclass of a templated
  class may do more in its constructor), and inner constructor calls of an instance being built;
* arguments that are not immutable values (ints, floats, strings, bools, None, enums such as dtypes,
  tuples of those): a list, an IOKey, an array, a function;
* an object graph holding a type the plan does not know (the argument set is then never cloned);
* a plan whose primitives are no longer the registered ones (a plugin re-registered a name: the
  plan is dropped), a construction inside an open shape transaction;
* ``MITHRIL_BLOCK_TEMPLATES=0``. ``tests-core/test_block_templates.py`` compares copies with
  constructed blocks object by object over the zoo.
"""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..primitives.base import Primitive, registry
from ..shapes import symbolic
from .clone_plan import Fill, Unclonable, plan

if TYPE_CHECKING:  # pragma: no cover
    from .block import Block

F = TypeVar("F", bound=Callable[..., None])

#: plans by (class, arguments); None: that class and arguments cannot be copied
_prototypes: dict[Any, tuple[Fill, tuple[Primitive, ...]] | None] = {}
#: argument sets constructed once: a plan is made at the second construction (none for one-offs)
_seen: set[Any] = set()
#: ids of the instances whose templated constructor runs (their inner constructor calls just run)
_building: set[int] = set()
_MAX_PROTOTYPES = 512
_MAX_SEEN = 4096


def enabled() -> bool:
    return os.environ.get("MITHRIL_BLOCK_TEMPLATES", "1") != "0"


class _NotAValue(Exception):
    pass


# ------------------------------------------------------------------ keys
def _value_key(v: Any) -> Any:
    """A hashable, type-exact key of an immutable argument; raises _NotAValue for anything else."""
    if v is None or isinstance(v, (bool, str, enum.Enum)):
        return (type(v), v)
    if isinstance(v, int):
        return (type(v), v)
    if isinstance(v, float):
        return (float, repr(v))  # -0.0 and 0.0 differ, NaN equals itself
    if isinstance(v, tuple):
        return (tuple, tuple(_value_key(x) for x in v))
    raise _NotAValue


def _key(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return (
            cls,
            tuple(_value_key(a) for a in args),
            tuple(sorted((k, _value_key(v)) for k, v in kwargs.items())),
        )
    except _NotAValue:
        return None


# ---------------------------------------------------------------- wrapper
def templated(init: F) -> F:
    """A block constructor that, for an instance of a class declaring ``template=True``, clones a
    prototype made with the same arguments where one exists (the outermost constructor call only)."""

    @functools.wraps(init)
    def wrapper(self: Block, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        if not cls._template or id(self) in _building:
            init(self, *args, **kwargs)
            return
        key = _key(cls, args, kwargs) if enabled() and not symbolic._trail.frames else None
        entry = False if key is None else _prototypes.get(key, False)
        if isinstance(entry, tuple):
            fill, prims = entry
            if all(registry.is_registered(p) for p in prims):
                fill(self)
                return
            del _prototypes[key]
            entry = False
        _building.add(id(self))
        try:
            init(self, *args, **kwargs)
        finally:
            _building.discard(id(self))
        if key is None or entry is not False:
            return  # None: not clonable
        if key not in _seen:
            if len(_seen) < _MAX_SEEN:
                _seen.add(key)
            return
        if len(_prototypes) < _MAX_PROTOTYPES:
            try:
                _prototypes[key] = plan(self)
            except Unclonable:
                _prototypes[key] = None

    return wrapper  # type: ignore[return-value]  # same signature as init


def clear() -> None:
    """Forget every prototype (tests; a registry snapshot restored)."""
    _prototypes.clear()
    _seen.clear()
