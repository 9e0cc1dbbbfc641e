"""Losses as blocks (torch.nn semantics): terminals ``input``, ``target``, ``output``.

``reduction`` is ``"mean"`` (the default, as torch), ``"sum"`` or ``"none"``.
"""

from __future__ import annotations

from ...errors import ModelBuildError
from ..connections import IOKey
from ..model import Model
from ._util import check_reduction, reduce


class _Loss(Model):
    def __init__(self, reduction: str, name: str | None) -> None:
        super().__init__(name=name)
        check_reduction(reduction, type(self).__name__)
        self.reduction = reduction

    def _finish(self, per_element) -> None:  # type: ignore[no-untyped-def]
        reduce(self, per_element, self.reduction)
        self.set_canonical(input="input", output="output")


class MSELoss(_Loss):
    """mean((input - target)²)."""

    def __init__(self, reduction: str = "mean", *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        d = self.call("sub", IOKey("input"), IOKey("target"))
        self._finish(d * d)


class L1Loss(_Loss):
    """mean(|input - target|)."""

    def __init__(self, reduction: str = "mean", *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        self._finish(self.call("abs", self.call("sub", IOKey("input"), IOKey("target"))))


class HuberLoss(_Loss):
    """0.5 d² where |d| < delta, else delta (|d| - delta/2); d = input - target."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0, *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        if delta <= 0:
            raise ModelBuildError(f"HuberLoss: delta must be positive, got {delta}")
        d = self.call("sub", IOKey("input"), IOKey("target"))
        ad = self.call("abs", d)
        quad = d * d * 0.5
        lin = (ad - 0.5 * delta) * float(delta)
        self._finish(self.call("where", self.call("less", ad, float(delta)), quad, lin))


class NLLLoss(_Loss):
    """-input[n, target[n]] for log-probabilities ``input [N, C]`` and int class indices ``target [N]``."""

    def __init__(self, reduction: str = "mean", *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        picked = self.call("gather_last", IOKey("input", shape=[None, None]), IOKey("target", dtype="int"))
        self._finish(self.call("neg", picked))


class CrossEntropyLoss(_Loss):
    """log-softmax then NLL, for logits ``input [N, C]`` and int class indices ``target [N]``.

    ``label_smoothing`` mixes the one-hot target with the uniform distribution, as torch.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0, *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ModelBuildError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        logp = self.call("log_softmax", IOKey("input", shape=[None, None]), axis=-1)
        nll = self.call("neg", self.call("gather_last", logp, IOKey("target", dtype="int")))
        if label_smoothing > 0.0:
            smooth = self.call("neg", self.call("mean", logp, axis=(-1,), keepdims=False))
            nll = nll * (1.0 - label_smoothing) + smooth * float(label_smoothing)
        self._finish(nll)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits, stably: max(x, 0) - x t + log(1 + exp(-|x|))."""

    def __init__(self, reduction: str = "mean", *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        x = IOKey("input")
        relu = self.call("relu", x)
        xt = self.call("mul", "input", IOKey("target"))
        soft = self.call("log", self.call("exp", self.call("neg", self.call("abs", "input"))) + 1.0)
        self._finish(relu - xt + soft)


__all__ = ["MSELoss", "L1Loss", "HuberLoss", "NLLLoss", "CrossEntropyLoss", "BCEWithLogitsLoss"]
