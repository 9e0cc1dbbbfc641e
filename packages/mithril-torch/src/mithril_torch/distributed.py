"""A device mesh on PyTorch: torch.distributed, one process per device, launched by ``torchrun``.

``TorchBackend(device_mesh=...)`` joins (or starts, from torchrun's environment) the
default process group — gloo on the CPU, NCCL on CUDA — and builds a
``torch.distributed.device_mesh.DeviceMesh`` with the mesh's named axes. Every rank runs
the same script on the same *global* arrays, as single-device code would.

The core resolves every param, state and input of a graph to a spec
(``graph.shardings``, :mod:`mithril.parallel.layout`); here each spec becomes DTensor
placements (an axis named on dimension ``d``: ``Shard(d)`` on that mesh dimension;
otherwise ``Replicate()``). The executable turns its arguments into DTensors with those
placements (each rank keeps its own shard of the global array it holds: no
communication), runs the generated function on DTensors — DTensor propagates the
layouts and inserts the collectives: the all-reduce of the gradients of data
parallelism, the global statistics of BatchNorm, the all-gathers of FSDP and the
reductions of row-parallel layers — and hands back

* outputs and gradients as full (replicated) plain tensors, the same on every rank;
* state updates (new params, optimizer state, running statistics) as DTensors with
  their param's placements, so that sharded params and optimizer state (FSDP, tensor
  parallel) stay sharded between steps; ``backend.to_numpy`` gathers one,
  ``.full_tensor()`` gives the global tensor. ``evaluate`` and training steps accept
  them back as they are.

Convolutions and pooling (which DTensor either has no sharding rule for or runs on
whatever local shards it gets) and the kernels that scatter into a new zero tensor in
place (whose layout DTensor would keep) run on each rank's slice of the batch instead,
their weight gradients as partial sums (:func:`dtensor_kernels`). Random kernels draw
the global array on every rank from the same seed, so masks equal the single-device ones.

The collectives of a call must come in the same order on every rank: arguments and
results are laid out in sorted order, and each compiled graph checks once that every
rank generated the same code.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from mithril.errors import UnsupportedError
from mithril.ir.randomness import SEED_INPUT

_LAUNCH = (
    "launch one process per device with torchrun, e.g. "
    "`python -m torch.distributed.run --nproc_per_node={n} script.py` "
    "(several hosts: add --nnodes, --node_rank and --master_addr)"
)


def _dtensor() -> Any:
    from torch.distributed import tensor

    return tensor


def is_dtensor(x: Any) -> bool:
    return isinstance(x, _dtensor().DTensor)


def init_mesh(mesh: Any, device: str) -> tuple[Any, torch.device]:
    """The torch ``DeviceMesh`` of ``mesh`` (a :class:`mithril.parallel.DeviceMesh`) and this rank's device.

    Joins the default process group, or starts it from torchrun's environment (RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT): gloo for 'cpu', NCCL for 'cuda' (this rank's
    device is then ``cuda:<LOCAL_RANK>``).
    """
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise UnsupportedError(f"TorchBackend: a device_mesh runs on 'cpu' (gloo) or 'cuda' (NCCL), not {device!r}")
    if dev.type == "cpu" and dev.index not in (None, 0):
        raise UnsupportedError(f"TorchBackend: device {device!r}: there is only one CPU device, 'cpu'")
    if dev.type == "cuda" and dev.index is not None:
        raise UnsupportedError(
            f"TorchBackend: with a device_mesh pass device='cuda': each process runs on "
            f"cuda:<LOCAL_RANK>, not {device!r}"
        )
    if not dist.is_available():
        raise UnsupportedError(
            f"TorchBackend: device_mesh {mesh} needs torch.distributed, which this torch "
            f"{torch.__version__} was built without"
        )
    if dist.is_initialized():
        world = dist.get_world_size()
    else:
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise UnsupportedError(
                f"TorchBackend: device_mesh {mesh} runs one process per device under torch.distributed, but no "
                f"process group is initialised and this process was not started by torchrun "
                f"({', '.join(missing)} not set): {_LAUNCH.format(n=mesh.size)}"
            )
        world = int(os.environ["WORLD_SIZE"])
    if world != mesh.size:
        raise UnsupportedError(
            f"TorchBackend: device_mesh {mesh} has {mesh.size} devices but torch.distributed runs "
            f"{world} process(es); the mesh needs one process per device: {_LAUNCH.format(n=mesh.size)}, "
            f"or give a mesh of {world} devices"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UnsupportedError(
                "TorchBackend: device 'cuda' is not available (no CUDA GPU is visible); use device='cpu' (gloo)"
            )
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank() if dist.is_initialized() else 0))
        if not 0 <= local < torch.cuda.device_count():
            raise UnsupportedError(
                f"TorchBackend: LOCAL_RANK {local} has no GPU: {torch.cuda.device_count()} visible on this host"
            )
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        if dev.type == "cuda":
            dist.init_process_group("nccl", device_id=dev)
        else:
            dist.init_process_group("gloo")
        atexit.register(_destroy)  # we started it: we end it (NCCL warns about a group left open)
    from torch.distributed.device_mesh import init_device_mesh

    tmesh = init_device_mesh(dev.type, tuple(mesh.shape), mesh_dim_names=tuple(mesh.names))
    return tmesh, dev


#: how long a rank ending normally waits at exit for the others (then it ends its group regardless)
EXIT_BARRIER_TIMEOUT = timedelta(seconds=120)


def _destroy() -> None:
    """End the process group this module started (at exit).

    A rank ending normally first waits for the others, so no rank closes its connections while a
    peer still finishes its last collective (gloo aborted a peer that way, "terminate called
    without an active exception"). After an uncaught exception (``sys.last_value``) it does not
    wait: its peers may be stuck in a collective it never joins, and torchrun stops them once this
    process exits.
    """
    if not dist.is_initialized():
        return
    if getattr(sys, "last_value", None) is None:
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=EXIT_BARRIER_TIMEOUT)
            else:
                dist.barrier()
        except RuntimeError as e:  # a peer is gone already: say so, and end this rank's group
            print(f"mithril: at exit not every rank reached the barrier: {e}", file=sys.stderr)
    dist.destroy_process_group()


def shared_seed(device: torch.device) -> int:
    """A random seed drawn on rank 0 and sent to every rank (the ranks' generators then agree)."""
    seed = torch.randint(2**62, (1,), dtype=torch.int64)
    if device.type == "cuda":
        seed = seed.to(device)
    dist.broadcast(seed, src=0)
    return int(seed.item())


def placements(spec: Sequence[Any], names: Sequence[str]) -> tuple[Any, ...]:
    """DTensor placements of a core spec: per mesh dimension, ``Shard(d)`` where the spec names that
    axis on dimension ``d``, else ``Replicate()``."""
    t = _dtensor()
    out: list[Any] = [t.Replicate()] * len(names)
    for dim, entry in enumerate(spec):
        axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        for a in axes:
            out[names.index(a)] = t.Shard(dim)
    return tuple(out)


class DistributedExecutable:
    """A generated function run on DTensors over a torch ``DeviceMesh``; ``run`` as every executable."""

    def __init__(
        self,
        source: str,
        raw: Callable[..., Any],
        graph: Any,
        tmesh: Any,
        compile_: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
    ) -> None:
        t = _dtensor()
        self.source = source
        self.raw = raw
        self.mesh = tmesh
        names = tuple(tmesh.mesh_dim_names)
        self._replicated = (t.Replicate(),) * len(names)
        self.placements: dict[str, tuple[Any, ...]] = {k: placements(v, names) for k, v in graph.shardings.items()}
        check_same_code(source)
        body = compile_(raw) if compile_ is not None else raw
        from torch.distributed.tensor.experimental import implicit_replication

        def run(params: Mapping[str, Any], inputs: Mapping[str, Any], cotangents: Mapping[str, Any]) -> Any:
            with torch.no_grad(), implicit_replication():
                return body(params, inputs, cotangents)

        self._body = run

    def place(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        """Each array as a DTensor laid out as the graph wants it (this rank's shard of the global array)."""
        t = _dtensor()
        out = {}
        for k in sorted(arrays):  # a redistribute is a collective: the same order on every rank
            x = arrays[k]
            target = self.placements.get(k, self._replicated)
            if k == SEED_INPUT or not isinstance(x, torch.Tensor):  # the random seed: the same on every rank
                out[k] = x
            elif isinstance(x, t.DTensor):
                out[k] = x if tuple(x.placements) == target else x.redistribute(self.mesh, target)
            else:
                out[k] = t.distribute_tensor(x, self.mesh, target, src_data_rank=None)
        return out

    def run(self, params: Any, inputs: Any, cotangents: Any) -> Any:
        outputs, gradients, updates = self._body(self.place(params), self.place(inputs), self.place(cotangents))
        # gathers and redistributions are collectives: in the same (sorted) order on every rank
        return (
            {k: full(outputs[k]) for k in sorted(outputs)},
            {k: full(gradients[k]) for k in sorted(gradients)},
            {k: self._laid_out(k, updates[k]) for k in sorted(updates)},
        )

    def _laid_out(self, name: str, x: Any) -> Any:
        t = _dtensor()
        target = self.placements.get(name, self._replicated)
        if not isinstance(x, t.DTensor):
            return t.distribute_tensor(x, self.mesh, target, src_data_rank=None)
        return x if tuple(x.placements) == target else x.redistribute(self.mesh, target)


def check_same_code(source: str) -> None:
    """Every rank must run the same generated code, or their collectives would not match (a hang)."""
    import hashlib

    digest = hashlib.sha256(source.encode()).hexdigest()
    digests: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) > 1:
        ranks = [r for r, d in enumerate(digests) if d != digests[0]]
        raise UnsupportedError(
            f"TorchBackend: rank(s) {ranks} compiled other code than rank 0 for the same graph; "
            f"every process must run the same script on the same shapes"
        )


def lower_distributed(
    graph: Any, backend: Any, *, jit: bool, wrt: tuple[str, ...], source_path: str | None
) -> DistributedExecutable:
    """The graph's generated function (gradients by the core's autodiff, or torch.autograd with
    ``autodiff="torch"``), run on DTensors over ``backend.torch_mesh``; ``jit``: torch.compile'd."""
    from mithril.codegen.python_source import lower_to_python

    from .autograd import lower_with_autograd

    if graph.cotangents and backend.differentiates_natively:
        ex = lower_with_autograd(graph, backend, jit=False, wrt=wrt, source_path=source_path)
    else:
        ex = lower_to_python(graph, backend, jit=False, source_path=source_path)
    what = "train_step" if graph.donates_params else "gradients" if graph.gradients or graph.cotangents else "evaluate"
    compile_ = (lambda fn: _without_autograd_cache(backend.jit(fn, what=what))) if jit else None
    return DistributedExecutable(ex.source, ex.raw, graph, backend.torch_mesh, compile_)


def _without_autograd_cache(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (torch.compile'd over DTensors) compiled without AOTAutograd's on-disk cache.

    In torch 2.13 a DTensor graph loaded from that cache by a later process can compute wrong
    results (gradients of a data-parallel MLP, reproduced with TORCHINDUCTOR_AUTOGRAD_CACHE=0
    fixing it); inductor's own FX graph cache, keyed by the local graph, stays on.
    """
    from torch._functorch import config as functorch_config

    def call(*args: Any) -> Any:
        with functorch_config.patch(enable_autograd_cache=False):
            return fn(*args)

    return call


def check_dtensor(x: Any, tmesh: Any, what: str) -> None:
    """A DTensor handed to ``evaluate`` must live on the backend's mesh."""
    from mithril.errors import EvaluationError

    if is_dtensor(x) and x.device_mesh != tmesh:
        raise EvaluationError(
            f"{what}: a DTensor on the device mesh {x.device_mesh}, but this TorchBackend runs "
            f"on {tmesh}; pass the global tensor (x.full_tensor()) or one of this backend"
        )


# ------------------------------------------------------------------ kernels
def _batch_only(placements_: Sequence[Any]) -> tuple[Any, ...]:
    t = _dtensor()
    return tuple(p if isinstance(p, t.Shard) and p.dim == 0 else t.Replicate() for p in placements_)


def _batch_local(
    kernel: Callable[..., Any], roles: str, outs: str, shape_attrs: tuple[str, ...] = (), rank: int | None = 4
) -> Callable[..., Any]:
    """``kernel`` run on each rank's slice of the batch, for ops that treat the samples of a batch
    independently (convolution, pooling and their gradients).

    ``roles``: per positional input, ``b`` (split like the first one along the batch, dimension 0,
    and nothing else) or ``r`` (replicated: the whole array). ``outs``: per result, ``b`` (split
    along the batch like the inputs) or ``p`` (a sum over the batch: each rank's part, summed when
    read, as DTensor's ``Partial``). ``shape_attrs`` name global shapes whose first entry is the
    batch. Inputs of another rank than ``rank`` (None: any), which have no batch axis, are all replicated.

    DTensor's own convolution handler runs the op on whatever local shards it gets (it expects the
    input split along the batch or the width and the weight replicated), and pooling has no
    sharding rule: these make the layout explicit instead.
    """
    t = _dtensor()

    def run(*args: Any, **attrs: Any) -> Any:
        first = next((a for a in args if isinstance(a, t.DTensor)), None)
        if first is None:
            return kernel(*args, **attrs)
        mesh = first.device_mesh
        replicated = (t.Replicate(),) * mesh.ndim
        lead = next((a for a, r in zip(args, roles) if r == "b"), None)
        batch: tuple[Any, ...] = replicated
        if isinstance(lead, t.DTensor) and (lead.dim() == rank if rank else lead.dim() > 0):
            batch = _batch_only(lead.placements)
        # what each rank's part of a sum over the batch is: a Partial over the batch's mesh dimensions
        summed = tuple(t.Partial() if isinstance(p, t.Shard) else p for p in batch)
        local = []
        for a, r in zip(args, roles):
            target = batch if r == "b" else replicated
            if not isinstance(a, t.DTensor):
                if target == replicated or not isinstance(a, torch.Tensor):
                    local.append(a)
                    continue
                a = t.DTensor.from_local(a, mesh, replicated, run_check=False)  # the same on every rank
            # under torch.autograd (autodiff="torch"), the gradient of a replicated input (the
            # weight) from this rank's samples is this rank's part of a sum over the batch
            local.append(a.redistribute(mesh, target).to_local(grad_placements=target if r == "b" else summed))
        if batch != replicated:
            n = local[roles.index("b")].shape[0]
            for name in shape_attrs:
                attrs[name] = (n, *tuple(attrs[name])[1:])
        result = kernel(*local, **attrs)

        def wrap(x: Any, role: str) -> Any:
            if x is None:
                return None
            return t.DTensor.from_local(x, mesh, batch if role == "b" else summed, run_check=False)

        if len(outs) == 1:
            return wrap(result, outs)
        return tuple(wrap(x, role) for x, role in zip(result, outs))

    run.__name__ = run.__qualname__ = getattr(kernel, "__name__", "kernel")
    return run


def dtensor_kernels(table: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Replacements, for a backend on a mesh, of the kernels DTensor cannot run as they are."""
    specs = {
        "conv2d": ("br", "b", ()),
        "conv2d_input_grad": ("br", "b", ("input_shape",)),
        "conv2d_weight_grad": ("bb", "p", ()),
        "conv2d_backward": ("brb", "bpp", ()),
        "conv_transpose2d": ("br", "b", ()),
        "max_pool2d": ("b", "b", ()),
        "max_pool2d_grad": ("bb", "b", ()),
        "max_pool2d_with_indices": ("b", "bb", ()),
        "max_pool2d_grad_indices": ("bbb", "b", ()),
        "avg_pool2d": ("b", "b", ()),
        "avg_pool2d_grad": ("b", "b", ("input_shape",)),
    }
    out = {name: _or_replicated(kernel) for name, kernel in table.items()}
    out.update({name: _batch_local(table[name], *spec) for name, spec in specs.items() if name in table})
    # in-place scatters into a new zero tensor: DTensor would keep the zeros' layout (replicated)
    # whatever the layout of what is added (a partial sum over the batch)
    out["scatter_add_rows"] = _batch_local(table["scatter_add_rows"], "bb", "p", rank=None)
    out["scatter_last"] = _batch_local(table["scatter_last"], "bb", "b", rank=None)
    out["slice_grad"] = _slice_grad(table["slice_grad"])
    return out


def _or_replicated(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """``kernel`` on DTensors; where DTensor has no sharding rule for one of its ops (older torch:
    2.11 has none for ``aten.ne.Tensor``), on the whole arrays instead, replicated: every rank
    computes the same result from the same inputs."""
    t = _dtensor()

    def run(*args: Any, **attrs: Any) -> Any:
        try:
            return kernel(*args, **attrs)
        except NotImplementedError as e:
            first = next((a for a in args if isinstance(a, t.DTensor)), None)
            if first is None or "sharding strategy" not in str(e):
                raise
        mesh = first.device_mesh
        replicated = (t.Replicate(),) * mesh.ndim
        local = [a.redistribute(mesh, replicated).to_local() if isinstance(a, t.DTensor) else a for a in args]
        result = kernel(*local, **attrs)

        def wrap(x: Any) -> Any:
            return t.DTensor.from_local(x, mesh, replicated, run_check=False) if isinstance(x, torch.Tensor) else x

        return tuple(wrap(x) for x in result) if isinstance(result, tuple) else wrap(result)

    run.__name__ = run.__qualname__ = getattr(kernel, "__name__", "kernel")
    return run


def _slice_grad(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """``slice_grad`` (an in-place write into zeros) per rank on its batch slice when the slice keeps
    dimension 0 whole, else on the whole (replicated) array."""
    per_batch = _batch_local(kernel, "b", "b", ("input_shape",), rank=None)
    replicated = _batch_local(kernel, "r", "b", rank=None)

    def slice_grad(
        grad: Any, *, input_shape: Sequence[int], starts: Sequence[Any], stops: Sequence[Any], steps: Sequence[Any]
    ) -> Any:
        keeps_batch = not starts or (
            starts[0] in (None, 0) and steps[0] in (None, 1) and (stops[0] is None or stops[0] >= input_shape[0])
        )
        fn = per_batch if keeps_batch else replicated
        return fn(grad, input_shape=input_shape, starts=starts, stops=stops, steps=steps)

    return slice_grad


def full(x: Any) -> Any:
    """The global tensor of a DTensor (gathered, the same on every rank); other values as they are."""
    return x.full_tensor() if is_dtensor(x) else x


__all__ = [
    "DistributedExecutable",
    "check_dtensor",
    "dtensor_kernels",
    "full",
    "init_mesh",
    "is_dtensor",
    "lower_distributed",
    "placements",
    "shared_seed",
]
