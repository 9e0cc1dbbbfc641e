"""Expansion of composite primitives, once shapes are concrete.

A composite primitive (one with an ``expand`` rule, see
:class:`mithril.primitives.Primitive`) is one node of the logical model with an
ordinary shape rule. What it computes may depend on concrete sizes (an RNN
unrolls over the time axis), so it is replaced here, right after shape
inference, by the subgraph of other primitives its rule emits. Later passes,
autodiff included, and every backend see only that subgraph.

The rule gets a :class:`~mithril.ir.graph.GraphBuilder` (``b.emit(name, *values,
**attrs) -> value`` runs the emitted primitive's shape rule on concrete shapes;
``b.const(x)`` is a constant) and the node (``node.inputs``, ``node.attrs``,
``node.output`` with concrete shapes). It returns the value that replaces the
node's output, or for a primitive with ``results`` a dict of every result: nodes
that differ only in their ``result`` attribute share one expansion. Emitted
composites are expanded in turn.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

from ...errors import CompileError
from ..graph import Graph, GraphBuilder, Node, Value, ValueRole
from .simplify import _freeze, _substitute

#: composites emitting composites deeper than this are taken for an endless recursion
MAX_DEPTH = 16


def expand(graph: Graph, keep: Container[str] = ()) -> Graph:
    """Replace every composite node by its expansion (in place).

    Composites named in ``keep`` (those the backend has a kernel for: fused
    composites such as ``normalize``) stay one node.
    """
    if any(n.primitive.expand is not None and n.primitive.name not in keep for n in graph.nodes):
        repl: dict[int, Value] = {}
        graph.nodes = _expand_nodes(graph.nodes, repl, {}, 0, keep)
        _substitute(graph, repl)
    return graph


def _expand_nodes(
    nodes: list[Node],
    repl: dict[int, Value],
    shared: dict[Any, Mapping[str, Value]],
    depth: int,
    keep: Container[str] = (),
) -> list[Node]:
    out: list[Node] = []
    for node in nodes:
        node.inputs = [_resolve(v, repl) for v in node.inputs]
        prim = node.primitive
        if prim.expand is None or prim.name in keep:
            out.append(node)
            continue
        if depth >= MAX_DEPTH:
            raise CompileError(
                f"{node.where}: composite {prim.name!r} still expands into composites after "
                f"{MAX_DEPTH} levels; is its expand rule recursive?"
            )
        value = _expansion(node, repl, shared, depth, out, keep)
        _check(node, value)
        if value.name is None and value.role is ValueRole.NODE:
            value.name = node.output.name  # keep a readable name in the generated code
        repl[node.output.uid] = value
    return out


def _expansion(
    node: Node,
    repl: dict[int, Value],
    shared: dict[Any, Mapping[str, Value]],
    depth: int,
    out: list[Node],
    keep: Container[str] = (),
) -> Value:
    """The value replacing ``node``'s output; emitted nodes are appended to ``out``."""
    prim = node.primitive
    key = None
    if prim.results:
        key = result_call(node)
        if key in shared:
            return shared[key][node.attrs["result"]]
    scratch = Graph()
    result = prim.expand(GraphBuilder(scratch, where=node.where), node)  # type: ignore[misc]  # expand is not None for the composites reaching here
    out.extend(_expand_nodes(scratch.nodes, repl, shared, depth + 1, keep))
    if not prim.results:
        if not isinstance(result, Value):
            raise CompileError(
                f"{node.where}: the expand rule of {prim.name!r} returned {type(result).__name__}, not a value"
            )
        return _resolve(result, repl)
    if not isinstance(result, Mapping) or set(result) != set(prim.results):
        got = sorted(result) if isinstance(result, Mapping) else type(result).__name__
        raise CompileError(
            f"{node.where}: the expand rule of {prim.name!r} returned {got}, expected the results {list(prim.results)}"
        )
    results = {k: _resolve(v, repl) for k, v in result.items()}
    shared[key] = results
    return results[node.attrs["result"]]


def result_call(node: Node) -> tuple[Any, ...]:
    """The call a node of a multi-result primitive belongs to: the same for nodes that differ only
    in their ``result`` attribute (they share one expansion, or one kernel call)."""
    others = {k: v for k, v in node.attrs.items() if k != "result"}
    return node.primitive.name, tuple(v.uid for v in node.inputs), _freeze(others)


def _resolve(v: Value, repl: Mapping[int, Value]) -> Value:
    while v.uid in repl:
        v = repl[v.uid]
    return v


def _check(node: Node, value: Value) -> None:
    """The expansion must agree with the composite's own shape rule."""
    want, got = node.output, value
    if tuple(got.shape or ()) != tuple(want.shape or ()) or (want.kind is not None and got.kind != want.kind):
        raise CompileError(
            f"{node.where}: the expansion of {node.primitive.name!r} gives {got.kind} {list(got.shape or ())}, "
            f"its shape rule says {want.kind} {list(want.shape or ())}"
        )
