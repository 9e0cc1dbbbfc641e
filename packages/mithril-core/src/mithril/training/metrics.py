"""Metrics computed inside the training and evaluation graphs, from the model's output and the target.

Each metric is the mean over the batch of a per-example quantity, emitted in core
primitives; ``fit`` averages them over an epoch weighted by batch size.
"""

from __future__ import annotations

from ..errors import ModelBuildError
from .expr import X


class Metric:
    """Base class: ``emit(output, target)`` returns a scalar (the batch mean)."""

    #: the key in the step's result and in ``fit``'s history
    name: str = ""

    def emit(self, output: X, target: X) -> X:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _to_float(x: X) -> X:
    return X(x.b, x.b.emit("cast", x.v, kind="float"))


class Accuracy(Metric):
    """The fraction of correct predictions.

    Class-index targets ``[N, *]`` (int): the argmax over the class axis 1 of ``output [N, C, *]``.
    Float targets of the output's shape: the argmax of both over axis 1, or, for one logit per
    example (``[N]`` or ``[N, 1]``), ``output > 0`` against ``target > 0.5``.
    """

    name = "accuracy"

    def emit(self, output: X, target: X) -> X:
        b = output.b
        if target.v.kind == "int":
            if len(output.shape) < 2:
                raise ModelBuildError(
                    f"accuracy: class-index targets need an output [N, C, ...], got {list(output.shape)}"
                )
            pred = b.emit("argmax", output.v, axis=(1,), keepdims=False)
            return _to_float(X(b, b.emit("equal", pred, target.v))).mean()
        if output.shape != target.shape:
            raise ModelBuildError(f"accuracy: output {list(output.shape)} and target {list(target.shape)} differ")
        if len(output.shape) == 1 or output.shape[1] == 1:
            hit = b.emit("equal", b.emit("greater", output.v, b.const(0.0)), b.emit("greater", target.v, b.const(0.5)))
            return _to_float(X(b, hit)).mean()
        pa = b.emit("argmax", output.v, axis=(1,), keepdims=False)
        ta = b.emit("argmax", target.v, axis=(1,), keepdims=False)
        return _to_float(X(b, b.emit("equal", pa, ta))).mean()


class TopKAccuracy(Metric):
    """The fraction of examples whose target class is among the ``k`` largest logits
    (``output [N, C]``, int ``target [N]``; ties count in the target's favour)."""

    def __init__(self, k: int = 5) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ModelBuildError(f"TopKAccuracy: k must be a positive int, got {k!r}")
        self.k = k
        self.name = f"top{k}_accuracy"

    def emit(self, output: X, target: X) -> X:
        b = output.b
        if len(output.shape) != 2 or target.v.kind != "int":
            raise ModelBuildError(
                f"{self.name}: needs output [N, C] and int target [N], got "
                f"{list(output.shape)} and {target.v.kind} {list(target.shape)}"
            )
        picked = b.emit("gather_last", output.v, target.v)
        picked = b.emit("reshape", picked, shape=(output.shape[0], 1))
        above = b.emit("cast", b.emit("greater", output.v, picked), kind="float")
        rank = b.emit("sum", above, axis=(1,), keepdims=False)
        return _to_float(X(b, b.emit("less", rank, b.const(float(self.k))))).mean()

    def __repr__(self) -> str:
        return f"TopKAccuracy(k={self.k})"


class MeanAbsoluteError(Metric):
    """mean(|output - target|)."""

    name = "mae"

    def emit(self, output: X, target: X) -> X:
        _same(self.name, output, target)
        return (output - target).emit("abs").mean()


class MeanSquaredError(Metric):
    """mean((output - target)²)."""

    name = "mse"

    def emit(self, output: X, target: X) -> X:
        _same(self.name, output, target)
        return (output - target).square().mean()


def _same(name: str, output: X, target: X) -> None:
    if output.shape != target.shape:
        raise ModelBuildError(f"{name}: output {list(output.shape)} and target {list(target.shape)} differ")


_BY_NAME = {
    "accuracy": Accuracy,
    "acc": Accuracy,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def as_metric(spec: str | Metric) -> Metric:
    """A metric from its name (``"accuracy"``, ``"top5_accuracy"``, ``"mae"``, ``"mse"``) or itself."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        if spec in _BY_NAME:
            return _BY_NAME[spec]()
        if spec.startswith("top") and spec.endswith("_accuracy") and spec[3:-9].isdigit():
            return TopKAccuracy(int(spec[3:-9]))
    raise ModelBuildError(f"unknown metric {spec!r}; use a Metric or one of {sorted(_BY_NAME)} or 'top<k>_accuracy'")


__all__ = ["Accuracy", "MeanAbsoluteError", "MeanSquaredError", "Metric", "TopKAccuracy", "as_metric"]
