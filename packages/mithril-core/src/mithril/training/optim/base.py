"""The optimizer protocol: update rules written in core primitives, with groups and clipping.

An :class:`Optimizer` appends its update to the training step's graph: per
parameter, ``update(p, g, slots, lr, t, h)`` returns the new parameter and the
new values of its state slots (Adam's ``m`` and ``v``), all as
:class:`~mithril.training.expr.X` expressions. The state is explicit named arrays
beside the parameters, ``"<optimizer>.<slot>.<param>"`` (``adamw.m.linear_0.weight``),
plus the step counter ``"<optimizer>.step"``.

Parameter groups (:class:`ParamGroup`) select parameters by name pattern and
override hyperparameters, as torch.optim's groups do; gradient clipping by value
and by global norm runs before the update, as ``torch.nn.utils.clip_grad_*_``.
"""

from __future__ import annotations

import fnmatch
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ...errors import ModelBuildError
from ..expr import X
from ..schedules import Schedule, as_schedule


@dataclass(frozen=True)
class ParamGroup:
    """Parameters whose name matches ``pattern`` (fnmatch: ``"*.bias"``, or a list of patterns) get
    these hyperparameters instead of the optimizer's: ``lr`` (a number or a
    :class:`~mithril.training.schedules.Schedule`), ``weight_decay`` and any other of the
    optimizer's options (``betas``, ``momentum``...). ``trainable=False`` freezes them.
    The first group that matches a parameter wins."""

    pattern: str | Sequence[str]
    options: Mapping[str, Any] = field(default_factory=dict)
    trainable: bool = True

    def __init__(self, pattern: str | Sequence[str], *, trainable: bool = True, **options: Any) -> None:
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "options", dict(options))
        object.__setattr__(self, "trainable", trainable)

    @property
    def patterns(self) -> tuple[str, ...]:
        return (self.pattern,) if isinstance(self.pattern, str) else tuple(self.pattern)

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)


@dataclass(frozen=True)
class Slot:
    """One array of per-parameter state, of the parameter's shape, filled with ``init``
    (a number, or the name of the option that holds it)."""

    name: str
    init: float | str = 0.0

    def initial(self, options: Mapping[str, Any]) -> float:
        return float(options[self.init]) if isinstance(self.init, str) else float(self.init)


#: per parameter: its schedule and options, or None when a group freezes it
Resolved = Mapping[str, "tuple[Schedule, dict[str, Any]] | None"]


