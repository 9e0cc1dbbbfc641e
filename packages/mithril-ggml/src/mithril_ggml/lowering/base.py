"""What a lowering rule is: a Python-only check, and an emitter of ggml ops."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from mithril.ir.graph import Node, Value

    from ..emitter import Emitter, T


@dataclass(frozen=True)
class Mode:
    """What the lowering is for: ``grad`` selects ops ggml can differentiate."""

    grad: bool = False


class Lowerer(Protocol):
    """What a rule sees while emitting one node."""

    em: Emitter
    mode: Mode

    def arg(self, node: Node, i: int) -> T: ...

    def folded_weight(self, node: Node, i: int) -> T | None: ...


Check = Callable[["Node", Mode], "str | None"]
Emit = Callable[[Lowerer, "Node"], "T"]


@dataclass(frozen=True)
class Rule:
    """How one primitive becomes ggml ops.

    ``check(node, mode)`` runs before anything is handed to ggml and returns why the
    node cannot be lowered (None when it can); ``emit`` builds the ops. With
    ``mode.grad`` a rule emits ops ggml's backward pass supports, or its check
    refuses (the ops actually emitted are checked again before the backward pass).
    """

    emit: Emit
    check: Check | None = None


def scalar_of(v: Value) -> float | None:
    """The value of a CONST holding one element, else None."""
    from mithril.ir.graph import ValueRole

    if v.role is not ValueRole.CONST or v.data is None:
        return None
    arr = np.asarray(v.data)
    if arr.size != 1:
        return None
    return float(arr.reshape(()))
