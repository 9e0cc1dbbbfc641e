"""Hand-written NumPy baselines: forward, and backward to parameter gradients given an output gradient.

Params are dicts keyed by Mithril's names. ``forward(p, x)`` returns ``(y, cache)``;
``backward(p, cache, g)`` returns the gradients of ``sum(g * y)`` w.r.t. every param.
Straightforward code, the way one writes it by hand: matmuls through BLAS,
convolution as im2col (one window copy) + matmul, no input gradient.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from models import GPTConfig, causal_mask
from numpy.lib.stride_tricks import sliding_window_view

P = dict[str, np.ndarray]


# ------------------------------------------------------------------ MLPs
def mlp_forward(p: P, x: np.ndarray, n_layers: int) -> tuple[np.ndarray, list[np.ndarray]]:
    acts = [x]
    for i in range(n_layers):
        x = x @ p[f"linear_{i}.weight"].T + p[f"linear_{i}.bias"]
        if i < n_layers - 1:
            x = np.maximum(x, 0)
        acts.append(x)
    return x, acts


def mlp_backward(
    p: P, acts: list[np.ndarray], g: np.ndarray, n_layers: int, need_dx: bool = False
) -> tuple[P, np.ndarray | None]:
    """Param gradients (and the input gradient when ``need_dx``)."""
    grads: P = {}
    for i in reversed(range(n_layers)):
        if i < n_layers - 1:
            g = g * (acts[i + 1] > 0)
        grads[f"linear_{i}.weight"] = g.T @ acts[i]
        grads[f"linear_{i}.bias"] = g.sum(axis=0)
        if i or need_dx:
            g = g @ p[f"linear_{i}.weight"]
    return grads, (g if need_dx else None)


# ------------------------------------------------------------------ CNN
def _im2col(x: np.ndarray) -> np.ndarray:
    """3x3, stride 1, padding 1: [N, C, H, W] -> [N, C*9, H*W] (one copy of the windows)."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = sliding_window_view(xp, (3, 3), axis=(2, 3))  # [N, C, H, W, 3, 3] (a view)
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * 9, h * w)


