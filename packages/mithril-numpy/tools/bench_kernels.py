"""Time the convolution / pooling kernels against torch on the CPU (not a test).

PYTHONPATH=packages/mithril-core/src:packages/mithril-numpy/src python packages/mithril-numpy/tools/bench_kernels.py
"""

from __future__ import annotations

import timeit

import numpy as np

from mithril_numpy import conv, pool


def best_ms(fn, number: int = 5) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e3


def main() -> None:
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    a = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    p = dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1))
    print(f"torch threads {torch.get_num_threads()}")
    for n, c, h, o in [(32, 3, 32, 16), (32, 16, 16, 32), (64, 1, 28, 32), (64, 32, 14, 64)]:
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
        g = rng.standard_normal((n, o, h, h)).astype(np.float32)
        tx, tw, tg = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(g)
        row = {
            "fwd": (best_ms(lambda: conv.conv2d(x, w, **a)), best_ms(lambda: F.conv2d(tx, tw, None, 1, 1))),
            "dx": (
                best_ms(lambda: conv.conv2d_input_grad(g, w, input_shape=x.shape, **a)),
                best_ms(lambda: torch.nn.grad.conv2d_input(x.shape, tw, tg, 1, 1)),
            ),
            "dw": (
                best_ms(lambda: conv.conv2d_weight_grad(x, g, weight_shape=w.shape, **a)),
                best_ms(lambda: torch.nn.grad.conv2d_weight(tx, w.shape, tg, 1, 1)),
            ),
            "maxpool": (best_ms(lambda: pool.max_pool2d(g, **p)), best_ms(lambda: F.max_pool2d(tg, 2))),
        }
        pg = rng.standard_normal((n, o, h // 2, h // 2)).astype(np.float32)
        tgr = tg.clone().requires_grad_(True)
        ty = F.max_pool2d(tgr, 2)
        tpg = torch.from_numpy(pg)
        row["maxpool_grad"] = (
            best_ms(lambda: pool.max_pool2d_grad(g, pg, **p)),
            best_ms(lambda: torch.autograd.grad(ty, tgr, tpg, retain_graph=True)),
        )
        cells = "  ".join(f"{k} {m:7.2f}/{t:7.2f}" for k, (m, t) in row.items())
        print(f"N{n} C{c} H{h} O{o}: {cells}   (ms numpy/torch)")


if __name__ == "__main__":
    main()
