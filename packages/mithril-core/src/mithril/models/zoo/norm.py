"""Normalisation layers with torch.nn parameter names: BatchNorm1d, LayerNorm, GroupNorm, RMSNorm."""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import ModelBuildError
from .. import arguments as A
from ..connections import IOKey, ones, zeros
from ..layers import batch_norm_arguments, batch_norm_body
from ..model import Model


class BatchNorm1d(Model, template=True):
    """torch.nn.BatchNorm1d over ``[N, C]`` or ``[N, C, L]`` (any rank >= 2 works).

    Batch statistics in training mode, running ones in inference; in training mode
    the new ``running_mean``/``running_var`` come back with ``return_state=True``.
    """

    def __init__(
        self,
        num_features: int | None = None,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        c, eps, momentum, affine, track_running_stats = batch_norm_arguments(
            A.where("BatchNorm1d", name), num_features, eps, momentum, affine, track_running_stats
        )
        # [N, C, *] -> [N, C, M] (M = 1 for a rank-2 input). The input itself gets no declared shape:
        # a declared [N, C, ...] would meet the rule's [..., d] as rank >= 3 (a core limitation: see mithril-core README)
        h = self.call(
            "flatten",
            self.call("unflatten", IOKey("input"), axis=-1, sizes=(-1, 1)),
            start_axis=2,
            end_axis=-1,
            output=IOKey("_flat", shape=[None, c, None], expose=False),
        )
        xhat = batch_norm_body(
            self,
            h,
            h,
            c,
            axes=(0, 2),
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
        )
        self.call("reshape_as", xhat, "input", output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class LayerNorm(Model, template=True):
    """torch.nn.LayerNorm: normalise over the trailing ``normalized_shape`` axes; ``weight``/``bias``."""

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        at = A.where("LayerNorm", name)
        ns = A.sizes(normalized_shape, None, "normalized_shape", at)
        eps = A.number(eps, "eps", at, low=0.0)
        elementwise_affine, bias = A.flag(elementwise_affine, "elementwise_affine", at), A.flag(bias, "bias", at)
        axes = tuple(range(-len(ns), 0))
        x = IOKey("input", shape=["...", *ns])
        if elementwise_affine and bias:  # one fused kernel where there is one
            y = self.call(
                "normalize_affine",
                x,
                IOKey("weight", shape=list(ns), role="param", init=ones),
                IOKey("bias", shape=list(ns), role="param", init=zeros),
                axes=axes,
                eps=eps,
            )
        else:
            y = self.call("normalize", x, axes=axes, eps=eps)
            if elementwise_affine:
                y = y * IOKey("weight", shape=list(ns), role="param", init=ones)
        self.call("identity", y, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class RMSNorm(Model, template=True):
    """torch.nn.RMSNorm: ``x / sqrt(mean(x², trailing axes) + eps) * weight``.

    torch's ``eps=None`` means the dtype's machine epsilon; a logical model has no
    dtype, so ``eps`` defaults to 1e-6 here (pass torch's value to match exactly).
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-6,
        elementwise_affine: bool = True,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        at = A.where("RMSNorm", name)
        ns = A.sizes(normalized_shape, None, "normalized_shape", at)
        eps = A.number(eps, "eps", at, low=0.0)
        elementwise_affine = A.flag(elementwise_affine, "elementwise_affine", at)
        axes = tuple(range(-len(ns), 0))
        x = IOKey("input", shape=["...", *ns])
        ms = self.call("mean", self.call("mul", x, "input"), axis=axes, keepdims=True)
        y = self.call("div", "input", self.call("sqrt", ms + eps))
        if elementwise_affine:
            y = y * IOKey("weight", shape=list(ns), role="param", init=ones)
        self.call("identity", y, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class GroupNorm(Model, template=True):
    """torch.nn.GroupNorm over ``[N, C, *]``: statistics per sample and group of ``C / num_groups`` channels."""

    def __init__(
        self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, *, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        at = A.where("GroupNorm", name)
        num_groups, num_channels = A.size(num_groups, "num_groups", at), A.size(num_channels, "num_channels", at)
        eps, affine = A.number(eps, "eps", at, low=0.0), A.flag(affine, "affine", at)
        assert num_groups is not None and num_channels is not None
        if num_channels % num_groups:
            raise ModelBuildError(f"{at}: num_channels {num_channels} not divisible by num_groups {num_groups}")
        c = num_channels
        h = self.call(
            "flatten",
            self.call("unflatten", IOKey("input"), axis=-1, sizes=(-1, 1)),
            start_axis=2,
            end_axis=-1,
            output=IOKey("_flat", shape=[None, c, None], expose=False),
        )
        hg = self.call("unflatten", h, axis=1, sizes=(num_groups, -1))  # [N, G, C/G, M]
        y = self.call(
            "flatten", self.call("normalize", hg, axes=(2, 3), eps=eps), start_axis=1, end_axis=2
        )  # [N, C, M]
        if affine:
            w = self.call("reshape", IOKey("weight", shape=[c], role="param", init=ones), shape=(1, -1, 1))
            b = self.call("reshape", IOKey("bias", shape=[c], role="param", init=zeros), shape=(1, -1, 1))
            y = y * w + b
        self.call("reshape_as", y, "input", output=IOKey("output"))
        self.set_canonical(input="input", output="output")


__all__ = ["BatchNorm1d", "GroupNorm", "LayerNorm", "RMSNorm"]
