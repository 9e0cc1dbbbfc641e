"""Estimated peak memory of a compiled graph, from the liveness the generated code follows.

The generated function holds its arguments (params, state, inputs, output gradients) for the
whole call, computes one node at a time, and deletes every intermediate right after its last
use (results live to the end). Walking the nodes in that order, with each value's bytes
(shape x the backend's width of its kind), gives the live bytes after every node; their
maximum is the estimated peak. Values computed in the forward pass and still alive when the
backward pass starts are what it keeps for the backward pass. Gradient checkpointing's
recomputed copies are nodes of the backward pass, so they count from where they are recomputed
to their last use, as the generated code holds them.

What a kernel does beyond writing a fresh output of its shape is the backend's to say
(:meth:`mithril.backend.Backend.kernel_memory`): scratch space alive while it runs (its
*workspace*: im2col columns, padded copies), an output that is a view of its input (no new
bytes; the input's buffer then lives as long as the view), or an output that keeps a larger
buffer alive. A control-flow node's sub-graphs run inside it: the largest peak of their
intermediates counts as its workspace too. What a backend does not declare is not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backend import KernelMemory
from ..ir.control_flow import call_key
from ..ir.graph import Graph, Node, SubGraph, Value, ValueRole
from ..ir.passes.expand import result_call

_INT_BYTES = 8
_BOOL_BYTES = 1

#: ``Backend.kernel_memory``'s signature
KernelMemoryFn = Callable[
    [str, Sequence["tuple[int, ...] | None"], Mapping[str, Any], int, Sequence[bool], Sequence[Any]], KernelMemory
]


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
    #: the largest bytes of intermediates, results and kernel workspace alive at once
    peak_activations: int
    #: forward values alive when the backward pass starts (0 without one)
    kept_for_backward: int
    #: bytes of the results (outputs, gradients, new state)
    results: int
    #: the node at the peak (its block path and primitive) and the largest values alive there
    peak_node: str = ""
    largest_at_peak: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    #: the largest workspace one kernel declares (its scratch space while it runs; part of the peak
    #: where that kernel is at the peak)
    workspace: int = 0

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
            f"kept for the backward pass {mib(self.kept_for_backward)}, results {mib(self.results)}, "
            f"largest kernel workspace {mib(self.workspace)}",
        ]
        if self.peak_node:
            lines.append(
                f"at the peak: {self.peak_node}; largest: "
                + ", ".join(f"{n} {mib(b)}" for n, b in self.largest_at_peak)
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class Step:
    """One node of the walk: live bytes before it, what its output adds, its workspace."""

    index: int
    where: str
    live_before: int
    output: int
    workspace: int


def _no_declaration(*_: Any) -> KernelMemory:
    return KernelMemory()


def _label(node: Node) -> str:
    return f"{node.primitive.name} @ {node.where}"


class _Buffers:
    """Live buffers by value: views share their base's buffer, which is freed with its last user."""

    def __init__(self) -> None:
        self.of: dict[int, int] = {}  # value uid -> buffer id
        self.bytes: dict[int, tuple[str, int]] = {}
        self.users: dict[int, set[int]] = {}
        self.current = 0
        self._next = 0

    def add(self, v: Value, name: str, nbytes: int) -> None:
        self._next += 1
        b = self._next
        self.of[v.uid], self.bytes[b], self.users[b] = b, (name, nbytes), {v.uid}
        self.current += nbytes

    def share(self, v: Value, base: Value) -> None:
        b = self.of[base.uid]
        self.of[v.uid] = b
        self.users[b].add(v.uid)

    def release(self, v: Value) -> None:
        b = self.of.pop(v.uid, None)
        if b is None:
            return
        self.users[b].discard(v.uid)
        if not self.users[b]:
            del self.users[b]
            self.current -= self.bytes.pop(b)[1]

    def largest(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(self.bytes.values(), key=lambda x: -x[1])[:3])


