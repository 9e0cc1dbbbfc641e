"""The optimizer's fused update: ``adam_update`` as one ``torch._fused_adam(w)_`` call per parameter.

Eagerly, the core's Adam step is about 14 element-wise kernels per parameter, each making a new
parameter-sized tensor; ``torch.optim.AdamW`` makes 7 in-place passes (``foreach``) or one fused
kernel (``fused=True``). Where the lowering has checked that a parameter and its moments are
donated and read by no later node (:func:`mark_donated_updates`), the kernel updates them in place
with torch's fused Adam kernel. Under ``torch.compile``, and where that does not hold, it computes
the core's own arithmetic out of place (inductor fuses it into one kernel).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mithril.ir.graph import Graph, Value
from mithril.ir.passes.expand import result_call

#: devices with torch's fused Adam kernels
_FUSED_DEVICES = ("cpu", "cuda")


def _functional(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    lr: torch.Tensor,
    t: torch.Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The arithmetic of ``mithril.training.optim.fused.adam_math``, out of place."""
    if weight_decay and decoupled:
        p = p * (1.0 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * (g * g)
    bias1 = 1.0 - torch.pow(beta1, t)
    bias2 = 1.0 - torch.pow(beta2, t)
    denom = torch.sqrt(v / bias2) + eps
    return p - (lr / bias1) * m / denom, m, v


def _fusable(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> bool:
    return (
        p.device.type in _FUSED_DEVICES
        and all(x.dtype == p.dtype and x.device == p.device and x.is_contiguous() for x in (g, m, v))
        and p.is_contiguous()
        and not p.requires_grad
    )


def adam_update(
    param: torch.Tensor,
    grad: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    lr: torch.Tensor,
    step: torch.Tensor,
    *,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    donated: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """New (param, m, v); in place (the same tensors, updated) when ``donated``, eagerly."""
    if not donated or torch.compiler.is_compiling() or not _fusable(param, grad, m, v):
        return _functional(param, grad, m, v, lr, step, beta1, beta2, eps, weight_decay, decoupled)
    kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
    kernel(
        [param],
        [grad],
        [m],
        [v],
        [],
        [step if step.dtype == torch.float32 else step.float()],
        lr=lr if lr.dtype == torch.float32 or param.device.type == "cpu" else lr.float(),
        beta1=beta1,
        beta2=beta2,
        weight_decay=weight_decay,
        eps=eps,
        amsgrad=False,
        maximize=False,
    )
    return param, m, v


def optim_kernels() -> dict[str, Any]:
    """The torch kernels of the optimizer primitives."""
    return {"adam_update": adam_update}


def mark_donated_updates(graph: Graph) -> None:
    """Set ``donated=True`` on the ``adam_update`` calls whose param and moments a training step may
    overwrite: the graph donates them, they are distinct from the gradient, and neither they nor a view
    of them is read at or after the call or returned."""
    if not graph.donates_params:
        return
    groups: dict[Any, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        if node.primitive.name == "adam_update":
            groups.setdefault(result_call(node), []).append(i)
    if not groups:
        return
    readers: dict[int, list[int]] = {}
    views: dict[int, list[Value]] = {}
    for i, node in enumerate(graph.nodes):
        for x in node.inputs:
            readers.setdefault(x.uid, []).append(i)
            if node.primitive.view:
                views.setdefault(x.uid, []).append(node.output)
    returned = {x.uid for x in (*graph.outputs.values(), *graph.gradients.values(), *graph.state_updates.values())}
    donated = {v.uid for v in (*graph.params.values(), *graph.state.values())}
    for members in groups.values():
        first = graph.nodes[members[0]]
        p, g, m, v = first.inputs[:4]
        if not (
            {p.uid, m.uid, v.uid} <= donated
            and len({p.uid, g.uid, m.uid, v.uid}) == 4
            and all(_unread_after(x, members, readers, views, returned) for x in (p, m, v))
        ):
            continue
        for i in members:
            node = graph.nodes[i]
            node.attrs = {**node.attrs, "donated": True}


def _unread_after(
    x: Value, members: list[int], readers: Mapping[int, list[int]], views: Mapping[int, list[Value]], returned: set[int]
) -> bool:
    """Neither ``x`` nor a view of it is returned or read by a node other than ``members`` at or after them."""
    start = members[0]
    todo, seen = [x], set()
    while todo:
        y = todo.pop()
        if y.uid in seen:
            continue
        seen.add(y.uid)
        if y.uid in returned:
            return False
        if any(i >= start and i not in members for i in readers.get(y.uid, ())):
            return False
        todo.extend(views.get(y.uid, ()))
    return True


__all__ = ["adam_update", "mark_donated_updates", "optim_kernels"]
