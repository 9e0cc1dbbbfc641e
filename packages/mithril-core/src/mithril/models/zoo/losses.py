"""Losses as blocks (torch.nn semantics): terminals ``input``, ``target``, ``output``.

``reduction`` is ``"mean"`` (the default, as torch), ``"sum"`` or ``"none"``.
"""

from __future__ import annotations

from ...errors import ModelBuildError
from ..connections import IOKey, TerminalRef
from ..model import Model
from ._util import check_reduction, reduce


class _Loss(Model):
    def __init__(self, reduction: str, name: str | None) -> None:
        super().__init__(name=name)
        check_reduction(reduction, type(self).__name__)
        self.reduction = reduction

    def _finish(self, per_element: TerminalRef) -> None:
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


class _ClassIndexLoss(_Loss):
    """NLL over class indices, as torch: ``input [N, C, *]``, int ``target [N, *]``, ``ignore_index``."""

    def _build(self, log_softmax: bool, label_smoothing: float, ignore_index: int | None) -> None:
        # [N, C, *] -> [N, M, C] and [N, *] -> [N, M], whatever the rank (M = 1 for [N, C])
        x = self.call("flatten", self.call("unflatten", IOKey("input"), axis=-1,
                                           sizes=(-1, 1)), start_axis=2, end_axis=-1)
        x = self.call("transpose", x, axes=(0, 2, 1))
        t = self.call("flatten", self.call("unflatten", IOKey("target", dtype="int"), axis=-1, sizes=(-1, 1)),
                      start_axis=1, end_axis=-1)
        logp = self.call("log_softmax", x, axis=-1) if log_softmax else x
        valid = None
        if ignore_index is not None:
            valid = self.call("not_equal", t, int(ignore_index))
            t = self.call("where", valid, t, 0)
        loss = self.call("neg", self.call("gather_last", logp, t))
        if label_smoothing > 0.0:
            smooth = self.call("neg", self.call("mean", logp, axis=(-1,), keepdims=False))
            loss = loss * (1.0 - label_smoothing) + smooth * float(label_smoothing)
        if valid is not None:
            loss = self.call("where", valid, loss, 0.0)
        if self.reduction == "none":
            self.call("reshape_as", loss, "target", output=IOKey("output"))
        elif self.reduction == "sum" or valid is None:
            reduce(self, loss, self.reduction)
        else:  # the mean over the targets that are not ignored
            count = self.call("sum", self.call("cast", valid, kind="float"), axis=None, keepdims=False)
            self.call("div", self.call("sum", loss, axis=None, keepdims=False), count, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class NLLLoss(_ClassIndexLoss):
    """-input[n, target[n]] for log-probabilities ``input [N, C]`` (or ``[N, C, d1, ...]``) and int class
    indices ``target [N]`` (or ``[N, d1, ...]``); targets equal to ``ignore_index`` do not count."""

    def __init__(self, reduction: str = "mean", ignore_index: int | None = -100, *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        self._build(False, 0.0, ignore_index)


class CrossEntropyLoss(_ClassIndexLoss):
    """log-softmax over the class axis (1) then NLL, for logits ``input [N, C, *]`` and int ``target [N, *]``.

    ``label_smoothing`` mixes the one-hot target with the uniform distribution, and targets equal to
    ``ignore_index`` do not count (``ignore_index=None`` drops the masking from the graph), as torch.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0, ignore_index: int | None = -100, *,
                 name: str | None = None) -> None:
        super().__init__(reduction, name)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ModelBuildError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self._build(True, float(label_smoothing), ignore_index)


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
