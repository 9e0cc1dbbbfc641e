"""Estimated peak memory of a compiled graph, from the liveness the generated code follows.

The generated function holds its arguments (params, state, inputs, output gradients) for the
whole call, computes one node at a time, and deletes every intermediate right after its last
use (results live to the end). Walking the nodes in that order, with each value's bytes
(shape x the backend's width of its kind), gives the live bytes after every node; their
maximum is the estimated peak. Values computed in the forward pass and still alive when the
backward pass starts are what it keeps for the backward pass. Kernels' own temporaries are
not seen: a kernel that allocates scratch space adds to the real peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..ir.graph import Graph, Value, ValueRole

_INT_BYTES = 8
_BOOL_BYTES = 1


def value_bytes(v: Value, float_bytes: int) -> int:
    if v.shape is None:
        return 0
    width = float_bytes if v.kind in (None, "float") else _BOOL_BYTES if v.kind == "bool" else _INT_BYTES
    return math.prod(v.shape) * width


@dataclass(frozen=True)
class MemoryReport:
    """Estimated bytes of one compiled graph (see the module docstring)."""

    #: params and state the call reads
    parameters: int
    #: inputs and output gradients the call reads
    inputs: int
    #: the largest bytes of intermediates and results alive at once
    peak_activations: int
    #: forward values alive when the backward pass starts (0 without one)
    kept_for_backward: int
    #: bytes of the results (outputs, gradients, new state)
    results: int
    #: the node at the peak (its block path and primitive) and the largest values alive there
    peak_node: str = ""
    largest_at_peak: tuple[tuple[str, int], ...] = field(default_factory=tuple)

    @property
    def peak(self) -> int:
        """Estimated peak bytes of a call: arguments plus the peak of intermediates and results."""
        return self.parameters + self.inputs + self.peak_activations

    def __str__(self) -> str:
        def mib(b: float) -> str:
            return f"{b / 2**20:.2f} MiB"

        lines = [
            f"estimated peak {mib(self.peak)}: parameters {mib(self.parameters)}, inputs {mib(self.inputs)}, "
            f"activations at peak {mib(self.peak_activations)}",
            f"kept for the backward pass {mib(self.kept_for_backward)}, results {mib(self.results)}",
        ]
        if self.peak_node:
            lines.append(
                f"at the peak: {self.peak_node}; largest: "
                + ", ".join(f"{n} {mib(b)}" for n, b in self.largest_at_peak)
            )
        return "\n".join(lines)


def estimate(graph: Graph, float_bytes: int, forward_nodes: int | None = None) -> MemoryReport:
    """The :class:`MemoryReport` of ``graph``; ``forward_nodes``: how many leading nodes are the forward pass."""

    def size(v: Value) -> int:
        return value_bytes(v, float_bytes)

    params = sum(size(v) for v in (*graph.params.values(), *graph.state.values()))
    inputs = sum(size(v) for v in (*graph.inputs.values(), *graph.cotangents.values()))
    results = {v.uid for v in graph.results()}
    last_use: dict[int, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last_use[v.uid] = i
    live: dict[int, tuple[str, int]] = {}
    names = {v.uid: k for k, v in graph.outputs.items()}
    current = peak = kept = 0
    peak_node = ""
    largest: tuple[tuple[str, int], ...] = ()
    for i, node in enumerate(graph.nodes):
        if forward_nodes is not None and i == forward_nodes:
            kept = current
        out = node.output
        if out.uid not in live:
            b = size(out)
            live[out.uid] = (names.get(out.uid) or f"{node.primitive.name} @ {node.where}", b)
            current += b
        if current > peak:
            peak, peak_node = current, f"{node.primitive.name} @ {node.where}"
            largest = tuple(sorted(live.values(), key=lambda x: -x[1])[:3])
        for v in node.inputs:
            if v.role is ValueRole.NODE and last_use.get(v.uid) == i and v.uid not in results and v.uid in live:
                current -= live.pop(v.uid)[1]
    result_bytes = sum(size(v) for v in {v.uid: v for v in graph.results() if v.role is ValueRole.NODE}.values())
    return MemoryReport(params, inputs, peak, kept, result_bytes, peak_node, largest)


def float_bytes_of(backend: Any) -> int:
    return int(backend.dtype.numpy.itemsize) if hasattr(backend.dtype, "numpy") else 4


__all__ = ["MemoryReport", "estimate", "float_bytes_of", "value_bytes"]