class Optimizer:
    """Base class. Subclasses set :attr:`name`, :attr:`slots`, :attr:`defaults` and :meth:`update`."""

    #: prefix of the state names ("adamw")
    name: ClassVar[str] = ""
    #: per-parameter state arrays (see :meth:`slots_for`)
    slots: ClassVar[tuple[Slot, ...]] = ()
    #: hyperparameters other than lr and their defaults
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self,
        lr: float | Schedule = 1e-3,
        *,
        groups: Sequence[ParamGroup] = (),
        clip_norm: float | None = None,
        clip_value: float | None = None,
        **options: Any,
    ) -> None:
        cls = type(self).__name__
        self.lr = as_schedule(lr, cls)
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ModelBuildError(
                f"{cls}: unknown option(s) {unknown}; it takes lr, "
                f"{', '.join(self.defaults)}, groups, clip_norm, clip_value"
            )
        self.options = {**self.defaults, **options}
        self.validate(self.options, cls)
        for g in groups:
            if not isinstance(g, ParamGroup):
                raise ModelBuildError(f"{cls}: groups must be ParamGroup objects, got {type(g).__name__}")
            bad = sorted(set(g.options) - set(self.defaults) - {"lr"})
            if bad:
                raise ModelBuildError(f"{cls}: ParamGroup {g.pattern!r} sets unknown option(s) {bad}")
            self.validate(
                {**self.options, **{k: v for k, v in g.options.items() if k != "lr"}}, f"{cls} group {g.pattern!r}"
            )
            if "lr" in g.options:
                as_schedule(g.options["lr"], f"{cls} group {g.pattern!r}")
        self.groups = tuple(groups)
        for what, value in (("clip_norm", clip_norm), ("clip_value", clip_value)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0
            ):
                raise ModelBuildError(f"{cls}: {what} must be a positive number, got {value!r}")
        self.clip_norm = clip_norm
        self.clip_value = clip_value

    # ------------------------------------------------------------- options
    def validate(self, options: Mapping[str, Any], where: str) -> None:
        """Check hyperparameter values (raise :class:`ModelBuildError` naming ``where``)."""
        if "betas" in options:
            betas = options["betas"]
            if not (
                isinstance(betas, (tuple, list))
                and len(betas) == 2
                and all(isinstance(x, (int, float)) and 0.0 <= x < 1.0 for x in betas)
            ):
                raise ModelBuildError(f"{where}: betas must be two numbers in [0, 1), got {betas!r}")
        for k, v in options.items():
            default = self.defaults.get(k)
            if k == "betas":
                continue
            if isinstance(default, bool) and not isinstance(v, (bool, np.bool_)):
                raise ModelBuildError(f"{where}: {k} must be True or False, got {v!r}")
            if isinstance(v, (bool, np.bool_)):
                continue
            if isinstance(default, (int, float)) and not isinstance(v, numbers.Real):
                raise ModelBuildError(f"{where}: {k} must be a number, got {v!r}")
            if isinstance(v, numbers.Real) and (not math.isfinite(v) or v < 0):
                raise ModelBuildError(f"{where}: {k} must be a finite non-negative number, got {v!r}")

    def resolve(self, names: Sequence[str]) -> dict[str, tuple[Schedule, dict[str, Any]] | None]:
        """Per parameter: its schedule and options, or None when a group freezes it; a group that
        matches none of ``names`` is an error."""
        used = [False] * len(self.groups)
        out: dict[str, tuple[Schedule, dict[str, Any]] | None] = {}
        for name in names:
            for i, g in enumerate(self.groups):
                if g.matches(name):
                    used[i] = True
                    if not g.trainable:
                        out[name] = None
                    else:
                        opts = {**self.options, **{k: v for k, v in g.options.items() if k != "lr"}}
                        lr = as_schedule(g.options["lr"], type(self).__name__) if "lr" in g.options else self.lr
                        out[name] = (lr, opts)
                    break
            else:
                out[name] = (self.lr, dict(self.options))
        for g, u in zip(self.groups, used):
            if not u:
                raise ModelBuildError(
                    f"{type(self).__name__}: ParamGroup {g.pattern!r} matches no parameter; "
                    f"the parameters are {list(names)}"
                )
        return out

    def slots_for(self, h: Mapping[str, Any]) -> tuple[Slot, ...]:
        """The state arrays a parameter with options ``h`` needs (by default :attr:`slots`)."""
        return self.slots

    def state_layout(
        self, resolved: Resolved, shapes: Mapping[str, tuple[int, ...]]
    ) -> dict[str, tuple[tuple[int, ...], float]]:
        """Every state array but the step counter: key -> (shape, initial value)."""
        out: dict[str, tuple[tuple[int, ...], float]] = {}
        for name, spec in resolved.items():
            if spec is not None:
                for slot in self.slots_for(spec[1]):
                    out[self.slot_key(slot.name, name)] = (tuple(shapes[name]), slot.initial(spec[1]))
        return out

    def slot_key(self, slot: str, param: str) -> str:
        return f"{self.name}.{slot}.{param}"

    @property
    def step_key(self) -> str:
        return f"{self.name}.step"

    # ------------------------------------------------------------- the rule
    def update(self, p: X, g: X, slots: dict[str, X], lr: X, t: X, h: Mapping[str, Any]) -> tuple[X, dict[str, X]]:
        """The new parameter and slots; ``t`` is the 1-based step number (a float), ``h`` the options."""
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(lr={self.lr!r}, {opts})"


__all__ = ["Optimizer", "ParamGroup", "Resolved", "Slot"]
