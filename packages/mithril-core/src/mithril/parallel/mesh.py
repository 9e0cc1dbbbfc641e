"""A device mesh with named axes: the backend-agnostic half of parallelism.

``device_mesh=(8,)`` is one data axis of 8 devices; ``(2, 4)`` names its axes
``data`` and ``model``; ``{"data": 2, "model": 4}`` names them explicitly. A
backend maps the mesh onto its engine (a ``jax.sharding.Mesh``, a torch
``DeviceMesh``) and its devices.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ModelBuildError

#: the axis inputs are split along by default (data parallelism)
DATA_AXIS = "data"
#: the conventional name of a tensor-parallel axis
MODEL_AXIS = "model"
_DEFAULT_NAMES = (DATA_AXIS, MODEL_AXIS)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class DeviceMesh:
    """Named axes and their sizes, in order (the devices fill the mesh row-major)."""

    axes: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, spec: Any) -> DeviceMesh:
        """A mesh from ``(8,)``, ``(2, 4)``, ``{"data": 2, "model": 4}`` or a :class:`DeviceMesh`."""
        if isinstance(spec, DeviceMesh):
            return spec
        if isinstance(spec, Mapping):
            axes = tuple((k, v) for k, v in spec.items())
        elif isinstance(spec, Sequence) and not isinstance(spec, str):
            if len(spec) > len(_DEFAULT_NAMES):
                raise ModelBuildError(
                    f"device_mesh={spec!r}: give more than {len(_DEFAULT_NAMES)} axes as a dict of names to sizes"
                )
            axes = tuple(zip(_DEFAULT_NAMES, spec))
        else:
            raise ModelBuildError(
                f"device_mesh must be a tuple of sizes such as (8,) or a dict such as "
                f'{{"data": 2, "model": 4}}, got {spec!r}'
            )
        if not axes:
            raise ModelBuildError("device_mesh has no axes")
        seen: set[str] = set()
        for name, size in axes:
            if not isinstance(name, str) or not _NAME.match(name) or name in seen:
                raise ModelBuildError(f"device_mesh={spec!r}: axis names must be distinct identifiers, got {name!r}")
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ModelBuildError(f"device_mesh={spec!r}: axis {name!r} has size {size!r}; sizes are positive ints")
            seen.add(name)
        return cls(tuple(axes))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s for _, s in self.axes)

    @property
    def size(self) -> int:
        """Devices in the mesh."""
        return math.prod(self.shape)

    def axis_size(self, name: str) -> int:
        return dict(self.axes)[name]

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __str__(self) -> str:
        return "{" + ", ".join(f"{n!r}: {s}" for n, s in self.axes) + "}"


__all__ = ["DATA_AXIS", "MODEL_AXIS", "DeviceMesh"]
