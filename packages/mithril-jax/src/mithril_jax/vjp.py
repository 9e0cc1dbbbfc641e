"""Gradients through ``jax.vjp`` (``JaxBackend(autodiff="jax")``).

The forward graph is lowered to Python source as usual; the gradient function
calls :func:`jax.vjp` on it with respect to the differentiated params and
applies the output cotangents. With ``jit=True`` the whole thing is one
``jax.jit`` computation, as with the core's autodiff pass (``autodiff="mithril"``,
the default; see the package README for the measurements behind that choice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from mithril.codegen.python_source import PythonExecutable, lower_to_python
from mithril.ir.graph import Graph


def lower_with_vjp(
    graph: Graph, backend: Any, *, jit: bool, wrt: tuple[str, ...], source_path: str | None
) -> PythonExecutable:
    """An executable computing outputs and d(sum <cotangent, output>)/d(params in ``wrt``)."""
    graph.cotangents = {}  # the forward code does not read them
    forward = lower_to_python(graph, backend, jit=False, source_path=source_path)
    run_forward: Callable[..., Any] = forward.raw

    def run(params: Any, inputs: Any, cotangents: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        fixed = {k: v for k, v in params.items() if k not in wrt}

        def f(diff: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            outs, _, state = run_forward({**fixed, **diff}, inputs, {})
            return outs, state

        (outs, state), pullback = jax.vjp(f, {k: params[k] for k in wrt})
        cot = {k: cotangents[k] if k in cotangents else jax.numpy.zeros_like(v) for k, v in outs.items()}
        zero_state = {k: jax.numpy.zeros_like(v) for k, v in state.items()}
        (grads,) = pullback((cot, zero_state))
        return outs, grads, state

    fn = backend.jit(run, what="gradients") if jit else run
    source = forward.source + f"\n# gradients: jax.vjp over params {list(wrt)}\n"
    return PythonExecutable(source, fn, run)
