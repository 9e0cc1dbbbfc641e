"""Callbacks of ``fit``: early stopping, learning-rate logging, checkpointing."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from ..errors import TrainingError

if TYPE_CHECKING:  # pragma: no cover
    from .fit import Trainer


class Callback:
    """Hooks called by :meth:`Trainer.fit`; ``self.trainer`` is set before ``on_train_begin``.

    ``logs`` hold the epoch's mean ``loss`` and metrics, ``lr``, and ``val_*`` entries when
    there is validation data. Set ``trainer.stop_training = True`` to stop after this epoch.
    """

    trainer: Trainer

    def on_train_begin(self) -> None: ...

    def on_epoch_begin(self, epoch: int) -> None: ...

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...

    def on_train_end(self) -> None: ...


def _monitored(logs: dict[str, float], monitor: str, who: str) -> float:
    if monitor not in logs:
        raise TrainingError(f"{who}: monitor {monitor!r} is not in the logs {sorted(logs)}")
    return logs[monitor]


def _better(mode: str, monitor: str) -> str:
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    if mode not in ("min", "max"):
        raise TrainingError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs;
    ``restore_best`` puts back the parameters of the best epoch at the end."""

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best: bool = False,
    ) -> None:
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(min_delta)
        self.mode = _better(mode, monitor)
        self.restore_best = restore_best
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._wait = 0
        self._best_params: dict[str, Any] | None = None

    def on_train_begin(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.stopped_epoch, self._wait, self._best_params = None, None, 0, None

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        value = _monitored(logs, self.monitor, "EarlyStopping")
        improved = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if improved:
            self.best, self.best_epoch, self._wait = value, epoch, 0
            if self.restore_best:
                self._best_params = self.trainer.params_numpy()
            return
        self._wait += 1
        if self._wait > self.patience:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self) -> None:
        if self.restore_best and self._best_params is not None and self.stopped_epoch is not None:
            self.trainer.set_params(self._best_params)


class LearningRateLogger(Callback):
    """Records the learning rate of every step in :attr:`rates` (``(step, lr)`` pairs)."""

    def __init__(self) -> None:
        self.rates: list[tuple[int, float]] = []

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        self.rates.append((step, logs["lr"]))


class ModelCheckpoint(Callback):
    """Save a checkpoint (:func:`mithril.training.save_checkpoint`) after every epoch to ``path``
    (formatted with ``epoch`` and the logs, e.g. ``"ckpt-{epoch:03d}.safetensors"``); with
    ``save_best_only`` only when ``monitor`` improves."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
    ) -> None:
        self.path = os.fspath(path)
        self.monitor, self.save_best_only = monitor, save_best_only
        self.mode = _better(mode, monitor)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.saved: list[str] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            if not (value < self.best if self.mode == "min" else value > self.best):
                return
            self.best = value
        path = self.path.format(epoch=epoch + 1, **logs)
        self.trainer.save_checkpoint(path)
        self.saved.append(path)


__all__ = ["Callback", "EarlyStopping", "LearningRateLogger", "ModelCheckpoint"]
