"""What a backend's lowering returns: a callable over name -> array dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

Arrays = Mapping[str, Any]


@runtime_checkable
class Executable(Protocol):
    """A lowered graph for one set of concrete shapes.

    ``run(params, inputs, cotangents)`` returns ``(outputs, gradients, state_updates)``,
    three dicts keyed by output names, param names and state names. ``cotangents``
    is empty (and ``gradients`` too) for a forward-only executable.
    ``source`` is readable generated code where the lowering produces any.
    """

    @property
    def source(self) -> str | None:
        """Readable generated code, or None (a read-only member: an attribute ``source: str`` satisfies it)."""

    def run(
        self, params: Arrays, inputs: Arrays, cotangents: Arrays
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]: ...
