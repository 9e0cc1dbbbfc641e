"""Kernels of the control-flow primitives (mithril.ir.control_flow): a Python loop and a Python branch.

Under ``torch.compile`` (torch 2.13) the loop is left out of the compiled graph
(``torch._dynamo.disable``: a graph break before and after it) and runs eagerly, so compile
time does not grow with the number of steps. torch's own ``scan`` operator
(``torch._higher_order_ops.scan``) was measured here: Inductor lowers it to a ``while_loop``
whose post-grad pass fails (``DataDependentOutputException``) unless the whole function is
compiled with ``fullgraph=True``, and then compiles for 15-90 s on this CPU. ``cond`` is a
Python branch behind a graph break too: ``torch.cond`` over Mithril's branch functions raised
``UncapturedHigherOrderOpError`` (a graph break inside a branch), so the whole function ran eagerly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

Body = Callable[..., Sequence[torch.Tensor]]


@torch._dynamo.disable  # type: ignore[untyped-decorator]  # torch._dynamo.disable is unannotated
def scan(*inputs: torch.Tensor, body: Body, n_carry: int, n_xs: int, length: int, reverse: bool) -> tuple[Any, ...]:
    """``body`` once per step of axis 0 of the ``xs``; returns ``(*final carries, *stacked ys)``."""
    carry = inputs[:n_carry]
    xs, consts = inputs[n_carry : n_carry + n_xs], inputs[n_carry + n_xs :]
    ys: list[Sequence[torch.Tensor]] = []
    for t in range(length - 1, -1, -1) if reverse else range(length):
        out = body(*carry, *(x[t] for x in xs), *consts)
        carry, y = tuple(out[:n_carry]), out[n_carry:]
        ys.append(y)
    if reverse:
        ys.reverse()
    return (*carry, *(torch.stack(list(column)) for column in zip(*ys)))


@torch._dynamo.disable  # type: ignore[untyped-decorator]  # torch._dynamo.disable is unannotated
def cond(selector: torch.Tensor, *operands: torch.Tensor, branches: Sequence[Callable[..., Any]]) -> tuple[Any, ...]:
    """The branch ``selector`` picks (clamped to the branches, as jax.lax.switch)."""
    index = min(max(int(selector), 0), len(branches) - 1)
    return tuple(branches[index](*operands))


KERNELS: dict[str, Callable[..., Any]] = {"scan": scan, "cond": cond}
