"""Kernels of the fused gradient composites ``gelu_grad`` and ``softmax_grad``: torch's own backward
kernels, one call each where the core's expansions make 4 (softmax) to 15 (tanh GELU) element-wise
passes over the activation (each a new tensor, eagerly)."""

from __future__ import annotations

from typing import Any

import torch

_aten = torch.ops.aten


def gelu_grad(input: torch.Tensor, grad: torch.Tensor, *, approximate: str = "none") -> torch.Tensor:
    """``grad * gelu'(input)``."""
    return _aten.gelu_backward.default(grad, input, approximate=approximate)


def softmax_grad(activation: torch.Tensor, grad: torch.Tensor, *, axis: int = -1) -> torch.Tensor:
    """``activation * (grad - sum(grad * activation, axis))``, from softmax's output ``activation``."""
    return torch._softmax_backward_data(grad, activation, axis, activation.dtype)


def grad_kernels() -> dict[str, Any]:
    """The torch kernels of the fused gradient composites."""
    return {"gelu_grad": gelu_grad, "softmax_grad": softmax_grad}


__all__ = ["gelu_grad", "grad_kernels", "softmax_grad"]
