"""Logical model -> graph IR (symbolic shapes), iteratively and in linear time.

Every connection of every (sub)model maps to one IR :class:`Value`; a
sub-model's interface connections map to the values of the parent's
connections they are bound to. Declarations (shapes, kinds, roles,
initialisers) of all connections that meet in one value are merged.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ..errors import CycleError, ModelBuildError
from ..ir.flat import FlatModel, ValueInfo
from ..ir.graph import Graph, Node, Value, ValueRole
from ..primitives.base import registry
from .block import PrimitiveBlock
from .connections import ROLE_ORDER, Connection
from .model import Model

if TYPE_CHECKING:
    from ..primitives.base import Primitive


def flatten(model: Model, training: bool = True) -> FlatModel:
    """Flatten ``model`` into a graph; ``training`` resolves mode switches."""
    iface = model._freeze()
    values: dict[int, Value] = {}
    info: dict[int, ValueInfo] = {}
    nodes: list[Node] = []
    state_pairs: list[tuple[Connection, Connection]] = []

    def value_of(c: Connection, name: str | None) -> Value:
        v = values.get(id(c))
        if v is None:
            v = Value(ValueRole.NODE, name=name)
            values[id(c)] = v
            vi = info[v.uid] = ValueInfo()
        else:
            vi = info[v.uid]
        vi.conns.append(c)
        if c.declared_shapes:
            vi.declared_shapes.extend(c.declared_shapes)
        if c.role == "input" and c.declared_kind is None and c.init is None and c.value is None and c.differentiable:
            return v  # nothing else to merge (the common case: a plain wire)
        if c.declared_kind is not None:
            if vi.declared_kind is not None and vi.declared_kind != c.declared_kind:
                raise ModelBuildError(f"{c.describe()}: declared as {c.declared_kind} and {vi.declared_kind}")
            vi.declared_kind = c.declared_kind
        if ROLE_ORDER[c.role] > ROLE_ORDER[vi.role]:
            vi.role = c.role
        if c.init is not None and vi.init is None:
            vi.init = c.init
        if not c.differentiable:
            vi.differentiable = False
        if c.is_const:
            v.role = ValueRole.CONST
            v.data = c.value
        return v

    # top-level interface names first, so they win
    for name, c in iface.items():
        value_of(c, name)

    switched = False  # a mode switch resolved: the graph has fewer constraints than the model
    stack: list[tuple[Model, str]] = [(model, "")]
    while stack:
        m, prefix = stack.pop()
        for c in m._conns:
            if id(c) not in values:
                value_of(c, prefix + c.name if c.name else None)
        for s, n in m._state_updates:
            state_pairs.append((s, n))
        for block in m._blocks:
            path = prefix + (block._local_name or "")
            if isinstance(block, PrimitiveBlock):
                binding = block._binding
                prim = block.primitive
                ins = [values[id(binding[t])] for t in block._inputs]
                out = values[id(binding[prim.output])]
                if prim.name == "mode_switch":
                    prim = _identity()
                    ins = [ins[0] if training else ins[1]]
                    switched = True
                if out.producer is not None:
                    raise ModelBuildError(f"{path}: output already produced by {out.producer.where}")
                node = Node(prim, ins, dict(block.attrs), out, where=path)
                out.producer = node
                nodes.append(node)
            else:
                assert isinstance(block, Model)
                sub_iface = block._freeze()
                for t, sub_c in sub_iface.items():
                    parent_v = values[id(block._binding[t])]
                    if id(sub_c) in values and values[id(sub_c)] is not parent_v:
                        raise ModelBuildError(f"{path}: terminal {t} bound twice")
                    values[id(sub_c)] = parent_v
                    value_of(sub_c, None)
                    # the innermost declaration of a role/initializer is authoritative
                stack.append((block, path + "."))

    # initializer references (a bias's fan-in comes from its weight)
    for _uid, vi in info.items():
        if vi.init is not None and vi.init.fan_in_of is not None:
            for c in vi.conns:
                if c.init is vi.init:
                    ref = c.model._named.get(vi.init.fan_in_of)
                    if ref is not None:
                        vi.init_ref = values[id(ref)]
                    break

    graph = Graph()
    for name, c in iface.items():
        v = values[id(c)]
        if name in model._iface_outputs:
            graph.outputs[name] = v
            continue
        role = info[v.uid].role
        v.role = {"param": ValueRole.PARAM, "state": ValueRole.STATE}.get(role, ValueRole.INPUT)
        {ValueRole.PARAM: graph.params, ValueRole.STATE: graph.state}.get(v.role, graph.inputs)[name] = v
        v.name = name
        if info[v.uid].init is not None:
            graph.initializers[name] = info[v.uid].init
    graph.nodes = _toposort(nodes, graph)
    state_updates: dict[str, Value] = {}
    if training:
        for s, n in state_pairs:
            sv, nv = values[id(s)], values[id(n)]
            if sv.role is ValueRole.STATE and sv.name is not None:
                state_updates[sv.name] = nv
    graph.state_updates = state_updates
    n_nodes = len(graph.nodes)
    _drop_unused_inputs(graph)
    # values that no node produces and are not sources: unconnected block inputs inside
    flat = FlatModel(graph, info, state_updates, list(graph.outputs), values)
    if not switched and len(graph.nodes) == n_nodes:
        flat.model_terms_current = lambda: model._parent is None
        flat.n_model_nodes = n_nodes
    return flat


def _drop_unused_inputs(graph: Graph) -> None:
    """Drop dead nodes, and data inputs no result depends on (e.g. read only by a training branch)."""
    live = {v.uid for v in graph.results()}
    keep = []
    for n in reversed(graph.nodes):
        if n.output.uid in live:
            live.update(v.uid for v in n.inputs)
            keep.append(n)
    keep.reverse()
    graph.nodes = keep
    graph.inputs = {k: v for k, v in graph.inputs.items() if v.uid in live}


def _identity() -> Primitive:
    return registry.get("identity")


def _toposort(nodes: list[Node], graph: Graph) -> list[Node]:
    """Kahn's algorithm; a cycle is reported with the blocks on it."""
    consumers: dict[int, list[int]] = {}  # value uid -> positions of the nodes reading it
    missing = [0] * len(nodes)  # per position: producers not yet placed
    for i, n in enumerate(nodes):
        deps = {v.uid for v in n.inputs if v.producer is not None}
        missing[i] = len(deps)
        for uid in deps:
            consumers.setdefault(uid, []).append(i)
    ready = deque(i for i, m in enumerate(missing) if m == 0)
    order: list[Node] = []
    while ready:
        n = nodes[ready.popleft()]
        order.append(n)
        for c in consumers.get(n.output.uid, ()):
            missing[c] -= 1
            if missing[c] == 0:
                ready.append(c)
    if len(order) != len(nodes):
        stuck = [n.where for i, n in enumerate(nodes) if missing[i] > 0]
        raise CycleError(f"the model has a cycle through: {', '.join(stuck[:8])}")
    return order
