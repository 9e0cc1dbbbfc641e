"""Hand-written full training steps (forward, loss, backward, AdamW update), as each library's docs write them.

Every step uses the same AdamW hyperparameters (:data:`HP`) and the same losses as the
Mithril side of the ``train`` suite (``bench_train.py``):

* ``mse``: ``mean((y - t)**2)``; ``ce``: cross-entropy of logits ``[N, C]`` (a GPT's
  ``[B, T, V]`` flattened to ``[B*T, V]``) against int class indices ``[N]``, mean over N.
* torch: :func:`torch_step`: ``zero_grad(set_to_none=True)``, forward, loss,
  ``loss.backward()``, ``opt.step()`` with ``torch.optim.AdamW`` (its default
  implementation for the device); the benchmark runs it eagerly and through
  ``torch.compile`` of the whole function (default options, as Mithril's TorchBackend).
* JAX: :func:`jax_step`: ``jax.jit`` of ``value_and_grad`` + ``optax.adamw`` update +
  ``optax.apply_updates``, params, optimizer state and model state donated.
* NumPy: :class:`NumpyStep`: the forward/backward by hand of ``native_numpy.py`` and an
  in-place AdamW loop (torch's single-tensor algorithm).

BatchNorm's running statistics: torch.nn updates them (module buffers), the JAX step
updates them (momentum 0.1, unbiased variance, as torch); NumPy by hand does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

#: AdamW hyperparameters of every variant
HP: dict[str, Any] = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}


# ------------------------------------------------------------------------------------------ numpy
def np_loss_grad(kind: str, y: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
    """The loss and its gradient with respect to ``y``."""
    if kind == "mse":
        d = y - t
        return float(np.mean(d * d)), (2.0 / d.size) * d
    y2 = y.reshape(-1, y.shape[-1])
    n = y2.shape[0]
    rows = np.arange(n)
    m = y2.max(axis=1, keepdims=True)
    e = np.exp(y2 - m)
    s = e.sum(axis=1, keepdims=True)
    loss = -float(np.mean(y2[rows, t] - m[:, 0] - np.log(s[:, 0])))
    g = e / s
    g[rows, t] -= 1.0
    g *= 1.0 / n
    return loss, g.reshape(y.shape)


class NumpyAdamW:
    """torch.optim.AdamW's single-tensor algorithm, in place on float32 NumPy arrays."""

    def __init__(self, params: Mapping[str, np.ndarray], keys: Sequence[str], hp: Mapping[str, Any] = HP) -> None:
        self.keys = list(keys)
        self.lr, (self.b1, self.b2), self.eps, self.wd = hp["lr"], hp["betas"], hp["eps"], hp["weight_decay"]
        self.m = {k: np.zeros_like(params[k]) for k in self.keys}
        self.v = {k: np.zeros_like(params[k]) for k in self.keys}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        self.t += 1
        b1, b2 = self.b1, self.b2
        step_size = self.lr / (1.0 - b1**self.t)
        sq = math.sqrt(1.0 - b2**self.t)
        for k in self.keys:
            p, g, m, v = params[k], grads[k], self.m[k], self.v[k]
            p *= 1.0 - self.lr * self.wd
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            denom = np.sqrt(v)
            denom /= sq
            denom += self.eps
            p -= step_size * (m / denom)


class NumpyStep:
    """One training step by hand: forward, loss, backward, AdamW (params updated in place)."""

    def __init__(
        self,
        forward: Callable[..., Any],
        backward: Callable[..., Any],
        kind: str,
        params: Mapping[str, np.ndarray],
        trainable: Sequence[str],
        x: np.ndarray,
        t: np.ndarray,
    ) -> None:
        self.forward, self.backward, self.kind = forward, backward, kind
        self.p = {k: np.array(v, copy=True) for k, v in params.items()}
        self.trainable = list(trainable)
        self.opt = NumpyAdamW(self.p, self.trainable)
        self.x, self.t = x, t

    def __call__(self) -> float:
        y, cache = self.forward(self.p, self.x)
        loss, g = np_loss_grad(self.kind, y, self.t)
        grads = self.backward(self.p, cache, g.astype(np.float32, copy=False))
        self.opt.step(self.p, grads)
        return loss

    def params(self) -> dict[str, np.ndarray]:
        return {k: self.p[k] for k in self.trainable}


