"""How a model's arrays are laid out over a device mesh: one description for every backend.

A :class:`Layout` maps array names (parameters, state, optimizer state, inputs) to a
*spec*: one entry per dimension, the mesh axis that dimension is split along (or a
tuple of axes, or None: not split). Rules are fnmatch patterns, first match wins, as
Keras' ``LayoutMap``. Without a rule, an input is split along the data axis on its
first (batch) dimension and a parameter is replicated (data parallelism);
``fsdp=True`` splits every parameter and its optimizer state along the data axis on
the first dimension that divides (ZeRO-3 / FSDP). Megatron-style tensor parallelism is
two rules per Linear: :func:`column_parallel` and :func:`row_parallel`.

:func:`resolve` checks a layout against a mesh and a concrete graph and returns the
spec of every array of that graph, the description a backend lowers
(``graph.shardings``).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import ShapeMismatchError, UnknownKeyError
from ..ir.graph import Graph, Value
from .mesh import DATA_AXIS, MODEL_AXIS, DeviceMesh

#: per dimension: a mesh axis, a tuple of axes, or None (replicated along every axis)
Spec = tuple[str | tuple[str, ...] | None, ...]


@dataclass(frozen=True)
class Layout:
    """Sharding rules by name pattern; see the module docstring."""

    rules: Sequence[tuple[str, Sequence[str | tuple[str, ...] | None]]] = field(default_factory=tuple)
    #: inputs without a rule are split along this axis on dimension 0 (None: replicated)
    batch_axis: str | None = DATA_AXIS
    #: parameters and optimizer state without a rule are split along the data axis
    fsdp: bool = False

    @classmethod
    def of(cls, spec: Layout | Mapping[str, Sequence[str | tuple[str, ...] | None]] | None) -> Layout:
        if spec is None:
            return cls()
        if isinstance(spec, Layout):
            return spec
        if isinstance(spec, Mapping):
            return cls(tuple(spec.items()))
        raise UnknownKeyError(f"sharding must be a mithril.parallel.Layout or a dict of pattern -> spec, got {spec!r}")

    def rule_for(self, name: str) -> Spec | None:
        for pattern, spec in self.rules:
            if fnmatch.fnmatchcase(name, pattern):
                return tuple(spec)
        return None


def column_parallel(pattern: str, axis: str = MODEL_AXIS) -> list[tuple[str, Spec]]:
    """Rules for Linear blocks matching ``pattern`` (``"*.fc"``): weight ``[out, in]`` and bias split
    on the output features (Megatron's column-parallel layer)."""
    return [(f"{pattern}.weight", (axis, None)), (f"{pattern}.bias", (axis,))]


def row_parallel(pattern: str, axis: str = MODEL_AXIS) -> list[tuple[str, Spec]]:
    """Rules for Linear blocks matching ``pattern``: weight split on the input features, bias
    replicated (Megatron's row-parallel layer, which follows a column-parallel one)."""
    return [(f"{pattern}.weight", (None, axis)), (f"{pattern}.bias", (None,))]


def _check(name: str, what: str, spec: Spec, shape: tuple[int, ...], mesh: DeviceMesh) -> Spec:
    if len(spec) != len(shape):
        raise ShapeMismatchError(
            f"sharding of {what} {name!r}: spec {spec} has {len(spec)} entries, the array has shape {list(shape)}"
        )
    used: set[str] = set()
    for dim, entry in enumerate(spec):
        axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        for a in axes:
            if a not in mesh:
                raise UnknownKeyError(f"sharding of {what} {name!r}: the mesh {mesh} has no axis {a!r}")
            if a in used:
                raise ShapeMismatchError(f"sharding of {what} {name!r}: axis {a!r} is used twice in {spec}")
            used.add(a)
        parts = math.prod(mesh.axis_size(a) for a in axes)
        if shape[dim] % parts:
            raise ShapeMismatchError(
                f"sharding of {what} {name!r}: dimension {dim} of shape {list(shape)} has size {shape[dim]}, "
                f"not divisible by the {parts} devices of mesh axis {'/'.join(axes)} (mesh {mesh})"
            )
    return spec


def _fsdp_spec(shape: tuple[int, ...], mesh: DeviceMesh) -> Spec:
    n = mesh.axis_size(DATA_AXIS) if DATA_AXIS in mesh else 1
    for dim, size in enumerate(shape):
        if n > 1 and size % n == 0:
            return tuple(DATA_AXIS if d == dim else None for d in range(len(shape)))
    return (None,) * len(shape)


def resolve(
    layout: Layout, mesh: DeviceMesh, graph: Graph, param_of: Mapping[str, str] | None = None
) -> dict[str, Spec]:
    """The spec of every param, state and input of ``graph``; ``param_of`` maps optimizer state
    (``adamw.m.linear_0.weight``) to the parameter whose layout it shares."""
    param_of = param_of or {}
    if layout.batch_axis is not None and layout.batch_axis not in mesh:
        raise UnknownKeyError(f"sharding: batch_axis {layout.batch_axis!r} is not an axis of the mesh {mesh}")
    names = {*graph.params, *graph.state, *graph.inputs}
    for pattern, _ in layout.rules:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names | set(param_of.values())):
            raise UnknownKeyError(
                f"sharding rule {pattern!r} matches no array of the model; its params: "
                f"{sorted(graph.params)[:12]}, inputs: {sorted(graph.inputs)}"
            )
    out: dict[str, Spec] = {}

    def shape_of(v: Value) -> tuple[int, ...]:
        assert v.shape is not None
        return tuple(v.shape)

    for table, what in ((graph.params, "parameter"), (graph.state, "state")):
        for name, v in table.items():
            shape = shape_of(v)
            owner = param_of.get(name)
            spec = layout.rule_for(name)
            if spec is None and owner is not None:
                spec = layout.rule_for(owner)
                if spec is None and layout.fsdp and len(shape) > 0:
                    spec = _fsdp_spec(shape, mesh)
            elif spec is None and layout.fsdp and what == "parameter":
                spec = _fsdp_spec(shape, mesh)
            out[name] = _check(name, what, spec if spec is not None else (None,) * len(shape), shape, mesh)
    for name, v in graph.inputs.items():
        shape = shape_of(v)
        spec = layout.rule_for(name)
        if spec is None:
            split = layout.batch_axis is not None and len(shape) > 0 and mesh.axis_size(layout.batch_axis) > 1
            spec = ((layout.batch_axis,) + (None,) * (len(shape) - 1)) if split else (None,) * len(shape)
        if spec and spec[0] == layout.batch_axis and layout.batch_axis is not None and len(shape) > 0:
            n = mesh.axis_size(layout.batch_axis)
            if shape[0] % n:
                raise ShapeMismatchError(
                    f"input {name!r} has batch size {shape[0]} (shape {list(shape)}), not divisible by the {n} "
                    f"devices of mesh axis {layout.batch_axis!r} (mesh {mesh})"
                )
        out[name] = _check(name, "input", spec, shape, mesh)
    return out


__all__ = ["Layout", "Spec", "column_parallel", "resolve", "row_parallel"]
