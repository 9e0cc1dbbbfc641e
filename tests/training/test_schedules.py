"""Oracle tests of the learning-rate schedules (issue 15) against torch.optim.lr_scheduler.

Each case trains the MLP of ``oracle.py`` with a scheduled optimizer for >= 100 steps, in
float64, on every installed backend, and checks the ``lr`` each step returns
(``StepResult.lr``) against ``scheduler.get_last_lr()`` read before that step's
``optimizer.step()`` (then ``scheduler.step()``), and the trajectory (the loss at every step
and the final params) to 1e-10 relative.

Conventions: a mithril schedule maps the number of updates already made to the rate, so
step ``t`` (0-based) uses torch's rate after ``t`` calls of ``scheduler.step()``. torch's
chainable schedulers update the rate recursively (``lr *= gamma``...), mithril evaluates the
closed form: equal up to rounding. ``CosineAnnealingLR`` is periodic past ``T_max``;
``Cosine`` stays at ``min_lr``, so that case stops at ``T_max``. torch's ``LinearLR`` needs
``start_factor > 0`` and ``Cosine``'s warmup starts from 0, so the warmup cosine's torch oracle
is a ``LambdaLR`` (and the rates are also checked against ``optax.warmup_cosine_decay_schedule``).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mithril.errors import ModelBuildError
from mithril.training import optim
from mithril.training.optim import ParamGroup
from mithril.training.schedules import Constant, Cosine, Exponential, LinearWarmup, OneCycle, StepDecay

torch = pytest.importorskip("torch")


def _load_oracle() -> Any:
    name = "mithril_tests_training_oracle"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("oracle.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


ORACLE = _load_oracle()
NAMES = ORACLE.NAMES
BACKENDS = ORACLE.BACKENDS
single_torch_thread = pytest.fixture(scope="module", autouse=True)(ORACLE.single_torch_thread)
S = torch.optim.lr_scheduler


def _sgd(lr: float) -> Callable[[dict[str, Any]], Any]:
    return lambda p: torch.optim.SGD([p[k] for k in NAMES], lr=lr, momentum=0.9)


def _warmup_cosine(t: int, lr: float = 0.1, warmup: int = 20, total: int = 90, min_lr: float = 0.01) -> float:
    """The factor of a linear warmup from 0, then a cosine to min_lr, flat after ``total``."""
    if t < warmup:
        return t / warmup
    progress = min(1.0, (t - warmup) / (total - warmup))
    return (min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))) / lr


# case -> (mithril optimizer factory, torch optimizer factory, torch scheduler factory, steps)
CASES: dict[str, tuple[Callable[[], Any], Callable[[dict[str, Any]], Any], Callable[[Any], Any], int]] = {
    "step": (
        lambda: optim.SGD(lr=StepDecay(0.1, step_size=15, gamma=0.5), momentum=0.9),
        _sgd(0.1),
        lambda o: S.StepLR(o, step_size=15, gamma=0.5),
        100,
    ),
    "exponential": (
        lambda: optim.SGD(lr=Exponential(0.2, gamma=0.97), momentum=0.9),
        _sgd(0.2),
        lambda o: S.ExponentialLR(o, gamma=0.97),
        100,
    ),
    "linear_warmup": (
        lambda: optim.SGD(lr=LinearWarmup(0.1, warmup_steps=40, start_factor=0.1), momentum=0.9),
        _sgd(0.1),
        lambda o: S.LinearLR(o, start_factor=0.1, total_iters=40),
        100,
    ),
    "linear_warmup-default": (
        lambda: optim.SGD(lr=LinearWarmup(0.1, warmup_steps=25), momentum=0.9),
        _sgd(0.1),
        lambda o: S.LinearLR(o, total_iters=25),
        100,
    ),  # start 1/3, as torch
    # up to T_max (torch's cosine is periodic past it, Cosine stays at min_lr)
    "cosine": (
        lambda: optim.SGD(lr=Cosine(0.1, total_steps=100, min_lr=0.005), momentum=0.9),
        _sgd(0.1),
        lambda o: S.CosineAnnealingLR(o, T_max=100, eta_min=0.005),
        101,
    ),
    "cosine-adam": (
        lambda: optim.Adam(lr=Cosine(0.02, total_steps=100)),
        lambda p: torch.optim.Adam([p[k] for k in NAMES], lr=0.02),
        lambda o: S.CosineAnnealingLR(o, T_max=100),
        100,
    ),
    # past total_steps: flat at min_lr
    "cosine-warmup": (
        lambda: optim.SGD(lr=Cosine(0.1, total_steps=90, warmup_steps=20, min_lr=0.01), momentum=0.9),
        _sgd(0.1),
        lambda o: S.LambdaLR(o, _warmup_cosine),
        100,
    ),
    "onecycle": (
        lambda: optim.AdamW(lr=OneCycle(0.05, total_steps=100), weight_decay=0.05),
        lambda p: torch.optim.AdamW([p[k] for k in NAMES], lr=1.0, weight_decay=0.05),
        lambda o: S.OneCycleLR(
            o, max_lr=0.05, total_steps=100, anneal_strategy="cos", cycle_momentum=False, three_phase=False
        ),
        100,
    ),
    # pct_start * total_steps - 1 = 24 is a step: the phases meet exactly there
    "onecycle-options": (
        lambda: optim.SGD(
            lr=OneCycle(0.2, total_steps=100, pct_start=0.25, div_factor=10.0, final_div_factor=100.0), momentum=0.9
        ),
        _sgd(1.0),
        lambda o: S.OneCycleLR(
            o,
            max_lr=0.2,
            total_steps=100,
            pct_start=0.25,
            div_factor=10.0,
            final_div_factor=100.0,
            anneal_strategy="cos",
            cycle_momentum=False,
            three_phase=False,
        ),
        100,
    ),
    # a group with its own schedule (the step reports the default schedule's rate: group 0 here)
    "group-schedule": (
        lambda: optim.SGD(
            lr=Exponential(0.1, gamma=0.98),
            momentum=0.9,
            groups=[
                ParamGroup("*.bias", lr=StepDecay(0.3, step_size=10, gamma=0.7)),
                ParamGroup("linear_1.weight", lr=0.02),
            ],
        ),
        lambda p: torch.optim.SGD(
            [
                {"params": [p["linear_0.weight"]]},
                {"params": [p["linear_0.bias"], p["linear_1.bias"]], "lr": 0.3},
                {"params": [p["linear_1.weight"]], "lr": 0.02},
            ],
            lr=0.1,
            momentum=0.9,
        ),
        lambda o: S.LambdaLR(o, [lambda t: 0.98**t, lambda t: 0.7 ** (t // 10), lambda t: 1.0]),
        100,
    ),
}


@functools.cache
def _reference(case: str) -> Any:
    _, make_optimizer, make_scheduler, steps = CASES[case]
    return ORACLE.torch_trajectory(make_optimizer, make_scheduler=make_scheduler, steps=steps)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_schedule_vs_torch(case: str, backend: str) -> None:
    make, _, _, steps = CASES[case]
    assert steps >= 100
    want = _reference(case)
    got = ORACLE.mithril_trajectory(make(), backend, steps=steps)
    ORACLE.assert_same(got, want)  # StepResult.lr == scheduler.get_last_lr()[0] at every step, and the trajectory
    assert np.ptp(want.lrs) > 0.5 * np.max(want.lrs)  # the rate really moved


def test_schedule_shapes() -> None:
    """Landmarks of the torch oracles' rates, so the cases test what they say."""
    step = _reference("step").lrs
    assert step[14] == 0.1 and step[15] == 0.05 and step[30] == 0.025
    warm = _reference("linear_warmup").lrs
    assert np.isclose(warm[0], 0.01) and np.isclose(warm[40], 0.1) and np.all(warm[40:] == warm[40])
    cos = _reference("cosine").lrs
    assert np.isclose(cos[0], 0.1) and np.isclose(cos[50], 0.0525) and np.isclose(cos[100], 0.005)
    wc = _reference("cosine-warmup").lrs
    assert wc[0] == 0.0 and np.isclose(wc[20], 0.1) and np.allclose(wc[90:], 0.01)
    one = _reference("onecycle-options").lrs
    assert np.isclose(one[0], 0.02) and np.isclose(one[24], 0.2) and np.isclose(one[99], 0.0002)
    assert np.argmax(one) == 24