# ------------------------------------------------------------------------------------------ torch
def torch_loss(kind: str) -> Callable[[Any, Any], Any]:
    import torch.nn.functional as F

    if kind == "mse":
        return F.mse_loss

    def ce(y: Any, t: Any) -> Any:
        return F.cross_entropy(y.flatten(0, -2) if y.dim() > 2 else y, t)

    return ce


def torch_step(module: Any, kind: str, hp: Mapping[str, Any] = HP) -> tuple[Callable[[Any, Any], Any], Any]:
    """``step(x, t) -> loss`` (forward, loss, backward, AdamW step) and its optimizer."""
    import torch

    opt = torch.optim.AdamW(
        module.parameters(), lr=hp["lr"], betas=hp["betas"], eps=hp["eps"], weight_decay=hp["weight_decay"]
    )
    loss_fn = torch_loss(kind)

    def step(x: Any, t: Any) -> Any:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(module(x), t)
        loss.backward()
        opt.step()
        return loss

    return step, opt


# ------------------------------------------------------------------------------------------ jax
def jax_loss(kind: str) -> Callable[[Any, Any], Any]:
    import jax
    import jax.numpy as jnp

    if kind == "mse":

        def mse(y: Any, t: Any) -> Any:
            d = y - t
            return jnp.mean(d * d)

        return mse

    def ce(y: Any, t: Any) -> Any:
        y2 = y.reshape(-1, y.shape[-1])
        logp = jax.nn.log_softmax(y2, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))

    return ce


def jax_step(forward: Callable[..., Any], kind: str, hp: Mapping[str, Any] = HP) -> tuple[Callable[..., Any], Any]:
    """``step(params, opt_state, model_state, x, t) -> (params, opt_state, model_state, loss)``, one
    ``jax.jit`` with the first three donated; ``forward(params, model_state, x) -> (y, model_state)``.
    Returns the step and the optax transformation (``tx.init(params)`` makes the optimizer state)."""
    import jax
    import optax

    tx = optax.adamw(
        learning_rate=hp["lr"], b1=hp["betas"][0], b2=hp["betas"][1], eps=hp["eps"], weight_decay=hp["weight_decay"]
    )
    loss = jax_loss(kind)

    def loss_fn(p: Any, s: Any, x: Any, t: Any) -> Any:
        y, s = forward(p, s, x)
        return loss(y, t), s

    @partial(jax.jit, donate_argnums=(0, 1, 2))
    def step(p: Any, opt_state: Any, s: Any, x: Any, t: Any) -> Any:
        (value, s), g = jax.value_and_grad(loss_fn, has_aux=True)(p, s, x, t)
        updates, opt_state = tx.update(g, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, s, value

    return step, tx


def jax_stateless(fwd: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """A model without state as ``forward(params, state, x) -> (y, state)``."""
    return lambda p, s, x: (fwd(p, x), s)


def jax_seed_cnn(momentum: float = 0.1, eps: float = 1e-5) -> Callable[..., Any]:
    """The seed CNN in training mode, updating BatchNorm's running statistics (as torch.nn)."""
    import jax
    import jax.numpy as jnp
    import native_jax as NJ

    def bn(p: Any, s: Any, name: str, x: Any, new: dict[str, Any]) -> Any:
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
        n = x.size // x.shape[1]
        new[f"{name}.running_mean"] = (1 - momentum) * s[f"{name}.running_mean"] + momentum * mean.reshape(-1)
        new[f"{name}.running_var"] = (1 - momentum) * s[f"{name}.running_var"] + momentum * var.reshape(-1) * (
            n / (n - 1)
        )
        xhat = (x - mean) / jnp.sqrt(var + eps)
        return xhat * p[f"{name}.weight"][None, :, None, None] + p[f"{name}.bias"][None, :, None, None]

    def forward(p: Any, s: Any, x: Any) -> Any:
        new: dict[str, Any] = {}
        x = NJ._maxpool2(jax.nn.relu(bn(p, s, "batchnorm2d_0", NJ._conv(p, "conv2d_0", x), new)))
        x = NJ._maxpool2(jax.nn.relu(bn(p, s, "batchnorm2d_1", NJ._conv(p, "conv2d_1", x), new)))
        x = x.reshape(x.shape[0], -1)
        return NJ._linear(p, "linear_1", jax.nn.relu(NJ._linear(p, "linear_0", x))), new

    return forward
