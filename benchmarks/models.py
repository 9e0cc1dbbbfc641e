"""Logical models the benchmarks compile: the seed MLP and CNN, deep MLPs, a GPT-style model.

The GPT here is written from core primitives only (mean/sub/mul/sqrt, matmul,
softmax, gelu...) so that it measures the compiler and the kernels rather than
any fused block; the model zoo may replace :func:`gpt` later with its own.
Each builder returns a :class:`mithril.models.Model` with input ``input`` and
output ``output``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mithril.models import (
    BatchNorm2d,
    Conv2d,
    Flatten,
    Gelu,
    IOKey,
    Linear,
    MaxPool2d,
    Model,
    Relu,
    Softmax,
)
from mithril.models.connections import ones, zeros


# --------------------------------------------------------------------------- MLPs
def seed_mlp() -> Model:
    """The quickstart's first model: Linear(64) -> Relu -> Linear(10)."""
    model = Model()
    model |= Linear(dimension=64)
    model += Relu()
    model += Linear(dimension=10)
    return model


def deep_mlp(n_layers: int, width: int, *, out: int | None = None) -> Model:
    """``n_layers`` Linear(width) each followed by Relu (none after the last), chained with ``+=``."""
    model = Model()
    for i in range(n_layers):
        last = i == n_layers - 1
        layer = Linear(dimension=out if (last and out is not None) else width)
        if i == 0:
            model |= layer
        else:
            model += layer
        if not last:
            model += Relu()
    return model


# --------------------------------------------------------------------------- CNN
def seed_cnn() -> Model:
    """The quickstart's "Building a More Complex Model" CNN (3x32x32 in, 10 out)."""
    cnn = Model()
    cnn |= Conv2d(in_channels=3, out_channels=16, kernel_size=3, padding=1)(input="input", output="conv1")
    cnn += BatchNorm2d(num_features=16)(input="conv1", output="bn1")
    cnn += Relu()(input="bn1", output="relu1")
    cnn += MaxPool2d(kernel_size=2)(input="relu1", output="pool1")
    cnn += Conv2d(in_channels=16, out_channels=32, kernel_size=3, padding=1)(input="pool1", output="conv2")
    cnn += BatchNorm2d(num_features=32)(input="conv2", output="bn2")
    cnn += Relu()(input="bn2", output="relu2")
    cnn += MaxPool2d(kernel_size=2)(input="relu2", output="pool2")
    cnn += Flatten()(input="pool2", output="flat")
    cnn += Linear(dimension=128)(input="flat", output="fc1")
    cnn += Relu()(input="fc1", output="relu3")
    cnn += Linear(dimension=10)(input="relu3", output="output")
    return cnn


# --------------------------------------------------------------------------- GPT
@dataclass(frozen=True)
class GPTConfig:
    n_layers: int = 12
    d_model: int = 768
    n_heads: int = 12
    seq_len: int = 64
    batch: int = 1
    vocab: int = 1024
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class LayerNorm(Model):
    """LayerNorm over the last axis: the core's ``normalize`` (one fused kernel where the backend has
    one), then ``weight``/``bias`` (torch names)."""

    def __init__(self, d: int, eps: float = 1e-5, *, name: str | None = None) -> None:
        super().__init__(name=name)
        xhat = self.call("normalize", IOKey("input", shape=[None, None, d]), axes=(-1,), eps=eps)
        w = IOKey("weight", shape=[d], role="param", init=ones)
        b = IOKey("bias", shape=[d], role="param", init=zeros)
        self.call("add", self.call("mul", xhat, w), b, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


def causal_mask(t: int) -> np.ndarray:
    """[T, T] float32: 0 on and below the diagonal, -1e9 above (added to the scores before softmax)."""
    return np.triu(np.full((t, t), -1e9, dtype=np.float32), k=1)


class CausalSelfAttention(Model):
    """Multi-head causal self-attention with Linear q/k/v/o projections (nanoGPT's non-flash path)."""

    def __init__(self, cfg: GPTConfig, *, name: str | None = None) -> None:
        super().__init__(name=name)
        b, t, d, h, hd = cfg.batch, cfg.seq_len, cfg.d_model, cfg.n_heads, cfg.head_dim
        q_proj, k_proj, v_proj = (Linear(dimension=d, name=n) for n in ("q_proj", "k_proj", "v_proj"))
        for proj in (q_proj, k_proj, v_proj):
            self |= proj(input="input")

        def heads(ref, axes):  # [B, T, d] -> [B, H, T, hd] (or [B, H, hd, T] for k)
            return self.call("transpose", self.call("reshape", ref, shape=(b, t, h, hd)), axes=axes)

        q = heads(q_proj.output, (0, 2, 1, 3))
        k_t = heads(k_proj.output, (0, 2, 3, 1))
        v = heads(v_proj.output, (0, 2, 1, 3))
        scores = self.call("matmul", q, k_t) * (1.0 / math.sqrt(hd))
        scores = scores + causal_mask(t)
        softmax = Softmax(axis=-1, name="softmax")
        self |= softmax(input=scores)
        ctx = self.call("matmul", softmax.output, v)
        merged = self.call("reshape", self.call("transpose", ctx, axes=(0, 2, 1, 3)), shape=(b, t, d))
        self |= Linear(dimension=d, name="o_proj")(input=merged, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class GPTBlock(Model):
    """Pre-LN transformer block: x + attn(ln_1(x)); x + mlp(ln_2(x)) with Gelu(approximate='tanh')."""

    def __init__(self, cfg: GPTConfig, *, name: str | None = None) -> None:
        super().__init__(name=name)
        d = cfg.d_model
        ln_1, attn, ln_2 = (
            LayerNorm(d, cfg.eps, name="ln_1"),
            CausalSelfAttention(cfg, name="attn"),
            LayerNorm(d, cfg.eps, name="ln_2"),
        )
        fc, gelu, proj = (
            Linear(dimension=4 * d, name="fc"),
            Gelu(approximate="tanh", name="gelu"),
            Linear(dimension=d, name="proj"),
        )
        self |= ln_1(input="input")
        self |= attn(input=ln_1.output)
        h = attn.output + ln_1.input
        self |= ln_2(input=h)
        self |= fc(input=ln_2.output)
        self |= gelu(input=fc.output)
        self |= proj(input=gelu.output)
        self.call("add", h, proj.output, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


def gpt(cfg: GPTConfig) -> Model:
    """GPT-style decoder on float embeddings ``input: [B, T, d]`` -> logits ``output: [B, T, vocab]``."""
    model = Model()
    for i in range(cfg.n_layers):
        block = GPTBlock(cfg, name=f"h_{i}")
        if i == 0:
            model |= block
        else:
            model += block
    model += LayerNorm(cfg.d_model, cfg.eps, name="ln_f")
    model += Linear(dimension=cfg.vocab, name="head")
    return model


def gpt_lm(cfg: GPTConfig) -> Model:
    """:func:`gpt` with its logits flattened to ``output: [B*T, vocab]``, for ``CrossEntropyLoss`` on token
    targets ``[B*T]`` (the class axis is axis 1, as torch's); the params are :func:`gpt`'s."""
    model = gpt(cfg)
    model += Flatten(start_axis=0, end_axis=1)
    return model


def gpt_input_shape(cfg: GPTConfig) -> list[int]:
    return [cfg.batch, cfg.seq_len, cfg.d_model]
