"""Composite blocks with torch.nn parameter names and initialisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ModelBuildError
from . import arguments as A
from .connections import IOKey, TerminalRef, bias_of, ones, uniform_fan_in, zeros
from .model import Model
from .primitive_blocks import _pair


class Linear(Model, template=True):
    """``output = input @ weight.T + bias`` with ``weight: [dimension, in]`` (torch.nn.Linear)."""

    def __init__(self, dimension: int | None = None, use_bias: bool = True, *, name: str | None = None) -> None:
        super().__init__(name=name)
        at = A.where("Linear", name)
        dimension = A.size(dimension, "dimension", at, optional=True)
        use_bias = A.flag(use_bias, "use_bias", at)
        self.dimension = dimension
        w_t = self.call("transpose", IOKey("weight", shape=[dimension, None], role="param", init=uniform_fan_in))
        if use_bias:
            h = self.call("matmul", IOKey("input"), w_t)
            bias = IOKey("bias", shape=[dimension], role="param", init=bias_of("weight"))
            self.call("add", h, bias, output=IOKey("output"))
        else:
            self.call("matmul", IOKey("input"), w_t, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class Conv2d(Model, template=True):
    """2-D convolution over NCHW input, as torch.nn.Conv2d (weight ``[out, in/groups, kh, kw]``)."""

    def __init__(
        self,
        in_channels: int | None = None,
        out_channels: int | None = None,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        at = A.where("Conv2d", name)
        if out_channels is None:
            raise ModelBuildError(f"{at} needs out_channels")
        in_channels = A.size(in_channels, "in_channels", at, optional=True)
        out_channels = A.size(out_channels, "out_channels", at)
        groups = A.size(groups, "groups", at)
        bias = A.flag(bias, "bias", at)
        k, d = A.sizes(kernel_size, 2, "kernel_size", at), A.sizes(dilation, 2, "dilation", at)
        stride = A.sizes(stride, 2, "stride", at)
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if _pair(stride) != (1, 1) or any((d[i] * (k[i] - 1)) % 2 for i in range(2)):
                raise ModelBuildError(f"{at}: padding='same' needs stride 1 and an even total padding")
            padding = tuple(d[i] * (k[i] - 1) // 2 for i in range(2))
        else:
            padding = A.sizes(padding, 2, "padding", at, minimum=0)
        if in_channels is not None and in_channels % groups:
            raise ModelBuildError(f"{at}: in_channels {in_channels} not divisible by groups {groups}")
        if out_channels % groups:
            raise ModelBuildError(f"{at}: out_channels {out_channels} not divisible by groups {groups}")
        w_in = None if in_channels is None else in_channels // groups
        weight = IOKey("weight", shape=[out_channels, w_in, k[0], k[1]], role="param", init=uniform_fan_in)
        x = IOKey("input", shape=[None, in_channels, None, None])
        attrs = dict(stride=_pair(stride), padding=_pair(padding), dilation=d, groups=int(groups))
        if bias:
            y = self.call("conv2d", x, weight, **attrs)
            b = self.call(
                "reshape",
                IOKey("bias", shape=[out_channels], role="param", init=bias_of("weight")),
                shape=(1, -1, 1, 1),
            )
            self.call("add", y, b, output=IOKey("output"))
        else:
            self.call("conv2d", x, weight, output=IOKey("output"), **attrs)
        self.set_canonical(input="input", output="output")


class BatchNorm2d(Model, template=True):
    """torch.nn.BatchNorm2d: batch statistics in training mode, running ones in inference.

    ``running_mean``/``running_var`` are state: in training mode the physical
    model returns their updated values (``evaluate(..., return_state=True)``).
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
            A.where("BatchNorm2d", name), num_features, eps, momentum, affine, track_running_stats
        )
        batch_norm_body(
            self,
            IOKey("input", shape=[None, c, None, None]),
            "input",
            c,
            axes=(0, 2, 3),
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
            output=IOKey("output"),
        )
        self.set_canonical(input="input", output="output")


