"""What a training step reads and returns: :class:`TrainState` and :class:`StepResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainState:
    """Everything a training run carries from one step to the next.

    ``params``: parameters and model state (BatchNorm's running statistics), the dict
    :meth:`PhysicalModel.evaluate` takes; ``optimizer``: the optimizer's named state
    arrays and its step counter; ``step``: updates made so far; ``seed``: the seed that,
    with ``step``, fixes every random draw of a step (Dropout), so a resumed run repeats
    an uninterrupted one. A step consumes the state it is given (JAX donates its buffers):
    keep the returned one.
    """

    params: dict[str, Any]
    optimizer: dict[str, Any]
    step: int = 0
    seed: int = 0


@dataclass(frozen=True)
class StepResult:
    """One training step's result: the new state, the loss, the metrics and the learning rate used.

    ``loss``, the metrics' values and ``lr`` are backend scalars (no host sync until read).
    """

    state: TrainState
    loss: Any
    metrics: dict[str, Any] = field(default_factory=dict)
    lr: Any = None


__all__ = ["StepResult", "TrainState"]
