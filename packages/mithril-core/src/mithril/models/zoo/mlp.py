"""``MLP``: a stack of Linear layers with an activation after each."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ...errors import ModelBuildError
from .. import arguments as A
from ..block import Block
from ..layers import Linear
from ..model import Model
from ..primitive_blocks import Gelu, LeakyRelu, Relu, Sigmoid, Tanh
from .activations import Silu

ACTIVATIONS: dict[str, Callable[[], Block]] = {
    "relu": Relu,
    "gelu": Gelu,
    "gelu_tanh": lambda: Gelu(approximate="tanh"),
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "silu": Silu,
    "leaky_relu": LeakyRelu,
}

Activation = str | Callable[[], Block] | None


class MLP(Model):
    """``Linear(dimensions[0])``, activation, ``Linear(dimensions[1])``, activation, ...

    ``activations`` has one entry per layer: a name (``"relu"``, ``"gelu"``,
    ``"gelu_tanh"``, ``"tanh"``, ``"sigmoid"``, ``"silu"``, ``"leaky_relu"``), a
    block class or factory, or None for no activation; a single entry applies to
    every layer but the last. Parameters: ``linear_0.weight``, ``linear_0.bias``, ...
    """

    def __init__(
        self,
        dimensions: Sequence[int],
        activations: Activation | Sequence[Activation] = "relu",
        use_bias: bool = True,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        dims = list(dimensions)
        if not dims:
            raise ModelBuildError("MLP needs at least one dimension")
        use_bias = A.flag(use_bias, "use_bias", A.where("MLP", name))
        if activations is None or isinstance(activations, str) or callable(activations):
            acts: list[Activation] = [activations] * (len(dims) - 1) + [None]
        else:
            acts = list(activations)
            if len(acts) != len(dims):
                raise ModelBuildError(f"MLP: {len(dims)} dimensions but {len(acts)} activations")
        for i, (d, a) in enumerate(zip(dims, acts)):
            lin = Linear(d, use_bias=use_bias)
            if i == 0:
                self |= lin
            else:
                self += lin
            if a is not None:
                if isinstance(a, str):
                    if a not in ACTIVATIONS:
                        raise ModelBuildError(f"MLP: unknown activation {a!r}; known: {sorted(ACTIVATIONS)}")
                    a = ACTIVATIONS[a]
                self += a()


__all__ = ["ACTIVATIONS", "MLP"]