def batch_norm_arguments(
    at: str, num_features: Any, eps: Any, momentum: Any, affine: Any, track_running_stats: Any
) -> tuple[int | None, float, float, bool, bool]:
    """The BatchNorm blocks' arguments, checked (:mod:`mithril.models.arguments`)."""
    return (
        A.size(num_features, "num_features", at, optional=True),
        A.number(eps, "eps", at, low=0.0),
        A.number(momentum, "momentum", at, low=0.0, high=1.0),
        A.flag(affine, "affine", at),
        A.flag(track_running_stats, "track_running_stats", at),
    )


def batch_norm_body(
    model: Model,
    first: Any,
    h: Any,
    c: int | None,
    *,
    axes: tuple[int, ...],
    eps: float,
    momentum: float,
    affine: bool,
    track_running_stats: bool,
    output: Any = None,
) -> TerminalRef:
    """The computation shared by the BatchNorm blocks, channels on axis 1, reduced over ``axes``.

    ``first`` is what ``normalize`` reads (it may declare the input's shape), ``h`` the same
    values for every later use (the running statistics). Declares the state ``running_mean``/``running_var`` (updated in
    training mode) and the params ``weight``/``bias``; returns the normalised (affine) result,
    written to ``output`` when given.
    """
    stat_shape = (1, -1) + (1,) * (len(axes) - 1)

    def per_channel(key: IOKey) -> Any:
        """A per-channel param or state; without ``num_features``, its size is the input's channels."""
        if c is not None:
            return key
        return model.call(
            "same_dim", key, h, axis=0, like_axis=1, block=type(model).__name__, names=(key.name, "input")
        )

    # batch statistics; one fused kernel (output and statistics together) where there is one
    if affine:
        w = model.call("reshape", per_channel(IOKey("weight", shape=[c], role="param", init=ones)), shape=stat_shape)
        b = model.call("reshape", per_channel(IOKey("bias", shape=[c], role="param", init=zeros)), shape=stat_shape)

    def normalized(x: Any, result: str = "output") -> TerminalRef:
        if affine:
            return model.call("normalize_affine", x, w, b, axes=axes, eps=eps, result=result)
        return model.call("normalize", x, axes=axes, eps=eps, result=result)

    # batch statistics need >= 2 values per channel: checked at compile (the eval graph has none)
    x = model.call("batch_statistics", first, axes=axes, block=type(model).__name__)
    y = normalized(x)
    if track_running_stats:
        mean, rstd = normalized(x, "mean"), normalized(x, "rstd")  # the same call's statistics
        var = model.call("sub", model.call("div", 1.0, rstd * rstd), eps)
        # the state as read (tied to the channels where num_features is not given), by both modes
        rm_in = per_channel(IOKey("running_mean", shape=[c], role="state", init=zeros))
        rv_in = per_channel(IOKey("running_var", shape=[c], role="state", init=ones))
        rm = model.call("reshape", rm_in, shape=stat_shape)
        rv = model.call("reshape", rv_in, shape=stat_shape)
        if c is not None:
            rm_in, rv_in = "running_mean", "running_var"
        y_eval = model.call("sub", h, rm) / model.call("sqrt", rv + eps)
        if affine:
            y_eval = y_eval * w + b
        y = model.call("mode_switch", y, y_eval)
        n = model.call("numel", h, axis=axes)
        batch_mean = model.call("reshape", mean, shape=(-1,))
        unbiased = model.call("reshape", var, shape=(-1,)) * (n / (n - 1.0))
        model.call("add", model.call("mul", rm_in, 1.0 - momentum), batch_mean * momentum, output="_new_running_mean")
        model.call("add", model.call("mul", rv_in, 1.0 - momentum), unbiased * momentum, output="_new_running_var")
        for s in ("running_mean", "running_var"):
            model._named[f"_new_{s}"].expose = False
            model.update_state(s, f"_new_{s}")
    if output is not None:
        return model.call("identity", y, output=output)
    return y
