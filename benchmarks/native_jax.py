"""Hand-written JAX baselines: pure functions of a params dict keyed by Mithril's names."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from models import GPTConfig, causal_mask


def _linear(p: dict[str, Any], name: str, x: Any) -> Any:
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def seed_mlp(p: dict[str, Any], x: Any) -> Any:
    return _linear(p, "linear_1", jax.nn.relu(_linear(p, "linear_0", x)))


def deep_mlp(n_layers: int) -> Callable[[dict[str, Any], Any], Any]:
    def f(p: dict[str, Any], x: Any) -> Any:
        for i in range(n_layers):
            x = _linear(p, f"linear_{i}", x)
            if i < n_layers - 1:
                x = jax.nn.relu(x)
        return x

    return f


def _conv(p: dict[str, Any], name: str, x: Any) -> Any:
    y = jax.lax.conv_general_dilated(
        x, p[f"{name}.weight"], (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    return y + p[f"{name}.bias"][None, :, None, None]


def _bn_train(p: dict[str, Any], name: str, x: Any, eps: float = 1e-5) -> Any:
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    xhat = (x - mean) / jnp.sqrt(var + eps)
    return xhat * p[f"{name}.weight"][None, :, None, None] + p[f"{name}.bias"][None, :, None, None]


def _maxpool2(x: Any) -> Any:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


def seed_cnn(p: dict[str, Any], x: Any) -> Any:
    """Training mode (batch statistics); running statistics are not updated (pure function)."""
    x = _maxpool2(jax.nn.relu(_bn_train(p, "batchnorm2d_0", _conv(p, "conv2d_0", x))))
    x = _maxpool2(jax.nn.relu(_bn_train(p, "batchnorm2d_1", _conv(p, "conv2d_1", x))))
    x = x.reshape(x.shape[0], -1)
    return _linear(p, "linear_1", jax.nn.relu(_linear(p, "linear_0", x)))


def _ln(p: dict[str, Any], name: str, x: Any, eps: float) -> Any:
    mean = x.mean(-1, keepdims=True)
    c = x - mean
    var = (c * c).mean(-1, keepdims=True)
    return c / jnp.sqrt(var + eps) * p[f"{name}.weight"] + p[f"{name}.bias"]


def gpt(cfg: GPTConfig) -> Callable[[dict[str, Any], Any], Any]:
    mask = jnp.asarray(causal_mask(cfg.seq_len))
    h, hd = cfg.n_heads, cfg.head_dim

    def f(p: dict[str, Any], x: Any) -> Any:
        b, t, d = x.shape
        for i in range(cfg.n_layers):
            pre = f"h_{i}"
            a = _ln(p, f"{pre}.ln_1", x, cfg.eps)
            q, k, v = (
                _linear(p, f"{pre}.attn.{n}_proj", a).reshape(b, t, h, hd).transpose(0, 2, 1, 3)
                for n in ("q", "k", "v")
            )
            att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(hd)) + mask
            y = (jax.nn.softmax(att, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
            x = x + _linear(p, f"{pre}.attn.o_proj", y)
            m = _ln(p, f"{pre}.ln_2", x, cfg.eps)
            x = x + _linear(p, f"{pre}.proj", jax.nn.gelu(_linear(p, f"{pre}.fc", m), approximate=True))
        return _linear(p, "head", _ln(p, "ln_f", x, cfg.eps))

    return f


def mse_value_and_grad(forward: Callable[[dict[str, Any], Any], Any]) -> Callable[..., Any]:
    """``jax.jit(jax.value_and_grad(loss))`` with ``loss = mean((forward(p, x) - y)**2)``."""

    def loss(p: dict[str, Any], x: Any, y: Any) -> Any:
        d = forward(p, x) - y
        return jnp.mean(d * d)

    return jax.jit(jax.value_and_grad(loss))
