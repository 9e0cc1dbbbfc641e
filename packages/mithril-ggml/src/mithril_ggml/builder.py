"""Builds the ggml graph for a :class:`~mithril.ir.graph.Graph`, in two passes.

Pass 1 runs the lowering in a metadata-only context (``no_alloc``) and measures
what it created: tensor objects, their data sizes (views own none) and graph
sizes. Pass 2 runs the same lowering in a context of exactly that size, so the
memory is computed from the graph (``ggml_tensor_overhead``,
``ggml_graph_overhead_custom``, ``ggml_nbytes_pad``), never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mithril.ir.graph import Graph, Node, Value, ValueRole

from ._lib import ggml
from .blas import BlasOps
from .checks import ancestors, backward_problems, raise_if
from .emitter import Emitter, LoweringBug, OutOfMetadata, T
from .layout import data_shape, ne_of
from .lowering import RULES, Mode
from .weights import WeightPlan

#: a forward op adds at most this many tensors to the backward graph (ggml_compute_backward)
_BACKWARD_GROWTH = 24


@dataclass
class Sizes:
    """What pass 1 measured, and what pass 2 therefore allocates."""

    graph_sizes: tuple[int, ...]  # ggml_new_graph_custom sizes: forward, then backward
    mem_size: int  # bytes of the pass-2 context
    n_tensors: int
    data_bytes: int


@dataclass
class Built:
    """A built ggml graph and the tensors ``run`` reads and writes."""

    ctx: Any
    sources: dict[str, T]  # inputs and state, by name
    params: dict[str, T]  # stored params, by name
    outputs: dict[str, T]
    state_updates: dict[str, T]
    cotangents: dict[str, T] = field(default_factory=dict)
    grads: dict[str, T | None] = field(default_factory=dict)
    gf: Any = None
    gb: Any = None
    ops: dict[int, list[str]] = field(default_factory=dict)
    graph_sizes: tuple[int, ...] = ()
    used_mem: int = 0
    n_tensors: int = 0
    data_bytes: int = 0
    blas: BlasOps | None = None  # the BLAS products' callback, kept alive with the graph


class _Lowerer:
    """Maps graph values to ggml tensors while the rules emit nodes."""

    def __init__(
        self,
        em: Emitter,
        mode: Mode,
        graph: Graph,
        plans: dict[str, WeightPlan],
        folded: set[int],
        env: dict[int, T],
        param_store: dict[str, T],
    ) -> None:
        self.em, self.mode, self.graph = em, mode, graph
        self.plans, self.folded, self.env, self.param_store = plans, folded, env, param_store
        self._param_by_uid = {v.uid: name for name, v in graph.params.items()}

    def arg(self, node: Node, i: int) -> T:
        return self.arg_value(node.inputs[i])

    def arg_value(self, v: Value) -> T:
        t = self.env.get(v.uid)
        if t is not None:
            return t
        if v.role is ValueRole.CONST:
            shape = tuple(v.shape or ())
            t = self.em.new(shape)
            self.em.write(t, np.asarray(v.data, dtype=np.float32))
            self.env[v.uid] = t
            return t
        raise LoweringBug(f"value {v!r} used before it was lowered")

    def folded_weight(self, node: Node, i: int) -> T | None:
        """Input ``i`` already in the layout ggml's first mul_mat operand needs, if it is at hand.

        That is the source of a folded transpose (a stored param or a lowered value),
        or a param stored transposed / as conv rows.
        """
        v = node.inputs[i]
        if v.uid in self.folded and v.producer is not None:
            v = v.producer.inputs[0]
            name = self._param_by_uid.get(v.uid)
            return self.param_store[name] if name is not None else self.arg_value(v)
        name = self._param_by_uid.get(v.uid)
        if name is not None and self.plans[name].layout != "natural":
            return self.param_store[name]
        return None


def _count_tensors(ctx: Any) -> tuple[int, int]:
    """(number of tensors, bytes of data they own) in ``ctx``."""
    g = ggml()
    n = data = 0
    t = g.ggml_get_first_tensor(ctx)
    while t:
        n += 1
        if not t.contents.view_src:
            data += g.ggml_nbytes_pad(t)
        t = g.ggml_get_next_tensor(ctx, t)
    return n, data


def _new_ctx(mem_size: int, alloc: bool) -> Any:
    g = ggml()
    params = g.ggml_init_params(mem_size=mem_size, mem_buffer=None, no_alloc=not alloc)
    ctx = g.ggml_init(params)
    if not ctx:
        raise MemoryError(f"ggml_init could not allocate {mem_size} bytes")
    return ctx


def _emit(
    graph: Graph, plans: dict[str, WeightPlan], folded: set[int], mode: Mode, ctx: Any, alloc: bool
) -> tuple[Emitter, dict[int, T], dict[str, T], dict[str, T]]:
    """Create source tensors and lower every node."""
    em = Emitter(ctx, alloc, grad=mode.grad, blas=None if mode.grad else BlasOps())
    g = em.g
    env: dict[int, T] = {}
    used = ancestors(graph, graph.results()) | {v.uid for v in graph.results()}
    sources: dict[str, T] = {}
    for name, v in [*graph.inputs.items(), *graph.state.items()]:
        if v.uid in used:
            sources[name] = env[v.uid] = em.new(tuple(v.shape or ()))
    param_store: dict[str, T] = {}
    for name, v in graph.params.items():
        if v.uid not in used:
            continue
        p = plans[name]
        t = em.new(p.stored_shape, p.ggml_type)
        g.ggml_set_name(t.ptr, f"p{len(param_store)}".encode())
        param_store[name] = t
        if p.layout == "natural":
            env[v.uid] = T(t.ptr, tuple(v.shape or ()), t.type)
    L = _Lowerer(em, mode, graph, plans, folded, env, param_store)
    for i, node in enumerate(graph.nodes):
        if node.output.uid in folded or node.output.uid not in used:
            continue
        em.tag = i
        t = RULES[node.primitive.name].emit(L, node)
        shape = data_shape(node.output.shape or ())
        if t.ne != ne_of(shape):
            raise LoweringBug(f"{node!r} lowered to shape {list(t.shape)}, expected {list(shape)}")
        env[node.output.uid] = T(t.ptr, shape, t.type)
    em.tag = -1
    return em, env, sources, param_store


def build(
    graph: Graph,
    plans: dict[str, WeightPlan],
    folded: set[int],
    mode: Mode,
    wrt: tuple[str, ...],
    cot_names: tuple[str, ...],
    *,
    alloc: bool,
    mem_size: int,
    graph_sizes: tuple[int, ...] | None,
) -> Built:
    """One lowering pass. ``graph_sizes`` None means "sizing pass": sizes are derived as it goes."""
    g = ggml()
    ctx = _new_ctx(mem_size, alloc)
    try:
        em, env, sources, params = _emit(graph, plans, folded, mode, ctx, alloc)
        outputs = {k: env[v.uid] for k, v in graph.outputs.items()}
        state_updates = {k: env[v.uid] for k, v in graph.state_updates.items()}
        n_fwd, _ = _count_tensors(ctx)
        sizes = list(graph_sizes) if graph_sizes else [n_fwd + 16]
        if not alloc and g.ggml_get_mem_size(ctx) - g.ggml_used_mem(ctx) < g.ggml_graph_overhead_custom(
            sizes[0], False
        ):
            raise OutOfMetadata
        gf = g.ggml_new_graph_custom(ctx, sizes[0], False)
        for t in [*outputs.values(), *state_updates.values()]:
            g.ggml_build_forward_expand(gf, t.ptr)
        built = Built(ctx, sources, params, outputs, state_updates, gf=gf, ops=em.ops, blas=em.blas)
        if wrt:
            _build_backward(built, em, graph, wrt, cot_names, sizes, alloc)
        built.used_mem = g.ggml_used_mem(ctx)
        built.n_tensors, built.data_bytes = _count_tensors(ctx)
        built.graph_sizes = tuple(sizes)
        return built
    except BaseException:
        g.ggml_free(ctx)
        raise


def _build_backward(
    built: Built,
    em: Emitter,
    graph: Graph,
    wrt: tuple[str, ...],
    cot_names: tuple[str, ...],
    sizes: list[int],
    alloc: bool,
) -> None:
    """Differentiate ``sum(output * cotangent)`` over ``cot_names`` for the ``wrt`` params."""
    g = em.g
    loss_outputs = [graph.outputs[n] for n in cot_names]
    feeding_loss = ancestors(graph, loss_outputs)
    live = [n for n in wrt if graph.params[n].uid in feeding_loss]
    # the cotangent of each differentiated output is an input; loss = sum(output * cotangent)
    loss = None
    for name in cot_names:
        out = built.outputs[name]
        cot = em.new(out.shape)
        g.ggml_set_name(cot.ptr, f"cot{len(built.cotangents)}".encode())
        built.cotangents[name] = cot
        term = em.sum_all(em.binary("mul", out, cot, out.shape)) if out.type == em.f32 else None
        if term is not None:
            loss = term if loss is None else em.binary("add", loss, term, ())
    built.grads = dict.fromkeys(wrt)
    if loss is None or not live:
        return  # nothing to differentiate: gradients are zeros
    raise_if(
        backward_problems(graph, built.ops, [graph.params[n] for n in live], loss_outputs),
        f"differentiate with respect to {list(wrt)}",
    )
    if len(sizes) < 2:
        n_now, _ = _count_tensors(built.ctx)
        sizes.append(_BACKWARD_GROWTH * n_now + 64)
        need = (_BACKWARD_GROWTH * n_now + 64) * g.ggml_tensor_overhead() + g.ggml_graph_overhead_custom(sizes[1], True)
        if not alloc and g.ggml_get_mem_size(built.ctx) - g.ggml_used_mem(built.ctx) < need:
            raise OutOfMetadata
    for n in live:
        g.ggml_set_param(built.params[n].ptr)
    g.ggml_set_loss(loss.ptr)
    gb = g.ggml_new_graph_custom(built.ctx, sizes[1], True)
    for t in built.outputs.values():
        g.ggml_build_forward_expand(gb, t.ptr)
    g.ggml_build_forward_expand(gb, loss.ptr)
    g.ggml_build_backward_expand(built.ctx, gb, None)
    built.gb = gb
    for n in live:
        p = built.params[n]
        grad = g.ggml_graph_get_grad(gb, p.ptr)
        if grad and not g.ggml_is_contiguous(grad):
            grad = g.ggml_cont(built.ctx, grad)
            g.ggml_build_forward_expand(gb, grad)
        built.grads[n] = T(grad, p.shape, em.f32) if grad else None


def measure(
    graph: Graph,
    plans: dict[str, WeightPlan],
    folded: set[int],
    mode: Mode,
    wrt: tuple[str, ...],
    cot_names: tuple[str, ...],
) -> Sizes:
    """Pass 1: lower into a metadata-only context and compute the exact pass-2 size."""
    g = ggml()
    budget = g.ggml_tensor_overhead() * (256 + 48 * len(graph.nodes)) + 2 * g.ggml_graph_overhead_custom(4096, True)
    for _ in range(16):
        try:
            b = build(graph, plans, folded, mode, wrt, cot_names, alloc=False, mem_size=budget, graph_sizes=None)
        except OutOfMetadata:
            budget *= 2
            continue
        try:
            sizes1 = b.graph_sizes
            sizes2 = (sizes1[0],) + ((b.n_tensors + 16,) if len(sizes1) > 1 else ())
            grads = (False, True)
            graph_mem1 = sum(g.ggml_graph_overhead_custom(s, gr) for s, gr in zip(sizes1, grads))
            graph_mem2 = sum(g.ggml_graph_overhead_custom(s, gr) for s, gr in zip(sizes2, grads))
            mem = b.used_mem - graph_mem1 + graph_mem2 + b.data_bytes
            return Sizes(sizes2, mem, b.n_tensors, b.data_bytes)
        finally:
            g.ggml_free(b.ctx)
    raise LoweringBug("could not size the ggml context")
