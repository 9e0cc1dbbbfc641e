"""``Trainer``: ``fit``, ``evaluate`` and ``predict`` around one compiled training step, as Keras'."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import Backend
from ..errors import RecompileWarning, TrainingError
from ..models.block import Block
from ..models.flatten import flatten
from ..models.model import Model
from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .data import ArrayData, as_data
from .metrics import Metric
from .optim.base import Optimizer
from .state import TrainState
from .step import LOSS_OUTPUT, TrainingStep, compile_step


@dataclass
class History:
    """What ``fit`` returns: per epoch, the mean loss and metrics (``val_*`` with validation data) and lr."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: list[int] = field(default_factory=list)

    def append(self, epoch: int, logs: Mapping[str, float]) -> None:
        self.epochs.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]


class Trainer:
    """Train a logical model on any backend with one compiled step per batch shape.

    ``Trainer(model, backend, loss=CrossEntropyLoss(), optimizer=AdamW(1e-3), metrics=["accuracy"])``;
    ``fit`` takes NumPy or backend arrays (a dict of them for several inputs) and targets,
    or an iterable of batch dicts. Shapes come from the data unless given (``shapes=``).
    ``params`` starts training from given weights; otherwise they are drawn with ``seed``.
    """

    def __init__(
        self,
        model: Block,
        backend: Backend,
        *,
        loss: Block | None,
        optimizer: Optimizer,
        metrics: Iterable[str | Metric] = (),
        shapes: Mapping[str, Sequence[int | None]] | None = None,
        jit: bool = False,
        prediction: str | None = None,
        target: str = "target",
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
        gradient_checkpointing: bool = False,
        sharding: Any = None,
        precision: Any = None,
        loss_scale: float | None = None,
    ) -> None:
        self.backend = backend
        self._spec = dict(
            model=model,
            backend=backend,
            loss=loss,
            optimizer=optimizer,
            metrics=tuple(metrics),
            prediction=prediction,
            target=target,
            jit=jit,
            gradient_checkpointing=gradient_checkpointing,
            sharding=sharding,
            precision=precision,
            loss_scale=loss_scale,
        )
        self._params = params
        self.seed = seed
        self.stop_training = False
        self._told: set[str] = set()  # padding refusals already warned about
        self._step: TrainingStep | None = None
        self.state: TrainState | None = None
        if shapes is not None:
            self._build(shapes)

    # --------------------------------------------------------------- setup
    def _build(self, shapes: Mapping[str, Sequence[int | None]]) -> TrainingStep:
        if self._step is None:
            self._step = compile_step(shapes=shapes, **self._spec)
            self.state = self._step.init(self._params, seed=self.seed)
        return self._step

    @property
    def step(self) -> TrainingStep:
        """The compiled training step (after the first ``fit``, or at once when ``shapes`` were given)."""
        if self._step is None:
            raise TrainingError("the training step is compiled on first use: call fit, or give shapes=")
        return self._step

    def _data(self, x: Any, y: Any) -> Any:
        step = self._step
        if step is not None:
            return as_data(x, y, self.backend, inputs=list(step.input_keys), target=step.target)
        target = self._spec["target"] if self._spec["loss"] is not None else None
        names = _data_inputs(self._spec["model"])
        data = as_data(x, y, self.backend, inputs=names + ([target] if target else []), target=target)
        if not isinstance(data, ArrayData):
            raise TrainingError(
                "with batches from an iterable, give shapes= to the Trainer (the step is compiled "
                "before the first batch is read)"
            )
        self._build(data.feature_shapes())
        return data

    @property
    def params(self) -> dict[str, Any]:
        """The current parameters and model state (backend arrays)."""
        if self.state is None:
            raise TrainingError("nothing is trained yet")
        return self.state.params

    def params_numpy(self) -> dict[str, np.ndarray]:
        return {k: self.backend.to_numpy(v) for k, v in self.params.items()}

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Replace the parameters, keeping the optimizer state."""
        assert self.state is not None
        fresh = self.step.init({k: v if self.backend.is_array(v) else self.backend.array(v) for k, v in params.items()})
        self.state = TrainState(fresh.params, self.state.optimizer, self.state.step, self.state.seed)

    # ----------------------------------------------------------------- fit
    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data: Any = None,
        shuffle: bool = True,
        callbacks: Sequence[Callback] = (),
        verbose: bool | str = "auto",
        on_nonfinite: str = "raise",
        drop_remainder: bool = False,
        pad_remainder: bool | None = None,
    ) -> History:
        """Train for ``epochs`` over the data; returns the :class:`History`.

        ``validation_data``: ``(x, y)`` or an iterable of batch dicts, evaluated after each epoch.
        ``shuffle`` permutes array data every epoch (from the trainer's ``seed`` and the epoch).
        ``verbose``: a progress bar (``"auto"``: only on a terminal). ``on_nonfinite``: ``"raise"``
        a :class:`~mithril.errors.TrainingError` naming the step, or ``"stop"`` training.
        ``drop_remainder``: skip the last, smaller batch of array data (no second compile for its shape).
        ``pad_remainder``: pad that batch to ``batch_size`` instead, its padded rows weighing nothing
        (loss, metrics and gradients those of the real rows), so one compiled step serves every batch;
        ``None`` (default): where the step is jit-compiled and padding is exact
        (:meth:`TrainingStep.padding_refusal`), else the last batch compiles for its own shape.
        """
        _positive("epochs", epochs)
        _positive("batch_size", batch_size)
        if on_nonfinite not in ("raise", "stop"):
            raise TrainingError(f"on_nonfinite must be 'raise' or 'stop', got {on_nonfinite!r}")
        data = self._data(x, y)
        step = self.step
        pad = not drop_remainder and self._pads(data, batch_size, pad_remainder, training=True)
        val = self._validation(validation_data)
        history = History()
        self.stop_training = False
        for cb in callbacks:
            cb.trainer = self
            cb.on_train_begin()
        bar_factory = _progress(verbose)
        for epoch in range(epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            sums: dict[str, float] = {}
            count = 0
            lr = math.nan
            bar = bar_factory(total=data.n_batches(batch_size, drop_remainder), desc=f"epoch {epoch + 1}/{epochs}")
            for batch, n in data.sized_batches(
                batch_size, shuffle=shuffle, seed=self.seed * 1_000_003 + epoch, drop_remainder=drop_remainder, pad=pad
            ):
                assert self.state is not None
                result = step(self.state, batch, rows=n if pad else None)
                self.state = result.state
                loss = float(self.backend.to_numpy(result.loss))
                lr = float(self.backend.to_numpy(result.lr))
                if not math.isfinite(loss):
                    msg = f"the loss is {loss} at step {self.state.step} (epoch {epoch + 1}, batch of {n})"
                    if on_nonfinite == "raise":
                        bar.close()
                        raise TrainingError(msg + "; lower the learning rate or clip gradients (clip_norm=...)")
                    self.stop_training = True
                    break
                values = {LOSS_OUTPUT: loss, **{k: float(self.backend.to_numpy(v)) for k, v in result.metrics.items()}}
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v * n
                count += n
                bar.update(1)
                bar.set_postfix(loss=f"{sums[LOSS_OUTPUT] / count:.4g}")
                for cb in callbacks:
                    cb.on_batch_end(self.state.step, {**values, "lr": lr})
            logs = {k: v / count for k, v in sums.items()} if count else {}
            logs["lr"] = lr
            if val is not None and count:
                logs.update({f"val_{k}": v for k, v in self._evaluate_data(val, batch_size, pad_remainder).items()})
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k != "lr"})
            bar.close()
            history.append(epoch, logs)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
        return history

    def _validation(self, validation_data: Any) -> Any:
        if validation_data is None:
            return None
        if isinstance(validation_data, tuple) and len(validation_data) == 2:
            return as_data(
                validation_data[0],
                validation_data[1],
                self.backend,
                inputs=list(self.step.input_keys),
                target=self.step.target,
            )
        return as_data(validation_data, None, self.backend, inputs=list(self.step.input_keys), target=self.step.target)

    # ------------------------------------------------- evaluate and predict
    def evaluate(
        self, x: Any, y: Any = None, *, batch_size: int = 32, pad_remainder: bool | None = None
    ) -> dict[str, float]:
        """The mean loss and metrics over the data, in inference mode (no update); ``pad_remainder``
        as for :meth:`fit`."""
        _positive("batch_size", batch_size)
        return self._evaluate_data(self._data(x, y), batch_size, pad_remainder)

    def _evaluate_data(self, data: Any, batch_size: int, pad_remainder: bool | None = None) -> dict[str, float]:
        sums: dict[str, float] = {}
        count = 0
        pad = self._pads(data, batch_size, pad_remainder, training=False)
        for batch, n in data.sized_batches(batch_size, shuffle=False, seed=None, pad=pad):
            for k, v in self.step.evaluate(self.params, batch, rows=n if pad else None).items():
                sums[k] = sums.get(k, 0.0) + float(self.backend.to_numpy(v)) * n
            count += n
        return {k: v / count for k, v in sums.items()}

    def _pads(self, data: Any, batch_size: int, requested: bool | None, *, training: bool) -> bool:
        """Whether to pad the last, smaller batch of ``data`` (see ``fit``'s ``pad_remainder``)."""
        if requested is not None and not isinstance(requested, bool):
            raise TrainingError(f"pad_remainder must be True, False or None, got {requested!r}")
        if not isinstance(data, ArrayData) or data.size <= batch_size or data.size % batch_size == 0:
            return False  # one shape only: nothing to pad
        if requested is False or (requested is None and not self.step.options.jit):
            return False
        why = self.step.padding_refusal(data.batch_shapes(batch_size), training=training)
        if why is not None and requested and why not in self._told:
            self._told.add(why)
            warnings.warn(
                f"pad_remainder=True: padding would not be exact ({why}); the last batch is compiled for its own shape",
                RecompileWarning,
                stacklevel=3,
            )
        return why is None

    def predict(self, x: Any, *, batch_size: int = 32) -> dict[str, np.ndarray]:
        """The model's outputs (NumPy, by output name) in inference mode, without targets."""
        _positive("batch_size", batch_size)
        step = self.step
        names = list(step.inference_model.input_keys)
        data = as_data(x, None, self.backend, inputs=names, target=None)
        if not isinstance(data, ArrayData):
            raise TrainingError("predict takes arrays (or a dict of them), not an iterable of batches")
        parts: dict[str, list[np.ndarray]] = {}
        for batch in data.batches(batch_size, shuffle=False, seed=None):
            for k, v in step.predict(self.params, batch).items():
                parts.setdefault(k, []).append(self.backend.to_numpy(v))
        return {k: np.concatenate(v) for k, v in parts.items()}

    # ----------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Params, optimizer state, step and seed to a safetensors file."""
        if self.state is None:
            raise TrainingError("nothing to save: the trainer has not started")
        save_checkpoint(path, self.state, self.step)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Continue from a checkpoint (written on any backend)."""
        self.state = load_checkpoint(path, self.step)


def _data_inputs(model: Block) -> list[str]:
    """The model's data inputs (not its parameters or state)."""
    if not isinstance(model, Model):
        wrapped = Model()
        wrapped |= model
        model = wrapped
    return list(flatten(model, training=True).graph.inputs)


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TrainingError(f"{name} must be a positive int, got {value!r}")


class _Quiet:
    def update(self, n: int) -> None: ...

    def set_postfix(self, *args: Any, **kwargs: Any) -> None: ...

    def close(self) -> None: ...


def _progress(verbose: bool | int | str) -> Any:  # 0 is accepted as False
    if verbose is False or verbose == 0:
        return lambda **kw: _Quiet()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of mithril
        return lambda **kw: _Quiet()
    disable = None if verbose == "auto" else False  # None: only on a terminal
    return lambda **kw: tqdm(disable=disable, leave=True, unit="batch", **kw)


__all__ = ["History", "Trainer"]
