"""Pausing Python's cyclic garbage collector while Mithril builds and compiles graphs.

Building and compiling allocate many small objects that stay alive (nodes, values,
shapes). Each time the allocation count crosses a threshold the collector walks
every tracked object of the process, and with PyTorch or JAX imported that is
hundreds of thousands of objects: measured, half of a 12-layer GPT compile. The
work here creates no garbage cycles worth collecting early, so the collector is
paused for its duration and resumed (never left off) afterwards.

Block constructors are paused too (``Block.__init_subclass__`` wraps every
subclass's ``__init__``): a model class builds its whole subgraph in its
constructor, and a collection in between its ``add``/``call`` steps walks the
whole process. Measured: with PyTorch and JAX imported, one full collection of
about 400k objects made the 48-layer GPT build 0.78 s instead of 0.59 s.

Building, :func:`gc_paused_long_lived`: pausing alone does not stop a user's
``for ...: model += block`` loop from paying for collections between the calls.
CPython (3.11) runs a full collection, a walk of every object of the process, each
time the objects promoted to the oldest generation since the last one exceed a
quarter of those it kept then; a model built block by block promotes all of its
objects, so a deep model triggered several full collections, each longer as the
model grows (with PyTorch and JAX imported, one took as long as building 250
layers): the build time grew faster than the number of layers. What a builder call
allocates lives as long as the model, so after a successful call the young
generations are moved to the oldest one directly (``gc.freeze()`` then
``gc.unfreeze()``, two list splices), which does not count toward the next full
collection. So that nothing but the call's own objects is moved unaccounted, the
young generations are collected first (``gc.collect(1)``: the few objects the
caller allocated since the last call). Skipped where the program has frozen
objects of its own (``gc.get_freeze_count()``: ``unfreeze`` would release them) and
after a call that raised (its garbage is collected normally).

What was frozen when Mithril was imported counts as the interpreter's own, not the
program's: CPython 3.12 starts with a few hundred immortal tuples in the permanent
generation (3.11 and 3.13 with none). Taking those for the program's switched the
promotion off there, and a 2000-layer build ran three full collections, as long as
the rest of the build together (measured on 3.12.1).
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


_FROZEN_AT_IMPORT = gc.get_freeze_count()


def _nothing_of_the_programs_frozen() -> bool:
    """Whether the permanent generation holds nothing the program froze (see the module doc)."""
    frozen = gc.get_freeze_count()
    return frozen == 0 or frozen == _FROZEN_AT_IMPORT


def gc_paused(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with the cyclic collector paused (nested calls are no-ops)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return wrapper


def gc_paused_long_lived(fn: Callable[P, R]) -> Callable[P, R]:
    """:func:`gc_paused` for calls whose allocations live on (building models): see the module doc."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        promote = _nothing_of_the_programs_frozen()
        if promote and gc.get_count()[:2] != (0, 0):
            gc.collect(1)
        gc.disable()
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            gc.enable()
            raise
        if promote:
            gc.freeze()
            gc.unfreeze()
        gc.enable()
        return result

    return wrapper
