"""In-place kernels for eager execution: element-wise ops writing into a dead input's tensor.

The core calls ``kernel(*inputs, out=<one of the inputs>, **attrs)`` only where ``out`` is an
intermediate of the output's shape and kind that nothing reads afterwards
(:mod:`mithril.codegen.inplace`). Each kernel uses torch's ``op_`` method where ``out`` is the first input and the ``out=``
form otherwise, the same ATen kernel as the out-of-place call, so the results agree bit for bit; where an operand has another dtype than ``out`` (``out=`` would cast the result) it computes
a new tensor instead, as the primitive's own kernel does.

:class:`~mithril_torch.TorchBackend` offers them only eagerly with the core's autodiff: under
``torch.compile`` inductor plans memory itself, and torch.autograd (``autodiff="torch"``) forbids
writing into tensors it saved for the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from . import grads, normalization
from .kernels import STATIC_KERNELS

Kernel = Callable[..., Any]
_aten = torch.ops.aten


def _unary(fn: Callable[..., torch.Tensor], floats: bool = False) -> Kernel:
    """``input.fn_()``; ``floats``: only a float ``out`` (``fn`` makes floats of ints)."""
    method = getattr(torch.Tensor, f"{fn.__name__}_")

    def kernel(input: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
        if out is input and (not floats or out.is_floating_point()):
            return method(input)
        return fn(input)

    kernel.__name__ = kernel.__qualname__ = f"{fn.__name__}_inplace"
    return kernel


def _binary(fn: Callable[..., torch.Tensor], plain: Kernel, floats: bool = False) -> Kernel:
    """``left.fn_(right)`` into ``left`` (where torch has that method), ``fn(left, right, out=right)`` into
    ``right`` (the out= form keeps the operand order, so even a NaN's payload is the same)."""
    method = getattr(torch.Tensor, f"{fn.__name__}_", None)

    def kernel(left: torch.Tensor, right: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
        if (out is left or out is right) and left.dtype == right.dtype and (not floats or out.is_floating_point()):
            if out is left and method is not None:
                return method(left, right)
            return fn(left, right, out=out)
        return plain(left, right)

    kernel.__name__ = kernel.__qualname__ = f"{fn.__name__}_inplace"
    return kernel


def relu(input: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    return input.relu_() if out is input else torch.relu(input)


def leaky_relu(input: torch.Tensor, *, slope: float = 0.01, out: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(input, slope, inplace=out is input)


def gelu(input: torch.Tensor, *, approximate: str = "none", out: torch.Tensor) -> torch.Tensor:
    if out is input and input.is_floating_point():
        return _aten.gelu_.default(input, approximate=approximate)
    return F.gelu(input, approximate=approximate)


def where(condition: torch.Tensor, left: torch.Tensor, right: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    """``torch.where`` into ``left`` or ``right`` (never into the condition)."""
    if out is not condition and (out is left or out is right) and left.dtype == right.dtype:
        return torch.where(condition, left, right, out=out)
    return torch.where(condition, left, right)


def relu_grad(y: torch.Tensor, g: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    """``threshold_backward(g, y, 0)`` into ``y`` or ``g``."""
    if (out is y or out is g) and y.dtype == g.dtype:
        return _aten.threshold_backward.grad_input(g, y, 0, grad_input=out)
    return normalization.relu_grad(y, g)


def gelu_grad(input: torch.Tensor, grad: torch.Tensor, *, approximate: str = "none", out: torch.Tensor) -> torch.Tensor:
    """``gelu_backward(grad, input)`` into ``input`` or ``grad``."""
    if (out is input or out is grad) and input.dtype == grad.dtype:
        return _aten.gelu_backward.grad_input(grad, input, approximate=approximate, grad_input=out)
    return grads.gelu_grad(input, grad, approximate=approximate)


#: (torch function with ``out=``, float outputs only)
_UNARY: dict[str, tuple[Callable[..., torch.Tensor], bool]] = {
    "neg": (torch.neg, False),
    "abs": (torch.abs, False),
    "exp": (torch.exp, True),
    "log": (torch.log, True),
    "sqrt": (torch.sqrt, True),
    "sin": (torch.sin, True),
    "cos": (torch.cos, True),
    "tanh": (torch.tanh, True),
    "sigmoid": (torch.sigmoid, True),
    "erf": (torch.erf, True),
}
_BINARY: dict[str, tuple[Callable[..., torch.Tensor], bool]] = {
    "add": (torch.add, False),
    "sub": (torch.sub, False),
    "mul": (torch.mul, False),
    "div": (torch.div, True),
    "maximum": (torch.maximum, False),
    "minimum": (torch.minimum, False),
}

#: kernels (besides those with an in-place form) that always return a new tensor
FRESH = frozenset(
    {
        "matmul",
        "linear",
        "conv2d",
        "slice_grad",
        "softmax",
        "log_softmax",
        "softmax_grad",
        "greater",
        "greater_equal",
        "less",
        "less_equal",
        "equal",
        "not_equal",
    }
)


def inplace_kernels() -> dict[str, Kernel]:
    """The in-place kernels, by primitive."""
    table: dict[str, Kernel] = {}
    for name, (fn, floats) in _UNARY.items():
        table[name] = _unary(fn, floats)
    for name, (fn, floats) in _BINARY.items():
        table[name] = _binary(fn, STATIC_KERNELS[name], floats)
    table.update(relu=relu, leaky_relu=leaky_relu, gelu=gelu, where=where, relu_grad=relu_grad, gelu_grad=gelu_grad)
    return table


__all__ = ["FRESH", "inplace_kernels"]