def walk(
    graph: Graph,
    float_bytes: int,
    kernel_memory: KernelMemoryFn | None = None,
    inplace: Mapping[int, int] | None = None,
) -> tuple[list[Step], int, str, tuple[tuple[str, int], ...], int]:
    """The liveness walk: its steps, the peak, the node there, the largest buffers there, and the
    largest workspace of one kernel. ``inplace``: node index -> the input whose buffer it writes."""
    reuse = inplace or {}
    declared = kernel_memory or _no_declaration
    results = {v.uid for v in graph.results()}
    last_use: dict[int, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last_use[v.uid] = i
    calls: dict[tuple[Any, ...], list[Node]] = {}  # one kernel call computes every result of a group
    for node in graph.nodes:
        calls.setdefault(_call_key(node), []).append(node)
    names = {v.uid: k for k, v in graph.outputs.items()}
    contiguous: dict[int, bool] = {}
    bufs = _Buffers()
    steps: list[Step] = []
    peak = widest = 0
    peak_node = ""
    largest: tuple[tuple[str, int], ...] = ()
    for i, node in enumerate(graph.nodes):
        before = bufs.current
        ws = 0
        if node.output.uid not in bufs.of:
            km = _declared(node, calls[_call_key(node)], declared, float_bytes, contiguous)
            base = node.inputs[0] if node.inputs else None
            if i in reuse and node.inputs[reuse[i]].uid in bufs.of:  # written into that input's buffer
                km, base = KernelMemory(workspace=km.workspace, view=True), node.inputs[reuse[i]]
            for member in calls[_call_key(node)]:
                out = member.output
                if out.uid in bufs.of:
                    continue
                contiguous[out.uid] = km.contiguous
                if km.view and base is not None and base.uid in bufs.of:
                    bufs.share(out, base)
                elif not km.view:
                    nbytes = km.output_bytes if km.output_bytes is not None else value_bytes(out, float_bytes)
                    bufs.add(out, names.get(out.uid) or _label(member), nbytes)
            # a control-flow node's sub-graphs run inside its call, before its results exist
            inner = max((walk(s.graph, float_bytes, kernel_memory)[1] for s in _subs(node)), default=0)
            ws = km.workspace + max(0, inner - (bufs.current - before))
        widest = max(widest, ws)
        steps.append(Step(i, node.where, before, bufs.current - before, ws))
        if bufs.current + ws > peak:
            peak, peak_node = bufs.current + ws, _label(node)
            largest = bufs.largest()
            if ws:
                largest = tuple(sorted((*largest, (f"workspace of {_label(node)}", ws)), key=lambda x: -x[1])[:3])
        for v in node.inputs:
            if v.role is ValueRole.NODE and last_use.get(v.uid) == i and v.uid not in results:
                bufs.release(v)
    return steps, peak, peak_node, largest, widest


def _call_key(node: Node) -> tuple[Any, ...]:
    """Nodes of one multi-result kernel call share this key (as the code generator groups them)."""
    prim = node.primitive
    if prim.subgraphs:
        return call_key(node)
    if prim.results and not prim.random:
        return result_call(node)
    return (id(node),)


def _declared(
    node: Node, members: list[Node], declared: KernelMemoryFn, float_bytes: int, contiguous: dict[int, bool]
) -> KernelMemory:
    """The backend's declaration for the kernel call ``node`` makes (``members``: the call's nodes)."""
    prim = node.primitive
    grouped = bool(prim.results or prim.subgraphs)
    attrs = {k: v for k, v in node.attrs.items() if k != "result"} if grouped else node.attrs
    return declared(
        prim.name,
        [tuple(v.shape) if v.shape is not None else None for v in node.inputs],
        attrs,
        float_bytes,
        [contiguous.get(v.uid, True) for v in node.inputs],
        tuple(dict.fromkeys(m.attrs["result"] for m in members)) if grouped else (),
    )


def _subs(node: Node) -> list[SubGraph]:
    out: list[SubGraph] = []
    for name in node.primitive.subgraphs:
        v = node.attrs.get(name)
        out.extend(s for s in (v if isinstance(v, (tuple, list)) else (v,)) if isinstance(s, SubGraph))
    return out


def estimate(
    graph: Graph,
    float_bytes: int,
    forward_nodes: int | None = None,
    kernel_memory: KernelMemoryFn | None = None,
    inplace: Mapping[int, int] | None = None,
) -> MemoryReport:
    """The :class:`MemoryReport` of ``graph``; ``forward_nodes``: how many leading nodes are the forward
    pass; ``kernel_memory``: the backend's :meth:`~mithril.backend.Backend.kernel_memory` (None: every
    kernel writes a fresh output and nothing else); ``inplace``: the nodes that write into an input's
    buffer (node index -> input position, the executable's ``inplace_plan``)."""

    def size(v: Value) -> int:
        return value_bytes(v, float_bytes)

    params = sum(size(v) for v in (*graph.params.values(), *graph.state.values()))
    inputs = sum(size(v) for v in (*graph.inputs.values(), *graph.cotangents.values()))
    steps, peak, peak_node, largest, widest = walk(graph, float_bytes, kernel_memory, inplace)
    kept = 0
    if forward_nodes is not None and forward_nodes < len(steps):
        kept = steps[forward_nodes].live_before
    result_bytes = sum(size(v) for v in {v.uid: v for v in graph.results() if v.role is ValueRole.NODE}.values())
    return MemoryReport(params, inputs, peak, kept, result_bytes, peak_node, largest, widest)


def float_bytes_of(backend: Any) -> int:
    return int(backend.dtype.numpy.itemsize) if hasattr(backend.dtype, "numpy") else 4


__all__ = ["MemoryReport", "Step", "estimate", "float_bytes_of", "value_bytes", "walk"]
