"""Oracle tests of the optimizers (issue 15): every optimizer, step by step, against torch.optim
(and optax for Adam, AdamW, SGD with momentum and Lion), in float64, on every installed backend.

Each case trains the same small MLP on the same fixed batches from the same initial weights
(see ``oracle.py``) for ``STEPS`` steps and compares the loss at every step and the params at
the end to 1e-10 relative. The reference trajectories are computed once per case and shared
by the backends; the mithril step is compiled once per test.

Conventions checked against optax (and where they differ):

* ``optax.adam`` / ``optax.adamw``: the same algorithm. optax's denominator is
  ``sqrt(v̂ + eps_root) + eps`` with ``eps_root=0`` (torch: ``sqrt(v) / sqrt(1 - b2^t) + eps``,
  mithril: ``sqrt(v / (1 - b2^t)) + eps``): equal up to rounding. optax.adamw's decay
  ``-lr (adam + wd p)`` is torch's and mithril's ``p (1 - lr wd) - lr adam``; optax.adamw's default
  weight_decay is 1e-4 (mithril's AdamW: 1e-2), so it is always given explicitly.
* ``optax.sgd(momentum=mu)`` keeps ``trace = g + mu trace`` from zeros, which is torch's
  ``buf = g`` at the first step then ``buf = mu buf + g``, i.e. mithril's SGD with dampening 0;
  optax has no dampening. Nesterov: ``g + mu trace`` in both. optax.sgd has no weight decay:
  torch's (L2 added to the gradient) is ``optax.chain(optax.add_decayed_weights(wd), optax.sgd(...))``.
* ``optax.amsgrad`` keeps the maximum of the *bias-corrected* ``v̂`` (torch and mithril: the
  maximum of the raw ``v``, bias-corrected after), a different algorithm: amsgrad is checked
  against torch only.
* ``optax.lion``: ``p - lr (sign(b1 m + (1 - b1) g) + wd p)`` with ``m = b2 m + (1 - b2) g`` after,
  the same rule as mithril's Lion (the weight decay uses the old ``p`` and scales with lr in both).
  optax's default weight_decay is 1e-3 (mithril's: 0) and optax can ``mask`` the decay (mithril
  uses ``ParamGroup(..., weight_decay=0.0)`` for that); optax's sign(0) is 0, as mithril's.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mithril.errors import ModelBuildError
from mithril.models import CrossEntropyLoss
from mithril.training import compile_step, optim
from mithril.training.optim import ParamGroup

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


def _all(p: dict[str, Any]) -> list[Any]:
    return [p[k] for k in NAMES]


# case -> (mithril optimizer factory, torch.optim factory on the params by name)
TORCH_CASES: dict[str, tuple[Callable[[], Any], Callable[[dict[str, Any]], Any]]] = {
    "sgd": (lambda: optim.SGD(lr=0.1), lambda p: torch.optim.SGD(_all(p), lr=0.1)),
    "sgd-weight_decay": (
        lambda: optim.SGD(lr=0.1, weight_decay=0.05),
        lambda p: torch.optim.SGD(_all(p), lr=0.1, weight_decay=0.05),
    ),
    "sgd-momentum": (
        lambda: optim.SGD(lr=0.05, momentum=0.9),
        lambda p: torch.optim.SGD(_all(p), lr=0.05, momentum=0.9),
    ),
    "sgd-dampening": (
        lambda: optim.SGD(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
        lambda p: torch.optim.SGD(_all(p), lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
    ),
    "sgd-nesterov": (
        lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02),
        lambda p: torch.optim.SGD(_all(p), lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02),
    ),
    "adam": (lambda: optim.Adam(lr=1e-2), lambda p: torch.optim.Adam(_all(p), lr=1e-2)),
    "adam-weight_decay": (
        lambda: optim.Adam(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        lambda p: torch.optim.Adam(_all(p), lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    ),
    "adam-amsgrad": (
        lambda: optim.Adam(lr=2e-2, betas=(0.9, 0.95), amsgrad=True, weight_decay=0.01),
        lambda p: torch.optim.Adam(_all(p), lr=2e-2, betas=(0.9, 0.95), amsgrad=True, weight_decay=0.01),
    ),
    "adamw": (
        lambda: optim.AdamW(lr=1e-2, weight_decay=0.1),
        lambda p: torch.optim.AdamW(_all(p), lr=1e-2, weight_decay=0.1),
    ),
    "adamw-default": (
        lambda: optim.AdamW(),  # defaults: lr 1e-3, wd 1e-2 as torch's
        lambda p: torch.optim.AdamW(_all(p)),
    ),
    "adamw-amsgrad": (
        lambda: optim.AdamW(lr=2e-2, weight_decay=0.5, amsgrad=True),
        lambda p: torch.optim.AdamW(_all(p), lr=2e-2, weight_decay=0.5, amsgrad=True),
    ),
    "rmsprop": (lambda: optim.RMSprop(lr=1e-2), lambda p: torch.optim.RMSprop(_all(p), lr=1e-2)),
    "rmsprop-centered": (
        lambda: optim.RMSprop(lr=5e-3, alpha=0.9, centered=True),
        lambda p: torch.optim.RMSprop(_all(p), lr=5e-3, alpha=0.9, centered=True),
    ),
    "rmsprop-momentum": (
        lambda: optim.RMSprop(lr=2e-3, momentum=0.9, weight_decay=0.05),
        lambda p: torch.optim.RMSprop(_all(p), lr=2e-3, momentum=0.9, weight_decay=0.05),
    ),
    "rmsprop-centered-momentum": (
        lambda: optim.RMSprop(lr=2e-3, alpha=0.95, eps=1e-6, centered=True, momentum=0.7, weight_decay=0.02),
        lambda p: torch.optim.RMSprop(
            _all(p), lr=2e-3, alpha=0.95, eps=1e-6, centered=True, momentum=0.7, weight_decay=0.02
        ),
    ),
    "adagrad": (lambda: optim.Adagrad(lr=5e-2), lambda p: torch.optim.Adagrad(_all(p), lr=5e-2)),
    "adagrad-options": (
        lambda: optim.Adagrad(lr=1e-1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1, eps=1e-8),
        lambda p: torch.optim.Adagrad(
            _all(p), lr=1e-1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1, eps=1e-8
        ),
    ),
}


def _optax() -> Any:
    return pytest.importorskip("optax")


# case -> (mithril optimizer factory, or the torch case whose run is the same; optax transform factory);
# see the module docstring
OPTAX_CASES: dict[str, tuple[str | Callable[[], Any], Callable[[], Any]]] = {
    "adam": ("adam", lambda: _optax().adam(1e-2)),
    "adamw": ("adamw", lambda: _optax().adamw(1e-2, weight_decay=0.1)),
    "sgd-momentum": ("sgd-momentum", lambda: _optax().sgd(0.05, momentum=0.9)),
    "sgd-nesterov-weight_decay": (  # SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02)
        "sgd-nesterov",
        lambda: _optax().chain(_optax().add_decayed_weights(0.02), _optax().sgd(0.05, momentum=0.9, nesterov=True)),
    ),
    "lion": (lambda: optim.Lion(lr=1e-3), lambda: _optax().lion(1e-3, weight_decay=0.0)),
    "lion-options": (
        lambda: optim.Lion(lr=2e-3, betas=(0.95, 0.98), weight_decay=0.5),
        lambda: _optax().lion(2e-3, b1=0.95, b2=0.98, weight_decay=0.5),
    ),
}
#: on one backend only: the defaults (backend-independent), and plain cases whose code paths a
#: case with more options runs on every backend (sgd: sgd-weight_decay; rmsprop-centered:
#: rmsprop-centered-momentum; adagrad: adagrad-options), to keep the JAX eager runs few
ONE_BACKEND = {"adamw-default", "sgd", "rmsprop-centered", "adagrad"}
FIRST_BACKEND = ["numpy"] if "numpy" in BACKENDS else BACKENDS[:1]


@functools.cache
def _torch_reference(case: str) -> Any:
    return ORACLE.torch_trajectory(TORCH_CASES[case][1])


@functools.cache
def _optax_reference(case: str) -> Any:
    return ORACLE.optax_trajectory(OPTAX_CASES[case][1])


@functools.cache
def _mithril(case: str, backend: str, jit: bool = False) -> Any:
    """One mithril run per (optimizer, backend): a torch case's, or an optax-only case's (Lion)."""
    factory = TORCH_CASES[case][0] if case in TORCH_CASES else OPTAX_CASES[case][0]
    assert callable(factory)
    return ORACLE.mithril_trajectory(factory(), backend, jit=jit)


def _torch_params() -> list[Any]:
    return [
        pytest.param(case, backend, id=f"{case}-{backend}")
        for case in sorted(TORCH_CASES)
        for backend in BACKENDS
        if backend in FIRST_BACKEND or case not in ONE_BACKEND
    ]


# ------------------------------------------------------------------ optimizers vs torch.optim
@pytest.mark.parametrize("case, backend", _torch_params())
def test_optimizer_vs_torch(case: str, backend: str) -> None:
    want = _torch_reference(case)
    ORACLE.assert_same(_mithril(case, backend), want)


# ------------------------------------------------------------------------ optimizers vs optax
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(OPTAX_CASES))
def test_optimizer_vs_optax(case: str, backend: str) -> None:
    pytest.importorskip("jax")
    pytest.importorskip("mithril_jax")
    want = _optax_reference(case)
    run = OPTAX_CASES[case][0]
    ORACLE.assert_same(_mithril(run if isinstance(run, str) else case, backend), want, lrs=False)


def test_optax_and_torch_oracles_agree() -> None:
    """The two oracles agree with each other where the algorithm is the same (guards the harness)."""
    pytest.importorskip("mithril_jax")
    for case in ("adam", "adamw", "sgd-momentum"):
        ORACLE.assert_same(_optax_reference(case), _torch_reference(case), lrs=False)
    ORACLE.assert_same(_optax_reference("sgd-nesterov-weight_decay"), _torch_reference("sgd-nesterov"), lrs=False)


# ---------------------------------------------------------------------------- jit=True
JIT_BACKENDS = [b for b in ("jax", "torch") if b in BACKENDS]


@pytest.mark.parametrize("backend", JIT_BACKENDS)
@pytest.mark.parametrize("case", ["adamw", "sgd-momentum"])
def test_optimizer_jit(case: str, backend: str) -> None:
    ORACLE.assert_same(_mithril(case, backend, jit=True), _torch_reference(case))  # as eager: 1e-10


# -------------------------------------------------------------------- parameter groups
def _groups_torch(p: dict[str, Any]) -> Any:
    return torch.optim.AdamW(
        [
            {"params": [p["linear_1.weight"]]},
            {"params": [p["linear_0.bias"], p["linear_1.bias"]], "weight_decay": 0.0},
            {"params": [p["linear_0.weight"]], "lr": 3e-2, "betas": (0.8, 0.9)},
        ],
        lr=1e-2,
        weight_decay=0.2,
    )


GROUP_CASES: dict[str, tuple[Callable[[], Any], dict[str, Any]]] = {
    # no weight decay on biases, a group with its own lr and betas
    "adamw-groups": (
        lambda: optim.AdamW(
            lr=1e-2,
            weight_decay=0.2,
            groups=[ParamGroup("*.bias", weight_decay=0.0), ParamGroup("linear_0.weight", lr=3e-2, betas=(0.8, 0.9))],
        ),
        {"make_optimizer": _groups_torch},
    ),
    # a frozen group; the first matching group wins (linear_0.bias is frozen, not decay-free)
    "sgd-frozen": (
        lambda: optim.SGD(
            lr=0.05,
            momentum=0.9,
            weight_decay=0.05,
            groups=[ParamGroup(["linear_0.*"], trainable=False), ParamGroup("*.bias", weight_decay=0.0, momentum=0.0)],
        ),
        {
            "make_optimizer": lambda p: torch.optim.SGD(
                [
                    {"params": [p["linear_1.weight"]]},
                    {"params": [p["linear_1.bias"]], "weight_decay": 0.0, "momentum": 0.0},
                ],
                lr=0.05,
                momentum=0.9,
                weight_decay=0.05,
            ),
            "frozen": ("linear_0.weight", "linear_0.bias"),
        },
    ),
    # clipping by global norm (active at some steps, not at others: see the test)
    "adam-clip_norm": (
        lambda: optim.Adam(lr=1e-2, clip_norm=0.8),
        {"make_optimizer": lambda p: torch.optim.Adam(_all(p), lr=1e-2), "clip_norm": 0.8},
    ),
    "sgd-clip_norm": (
        lambda: optim.SGD(lr=0.1, momentum=0.5, clip_norm=0.8),
        {"make_optimizer": lambda p: torch.optim.SGD(_all(p), lr=0.1, momentum=0.5), "clip_norm": 0.8},
    ),
    # clipping by value
    "sgd-clip_value": (
        lambda: optim.SGD(lr=0.1, momentum=0.9, nesterov=True, clip_value=0.05),
        {"make_optimizer": lambda p: torch.optim.SGD(_all(p), lr=0.1, momentum=0.9, nesterov=True), "clip_value": 0.05},
    ),
    "rmsprop-clip_value": (
        lambda: optim.RMSprop(lr=5e-3, centered=True, clip_value=0.02),
        {"make_optimizer": lambda p: torch.optim.RMSprop(_all(p), lr=5e-3, centered=True), "clip_value": 0.02},
    ),
    # both (value first, then norm), over the trainable params only, with groups
    "adamw-clip-groups": (
        lambda: optim.AdamW(
            lr=1e-2,
            weight_decay=0.1,
            clip_value=0.1,
            clip_norm=0.45,
            groups=[ParamGroup("linear_1.bias", trainable=False), ParamGroup("*.bias", weight_decay=0.0)],
        ),
        {
            "make_optimizer": lambda p: torch.optim.AdamW(
                [
                    {"params": [p["linear_0.weight"], p["linear_1.weight"]]},
                    {"params": [p["linear_0.bias"]], "weight_decay": 0.0},
                ],
                lr=1e-2,
                weight_decay=0.1,
            ),
            "frozen": ("linear_1.bias",),
            "clip_value": 0.1,
            "clip_norm": 0.45,
        },
    ),
}


@functools.cache
def _group_reference(case: str) -> Any:
    return ORACLE.torch_trajectory(**GROUP_CASES[case][1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(GROUP_CASES))
def test_groups_and_clipping_vs_torch(case: str, backend: str) -> None:
    make, spec = GROUP_CASES[case]
    want = _group_reference(case)
    got = ORACLE.mithril_trajectory(make(), backend)
    ORACLE.assert_same(got, want)  # with clip_norm, also the reported grad_norm vs clip_grad_norm_'s result
    for k in spec.get("frozen", ()):
        np.testing.assert_array_equal(got.params[k], ORACLE.initial_params()[k])
    if "clip_norm" in spec:
        norms = want.extra["grad_norm"]
        assert (norms > spec["clip_norm"]).any() and (norms < spec["clip_norm"]).any(), norms


def test_clipping_changes_the_trajectory() -> None:
    """Guards the clipping cases: without clipping the run differs (the clip is active)."""
    for case, _base in (("sgd-clip_value", "sgd-nesterov"), ("adam-clip_norm", "adam")):
        spec = dict(GROUP_CASES[case][1])
        spec.pop("clip_value", None), spec.pop("clip_norm", None)
        unclipped = ORACLE.torch_trajectory(**spec)
        assert not np.allclose(unclipped.losses, _group_reference(case).losses, rtol=1e-6)


def test_frozen_group_has_no_state() -> None:
    """A frozen parameter gets no optimizer slots; a group without momentum gets no buffer."""
    be = ORACLE.variant_backend("numpy", "float64")
    step = compile_step(
        ORACLE.mlp(),
        be,
        loss=CrossEntropyLoss(),
        optimizer=GROUP_CASES["sgd-frozen"][0](),
        shapes={"input": [ORACLE.BATCH, ORACLE.IN]},
    )
    assert set(step.state_shapes) == {"sgd.momentum_buffer.linear_1.weight", "sgd.step"}


# ---------------------------------------------------------------------------- bad input
def _compile(optimizer: Any) -> Any:
    be = ORACLE.variant_backend("numpy", "float64")
    return compile_step(
        ORACLE.mlp(), be, loss=CrossEntropyLoss(), optimizer=optimizer, shapes={"input": [ORACLE.BATCH, ORACLE.IN]}
    )


def test_unknown_option() -> None:
    with pytest.raises(ModelBuildError, match=r"Adam: unknown option\(s\) \['beta1'\]") as e:
        optim.Adam(lr=1e-3, beta1=0.9)
    assert "betas" in str(e.value) and "clip_norm" in str(e.value)  # says what it takes
    with pytest.raises(ModelBuildError, match=r"SGD: ParamGroup '\*.bias' sets unknown option\(s\) \['betas'\]"):
        optim.SGD(groups=[ParamGroup("*.bias", betas=(0.9, 0.99))])
    with pytest.raises(ModelBuildError, match="groups must be ParamGroup objects, got dict"):
        optim.SGD(groups=[{"params": "*.bias"}])


def test_group_that_matches_nothing() -> None:
    opt = optim.AdamW(groups=[ParamGroup("*.bias", weight_decay=0.0), ParamGroup("encoder.*", lr=1e-4)])
    with pytest.raises(ModelBuildError) as e:
        _compile(opt)
    msg = str(e.value)
    assert "ParamGroup 'encoder.*' matches no parameter" in msg
    for name in NAMES:  # lists the parameters
        assert repr(name) in msg
    # a pattern list is named as given
    with pytest.raises(ModelBuildError, match=r"ParamGroup \['x', 'y'\] matches no parameter"):
        _compile(optim.SGD(groups=[ParamGroup(["x", "y"])]))


@pytest.mark.parametrize("lr", [-1.0, float("nan"), float("inf"), "0.1", None, True])
def test_bad_lr(lr: Any) -> None:
    with pytest.raises(ModelBuildError, match="lr must be a non-negative number or a Schedule") as e:
        optim.SGD(lr=lr)
    assert repr(lr) in str(e.value)
    with pytest.raises(ModelBuildError, match=r"SGD group '\*.bias': lr must be"):
        optim.SGD(lr=0.1, groups=[ParamGroup("*.bias", lr=lr)])


def test_bad_lr_schedule_value() -> None:
    from mithril.training.schedules import Constant

    for lr in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ModelBuildError, match="Constant: lr must be"):
            optim.Adam(lr=Constant(lr))


@pytest.mark.parametrize("what", ["clip_norm", "clip_value"])
@pytest.mark.parametrize("value", [-1.0, 0.0, float("nan"), float("inf"), "1", True])
def test_bad_clipping(what: str, value: Any) -> None:
    with pytest.raises(ModelBuildError, match=f"AdamW: {what} must be a positive number, got {value!r}"):
        optim.AdamW(**{what: value})


@pytest.mark.parametrize(
    "betas", [(0.9,), (0.9, 1.0), (-0.1, 0.999), (0.9, 0.999, 0.5), "ab", 0.9, (0.9, "x"), (0.9, float("nan"))]
)
@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW, optim.Lion])
def test_bad_betas(cls: Any, betas: Any) -> None:
    with pytest.raises(ModelBuildError, match=rf"{cls.__name__}: betas must be two numbers in \[0, 1\), got"):
        cls(betas=betas)
    with pytest.raises(ModelBuildError, match=rf"{cls.__name__} group 'linear_0.\*': betas must be two numbers"):
        cls(groups=[ParamGroup("linear_0.*", betas=betas)])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: optim.SGD(momentum=-0.9), "SGD: momentum must be a finite non-negative number, got -0.9"),
        (lambda: optim.Adam(weight_decay=float("nan")), "Adam: weight_decay must be a finite non-negative number"),
        (lambda: optim.RMSprop(eps=-1e-8), "RMSprop: eps must be a finite non-negative number"),
        (lambda: optim.Adagrad(lr_decay=-0.1), "Adagrad: lr_decay must be a finite non-negative number"),
        (lambda: optim.SGD(nesterov=True), "SGD: Nesterov momentum needs momentum > 0 and dampening 0"),
        (lambda: optim.SGD(momentum=0.9, nesterov=True, dampening=0.1), "Nesterov momentum needs"),
        (
            lambda: optim.SGD(momentum=0.9, nesterov=True, groups=[ParamGroup("*.bias", momentum=0.0)]),
            r"SGD group '\*.bias': Nesterov momentum needs",
        ),
        (lambda: optim.SGD(momentum="0.9"), "SGD: momentum must be a number, got '0.9'"),
        (lambda: optim.Adam(amsgrad=1), "Adam: amsgrad must be True or False, got 1"),
        (lambda: optim.RMSprop(centered="yes"), "RMSprop: centered must be True or False, got 'yes'"),
        (lambda: optim.Adagrad(eps=None), "Adagrad: eps must be a number, got None"),
    ],
)
def test_bad_option_values(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ModelBuildError, match=message):
        make()
