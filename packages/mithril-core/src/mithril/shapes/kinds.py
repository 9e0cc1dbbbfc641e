"""Symbolic dtype kinds ('float', 'int', 'bool') unified with union-find.

The logical model only knows kinds; the backend's dtype decides the width of
'float' (float32, float64...). Bindings are recorded on the shape trail so a
failed connection rolls them back too.
"""

from __future__ import annotations

from ..errors import DTypeMismatchError
from .symbolic import _find, _set

KINDS = ("float", "int", "bool")


class KindVar:
    """A dtype kind, known or not yet known."""

    __slots__ = ("parent", "value")

    def __init__(self, value: str | None = None) -> None:
        if value is not None and value not in KINDS:
            raise ValueError(f"unknown dtype kind {value!r}")
        self.parent: KindVar | None = None
        self.value = value

    def find(self) -> KindVar:
        return self if self.parent is None else _find(self)

    @property
    def known(self) -> str | None:
        return self.find().value

    def __repr__(self) -> str:
        return self.known or "?"


def unify_kinds(a: KindVar, b: KindVar) -> None:
    ra, rb = a.find(), b.find()
    if ra is rb:
        return
    if ra.value is not None and rb.value is not None:
        if ra.value != rb.value:
            raise DTypeMismatchError(f"dtype {ra.value} != {rb.value}")
        return
    if ra.value is None:
        ra, rb = rb, ra
    _set(rb, "parent", ra)


def bind_kind(k: KindVar, value: str) -> None:
    unify_kinds(k, KindVar(value))
