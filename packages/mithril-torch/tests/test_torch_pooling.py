"""The saved-argmax max pooling pair (mithril_torch.pooling): eager and under torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mithril_torch import pooling

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

CONFIGS = [  # kernel, stride, padding: non-overlapping, overlapping with padding, odd sizes
    ((2, 2), (2, 2), (0, 0)),
    ((3, 3), (2, 2), (1, 1)),
    ((2, 3), (1, 2), (1, 0)),
]


def _oracle(x: torch.Tensor, g: torch.Tensor, k, s, p) -> tuple[torch.Tensor, torch.Tensor]:
    xr = x.detach().clone().requires_grad_(True)
    out = F.max_pool2d(xr, k, s, p)
    out.backward(g)
    return out.detach(), xr.grad


def _step(x: torch.Tensor, g: torch.Tensor, k, s, p) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out, where = pooling.max_pool2d_with_indices(x, kernel_size=k, stride=s, padding=p)
    gx = pooling.max_pool2d_grad_indices(x, where, g, kernel_size=k, stride=s, padding=p)
    return out, where, gx


def _inputs(k, s, p, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 11, generator=gen)
    x[0, 0, :4, :4] = 0.0  # ties: the first max in the window gets the gradient
    shape = F.max_pool2d(x, k, s, p).shape
    return x.to(device), torch.randn(shape, generator=gen).to(device)


@pytest.mark.parametrize("k,s,p", CONFIGS)
def test_eager_keeps_torch_flat_indices(k, s, p) -> None:
    x, g = _inputs(k, s, p)
    out, where, gx = _step(x, g, k, s, p)
    ref_out, ref_gx = _oracle(x, g, k, s, p)
    assert where.dtype == torch.int64
    assert torch.equal(where, F.max_pool2d(x, k, s, p, return_indices=True)[1])
    assert torch.equal(out, ref_out) and torch.equal(gx, ref_gx)


@pytest.mark.filterwarnings("error::UserWarning")  # nothing in the kernels makes dynamo warn the user
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
@pytest.mark.parametrize("k,s,p", CONFIGS)
def test_compiled_stores_window_offsets(compiler: str, k, s, p, device: str) -> None:
    if compiler == "inductor" and k != (3, 3):
        pytest.skip("one inductor compile is enough; aot_eager covers the rest")
    x, g = _inputs(k, s, p, device)
    torch._dynamo.reset()
    out, where, gx = torch.compile(_step, backend=compiler, fullgraph=True)(x, g, k, s, p)
    ref_out, ref_gx = _oracle(x, g, k, s, p)
    assert where.dtype == torch.int8  # the offset inside the window, not the flat index
    assert int(where.max()) < k[0] * k[1] and int(where.min()) >= 0
    assert torch.equal(out, ref_out)
    torch.testing.assert_close(gx, ref_gx, rtol=0, atol=0)


def test_large_windows_keep_flat_indices_under_compile() -> None:
    k = s = (6, 6)  # 36 > pooling.MAX_OFFSET_WINDOW
    x = torch.randn(1, 2, 12, 12)
    g = torch.randn(1, 2, 2, 2)
    _out, where, gx = torch.compile(_step, backend="aot_eager", fullgraph=True)(x, g, k, s, (0, 0))
    assert where.dtype == torch.int64
    torch.testing.assert_close(gx, _oracle(x, g, k, s, (0, 0))[1], rtol=0, atol=0)
