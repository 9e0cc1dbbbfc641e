"""Shared helpers of the training oracle tests: one small MLP, one fixed dataset, and the
reference trajectories (torch.optim, optax) the compiled mithril training step is held to.

The model is ``Linear(5 -> 8), Relu, Linear(8 -> 3)`` with ``CrossEntropyLoss`` (mean), trained
on 4 fixed batches of 8 examples, cycled. The initial weights are fixed too (not
``step.init(seed=...)``), so every backend and every oracle starts from the same arrays.

A trajectory is the loss at every step (computed before that step's update, as torch's
``loss.backward(); opt.step()`` reports it), the learning rate used at every step and the
params after the last step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mithril.models import CrossEntropyLoss, Linear, Model, Relu
from mithril.testing.variants import installed, variant_backend
from mithril.training import compile_step

IN, HIDDEN, OUT = 5, 8, 3
BATCH, N_BATCHES = 8, 4
STEPS = 100
#: parameter names of the mithril model, in the order of the torch parameter list
NAMES = ("linear_0.weight", "linear_0.bias", "linear_1.weight", "linear_1.bias")

BACKENDS = installed()


def mlp() -> Model:
    m = Model()
    m |= Linear(dimension=HIDDEN)
    m += Relu()
    m += Linear(dimension=OUT)
    return m


@functools.cache
def dataset() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    rng = np.random.default_rng(1234)
    x = rng.normal(size=(N_BATCHES, BATCH, IN))
    y = rng.integers(0, OUT, size=(N_BATCHES, BATCH))
    return tuple((x[i], y[i]) for i in range(N_BATCHES))


def batch(i: int) -> tuple[np.ndarray, np.ndarray]:
    return dataset()[i % N_BATCHES]


@functools.cache
def _initial() -> tuple[tuple[str, np.ndarray], ...]:
    rng = np.random.default_rng(42)
    shapes = {
        "linear_0.weight": (HIDDEN, IN),
        "linear_0.bias": (HIDDEN,),
        "linear_1.weight": (OUT, HIDDEN),
        "linear_1.bias": (OUT,),
    }
    return tuple((k, rng.uniform(-0.6, 0.6, size=s)) for k, s in shapes.items())


def initial_params() -> dict[str, np.ndarray]:
    """Fresh copies of the fixed initial weights (torch layout: weight [out, in])."""
    return {k: v.copy() for k, v in _initial()}


@dataclass
class Trajectory:
    losses: np.ndarray
    lrs: np.ndarray
    params: dict[str, np.ndarray]
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def single_torch_thread() -> Any:
    """(A fixture's body) torch on one thread while the module runs: these arrays are tiny and
    intra-op threads only contend for the few cores (a backward pass took 15 ms instead of 0.2)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------ mithril
def mithril_trajectory(
    optimizer: Any, backend: str, *, steps: int = STEPS, jit: bool = False, dtype: str = "float64"
) -> Trajectory:
    """Train the MLP with ``optimizer`` on ``backend`` (a variant name), compiled once."""
    be = variant_backend(backend, dtype)
    step = compile_step(mlp(), be, loss=CrossEntropyLoss(), optimizer=optimizer, shapes={"input": [BATCH, IN]}, jit=jit)
    state = step.init({k: be.array(v) for k, v in initial_params().items()})
    data = [{"input": be.array(x), "target": be.array(y)} for x, y in dataset()]
    losses, lrs, norms = [], [], []
    for i in range(steps):
        r = step(state, data[i % N_BATCHES])
        state = r.state
        losses.append(float(be.to_numpy(r.loss)))
        lrs.append(float(be.to_numpy(r.lr)))
        if "grad_norm" in r.metrics:
            norms.append(float(be.to_numpy(r.metrics["grad_norm"])))
    assert step.compile_count == 1
    params = {k: np.asarray(be.to_numpy(v)) for k, v in state.params.items()}
    extra = {"grad_norm": np.array(norms)} if norms else {}
    return Trajectory(np.array(losses), np.array(lrs), params, extra)


# -------------------------------------------------------------------------------- torch
def _torch_loss(params: Sequence[Any], x: Any, y: Any) -> Any:
    import torch

    w0, b0, w1, b1 = params
    h = torch.relu(x @ w0.T + b0)
    return torch.nn.functional.cross_entropy(h @ w1.T + b1, y)


def torch_trajectory(
    make_optimizer: Callable[[dict[str, Any]], Any],
    *,
    make_scheduler: Callable[[Any], Any] | None = None,
    frozen: Sequence[str] = (),
    clip_norm: float | None = None,
    clip_value: float | None = None,
    steps: int = STEPS,
) -> Trajectory:
    """The same training with ``torch.optim``: ``make_optimizer(params by name)`` returns the
    optimizer (its param groups), ``make_scheduler(optimizer)`` an LR scheduler, stepped after
    every ``optimizer.step()``. ``frozen`` params get no gradient; clipping (value first, then
    global norm, as mithril's order) runs over the trained params before the step."""
    import torch

    named = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=k not in frozen) for k, v in initial_params().items()
    }
    trained = [named[k] for k in NAMES if k not in frozen]
    opt = make_optimizer(named)
    sched = make_scheduler(opt) if make_scheduler is not None else None
    data = [(torch.tensor(x, dtype=torch.float64), torch.tensor(y)) for x, y in dataset()]
    losses, lrs, norms = [], [], []
    for i in range(steps):
        x, y = data[i % N_BATCHES]
        opt.zero_grad()
        loss = _torch_loss([named[k] for k in NAMES], x, y)
        loss.backward()
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_(trained, clip_value)
        if clip_norm is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(trained, clip_norm)))
        lrs.append(sched.get_last_lr()[0] if sched is not None else opt.param_groups[0]["lr"])
        losses.append(loss.item())
        opt.step()
        if sched is not None and i + 1 < steps:
            sched.step()
    params = {k: v.detach().numpy().copy() for k, v in named.items()}
    extra = {"grad_norm": np.array(norms)} if norms else {}
    return Trajectory(np.array(losses), np.array(lrs), params, extra)


