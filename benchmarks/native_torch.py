"""Hand-written PyTorch baselines, with parameter names equal to Mithril's (so params copy by name)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from models import GPTConfig, causal_mask
from torch import nn


class SeedMLP(nn.Module):
    def __init__(self, d_in: int = 20) -> None:
        super().__init__()
        self.linear_0 = nn.Linear(d_in, 64)
        self.linear_1 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_1(torch.relu(self.linear_0(x)))


class DeepMLP(nn.Module):
    def __init__(self, n_layers: int, width: int, d_in: int | None = None) -> None:
        super().__init__()
        self.n = n_layers
        for i in range(n_layers):
            setattr(self, f"linear_{i}", nn.Linear(d_in if (i == 0 and d_in) else width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.n):
            x = getattr(self, f"linear_{i}")(x)
            if i < self.n - 1:
                x = torch.relu(x)
        return x


class SeedCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv2d_0 = nn.Conv2d(3, 16, 3, padding=1)
        self.batchnorm2d_0 = nn.BatchNorm2d(16)
        self.conv2d_1 = nn.Conv2d(16, 32, 3, padding=1)
        self.batchnorm2d_1 = nn.BatchNorm2d(32)
        self.linear_0 = nn.Linear(32 * 8 * 8, 128)
        self.linear_1 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.batchnorm2d_0(self.conv2d_0(x))), 2)
        x = torch.max_pool2d(torch.relu(self.batchnorm2d_1(self.conv2d_1(x))), 2)
        x = torch.flatten(x, 1)
        return self.linear_1(torch.relu(self.linear_0(x)))


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d) for _ in range(4))
        self.register_buffer("mask", torch.from_numpy(causal_mask(cfg.seq_len)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h, hd = self.cfg.n_heads, self.cfg.head_dim
        q = self.q_proj(x).view(b, t, h, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, h, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd)) + self.mask
        y = torch.softmax(att, dim=-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.ln_1 = nn.LayerNorm(d, eps=cfg.eps)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(d, eps=cfg.eps)
        self.fc = nn.Linear(d, 4 * d)
        self.gelu = nn.GELU(approximate="tanh")
        self.proj = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.proj(self.gelu(self.fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n = cfg.n_layers
        for i in range(cfg.n_layers):
            setattr(self, f"h_{i}", Block(cfg))
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.n):
            x = getattr(self, f"h_{i}")(x)
        return self.head(self.ln_f(x))


def load_params(module: nn.Module, params: Mapping[str, Any]) -> None:
    """Copy Mithril params (any backend's arrays, as NumPy) into ``module`` by name."""
    own = dict(module.named_parameters())
    own.update({k: v for k, v in module.named_buffers() if k in params})
    missing = sorted(set(own) - set(params))
    extra = sorted(set(params) - set(own))
    if missing or extra:
        raise KeyError(f"native module and Mithril params differ: missing {missing[:5]}, extra {extra[:5]}")
    with torch.no_grad():
        for k, p in own.items():
            p.copy_(torch.as_tensor(np.asarray(params[k])).to(p.device, p.dtype))
