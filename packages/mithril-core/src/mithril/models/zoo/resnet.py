"""ResNet (He et al. 2015) with torchvision's structure and parameter names.

``resnet18()``, ``resnet34()`` and ``resnet50()`` build logical models with the
input ``input`` (``[N, in_channels, H, W]``) and the output ``output``
(``[N, num_classes]`` logits). Parameter and state names are torchvision's
(``conv1.weight``, ``bn1.running_mean``, ``layer2.0.downsample.0.weight``,
``fc.bias``...), so a torchvision state dict loads with
:func:`mithril.io.load_state_dict`. Bottleneck blocks put the stride in their 3x3
convolution (torchvision's "ResNet v1.5"). Parameters initialise as the
torch.nn defaults of each layer, not with torchvision's Kaiming initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import ModelBuildError
from ..connections import IOKey, TerminalRef
from ..layers import BatchNorm2d, Conv2d, Linear
from ..model import Model
from ..primitive_blocks import Flatten, MaxPool2d, Relu
from .layers import AdaptiveAvgPool2d


def _downsample(in_channels: int, out_channels: int, stride: int) -> Model:
    """The shortcut projection ``downsample``: 1x1 conv (``0``) and BatchNorm (``1``)."""
    shortcut = Model(name="downsample")
    shortcut |= Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False, name="0")
    shortcut += BatchNorm2d(out_channels, name="1")
    return shortcut


def _needs_projection(in_channels: int, out_channels: int, stride: int) -> bool:
    return stride != 1 or in_channels != out_channels


def _add_residual(block: Model, branch_out: TerminalRef, in_channels: int, out_channels: int, stride: int) -> None:
    """``output = relu(branch_out + shortcut(input))``, the shortcut projected when shapes change."""
    if _needs_projection(in_channels, out_channels, stride):
        shortcut = _downsample(in_channels, out_channels, stride)
        block |= shortcut(input="input")
        identity: TerminalRef | IOKey = shortcut.output
    else:
        identity = IOKey("input")
    block |= Relu()(input=branch_out + identity, output=IOKey("output"))
    block.set_canonical(input="input", output="output")


def _check_positive(what: str, **sizes: int) -> None:
    bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1}
    if bad:
        raise ModelBuildError(f"{what}: these must be positive ints: {bad}")


class BasicBlock(Model, template=True):
    """Two 3x3 conv-BN layers and a residual connection (torchvision's ``BasicBlock``).

    ``conv1`` (stride ``stride``), ``bn1``, ReLU, ``conv2``, ``bn2``, plus the input,
    projected by ``downsample`` (1x1 conv + BN) when the stride or channel count
    changes; ReLU of the sum. Output channels: ``planes``.
    """

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, *, name: str | None = None) -> None:
        super().__init__(name=name)
        _check_positive("BasicBlock", in_channels=in_channels, planes=planes, stride=stride)
        self |= Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False, name="conv1")(input="input")
        self += BatchNorm2d(planes, name="bn1")
        self += Relu()
        self += Conv2d(planes, planes, 3, padding=1, bias=False, name="conv2")
        bn2 = BatchNorm2d(planes, name="bn2")
        self += bn2
        _add_residual(self, bn2.output, in_channels, planes, stride)


class Bottleneck(Model, template=True):
    """1x1 reduce, 3x3 (stride ``stride``), 1x1 expand by 4, and a residual (torchvision's ``Bottleneck``).

    ``conv1``/``bn1``, ``conv2``/``bn2`` (the strided 3x3), ``conv3``/``bn3`` with
    ``planes * 4`` output channels, and ``downsample`` when the shape changes.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, *, name: str | None = None) -> None:
        super().__init__(name=name)
        _check_positive("Bottleneck", in_channels=in_channels, planes=planes, stride=stride)
        out_channels = planes * self.expansion
        self |= Conv2d(in_channels, planes, 1, bias=False, name="conv1")(input="input")
        self += BatchNorm2d(planes, name="bn1")
        self += Relu()
        self += Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False, name="conv2")
        self += BatchNorm2d(planes, name="bn2")
        self += Relu()
        self += Conv2d(planes, out_channels, 1, bias=False, name="conv3")
        bn3 = BatchNorm2d(out_channels, name="bn3")
        self += bn3
        _add_residual(self, bn3.output, in_channels, out_channels, stride)


ResidualBlock = type[BasicBlock] | type[Bottleneck]


class ResNet(Model):
    """The ResNet trunk and head: stem, four stages of residual blocks, global pooling, ``fc``.

    ``block`` is :class:`BasicBlock` or :class:`Bottleneck`; ``layers`` gives the
    number of blocks of each stage (``layer1`` ... ``layer4``, with 64, 128, 256 and
    512 planes, stages 2-4 starting with stride 2). The stem is ``conv1`` (7x7,
    stride 2, padding 3), ``bn1``, ReLU and a 3x3 max pool of stride 2.
    """

    def __init__(
        self,
        block: ResidualBlock,
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if not (isinstance(block, type) and issubclass(block, (BasicBlock, Bottleneck))):
            raise ModelBuildError(f"ResNet: block must be BasicBlock or Bottleneck, got {block!r}")
        counts = list(layers)
        if len(counts) != 4 or any(not isinstance(n, int) or n < 1 for n in counts):
            raise ModelBuildError(f"ResNet: layers must be four positive block counts, got {layers!r}")
        _check_positive("ResNet", num_classes=num_classes, in_channels=in_channels)
        self |= Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False, name="conv1")
        self += BatchNorm2d(64, name="bn1")
        self += Relu()
        self += MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
            stage = Model(name=f"layer{i + 1}")
            for j in range(n):
                unit = block(channels, planes, stride=2 if i > 0 and j == 0 else 1, name=str(j))
                if j == 0:
                    stage |= unit
                else:
                    stage += unit
                channels = planes * block.expansion
            self += stage
        self += AdaptiveAvgPool2d(1, name="avgpool")
        self += Flatten()
        self += Linear(num_classes, name="fc")


def resnet18(num_classes: int = 1000, in_channels: int = 3, *, name: str | None = None) -> ResNet:
    """ResNet-18: BasicBlock stages of 2, 2, 2, 2 blocks (11.7 M parameters at 1000 classes)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels, name=name)


def resnet34(num_classes: int = 1000, in_channels: int = 3, *, name: str | None = None) -> ResNet:
    """ResNet-34: BasicBlock stages of 3, 4, 6, 3 blocks (21.8 M parameters at 1000 classes)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels, name=name)


def resnet50(num_classes: int = 1000, in_channels: int = 3, *, name: str | None = None) -> ResNet:
    """ResNet-50 (v1.5): Bottleneck stages of 3, 4, 6, 3 blocks (25.6 M parameters at 1000 classes)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels, name=name)


__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50"]
