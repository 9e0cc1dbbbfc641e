"""Learning-rate schedules, computed inside the training step from its step counter.

A schedule maps ``t``, the number of updates already made (0 for the first
step), to a learning rate, as ``torch.optim.lr_scheduler`` does when
``scheduler.step()`` follows ``optimizer.step()``. It is emitted into the step's
graph (:mod:`mithril.training.expr`), so the rate changes every step without
recompiling; the step reports the rate it used as its ``lr`` output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ModelBuildError
from .expr import X, where


class Schedule:
    """Base class: ``emit(t)`` returns the learning rate at step ``t`` (a float graph value)."""

    def emit(self, t: X) -> X:
        raise NotImplementedError

    def _check(self, **positive: float) -> None:
        for name, value in positive.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
                raise ModelBuildError(f"{type(self).__name__}: {name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class Constant(Schedule):
    """``lr`` at every step."""

    lr: float

    def __post_init__(self) -> None:
        if (
            not isinstance(self.lr, (int, float))
            or isinstance(self.lr, bool)
            or not math.isfinite(self.lr)
            or self.lr < 0
        ):
            raise ModelBuildError(f"Constant: lr must be a non-negative number, got {self.lr!r}")

    def emit(self, t: X) -> X:
        return X(t.b, t.b.const(float(self.lr), "float"))


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``lr * gamma ** floor(t / step_size)`` (``torch.optim.lr_scheduler.StepLR``)."""

    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        self._check(lr=self.lr, step_size=self.step_size, gamma=self.gamma)

    def emit(self, t: X) -> X:
        return float(self.lr) * (float(self.gamma) ** (t / float(self.step_size)).floor())


@dataclass(frozen=True)
class Exponential(Schedule):
    """``lr * gamma ** t`` (``ExponentialLR``)."""

    lr: float
    gamma: float

    def __post_init__(self) -> None:
        self._check(lr=self.lr, gamma=self.gamma)

    def emit(self, t: X) -> X:
        return float(self.lr) * (float(self.gamma) ** t)


@dataclass(frozen=True)
class LinearWarmup(Schedule):
    """From ``lr * start_factor`` linearly to ``lr`` over ``warmup_steps``, then ``lr`` (``LinearLR``)."""

    lr: float
    warmup_steps: int
    start_factor: float = 1.0 / 3.0

    def __post_init__(self) -> None:
        self._check(lr=self.lr, warmup_steps=self.warmup_steps)
        if not 0.0 <= self.start_factor <= 1.0:
            raise ModelBuildError(f"LinearWarmup: start_factor must be in [0, 1], got {self.start_factor!r}")

    def emit(self, t: X) -> X:
        frac = t.minimum(float(self.warmup_steps)) / float(self.warmup_steps)
        return float(self.lr) * (self.start_factor + (1.0 - self.start_factor) * frac)


@dataclass(frozen=True)
class Cosine(Schedule):
    """Linear warmup from 0 over ``warmup_steps``, then a cosine from ``lr`` to ``min_lr`` at
    ``total_steps``, then ``min_lr`` (``CosineAnnealingLR(T_max=total_steps, eta_min=min_lr)``
    when ``warmup_steps`` is 0)."""

    lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        self._check(lr=self.lr, total_steps=self.total_steps)
        if not 0 <= self.warmup_steps < self.total_steps:
            raise ModelBuildError(
                f"Cosine: warmup_steps must be in [0, total_steps={self.total_steps}), got {self.warmup_steps!r}"
            )
        if not 0.0 <= self.min_lr <= self.lr:
            raise ModelBuildError(f"Cosine: min_lr must be in [0, lr={self.lr}], got {self.min_lr!r}")

    def emit(self, t: X) -> X:
        w, total = float(self.warmup_steps), float(self.total_steps)
        progress = ((t - w) / (total - w)).clip(0.0, 1.0)
        cosine = self.min_lr + 0.5 * (self.lr - self.min_lr) * ((progress * math.pi).cos() + 1.0)
        if self.warmup_steps == 0:
            return cosine
        return where(t.less(w), float(self.lr) * t / w, cosine)


@dataclass(frozen=True)
class OneCycle(Schedule):
    """The one-cycle policy (``OneCycleLR`` with ``anneal_strategy="cos"``, two phases): from
    ``max_lr / div_factor`` up to ``max_lr`` over ``pct_start`` of ``total_steps``, then down to
    ``max_lr / div_factor / final_div_factor`` at the last step. Momentum is not cycled."""

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self) -> None:
        self._check(
            max_lr=self.max_lr,
            total_steps=self.total_steps,
            div_factor=self.div_factor,
            final_div_factor=self.final_div_factor,
        )
        if not 0.0 < self.pct_start < 1.0:
            raise ModelBuildError(f"OneCycle: pct_start must be in (0, 1), got {self.pct_start!r}")
        if float(self.pct_start * self.total_steps) - 1 <= 0:
            raise ModelBuildError(
                f"OneCycle: pct_start * total_steps must exceed 1, got {self.pct_start} * {self.total_steps}"
            )

    def emit(self, t: X) -> X:
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        up_end = float(self.pct_start * self.total_steps) - 1.0
        down_end = float(self.total_steps) - 1.0

        def anneal(start: float, end: float, pct: X) -> X:
            return end + (start - end) / 2.0 * ((pct * math.pi).cos() + 1.0)

        up = anneal(initial, self.max_lr, (t / up_end).clip(0.0, 1.0))
        down = anneal(self.max_lr, final, ((t - up_end) / (down_end - up_end)).clip(0.0, 1.0))
        return where(t.less(up_end), up, down)


def as_schedule(lr: float | Schedule, where_: str) -> Schedule:
    """A learning rate given as a number or a schedule, as a schedule."""
    if isinstance(lr, Schedule):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ModelBuildError(f"{where_}: lr must be a non-negative number or a Schedule, got {lr!r}")
    return Constant(float(lr))


__all__ = ["Constant", "Cosine", "Exponential", "LinearWarmup", "OneCycle", "Schedule", "StepDecay", "as_schedule"]
