"""Lowering rules, by primitive name: how each core primitive becomes ggml ops."""

from __future__ import annotations

from .base import Lowerer, Mode, Rule
from .elementwise import RULES as _ELEMENTWISE
from .logic import BOOL_RESULTS
from .logic import RULES as _LOGIC
from .nn import RULES as _NN
from .reductions import RULES as _REDUCTIONS
from .special import RULES as _SPECIAL
from .structure import RULES as _STRUCTURE

RULES: dict[str, Rule] = {**_ELEMENTWISE, **_SPECIAL, **_LOGIC, **_STRUCTURE, **_REDUCTIONS, **_NN}

#: why a known primitive has no rule
NOT_LOWERED: dict[str, str] = {
    "bernoulli": "a random primitive (training-mode Dropout); GGMLBackend runs inference: compile with "
    "training=False or static_inference=True, where Dropout is the identity",
    **dict.fromkeys(
        ("conv2d_input_grad", "conv2d_weight_grad", "max_pool2d_grad", "avg_pool2d_grad", "slice_grad"),
        "a gradient primitive; the GGML backend differentiates with ggml's own backward pass",
    ),
}


def why_not(primitive: str) -> str:
    return NOT_LOWERED.get(primitive, f"no ggml lowering for primitive {primitive!r}")


__all__ = ["BOOL_RESULTS", "RULES", "Lowerer", "Mode", "Rule", "why_not"]
