"""Gradients through torch.autograd (``TorchBackend(autodiff="torch")``).

The forward graph is lowered to Python source as usual; the gradient function
runs it with the differentiated params as autograd leaves and calls
:func:`torch.autograd.grad` with the output cotangents. The alternative,
``autodiff="mithril"``, lowers the backward graph built by the core's autodiff
pass (see the package README for which is the default and why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mithril.codegen.python_source import PythonExecutable, lower_to_python
from mithril.ir.graph import Graph


def lower_with_autograd(
    graph: Graph, backend: Any, *, jit: bool, wrt: tuple[str, ...], source_path: str | None
) -> PythonExecutable:
    """An executable computing outputs and d(sum <cotangent, output>)/d(params in ``wrt``)."""
    cot_names = tuple(graph.cotangents)
    graph.cotangents = {}  # the forward code does not read them
    forward = lower_to_python(graph, backend, jit=False, source_path=source_path)
    run_forward: Callable[..., Any] = forward.raw
    grad = torch.autograd.grad

    def run(params: Any, inputs: Any, cotangents: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        leaves = {k: params[k].detach().requires_grad_(True) for k in wrt}
        with torch.enable_grad():
            outs, _, state = run_forward({**params, **leaves}, inputs, {})
            # An output no differentiated param reaches has no autograd history: it adds nothing
            # to the gradients (zero, as the core's autodiff gives), and torch.autograd.grad
            # refuses it, as it refuses an empty list of params.
            reached = [k for k in cot_names if outs[k].requires_grad]
            gs: tuple[Any, ...] = (None,) * len(wrt)
            if reached and wrt:
                gs = grad(
                    [outs[k] for k in reached],
                    [leaves[k] for k in wrt],
                    [cotangents[k] for k in reached],
                    allow_unused=True,
                )
        grads = {k: (g if g is not None else torch.zeros_like(leaves[k])) for k, g in zip(wrt, gs)}
        return ({k: v.detach() for k, v in outs.items()}, grads, {k: v.detach() for k, v in state.items()})

    fn = backend.jit(run, what="gradients") if jit else run
    source = forward.source + f"\n# gradients: torch.autograd.grad over params {list(wrt)}\n"
    return PythonExecutable(source, fn, run)


def no_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a forward-only function without recording autograd history."""

    def run(*args: Any) -> Any:
        with torch.no_grad():
            return fn(*args)

    return run
