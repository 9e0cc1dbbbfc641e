"""Kernels of the control-flow primitives (mithril.ir.control_flow): loops and branches over sub-graphs.

Eagerly, ``scan`` is a Python loop over the body function and ``cond`` a Python branch.

Under ``torch.compile`` (while dynamo traces the model, ``torch.compiler.is_compiling()``):

* ``cond`` lowers to ``torch.cond``, so the branch is part of the compiled graph. ``Switch``
  with ``n`` branches is a balanced tree of ``torch.cond`` on ``index < mid``, which picks the
  first branch for an index below 0 and the last for one above ``n - 1``: the clamping of
  ``jax.lax.switch`` and of the eager branch. Each branch's outputs are contiguous copies:
  ``torch.cond`` requires both branches to give the same strides (a gradient branch gives
  broadcast zeros, strides 0, for the other branch's parameters) and no output that aliases
  an input (a branch may be a reshape of its input). A branch that runs a loop (a ``scan``
  call, directly or in a nested branch) cannot be captured, since the loop is a graph break
  and ``torch.cond`` admits none inside a branch: that ``cond`` stays a Python branch behind
  a graph break (its branch's own code is still compiled).
* ``scan`` keeps the loop out of the compiled graph: the kernel is
  ``torch.compiler.disable(..., recursive=False)``, a graph break whose own frame dynamo skips
  while it compiles the frames that frame opens, i.e. the body function, once per body (the
  steps and later calls reuse it; the reverse loop of the gradient has its own body). Compile
  time does not grow with the number of steps. torch 2.13's own ``torch._higher_order_ops.scan``
  fails in Inductor (``DataDependentOutputException``) unless the whole function is compiled
  with ``fullgraph=True``; with gradients Inductor refuses closed-over weights ("scan might be
  aliasing the input or the output") either way, and ``aot_eager`` runs it several times slower.
  :data:`COMPILE_BODIES` = False runs the body as eager torch instead (the previous behaviour).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

Body = Callable[..., Sequence[torch.Tensor]]

#: under torch.compile, run a loop's body as compiled code (True) or as eager torch (False).
#: See benchmarks/results/recurrent for the measurement behind the default.
COMPILE_BODIES = True


def _scan(*inputs: torch.Tensor, body: Body, n_carry: int, n_xs: int, length: int, reverse: bool) -> tuple[Any, ...]:
    """``body`` once per step of axis 0 of the ``xs``; returns ``(*final carries, *stacked ys)``.

    Under torch.compile this frame is skipped (:data:`scan`) and only the ``body(...)`` call
    opens a frame, so it holds no comprehension (each would be a frame dynamo compiles too)."""
    step = body if COMPILE_BODIES else torch.compiler.disable(body)
    carry: tuple[torch.Tensor, ...] = ()
    for c in inputs[:n_carry]:  # contiguous: a compiled body would recompile for a broadcast initial state
        carry += (c.contiguous(),)
    xs, consts = inputs[n_carry : n_carry + n_xs], inputs[n_carry + n_xs :]
    ys: list[Sequence[torch.Tensor]] = []
    for t in range(length - 1, -1, -1) if reverse else range(length):
        args: tuple[torch.Tensor, ...] = carry
        for x in xs:
            args += (x[t],)
        out = step(*args, *consts)
        carry, y = tuple(out[:n_carry]), out[n_carry:]
        ys.append(y)
    if reverse:
        ys.reverse()
    stacked: tuple[torch.Tensor, ...] = ()
    for column in zip(*ys):
        stacked += (torch.stack(list(column)),)
    return (*carry, *stacked)


#: The ``scan`` kernel. Under torch.compile, a graph break: dynamo skips the loop's own frame but
#: compiles the frames it opens, i.e. the body function, once (every later step and call reuses it).
scan = torch.compiler.disable(_scan, recursive=False)


def _python_branch(
    selector: torch.Tensor, operands: Sequence[torch.Tensor], branches: Sequence[Body]
) -> tuple[Any, ...]:
    index = min(max(int(selector), 0), len(branches) - 1)
    return tuple(branches[index](*operands))


#: under torch.compile, a graph break; the branch's own frame is compiled (a loop in it compiles its body)
_python_branch_outside_graph = torch.compiler.disable(_python_branch, recursive=False)


def _leaf(branch: Body) -> Body:
    def run(index: torch.Tensor, *operands: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.clone(o, memory_format=torch.contiguous_format) for o in branch(*operands))

    return run


def _tree(branches: Sequence[Body], lo: int, hi: int) -> Body:
    """Branches ``lo..hi-1`` as nested ``torch.cond``: below ``lo`` picks ``lo``, above ``hi - 1`` picks ``hi - 1``."""
    if hi - lo == 1:
        return _leaf(branches[lo])
    mid = (lo + hi) // 2
    left, right = _tree(branches, lo, mid), _tree(branches, mid, hi)

    def run(index: torch.Tensor, *operands: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.cond(index < mid, left, right, (index, *operands)))

    return run


def _calls_scan(fn: Any, namespace: dict[str, Any], seen: set[int]) -> bool:
    """Whether a generated function calls the ``scan`` kernel, directly or through the generated
    functions it names (those of its own namespace: nested branches and bodies)."""
    code = getattr(fn, "__code__", None)
    if code is None or getattr(fn, "__globals__", None) is not namespace or id(fn) in seen:
        return False
    seen.add(id(fn))
    for name in code.co_names:
        v = namespace.get(name)
        if v is scan or any(_calls_scan(e, namespace, seen) for e in (v if isinstance(v, tuple) else (v,))):
            return True
    return False


def capturable(branches: Sequence[Body]) -> bool:
    """Whether ``torch.cond`` can capture these branches (none runs a loop, which is a graph break)."""
    seen: set[int] = set()
    return not any(_calls_scan(b, getattr(b, "__globals__", None) or {}, seen) for b in branches)


def cond(selector: torch.Tensor, *operands: torch.Tensor, branches: Sequence[Body]) -> tuple[Any, ...]:
    """The branch ``selector`` picks (clamped to the branches, as jax.lax.switch); ``torch.cond`` under torch.compile."""
    if not torch.compiler.is_compiling():
        return _python_branch(selector, operands, branches)
    if not capturable(branches):
        return _python_branch_outside_graph(selector, operands, branches)
    if len(branches) == 1:
        return tuple(branches[0](*operands))
    return tuple(_tree(branches, 0, len(branches))(selector.to(torch.int64), *operands))


KERNELS: dict[str, Callable[..., Any]] = {"scan": scan, "cond": cond}
