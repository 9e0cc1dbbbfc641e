"""The compile pipeline for one concrete shape set: passes then lowering."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import Backend
from ..errors import CompileError
from ..ir.flat import FlatModel
from ..ir.graph import Graph, IndexCheck, Value, ValueRole
from ..ir.passes import autodiff, control_flow, fuse, remat, simplify
from ..ir.passes.expand import expand
from ..ir.passes.shape_inference import concretize
from ..ir.randomness import is_random
from ..parallel.layout import Layout
from ..parallel.layout import resolve as resolve_layout
from .checks import out_of_range
from .executable import Executable


@dataclass(frozen=True)
class Options:
    """Compile options that change the generated code."""

    jit: bool = False
    gradient_checkpointing: bool = False
    static_inference: bool = False
    fold_constants: bool = False
    source_path: str | None = None
    #: sharding over the backend's device mesh (a mithril.parallel.Layout; None: data parallel)
    layout: Any = None


@dataclass
class Compiled:
    """One lowered graph and what ``evaluate`` needs to check its arguments."""

    graph: Graph
    executable: Executable
    input_shapes: dict[str, tuple[int, ...]]
    param_shapes: dict[str, tuple[int, ...]]
    output_shapes: dict[str, tuple[int, ...]]
    wrt: tuple[str, ...]
    #: per param/input: (shape, native dtype), filled on first evaluate
    expected: dict[str, tuple[tuple[int, ...], Any]] | None = None
    #: the graph has random nodes: each run needs a seed (mithril.ir.randomness)
    random: bool = False


def build_graph(
    flat: FlatModel,
    shapes: Mapping[str, Sequence[int] | None],
    constants: Mapping[str, Any],
    kinds: Mapping[str, str] | None = None,
    keep: Container[str] = (),
) -> Graph:
    """Concrete graph with constants bound, composites expanded, aliases and shape constants resolved."""
    graph = concretize(flat, shapes, kinds)
    for name, data in constants.items():
        table = next(d for d in (graph.inputs, graph.params, graph.state) if name in d)
        v = table.pop(name)
        graph.initializers.pop(name, None)
        v.role = ValueRole.CONST
        v.data = data
    graph.index_checks = index_checks(graph)  # before expand removes the index_range markers
    expand(graph, keep)  # composites -> their subgraphs, now that shapes are concrete (kept: backend kernels)
    simplify.remove_identities(graph)
    simplify.fold_shape_constants(graph)
    return graph


def index_checks(graph: Graph) -> list[IndexCheck]:
    """What evaluate checks of the int inputs read as indices (``index_range`` nodes); constants
    read as indices are checked here."""
    checks: list[IndexCheck] = []
    for n in graph.nodes:
        if n.primitive.name != "index_range":
            continue
        v, like = n.inputs
        size = like.known_shape[n.attrs["like_axis"]]
        ignore = n.attrs["ignore"]
        block = n.where.rsplit(".", 1)[0] if "." in n.where else n.where
        block = f"{block} ({n.attrs['block']})" if n.attrs["block"] else block
        terminal = n.attrs["names"][0]
        if v.role is ValueRole.INPUT and v.name in graph.inputs:
            check = IndexCheck(v.name, size, ignore, block, terminal)
            if check not in checks:
                checks.append(check)
        elif v.role is ValueRole.CONST:
            bad = out_of_range(np.asarray(v.data), size, ignore)
            if bad is not None:
                raise CompileError(
                    f"{block}: constant {v.name or terminal!r} read as {terminal} holds "
                    f"{bad[1]} at {bad[0]}: {_range_text(size, ignore)}"
                )
    return checks


def _range_text(size: int, ignore: int | None) -> str:
    extra = f" (or {ignore}, the ignore_index)" if ignore is not None else ""
    return f"indices must be in [0, {size - 1}]{extra}"


def compile_graph(
    graph: Graph,
    backend: Backend,
    opts: Options,
    *,
    cotangent_outputs: Sequence[str] | None,
    wrt: Sequence[str] | None = None,
    after_autodiff: Callable[[Graph], None] | None = None,
    seed_cotangents: Mapping[str, float] | None = None,
) -> Compiled:
    """Optimise ``graph`` (forward, or with gradients when ``cotangent_outputs`` is given) and lower it.

    A training step (:mod:`mithril.training`) passes ``seed_cotangents``, the constant
    cotangents of its outputs (1.0 for the loss), which become constants of the lowered code,
    and ``after_autodiff``, which appends the optimizer's update once the gradients exist.
    Gradients are then always the core's autodiff, so the update is part of the same graph.
    """
    simplify.prune(graph)
    if opts.fold_constants:
        simplify.fold_constants(graph, backend)
    simplify.cse(graph)
    wrt_t: tuple[str, ...] = ()
    if cotangent_outputs is not None:
        wrt_t = tuple(wrt if wrt is not None else autodiff.differentiable_params(graph))
        if backend.differentiates_natively and seed_cotangents is None:
            for name in cotangent_outputs:
                out = graph.outputs[name]
                graph.cotangents[name] = Value(ValueRole.INPUT, name=name, kind=out.kind, shape=out.shape)
        else:
            autodiff.differentiate(graph, wrt_t, cotangent_outputs)
            # composites emitted by gradient rules (normalize_grad, slice_grad, conv2d_input_grad...); those a
            # fusion pass below may take over wait for it
            expand(graph, _Keep(backend.kernels, fuse.fusable(backend.kernels)))
    backward = bool(graph.gradients)
    if after_autodiff is not None:
        after_autodiff(graph)
    if cotangent_outputs is not None or after_autodiff is not None:
        simplify.cse(graph)  # else nothing changed the graph since the CSE above: a second pass finds nothing
    fuse.simplify_transposes(graph)
    fuse.fuse_linear(graph, backend.kernels)
    fuse.fuse_pool_indices(graph, backend.kernels)
    fuse.fuse_conv_backward(graph, backend.kernels)
    expand(graph, backend.kernels)  # what the fusion passes left of those: their default rules
    simplify.cse(graph)
    simplify.prune(graph)
    # both after CSE, which would merge the recomputed copies back
    if opts.gradient_checkpointing and backward:
        autodiff.checkpoint(graph, _forward_prefix(graph))
        simplify.prune(graph)
    elif opts.jit and backend.jit_fuses_elementwise and backward:
        remat.rematerialize(graph, _forward_prefix(graph))
        simplify.prune(graph)
    for name, value in (seed_cotangents or {}).items():  # after the passes, which find the backward by them
        seed = graph.cotangents.pop(name)
        seed.role, seed.data = ValueRole.CONST, value
    if backend.mesh is not None:
        graph.shardings = resolve_layout(Layout.of(opts.layout), backend.mesh, graph, graph.shard_like)
    control_flow.lower_for(graph, backend.kernels, type(backend).__name__)  # loops unrolled without a scan kernel
    executable = backend.lower(graph, jit=opts.jit, wrt=wrt_t, source_path=opts.source_path)
    return Compiled(
        graph=graph,
        executable=executable,
        input_shapes={k: v.known_shape for k, v in graph.inputs.items()},
        param_shapes={k: v.known_shape for k, v in {**graph.params, **graph.state}.items()},
        output_shapes={k: v.known_shape for k, v in graph.outputs.items()},
        wrt=wrt_t,
        random=is_random(graph),
    )


class _Keep:
    """A backend's kernel names plus more names (a Container for ``expand``)."""

    def __init__(self, kernels: Container[str], more: Container[str]) -> None:
        self.kernels, self.more = kernels, more

    def __contains__(self, name: object) -> bool:
        return name in self.kernels or name in self.more


def _forward_prefix(graph: Graph) -> int:
    """Number of leading nodes that do not depend on any cotangent (the forward pass)."""
    tainted = {v.uid for v in graph.cotangents.values()}
    for i, n in enumerate(graph.nodes):
        if any(v.uid in tainted for v in n.inputs):
            return i
    return len(graph.nodes)
