"""The graph IR: values and primitive calls, in topological order.

A :class:`Graph` is what every pass reads and writes and what a backend
lowers. Values are typed by a *kind* ('float', 'int', 'bool'; the backend
fixes the width) and, after shape inference, a concrete shape.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from ..errors import DTypeMismatchError, ShapeMismatchError, ShapeUnknownError, UnsupportedError
from ..primitives.base import Primitive, Term, registry
from ..shapes.control_flow import link_branch, link_scan
from ..shapes.kinds import KindVar
from ..shapes.symbolic import Dim, SymShape, transaction


class ValueRole(Enum):
    INPUT = "input"  # data given to evaluate
    PARAM = "param"  # trainable parameter
    STATE = "state"  # non-trainable parameter (running statistics)
    CONST = "const"  # known at compile time (``data`` holds it)
    NODE = "node"  # produced by a node


_ids = itertools.count()


@dataclass(eq=False, slots=True)
class Value:
    """A named value of the graph."""

    role: ValueRole
    name: str | None = None
    kind: str | None = None
    shape: tuple[int, ...] | None = None
    producer: Node | None = None
    data: Any = None  # for CONST: a NumPy array or Python scalar
    uid: int = field(default_factory=lambda: next(_ids))

    def __repr__(self) -> str:
        label = self.name or f"v{self.uid}"
        return f"<{self.role.value} {label} {self.kind} {list(self.shape) if self.shape is not None else '?'}>"

    @property
    def known_shape(self) -> tuple[int, ...]:
        """The concrete shape, which gradient rules, expansions and passes read after shape inference set it."""
        if self.shape is None:
            raise ShapeUnknownError(f"{self!r}: the shape is not known yet (shape inference has not run)")
        return self.shape


@dataclass(eq=False, slots=True)
class Node:
    """One primitive call: ``output = primitive(*inputs, **attrs)``."""

    primitive: Primitive
    inputs: list[Value]
    attrs: dict[str, Any]
    output: Value
    where: str = ""  # block path, for error messages and the summary

    def __repr__(self) -> str:
        args = ", ".join(v.name or f"v{v.uid}" for v in self.inputs)
        return f"{self.output.name or f'v{self.output.uid}'} = {self.primitive.name}({args})"


@dataclass(frozen=True)
class IndexCheck:
    """An int input read as indices into an axis of ``size`` (an embedding's rows, a loss's classes).

    ``evaluate`` checks its values lie in ``[0, size)`` (or equal ``ignore``) before anything runs
    (:func:`mithril.physical.checks.check_indices`); ``block`` and ``terminal`` name where it is read.
    """

    name: str
    size: int
    ignore: int | None
    block: str
    terminal: str


@dataclass(eq=False)
class Graph:
    """Inputs, params, state, constants, nodes (topological) and named outputs."""

    inputs: dict[str, Value] = field(default_factory=dict)
    params: dict[str, Value] = field(default_factory=dict)
    state: dict[str, Value] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    outputs: dict[str, Value] = field(default_factory=dict)
    #: new values of state entries (training-mode BatchNorm)
    state_updates: dict[str, Value] = field(default_factory=dict)
    #: gradient outputs, by param name (filled by the autodiff pass)
    gradients: dict[str, Value] = field(default_factory=dict)
    #: cotangent inputs, by output name (filled by the autodiff pass)
    cotangents: dict[str, Value] = field(default_factory=dict)
    #: initializers of params/state, by name (see mithril.models.connections)
    initializers: dict[str, Any] = field(default_factory=dict)
    #: the caller hands over the params dict: every entry is replaced by its update (a training
    #: step), so a backend may reuse the buffers (JAX donation)
    donates_params: bool = False
    #: on a backend with a device mesh: the layout of every param, state and input, by name
    #: (mithril.parallel.layout; a spec has one mesh axis or None per dimension)
    shardings: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    #: state laid out like a param (optimizer state -> its param), for the sharding layout
    shard_like: dict[str, str] = field(default_factory=dict)
    #: int inputs used as indices, checked by evaluate (primitive ``index_range``; filled by build_graph)
    index_checks: list[IndexCheck] = field(default_factory=list)

    def sources(self) -> Iterator[Value]:
        yield from self.inputs.values()
        yield from self.params.values()
        yield from self.state.values()
        yield from self.cotangents.values()

    def results(self) -> Iterator[Value]:
        yield from self.outputs.values()
        yield from self.state_updates.values()
        yield from self.gradients.values()

    def consumers(self) -> dict[int, list[Node]]:
        out: dict[int, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                out.setdefault(v.uid, []).append(n)
        return out

    def constants(self) -> list[Value]:
        seen: dict[int, Value] = {}
        for n in self.nodes:
            for v in n.inputs:
                if v.role is ValueRole.CONST:
                    seen.setdefault(v.uid, v)
        return list(seen.values())

    def __repr__(self) -> str:
        lines = [f"inputs: {list(self.inputs)}", f"params: {list(self.params)}"]
        lines += [f"  {n!r}" for n in self.nodes]
        lines.append(f"outputs: {list(self.outputs)}")
        return "\n".join(lines)


@dataclass(eq=False)
class SubGraph:
    """A concrete body (or branch) owned by a control-flow node; compared by identity."""

    graph: Graph
    label: str = "body"

    def __post_init__(self) -> None:
        g = self.graph
        if g.params or g.state or g.state_updates or g.gradients:
            raise UnsupportedError(f"{self.label}: a sub-graph takes everything as inputs (no params or state)")
        if any(n.primitive.random for n in g.nodes):
            raise UnsupportedError(f"{self.label}: random primitives (Dropout) inside control flow are not supported")

    @property
    def input_values(self) -> list[Value]:
        return list(self.graph.inputs.values())

    @property
    def output_values(self) -> list[Value]:
        return list(self.graph.outputs.values())

    def input_terms(self) -> list[Any]:
        return [_term(v) for v in self.input_values]

    def output_terms(self) -> list[Any]:
        return [_term(v) for v in self.output_values]

    def __repr__(self) -> str:
        g = self.graph
        return f"<{self.label}: {list(g.inputs)} -> {list(g.outputs)}, {len(g.nodes)} nodes>"

    # ----------------------------------------------------------- shape rules
    def link_scan(self, ins: Sequence[Any], out: Any, attrs: Mapping[str, Any]) -> bool:
        """The shape rule of ``scan`` over this body (mithril.shapes.control_flow)."""
        link_scan(
            self.input_terms(),
            self.output_terms(),
            list(self.graph.inputs),
            list(self.graph.outputs),
            ins,
            out,
            attrs,
            Dim(attrs["length"]),
        )
        return True

    def link_branch(self, index: int, ins: Sequence[Any], out: Any, result: int) -> bool:
        """The shape rule of ``cond`` for this branch."""
        link_branch(self.label, self.input_terms(), self.output_terms(), list(self.graph.outputs), ins, out, result)
        return True


def _term(v: Value) -> Any:
    return Term(SymShape.of(list(v.shape)) if v.shape is not None else SymShape.unknown(), KindVar(v.kind))


def const_value(data: Any, kind: str | None = None) -> Value:
    """A constant value (scalar or NumPy array)."""
    arr = np.asarray(data)
    if kind is None:
        kind = "bool" if arr.dtype == np.bool_ else "int" if arr.dtype.kind in "iu" else "float"
    return Value(ValueRole.CONST, kind=kind, shape=tuple(arr.shape), data=data)


class GraphBuilder:
    """Appends nodes with concrete shapes; used by gradient rules and passes.

    ``emit`` infers the output's shape and kind from the primitive's rule.
    """

    def __init__(self, graph: Graph, where: str = "", needs_grad: Mapping[int, bool] | None = None) -> None:
        self.graph = graph
        self.where = where
        self._needs = needs_grad or {}

    def needs_grad(self, v: Value) -> bool:
        return self._needs.get(v.uid, True)

    def const(self, value: Any, kind: str | None = None) -> Value:
        return const_value(value, kind)

    def sub(self, label: str) -> GraphBuilder:
        """A builder of a new sub-graph (a control-flow body); declare its inputs with :meth:`input`."""
        return GraphBuilder(Graph(), where=f"{self.where} ({label})")

    def input(self, name: str, shape: tuple[int, ...], kind: str | None) -> Value:
        """A new input of the graph being built (a sub-graph's argument, in call order)."""
        v = self.graph.inputs[name] = Value(ValueRole.INPUT, name=name, kind=kind, shape=tuple(shape))
        return v

    def as_subgraph(self, outputs: Mapping[str, Value], label: str) -> SubGraph:
        """The graph built so far, with ``outputs`` (in order), as a control-flow sub-graph."""
        self.graph.outputs.update(outputs)
        return SubGraph(self.graph, label=label)

    def emit(self, name: str, *inputs: Value, **attrs: Any) -> Value:
        prim = registry.get(name)
        attrs = prim.bind_attrs(attrs, where=f"{self.where} ({name})")
        out = Value(ValueRole.NODE)
        infer_node(prim, list(inputs), attrs, out, self.where)
        node = Node(prim, list(inputs), attrs, out, self.where)
        out.producer = node
        self.graph.nodes.append(node)
        return out


def infer_node(prim: Primitive, inputs: list[Value], attrs: dict[str, Any], out: Value, where: str) -> None:
    """Concrete shape/kind of a node's output from its inputs, via the primitive's rule."""
    ins = [
        Term(SymShape.of(list(v.shape)) if v.shape is not None else SymShape.unknown(), KindVar(v.kind)) for v in inputs
    ]
    o = Term(SymShape.unknown(), KindVar())
    try:
        with transaction():
            prim.rule(ins, o, attrs)
    except (ShapeMismatchError, DTypeMismatchError) as e:
        shapes = ", ".join(f"{n}={list(v.shape) if v.shape else '?'}" for n, v in zip(_names(prim, inputs), inputs))
        raise type(e)(f"{where}: {prim.name}({shapes}): {e}") from None
    shape = o.shape.concrete()
    if shape is None:
        raise ShapeUnknownError(f"{where}: cannot infer the output shape of {prim.name}")
    out.shape = shape
    out.kind = o.kind.known


def _names(prim: Primitive, inputs: Iterable[Value]) -> list[str]:
    if prim.variadic:
        return [f"{prim.inputs[0]}[{i}]" for i, _ in enumerate(inputs)]
    return list(prim.inputs)
