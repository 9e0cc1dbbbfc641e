"""Kernel-by-kernel comparison of one training step: Mithril torch eager against torch.nn + AdamW.

    python benchmarks/profile_step_kernels.py --device cuda --gpt 12,768,12,1024,8 [--steps 5] [--top 25]

Builds the train suite's runners (bench_train.py: the same model, weights, batch and AdamW), warms
both up, then records ``--steps`` steps of each under ``torch.profiler`` and prints, per kernel name,
the device time per step of each side and the difference, largest differences first; and the totals
(kernels launched and device time per step). The evidence behind the torch eager figure on
docs/performance.md: where the generated step spends device time that the native one does not.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _kernels(fn: Any, steps: int, cuda: bool, by_op: bool) -> tuple[dict[str, float], int]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            fn()
        if cuda:
            torch.cuda.synchronize()
    times: dict[str, float] = collections.defaultdict(float)
    launches = 0
    for ev in prof.key_averages():
        if by_op:  # the aten operator that launched the device time
            if ev.key.startswith("aten::"):
                times[ev.key] += (ev.self_device_time_total if cuda else ev.self_cpu_time_total) / steps
                launches += ev.count
            continue
        t = ev.device_time_total if cuda else ev.self_cpu_time_total
        if cuda and ev.device_type.name != "CUDA":
            continue
        if not cuda and not ev.key.startswith("aten::"):
            continue
        times[ev.key] += t / steps
        launches += ev.count
    return times, launches // steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpt", default="2,768,12,64,1", help="layers,d,heads,seq,batch")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--by-op", action="store_true", help="group device time by the aten operator, not the kernel")
    ap.add_argument("--width", type=int, default=90, help="characters of a kernel name shown")
    a = ap.parse_args()

    import bench_train as BT
    import models as M
    import torch
    from run import _mithril_backends

    import mithril as ml

    _mithril_backends(log=lambda *_: None)

    layers, d, heads, seq, batch = (int(x) for x in a.gpt.split(","))
    cfg = M.GPTConfig(n_layers=layers, d_model=d, n_heads=heads, seq_len=seq, batch=batch)
    spec = next(s for s in BT.train_specs("full", cfg) if s.key.startswith("gpt"))
    ctx = BT._Ctx(spec)
    cuda = a.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    native = BT.TorchRunner(ctx, a.device, compiled=False, sync=sync)
    be = ml.TorchBackend(dtype=ml.float32, device=a.device)
    mithril = BT.MithrilRunner(ctx, be, jit=False, sync=lambda x: sync())
    for _ in range(3):
        native()
        mithril()
    tn, ln = _kernels(native, a.steps, cuda, a.by_op)
    tm, lm = _kernels(mithril, a.steps, cuda, a.by_op)
    unit = "device" if cuda else "CPU (aten self time)"
    print(
        f"per step, {unit}: native {sum(tn.values()) / 1e3:.2f} ms in {ln} kernels/ops; "
        f"Mithril {sum(tm.values()) / 1e3:.2f} ms in {lm}; ratio {sum(tm.values()) / sum(tn.values()):.3f}"
    )
    rows = sorted(set(tn) | set(tm), key=lambda k: -abs(tm.get(k, 0.0) - tn.get(k, 0.0)))
    w = a.width
    print(f"{'kernel':{w}s} {'native us':>10s} {'mithril us':>10s} {'diff us':>10s}")
    for k in rows[: a.top]:
        n, m = tn.get(k, 0.0), tm.get(k, 0.0)
        print(f"{k[:w]:{w}s} {n:10.0f} {m:10.0f} {m - n:+10.0f}")


if __name__ == "__main__":
    main()
