"""One block class per core primitive (``Relu()``, ``Add()``, ``Softmax(axis=1)``...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..dtypes import DType
from ..errors import ModelBuildError
from . import arguments as A
from .block import PrimitiveBlock


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return t


class _Prim(PrimitiveBlock):
    primitive_name = ""

    def __init__(self, *, name: str | None = None, **attrs: Any) -> None:
        super().__init__(self.primitive_name, name=name, **attrs)


def _simple(cls_name: str, prim: str, doc: str) -> type[_Prim]:
    return type(
        cls_name,
        (_Prim,),
        {
            "primitive_name": prim,
            "__doc__": doc,
            "__init__": lambda self, *, name=None: _Prim.__init__(self, name=name),
        },
        template=True,
    )


Add = _simple("Add", "add", "left + right, broadcasting.")
Subtract = _simple("Subtract", "sub", "left - right, broadcasting.")
Multiply = _simple("Multiply", "mul", "left * right, broadcasting.")
Divide = _simple("Divide", "div", "left / right, broadcasting.")
Power = _simple("Power", "pow", "base ** exponent, broadcasting.")
Maximum = _simple("Maximum", "maximum", "element-wise max of left and right.")
Minimum = _simple("Minimum", "minimum", "element-wise min of left and right.")
MatrixMultiply = _simple("MatrixMultiply", "matmul", "left @ right (batch dims broadcast).")
Relu = _simple("Relu", "relu", "max(x, 0), as torch.nn.ReLU.")
Sigmoid = _simple("Sigmoid", "sigmoid", "1 / (1 + exp(-x)).")
Tanh = _simple("Tanh", "tanh", "tanh(x).")
Exp = _simple("Exp", "exp", "exp(x).")
Log = _simple("Log", "log", "natural log.")
Sqrt = _simple("Sqrt", "sqrt", "square root.")
Abs = _simple("Abs", "abs", "|x|.")
Negate = _simple("Negate", "neg", "-x.")
Sine = _simple("Sine", "sin", "sin(x).")
Cosine = _simple("Cosine", "cos", "cos(x).")
Where = _simple("Where", "where", "condition ? left : right.")
Greater = _simple("Greater", "greater", "left > right (bool).")
Less = _simple("Less", "less", "left < right (bool).")
Equal = _simple("Equal", "equal", "left == right (bool).")


class Gelu(_Prim, template=True):
    """GELU; ``approximate='tanh'`` as torch.nn.GELU(approximate='tanh')."""

    primitive_name = "gelu"

    def __init__(self, approximate: str = "none", *, name: str | None = None) -> None:
        A.choice(approximate, ("none", "tanh"), "approximate", A.where("Gelu", name))
        super().__init__(name=name, approximate=approximate)


class LeakyRelu(_Prim, template=True):
    """x if x > 0 else slope * x (torch's negative_slope)."""

    primitive_name = "leaky_relu"

    def __init__(self, slope: float = 0.01, *, name: str | None = None) -> None:
        super().__init__(name=name, slope=A.number(slope, "slope", A.where("LeakyRelu", name)))


class Softmax(_Prim, template=True):
    primitive_name = "softmax"

    def __init__(self, axis: int = -1, *, name: str | None = None) -> None:
        super().__init__(name=name, axis=A.integer(axis, "axis", A.where("Softmax", name)))


class LogSoftmax(_Prim, template=True):
    primitive_name = "log_softmax"

    def __init__(self, axis: int = -1, *, name: str | None = None) -> None:
        super().__init__(name=name, axis=A.integer(axis, "axis", A.where("LogSoftmax", name)))


class Transpose(_Prim, template=True):
    primitive_name = "transpose"

    def __init__(self, axes: Sequence[int] | None = None, *, name: str | None = None) -> None:
        at = A.where("Transpose", name)
        if axes is not None:
            axes = A.ints(axes, "axes", at)
            if sorted(a % len(axes) if -len(axes) <= a < len(axes) else a for a in axes) != list(range(len(axes))):
                raise ModelBuildError(f"{at}: axes must be a permutation of 0..{len(axes) - 1}, got {list(axes)}")
        super().__init__(name=name, axes=axes)


class Reshape(_Prim, template=True):
    primitive_name = "reshape"

    def __init__(self, shape: Sequence[int], *, name: str | None = None) -> None:
        at = A.where("Reshape", name)
        shape = A.ints(shape, "shape", at, minimum=-1)
        if shape.count(-1) > 1:
            raise ModelBuildError(f"{at}: shape may hold one -1 (the size inferred), got {list(shape)}")
        super().__init__(name=name, shape=shape)


class Flatten(_Prim, template=True):
    """Merge axes ``start_axis..end_axis`` (torch.nn.Flatten defaults: 1, -1)."""

    primitive_name = "flatten"

    def __init__(self, start_axis: int = 1, end_axis: int = -1, *, name: str | None = None) -> None:
        at = A.where("Flatten", name)
        super().__init__(
            name=name, start_axis=A.integer(start_axis, "start_axis", at), end_axis=A.integer(end_axis, "end_axis", at)
        )


class Cast(_Prim, template=True):
    primitive_name = "cast"

    def __init__(self, kind: str = "float", *, name: str | None = None) -> None:
        if isinstance(kind, DType):
            kind = kind.kind
        super().__init__(name=name, kind=A.choice(kind, ("float", "int", "bool"), "kind", A.where("Cast", name)))


class _Reduce(_Prim, template=True):
    def __init__(
        self, axis: int | Sequence[int] | None = None, keepdims: bool = False, *, name: str | None = None
    ) -> None:
        at = A.where(type(self).__name__, name)
        super().__init__(name=name, axis=A.axes(axis, "axis", at), keepdims=A.flag(keepdims, "keepdims", at))


class Sum(_Reduce, template=True):
    primitive_name = "sum"


class Mean(_Reduce, template=True):
    primitive_name = "mean"


class Max(_Reduce, template=True):
    primitive_name = "max"


class Min(_Reduce, template=True):
    primitive_name = "min"


class ArgMax(_Prim, template=True):
    primitive_name = "argmax"

    def __init__(self, axis: int = -1, keepdims: bool = False, *, name: str | None = None) -> None:
        at = A.where("ArgMax", name)
        super().__init__(name=name, axis=(A.integer(axis, "axis", at),), keepdims=A.flag(keepdims, "keepdims", at))


class Concat(PrimitiveBlock):
    """Join ``n`` inputs (terminals ``inputs_0`` ... ``inputs_{n-1}``, output ``output``) along ``axis``.

    ``Concat(n=2, axis=1)(inputs_0="a", inputs_1="b", output="ab")``.
    """

    def __init__(self, n: int = 2, axis: int = 0, *, name: str | None = None) -> None:
        at = A.where("Concat", name)
        super().__init__("concat", n_inputs=A.size(n, "n", at), name=name, axis=A.integer(axis, "axis", at))


class MaxPool2d(_Prim, template=True):
    """As torch.nn.MaxPool2d (stride defaults to kernel_size, floor mode)."""

    primitive_name = "max_pool2d"

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        *,
        name: str | None = None,
    ) -> None:
        at = A.where("MaxPool2d", name)
        k = A.sizes(kernel_size, 2, "kernel_size", at)
        super().__init__(
            name=name,
            kernel_size=k,
            stride=A.sizes(stride, 2, "stride", at) if stride is not None else k,
            padding=A.sizes(padding, 2, "padding", at, minimum=0),
            dilation=A.sizes(dilation, 2, "dilation", at),
        )


class AvgPool2d(_Prim, template=True):
    """As torch.nn.AvgPool2d (stride defaults to kernel_size, floor mode)."""

    primitive_name = "avg_pool2d"

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        count_include_pad: bool = True,
        *,
        name: str | None = None,
    ) -> None:
        at = A.where("AvgPool2d", name)
        k = A.sizes(kernel_size, 2, "kernel_size", at)
        super().__init__(
            name=name,
            kernel_size=k,
            stride=A.sizes(stride, 2, "stride", at) if stride is not None else k,
            padding=A.sizes(padding, 2, "padding", at, minimum=0),
            count_include_pad=A.flag(count_include_pad, "count_include_pad", at),
        )