def test_warmup_cosine_vs_optax() -> None:
    """Cosine with warmup against optax's warmup_cosine_decay_schedule (decay_steps includes the warmup)."""
    optax = pytest.importorskip("optax")
    pytest.importorskip("mithril_jax")
    from mithril_jax.x64 import x64_context

    with x64_context():
        sched = optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=0.1, warmup_steps=20, decay_steps=90, end_value=0.01
        )
        want = np.array([float(sched(t)) for t in range(100)])
    np.testing.assert_allclose(_reference("cosine-warmup").lrs, want, rtol=1e-12, atol=1e-15)
    got = ORACLE.mithril_trajectory(CASES["cosine-warmup"][0](), "numpy", steps=100)
    np.testing.assert_allclose(got.lrs, want, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: StepDecay(0.1, step_size=0), "StepDecay: step_size must be a positive number, got 0"),
        (lambda: StepDecay(-0.1, step_size=3), "StepDecay: lr must be a positive number, got -0.1"),
        (lambda: StepDecay(0.1, step_size=3, gamma=0.0), "StepDecay: gamma must be a positive number, got 0.0"),
        (lambda: Exponential(float("inf"), gamma=0.9), "Exponential: lr must be a positive number, got inf"),
        (lambda: Exponential(0.1, gamma=float("nan")), "Exponential: gamma must be a positive number, got nan"),
        (lambda: Exponential(0.1, gamma="0.9"), "Exponential: gamma must be a positive number, got '0.9'"),
        (lambda: LinearWarmup(0.1, warmup_steps=0), "LinearWarmup: warmup_steps must be a positive number, got 0"),
        (
            lambda: LinearWarmup(0.1, warmup_steps=5, start_factor=1.5),
            r"LinearWarmup: start_factor must be in \[0, 1\]",
        ),
        (
            lambda: Cosine(0.1, total_steps=100, warmup_steps=100),
            r"Cosine: warmup_steps must be in \[0, total_steps=100\), got 100",
        ),
        (lambda: Cosine(0.1, total_steps=100, warmup_steps=-1), r"Cosine: warmup_steps must be in \[0, total_steps"),
        (lambda: Cosine(0.1, total_steps=100, min_lr=0.2), r"Cosine: min_lr must be in \[0, lr=0.1\], got 0.2"),
        (lambda: Cosine(0.1, total_steps=True), "Cosine: total_steps must be a positive number, got True"),
        (lambda: OneCycle(0.1, total_steps=100, pct_start=1.0), r"OneCycle: pct_start must be in \(0, 1\), got 1.0"),
        (lambda: OneCycle(0.1, total_steps=3, pct_start=0.3), "OneCycle: pct_start \\* total_steps must exceed 1"),
        (lambda: OneCycle(0.1, total_steps=100, div_factor=0), "OneCycle: div_factor must be a positive number, got 0"),
        (lambda: Constant(-0.5), "Constant: lr must be a non-negative number, got -0.5"),
        (lambda: Constant(float("nan")), "Constant: lr must be a non-negative number, got nan"),
    ],
)
def test_bad_schedule(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ModelBuildError, match=message):
        make()


def test_schedule_is_not_a_number() -> None:
    with pytest.raises(ModelBuildError, match="SGD: lr must be a non-negative number or a Schedule, got <function"):
        optim.SGD(lr=lambda t: 0.1)  # a callable is not a mithril Schedule