def torch_grads(params: Mapping[str, np.ndarray], i: int) -> tuple[float, dict[str, np.ndarray]]:
    """The loss and gradients of batch ``i`` at ``params``, by torch.autograd."""
    import torch

    t = {k: torch.tensor(params[k], dtype=torch.float64, requires_grad=True) for k in NAMES}
    x, y = batch(i)
    loss = _torch_loss([t[k] for k in NAMES], torch.tensor(x, dtype=torch.float64), torch.tensor(y))
    loss.backward()
    return loss.item(), {k: t[k].grad.numpy().copy() for k in NAMES}


# -------------------------------------------------------------------------------- optax
def optax_trajectory(make_transform: Callable[[], Any], *, steps: int = STEPS) -> Trajectory:
    """The same training with an optax gradient transformation (in float64): gradients from
    torch.autograd (:func:`torch_grads`), the update rule from optax."""
    import jax
    import jax.numpy as jnp
    import optax

    from mithril_jax.x64 import x64_context

    with x64_context():
        tx = make_transform()
        params = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in initial_params().items()}
        opt_state = tx.init(params)
        losses = []
        for i in range(steps):
            loss, grads = torch_grads({k: np.asarray(v) for k, v in params.items()}, i)
            losses.append(loss)
            g = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in grads.items()}
            updates, opt_state = tx.update(g, opt_state, params)
            params = optax.apply_updates(params, updates)
        out = {k: np.asarray(jax.device_get(v)) for k, v in params.items()}
    assert all(v.dtype == np.float64 for v in out.values())
    return Trajectory(np.array(losses), np.full(steps, np.nan), out)


# ------------------------------------------------------------------------------ compare
def assert_same(
    got: Trajectory, want: Trajectory, *, rtol: float = 1e-10, atol: float = 1e-12, lrs: bool = True
) -> None:
    """Loss at every step, lr at every step (unless ``lrs=False``) and the final params agree."""
    assert got.losses.shape == want.losses.shape
    bad = np.flatnonzero(~np.isclose(got.losses, want.losses, rtol=rtol, atol=0.0))
    assert bad.size == 0, (
        f"loss differs first at step {bad[0]}: {got.losses[bad[0]]!r} vs {want.losses[bad[0]]!r} "
        f"(max rel diff {np.max(np.abs(got.losses - want.losses) / np.abs(want.losses)):.3e})"
    )
    if lrs:
        np.testing.assert_allclose(got.lrs, want.lrs, rtol=rtol, atol=0.0, err_msg="lr per step")
    assert got.params.keys() == want.params.keys()
    for k in NAMES:
        np.testing.assert_allclose(got.params[k], want.params[k], rtol=rtol, atol=atol, err_msg=f"final {k}")
    for k, v in want.extra.items():
        np.testing.assert_allclose(got.extra[k], v, rtol=rtol, atol=0.0, err_msg=k)
    # the reference really trained (the params moved), so agreeing means something
    moved = max(float(np.max(np.abs(want.params[k] - v))) for k, v in initial_params().items())
    assert moved > 1e-3


__all__ = [
    "BACKENDS",
    "NAMES",
    "STEPS",
    "Trajectory",
    "assert_same",
    "batch",
    "dataset",
    "initial_params",
    "mithril_trajectory",
    "mlp",
    "optax_trajectory",
    "single_torch_thread",
    "torch_grads",
    "torch_trajectory",
]