def _col2im(cols: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """[N, C*9, H*W] -> [N, C, H, W]: each window position added back where it was read."""
    n, c, h, w = shape
    g = cols.reshape(n, c, 3, 3, h, w)
    out = np.zeros((n, c, h + 2, w + 2), dtype=cols.dtype)
    for i in range(3):
        for j in range(3):
            out[:, :, i : i + h, j : j + w] += g[:, :, i, j]
    return out[:, :, 1:-1, 1:-1]


def _conv_fwd(p: P, name: str, x: np.ndarray) -> tuple[np.ndarray, Any]:
    w = p[f"{name}.weight"]
    n, _, h, wd = x.shape
    cols = _im2col(x)
    y = w.reshape(w.shape[0], -1) @ cols + p[f"{name}.bias"][:, None]  # [N, O, H*W]
    return y.reshape(n, -1, h, wd), (cols, x.shape)


def _conv_bwd(p: P, name: str, cache: Any, g: np.ndarray, grads: P, need_dx: bool) -> np.ndarray | None:
    cols, xshape = cache
    w = p[f"{name}.weight"]
    o = w.shape[0]
    gm = g.reshape(g.shape[0], o, -1)  # [N, O, H*W]
    grads[f"{name}.weight"] = (gm @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    grads[f"{name}.bias"] = gm.sum(axis=(0, 2))
    return _col2im(w.reshape(o, -1).T @ gm, xshape) if need_dx else None


def _bn_fwd(p: P, name: str, x: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, Any]:
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    c = x - mean
    var = (c * c).mean(axis=(0, 2, 3), keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = c * rstd
    w = p[f"{name}.weight"][None, :, None, None]
    return xhat * w + p[f"{name}.bias"][None, :, None, None], (xhat, rstd, w)


def _bn_bwd(name: str, cache: Any, g: np.ndarray, grads: P) -> np.ndarray:
    xhat, rstd, w = cache
    grads[f"{name}.weight"] = (g * xhat).sum(axis=(0, 2, 3))
    grads[f"{name}.bias"] = g.sum(axis=(0, 2, 3))
    dxhat = g * w
    return rstd * (
        dxhat - dxhat.mean(axis=(0, 2, 3), keepdims=True) - xhat * (dxhat * xhat).mean(axis=(0, 2, 3), keepdims=True)
    )


_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _pool_fwd(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """2x2 max pooling, stride 2, from four strided views."""
    a, b, c, d = (x[:, :, i::2, j::2] for i, j in _CORNERS)
    out = np.maximum(np.maximum(a, b), np.maximum(c, d))
    return out, (x, out)


def _pool_bwd(cache: Any, g: np.ndarray) -> np.ndarray:
    """The gradient goes to the first maximum of each window (as torch's argmax)."""
    x, out = cache
    gx = np.zeros_like(x)
    taken = np.zeros(out.shape, dtype=bool)
    for i, j in _CORNERS:
        hit = (x[:, :, i::2, j::2] == out) & ~taken
        gx[:, :, i::2, j::2] = np.where(hit, g, 0)
        taken |= hit
    return gx


def cnn_forward(p: P, x: np.ndarray) -> tuple[np.ndarray, Any]:
    cache = []
    for conv, bn in (("conv2d_0", "batchnorm2d_0"), ("conv2d_1", "batchnorm2d_1")):
        x, cc = _conv_fwd(p, conv, x)
        x, bc = _bn_fwd(p, bn, x)
        r = np.maximum(x, 0)
        x, pc = _pool_fwd(r)
        cache.append((cc, bc, r, pc))
    n = x.shape[0]
    flat = x.reshape(n, -1)
    y, acts = mlp_forward(p, flat, 2)
    return y, (cache, acts, x.shape)


def cnn_backward(p: P, state: Any, g: np.ndarray) -> P:
    cache, acts, pshape = state
    grads, g_flat = mlp_backward(p, acts, g, 2, need_dx=True)
    g = g_flat.reshape(pshape)  # type: ignore[union-attr]
    for (conv, bn), (cc, bc, r, pc) in zip(
        (("conv2d_1", "batchnorm2d_1"), ("conv2d_0", "batchnorm2d_0")), reversed(cache)
    ):
        g = _pool_bwd(pc, g) * (r > 0)
        g = _bn_bwd(bn, bc, g, grads)
        g = _conv_bwd(p, conv, cc, g, grads, need_dx=conv != "conv2d_0")
    return grads


# ------------------------------------------------------------------ GPT
_S = math.sqrt(2.0 / math.pi)


def _lin(p: P, name: str, x: np.ndarray) -> np.ndarray:
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def _lin_bwd(p: P, name: str, x: np.ndarray, g: np.ndarray, grads: P) -> np.ndarray:
    g2 = g.reshape(-1, g.shape[-1])
    grads[f"{name}.weight"] = g2.T @ x.reshape(-1, x.shape[-1])
    grads[f"{name}.bias"] = g2.sum(axis=0)
    return g @ p[f"{name}.weight"]


def _ln_fwd(p: P, name: str, x: np.ndarray, eps: float) -> tuple[np.ndarray, Any]:
    c = x - x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt((c * c).mean(-1, keepdims=True) + eps)
    xhat = c * rstd
    return xhat * p[f"{name}.weight"] + p[f"{name}.bias"], (xhat, rstd)


def _ln_bwd(p: P, name: str, cache: Any, g: np.ndarray, grads: P) -> np.ndarray:
    xhat, rstd = cache
    grads[f"{name}.weight"] = (g * xhat).reshape(-1, xhat.shape[-1]).sum(0)
    grads[f"{name}.bias"] = g.reshape(-1, g.shape[-1]).sum(0)
    d = g * p[f"{name}.weight"]
    return rstd * (d - d.mean(-1, keepdims=True) - xhat * (d * xhat).mean(-1, keepdims=True))


def gpt_forward(cfg: GPTConfig, p: P, x: np.ndarray) -> tuple[np.ndarray, Any]:
    b, t, d = x.shape
    h, hd = cfg.n_heads, cfg.head_dim
    mask = causal_mask(t)
    scale = np.float32(1.0 / math.sqrt(hd))
    caches = []
    for i in range(cfg.n_layers):
        pre = f"h_{i}"
        x_in = x
        a, ln1 = _ln_fwd(p, f"{pre}.ln_1", x, cfg.eps)
        q, k, v = (
            _lin(p, f"{pre}.attn.{n}_proj", a).reshape(b, t, h, hd).transpose(0, 2, 1, 3) for n in ("q", "k", "v")
        )
        s = (q @ k.transpose(0, 1, 3, 2)) * scale + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        att = s / s.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
        x = x + _lin(p, f"{pre}.attn.o_proj", y)
        m, ln2 = _ln_fwd(p, f"{pre}.ln_2", x, cfg.eps)
        f = _lin(p, f"{pre}.fc", m)
        th = np.tanh(_S * (f + 0.044715 * f**3))
        gl = 0.5 * f * (1.0 + th)
        x_mid = x
        x = x + _lin(p, f"{pre}.proj", gl)
        caches.append((x_in, a, ln1, q, k, v, att, y, x_mid, m, ln2, f, th, gl))
    z, lnf = _ln_fwd(p, "ln_f", x, cfg.eps)
    return _lin(p, "head", z), (caches, z, lnf)


def gpt_backward(cfg: GPTConfig, p: P, state: Any, g: np.ndarray) -> P:
    caches, z, lnf = state
    grads: P = {}
    b, t, d = g.shape[0], g.shape[1], cfg.d_model
    h, hd = cfg.n_heads, cfg.head_dim
    scale = np.float32(1.0 / math.sqrt(hd))
    gx = _ln_bwd(p, "ln_f", lnf, _lin_bwd(p, "head", z, g, grads), grads)
    for i in reversed(range(cfg.n_layers)):
        pre = f"h_{i}"
        _x_in, a, ln1, q, k, v, att, y, _x_mid, m, ln2, f, th, gl = caches[i]
        ggl = _lin_bwd(p, f"{pre}.proj", gl, gx, grads)
        dgelu = 0.5 * (1.0 + th) + 0.5 * f * (1.0 - th * th) * _S * (1.0 + 3 * 0.044715 * f * f)
        gm = _lin_bwd(p, f"{pre}.fc", m, ggl * dgelu, grads)
        gx = gx + _ln_bwd(p, f"{pre}.ln_2", ln2, gm, grads)
        gy = _lin_bwd(p, f"{pre}.attn.o_proj", y, gx, grads).reshape(b, t, h, hd).transpose(0, 2, 1, 3)
        gatt = gy @ v.transpose(0, 1, 3, 2)
        gv = att.transpose(0, 1, 3, 2) @ gy
        gs = att * (gatt - (gatt * att).sum(-1, keepdims=True)) * scale
        gq = gs @ k
        gk = gs.transpose(0, 1, 3, 2) @ q
        ga = sum(
            _lin_bwd(p, f"{pre}.attn.{n}_proj", a, gg.transpose(0, 2, 1, 3).reshape(b, t, d), grads)
            for n, gg in (("q", gq), ("k", gk), ("v", gv))
        )
        gx = gx + _ln_bwd(p, f"{pre}.ln_1", ln1, ga, grads)
    return grads
