"""The optimizer's part of a training graph: clipping, schedules and per-parameter updates.

:func:`append_update` appends, to a graph whose gradients exist, the nodes that
compute every parameter's and optimizer slot's new value and the step counter's
increment, as ``graph.state_updates``; the gradients themselves are consumed, not
returned. The optimizer's state enters the graph as state values named by
:meth:`Optimizer.slot_key` and :attr:`Optimizer.step_key`.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..ir.graph import Graph, GraphBuilder, Value, ValueRole
from .expr import X
from .optim.base import Optimizer, Resolved
from .schedules import Schedule

#: output of a training step: the learning rate of the optimizer's default schedule at this step
LR_OUTPUT = "lr"
#: output of a training step when clipping by norm: the gradients' global norm before clipping
GRAD_NORM_OUTPUT = "grad_norm"


def append_update(
    graph: Graph,
    optimizer: Optimizer,
    grads: Mapping[str, Value],
    resolved: Resolved,
    *,
    grad_scale: float | None = None,
) -> None:
    """Append ``optimizer``'s update of every parameter in ``grads`` (param name -> gradient value);
    ``resolved`` is :meth:`Optimizer.resolve` of the model's parameters."""
    b = GraphBuilder(graph, where="optimizer")
    step = graph.state[optimizer.step_key] = Value(ValueRole.STATE, name=optimizer.step_key, kind="int", shape=())
    done = X(b, b.emit("cast", step, kind="float"))  # updates made before this one
    t = done + 1.0

    g = {k: X(b, v) for k, v in grads.items()}
    if grad_scale is not None:
        g = {k: v * grad_scale for k, v in g.items()}
    if optimizer.clip_value is not None:
        c = float(optimizer.clip_value)
        g = {k: v.clip(-c, c) for k, v in g.items()}
    if optimizer.clip_norm is not None and g:
        b.where = "optimizer (clip_norm)"
        squares = [v.square().sum() for v in g.values()]
        total = squares[0]
        for s in squares[1:]:
            total = total + s
        norm = total.sqrt()
        graph.outputs[GRAD_NORM_OUTPUT] = norm.v
        coef = (float(optimizer.clip_norm) / (norm + 1e-6)).minimum(1.0)  # as torch.nn.utils.clip_grad_norm_
        g = {k: v * coef for k, v in g.items()}

    rates: dict[int, X] = {}

    def rate(s: Schedule) -> X:
        if id(s) not in rates:
            b.where = f"optimizer (lr {type(s).__name__})"
            rates[id(s)] = s.emit(done)
        return rates[id(s)]

    for name in grads:
        spec = resolved[name]
        if spec is None:  # frozen by its group
            continue
        schedule, h = spec
        p = graph.params[name]
        slots = {}
        for slot in optimizer.slots_for(h):
            key = optimizer.slot_key(slot.name, name)
            slots[slot.name] = X(
                b, graph.state.setdefault(key, Value(ValueRole.STATE, name=key, kind="float", shape=p.shape))
            )
            graph.shard_like[key] = name  # laid out over a device mesh as its parameter
        b.where = f"optimizer ({name})"
        new_p, new_slots = optimizer.update(X(b, p), g[name], slots, rate(schedule), t, h)
        graph.state_updates[name] = new_p.v
        for slot_name, x in new_slots.items():
            graph.state_updates[optimizer.slot_key(slot_name, name)] = x.v
    b.where = "optimizer (step)"
    graph.state_updates[optimizer.step_key] = b.emit("add", step, b.const(1, "int"))
    graph.outputs[LR_OUTPUT] = rate(optimizer.lr).v


__all__ = ["GRAD_NORM_OUTPUT", "LR_OUTPUT", "append_update"]
