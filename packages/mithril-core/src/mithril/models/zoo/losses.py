"""Losses as blocks (torch.nn semantics): terminals ``input``, ``target``, ``output``.

``reduction`` is ``"mean"`` (the default, as torch), ``"sum"`` or ``"none"`` (``KLDivLoss`` also takes
``"batchmean"``). Shapes are checked, never broadcast: an element-wise loss needs ``target`` of the
shape of ``input``, a class-index loss (``NLLLoss``, ``CrossEntropyLoss``) needs ``target`` of the shape
of ``input`` without its class axis 1; a mismatch is a :class:`~mithril.errors.ShapeMismatchError`
naming the block, both terminals and both shapes (the ``same_shape`` primitive).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ...errors import ModelBuildError
from ..connections import IOKey, TerminalRef
from ..model import Model
from ._util import REDUCTIONS, reduce


class _Loss(Model):
    _reductions: tuple[str, ...] = REDUCTIONS

    def __init__(self, reduction: str, name: str | None) -> None:
        super().__init__(name=name)
        self._what = type(self).__name__ + (f" {name!r}" if name else "")
        if reduction not in self._reductions:
            raise ModelBuildError(f"{self._what}: reduction must be one of {self._reductions}, got {reduction!r}")
        self.reduction = reduction

    def _bad(self, what: str, value: object) -> ModelBuildError:
        return ModelBuildError(f"{self._what}: {what}, got {value!r}")

    def _number(self, value: object, what: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(float(value))
        ):
            raise self._bad(f"{what} must be a finite number", value)
        return float(value)

    def _input(self) -> TerminalRef:
        """``input``, required to have the shape of ``target``."""
        return self.call("same_shape", IOKey("input"), IOKey("target"), block=self._what, names=("input", "target"))

    def _finish(self, per_element: TerminalRef) -> None:
        reduce(self, per_element, self.reduction)
        self.set_canonical(input="input", output="output")


class MSELoss(_Loss, template=True):
    """(input - target)²."""

    def __init__(self, reduction: str = "mean", *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        d = self.call("sub", self._input(), "target")
        self._finish(d * d)


class L1Loss(_Loss, template=True):
    """|input - target|."""

    def __init__(self, reduction: str = "mean", *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        self._finish(self.call("abs", self.call("sub", self._input(), "target")))


class HuberLoss(_Loss, template=True):
    """0.5 d² where |d| < delta, else delta (|d| - delta/2); d = input - target; ``delta > 0``."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0, *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        delta = self._number(delta, "delta")
        if delta <= 0:
            raise self._bad("delta must be positive", delta)
        self.delta = delta
        # with m = min(|d|, delta): 0.5 m² + delta (|d| - m), without a comparison (ggml has none)
        ad = self.call("abs", self.call("sub", self._input(), "target"))
        m = self.call("minimum", ad, delta)
        self._finish(m * m * 0.5 + (ad - m) * delta)


