"""Convolution, pooling and embedding layers with torch.nn parameter names."""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import ModelBuildError
from .. import arguments as A
from ..connections import IOKey, bias_of, normal, uniform_fan_in
from ..model import Model
from ..primitive_blocks import _pair


class Conv1d(Model, template=True):
    """1-D convolution over ``[N, C, L]``, as torch.nn.Conv1d (weight ``[out, in/groups, k]``)."""

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
        at = A.where("Conv1d", name)
        if out_channels is None:
            raise ModelBuildError(f"{at} needs out_channels")
        in_channels = A.size(in_channels, "in_channels", at, optional=True)
        out_channels = A.size(out_channels, "out_channels", at)
        groups = A.size(groups, "groups", at)
        bias = A.flag(bias, "bias", at)
        (k,), (s,), (d,) = (
            A.sizes(v, 1, arg, at)
            for v, arg in ((kernel_size, "kernel_size"), (stride, "stride"), (dilation, "dilation"))
        )
        if padding == "valid":
            p = 0
        elif padding == "same":
            if s != 1 or (d * (k - 1)) % 2:
                raise ModelBuildError(f"{at}: padding='same' needs stride 1 and an even total padding")
            p = d * (k - 1) // 2
        else:
            (p,) = A.sizes(padding, 1, "padding", at, minimum=0)
        if in_channels is not None and in_channels % groups:
            raise ModelBuildError(f"{at}: in_channels {in_channels} not divisible by groups {groups}")
        if out_channels % groups:
            raise ModelBuildError(f"{at}: out_channels {out_channels} not divisible by groups {groups}")
        w_in = None if in_channels is None else in_channels // groups
        weight = IOKey("weight", shape=[out_channels, w_in, k], role="param", init=uniform_fan_in)
        x = IOKey("input", shape=[None, in_channels, None])
        x4 = self.call("unflatten", x, axis=2, sizes=(1, -1))  # [N, C, 1, L]
        w4 = self.call("unflatten", weight, axis=2, sizes=(1, -1))  # [O, C/g, 1, k]
        y = self.call("conv2d", x4, w4, stride=(1, s), padding=(0, p), dilation=(1, d), groups=int(groups))
        y = self.call("flatten", y, start_axis=2, end_axis=3)
        if bias:
            b = self.call(
                "reshape", IOKey("bias", shape=[out_channels], role="param", init=bias_of("weight")), shape=(1, -1, 1)
            )
            y = y + b
        self.call("identity", y, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class ConvTranspose2d(Model, template=True):
    """Transposed 2-D convolution, as torch.nn.ConvTranspose2d (weight ``[in, out/groups, kh, kw]``)."""

    def __init__(
        self,
        in_channels: int | None = None,
        out_channels: int | None = None,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        at = A.where("ConvTranspose2d", name)
        if out_channels is None:
            raise ModelBuildError(f"{at} needs out_channels")
        in_channels = A.size(in_channels, "in_channels", at, optional=True)
        out_channels = A.size(out_channels, "out_channels", at)
        groups = A.size(groups, "groups", at)
        bias = A.flag(bias, "bias", at)
        if out_channels % groups or (in_channels is not None and in_channels % groups):
            raise ModelBuildError(f"{at}: channels ({in_channels}, {out_channels}) not divisible by groups {groups}")
        k = A.sizes(kernel_size, 2, "kernel_size", at)
        stride, dilation = A.sizes(stride, 2, "stride", at), A.sizes(dilation, 2, "dilation", at)
        padding = A.sizes(padding, 2, "padding", at, minimum=0)
        output_padding = A.sizes(output_padding, 2, "output_padding", at, minimum=0)
        for i in range(2):
            if output_padding[i] >= max(stride[i], dilation[i]):
                raise ModelBuildError(
                    f"{at}: output_padding {output_padding} must be smaller than stride {stride} or dilation {dilation}"
                )
        weight = IOKey(
            "weight", shape=[in_channels, out_channels // groups, k[0], k[1]], role="param", init=uniform_fan_in
        )
        x = IOKey("input", shape=[None, in_channels, None, None])
        y = self.call(
            "conv_transpose2d",
            x,
            weight,
            stride=_pair(stride),
            padding=_pair(padding),
            output_padding=_pair(output_padding),
            dilation=_pair(dilation),
            groups=int(groups),
        )
        if bias:
            b = self.call(
                "reshape",
                IOKey("bias", shape=[out_channels], role="param", init=bias_of("weight")),
                shape=(1, -1, 1, 1),
            )
            y = y + b
        self.call("identity", y, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class MaxPool1d(Model, template=True):
    """As torch.nn.MaxPool1d over ``[N, C, L]`` (stride defaults to kernel_size, floor mode)."""

    def __init__(
        self,
        kernel_size: int,
        stride: int | None = None,
        padding: int = 0,
        dilation: int = 1,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        at = A.where("MaxPool1d", name)
        (k,) = A.sizes(kernel_size, 1, "kernel_size", at)
        (s,) = (k,) if stride is None else A.sizes(stride, 1, "stride", at)
        (p,), (d,) = A.sizes(padding, 1, "padding", at, minimum=0), A.sizes(dilation, 1, "dilation", at)
        x4 = self.call("unflatten", IOKey("input", shape=[None, None, None]), axis=2, sizes=(1, -1))
        y = self.call("max_pool2d", x4, kernel_size=(1, k), stride=(1, s), padding=(0, p), dilation=(1, d))
        self.call("flatten", y, start_axis=2, end_axis=3, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class AdaptiveAvgPool2d(Model, template=True):
    """torch.nn.AdaptiveAvgPool2d over the last two axes, for any input and output sizes.

    Output cell ``(i, j)`` averages torch's window of rows ``floor(i H / oh)`` to
    ``ceil((i + 1) H / oh)`` (and the same for columns); windows overlap when the size
    does not divide. ``output_size=1`` is global average pooling.
    """

    def __init__(self, output_size: int | Sequence[int], *, name: str | None = None) -> None:
        super().__init__(name=name)
        oh, ow = A.sizes(output_size, 2, "output_size", A.where("AdaptiveAvgPool2d", name))
        x = IOKey("input", shape=["...", None, None])
        if (oh, ow) == (1, 1):
            self.call("mean", x, axis=(-2, -1), keepdims=True, output=IOKey("output"))
        else:
            self.call("adaptive_avg_pool2d", x, output_size=(oh, ow), output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class Embedding(Model, template=True):
    """torch.nn.Embedding: ``weight[input]`` with ``weight: [num_embeddings, embedding_dim]`` ~ N(0, 1).

    ``input`` holds int indices of any shape; the output appends ``embedding_dim``.
    """

    def __init__(
        self, num_embeddings: int | None = None, embedding_dim: int | None = None, *, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        at = A.where("Embedding", name)
        num_embeddings = A.size(num_embeddings, "num_embeddings", at, optional=True)
        embedding_dim = A.size(embedding_dim, "embedding_dim", at, optional=True)
        weight = IOKey("weight", shape=[num_embeddings, embedding_dim], role="param", init=normal)
        ids = self.call(
            "index_range",
            IOKey("input", dtype="int"),
            weight,
            like_axis=0,
            block="Embedding",
            names=("input", "weight"),
        )
        self.call("gather_rows", "weight", ids, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


__all__ = ["AdaptiveAvgPool2d", "Conv1d", "ConvTranspose2d", "Embedding", "MaxPool1d"]