class SmoothL1Loss(_Loss, template=True):
    """0.5 d² / beta where |d| < beta, else |d| - beta/2; d = input - target; ``beta >= 0`` (0 is L1Loss)."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0, *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        beta = self._number(beta, "beta")
        if beta < 0:
            raise self._bad("beta must be >= 0", beta)
        self.beta = beta
        ad = self.call("abs", self.call("sub", self._input(), "target"))
        if beta == 0.0:  # torch: exactly L1
            self._finish(ad)
            return
        m = self.call("minimum", ad, beta)  # 0.5 m² / beta + |d| - m, m = min(|d|, beta), as HuberLoss
        self._finish(m * m * (0.5 / beta) + (ad - m))


class _ClassLoss(_Loss):
    """Losses over a class axis 1: ``input [N, C, *]``."""

    def _smoothing(self, label_smoothing: object) -> float:
        ls = self._number(label_smoothing, "label_smoothing")
        if not 0.0 <= ls <= 1.0:
            raise self._bad("label_smoothing must be in [0, 1]", label_smoothing)
        return ls

    def _ignore(self, ignore_index: object) -> int | None:
        if ignore_index is None:
            return None
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise self._bad("ignore_index must be an int or None", ignore_index)
        return int(ignore_index)

    def _build_indices(self, log_softmax: bool, label_smoothing: float, ignore_index: int | None) -> None:
        """NLL over class indices, as torch: ``input [N, C, *]``, int ``target [N, *]``, ``ignore_index``."""
        target = self.call(
            "index_range",
            IOKey("target", dtype="int"),
            IOKey("input"),
            like_axis=1,
            ignore=ignore_index,
            block=self._what,
            names=("target", "input"),
        )
        target = self.call("same_shape", target, "input", drop_axis=1, block=self._what, names=("target", "input"))
        # [N, C, *] -> [N, M, C] and [N, *] -> [N, M], whatever the rank (M = 1 for [N, C])
        x = self.call("flatten", self.call("unflatten", "input", axis=-1, sizes=(-1, 1)), start_axis=2, end_axis=-1)
        x = self.call("transpose", x, axes=(0, 2, 1))
        t = self.call("flatten", self.call("unflatten", target, axis=-1, sizes=(-1, 1)), start_axis=1, end_axis=-1)
        logp = self.call("log_softmax", x, axis=-1) if log_softmax else x
        valid = None
        if ignore_index is not None:
            valid = self.call("not_equal", t, ignore_index)
            t = self.call("where", valid, t, 0)
        loss = self.call("neg", self.call("gather_last", logp, t))
        if label_smoothing > 0.0:
            smooth = self.call("neg", self.call("mean", logp, axis=(-1,), keepdims=False))
            loss = loss * (1.0 - label_smoothing) + smooth * label_smoothing
        if valid is not None:
            loss = self.call("where", valid, loss, 0.0)
        if self.reduction == "none":
            self.call("reshape_as", loss, target, output=IOKey("output"))
        elif self.reduction == "sum" or valid is None:
            reduce(self, loss, self.reduction)
        else:  # the mean over the targets that are not ignored
            count = self.call("sum", self.call("cast", valid, kind="float"), axis=None, keepdims=False)
            self.call("div", self.call("sum", loss, axis=None, keepdims=False), count, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class NLLLoss(_ClassLoss, template=True):
    """-input[n, target[n]] for log-probabilities ``input [N, C]`` (or ``[N, C, d1, ...]``) and int class
    indices ``target [N]`` (or ``[N, d1, ...]``); targets equal to ``ignore_index`` do not count."""

    def __init__(self, reduction: str = "mean", ignore_index: int | None = -100, *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        self.ignore_index = self._ignore(ignore_index)
        self._build_indices(False, 0.0, self.ignore_index)


TARGET_KINDS = ("indices", "probabilities")


class CrossEntropyLoss(_ClassLoss, template=True):
    """log-softmax over the class axis (1) then NLL, for logits ``input [N, C, *]``.

    ``target="indices"`` (the default): int class indices ``target [N, *]``; targets equal to
    ``ignore_index`` do not count (``ignore_index=None`` drops the masking from the graph).
    ``target="probabilities"``: a float ``target`` of the shape of ``input``, a distribution over the
    class axis for each element (``ignore_index`` does not apply, as torch). ``label_smoothing`` mixes the
    target with the uniform distribution over the classes, in both cases, as torch.
    """

    def __init__(
        self,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int | None = -100,
        *,
        target: str = "indices",
        name: str | None = None,
    ) -> None:
        super().__init__(reduction, name)
        if target not in TARGET_KINDS:
            raise self._bad(f"target must be one of {TARGET_KINDS}", target)
        self.target_kind = target  # not ``self.target``: that is the terminal (``loss.target``)
        self.label_smoothing = self._smoothing(label_smoothing)
        self.ignore_index = self._ignore(ignore_index)
        if target == "indices":
            self._build_indices(True, self.label_smoothing, self.ignore_index)
            return
        logp = self.call("log_softmax", self._input(), axis=1)
        loss = self.call("neg", self.call("sum", logp * IOKey("target"), axis=(1,), keepdims=False))
        if self.label_smoothing > 0.0:
            smooth = self.call("neg", self.call("mean", logp, axis=(1,), keepdims=False))
            loss = loss * (1.0 - self.label_smoothing) + smooth * self.label_smoothing
        self._finish(loss)


class BCEWithLogitsLoss(_Loss, template=True):
    """Binary cross-entropy on logits, stably: (1 - t) x + w (log(1 + exp(-|x|)) + max(-x, 0)), where
    w = 1 + (pos_weight - 1) t (w = 1 without ``pos_weight``: max(x, 0) - x t + log(1 + exp(-|x|))).

    ``pos_weight`` (a number, or one per class of the last axis, broadcast as torch) weighs the
    positive term.
    """

    def __init__(
        self, reduction: str = "mean", pos_weight: float | Sequence[float] | None = None, *, name: str | None = None
    ) -> None:
        super().__init__(reduction, name)
        self.pos_weight = self._pos_weight(pos_weight)
        x = self._input()
        soft = self.call("log", self.call("exp", self.call("neg", self.call("abs", x))) + 1.0)
        if self.pos_weight is None:
            self._finish(self.call("relu", x) - x * "target" + soft)
            return
        w = self.call("mul", IOKey("target"), self.pos_weight - 1.0) + 1.0
        self._finish(self.call("sub", 1.0, "target") * x + w * (soft + self.call("relu", self.call("neg", x))))

    def _pos_weight(self, pos_weight: object) -> float | np.ndarray | None:
        if pos_weight is None:
            return None
        if isinstance(pos_weight, (int, float, np.integer, np.floating)) and not isinstance(pos_weight, bool):
            return self._number(pos_weight, "pos_weight")
        try:
            arr = np.asarray(pos_weight, dtype=np.float64)
        except (TypeError, ValueError):
            raise self._bad("pos_weight must be a number or a sequence of numbers", pos_weight) from None
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
            raise self._bad("pos_weight must be a number or a non-empty 1-d sequence of finite numbers", pos_weight)
        return arr


class KLDivLoss(_Loss, template=True):
    """target (log target - input) for log-probabilities ``input`` and probabilities ``target`` of the same
    shape (0 where target is 0, as torch's xlogy); ``log_target=True``: ``target`` holds log-probabilities,
    exp(target) (target - input).

    ``reduction="batchmean"`` divides the sum by the batch size (axis 0), which is the mathematical KL
    divergence; ``"mean"`` is the mean over every element, as torch.
    """

    _reductions = (*REDUCTIONS, "batchmean")

    def __init__(self, reduction: str = "mean", log_target: bool = False, *, name: str | None = None) -> None:
        super().__init__(reduction, name)
        if not isinstance(log_target, (bool, np.bool_)):
            raise self._bad("log_target must be a bool", log_target)
        self.log_target = bool(log_target)
        x = self._input()
        t = IOKey("target")
        if self.log_target:
            pointwise = self.call("exp", t) * self.call("sub", "target", x)
        else:  # xlogy(t, t) - t x, with log(1) where t == 0 so that nothing is inf or nan
            safe = self.call("where", self.call("equal", t, 0.0), 1.0, "target")
            pointwise = self.call("mul", "target", self.call("log", safe)) - self.call("mul", "target", x)
        if self.reduction != "batchmean":
            self._finish(pointwise)
            return
        total = self.call("sum", pointwise, axis=None, keepdims=False)
        self.call("div", total, self.call("numel", "input", axis=(0,)), output=IOKey("output"))
        self.set_canonical(input="input", output="output")


__all__ = [
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "MSELoss",
    "NLLLoss",
    "SmoothL1Loss",
]
