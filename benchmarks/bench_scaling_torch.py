"""Scaling on PyTorch: the GPT training step over N processes (torchrun), Mithril vs DDP / FSDP2.

Launch with torchrun, one process per device (gloo on CPU, NCCL on GPU)::

    torchrun --nproc_per_node=N benchmarks/bench_scaling_torch.py [--fsdp] [--jit] [--cpu-mesh]

Mithril: ``TorchBackend(device_mesh=(N,))`` and ``ml.compile_step`` on the GLOBAL batch (every rank
passes the same arrays; DTensor splits the batch and inserts the gradient all-reduce, or FSDP's
all-gathers with ``--fsdp``). Native, same run: ``DistributedDataParallel`` (or FSDP2's
``fully_shard`` with ``--fsdp``) of the hand-written ``torch.nn`` GPT with ``torch.optim.AdamW`` on
each rank's slice of the batch. Every rank runs the same fixed sequence of calls (collectives must
line up), timed in interleaved rounds; rank 0 prints tokens/s (global) and the ratio, and writes
``--out``/results.json. Before timing, 3 steps from the same weights must give the same losses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from models import GPTConfig, gpt_lm


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpt", default="12,768,12,1024,8,50304", help="layers,d,heads,seq,batch_per_rank,vocab")
    ap.add_argument("--cpu-mesh", action="store_true", help="tiny GPT on the CPU (checks the harness)")
    ap.add_argument("--fsdp", action="store_true")
    ap.add_argument("--jit", action="store_true", help="Mithril jit=True and torch.compile of the native module")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--rtol", type=float, default=2e-3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.cpu_mesh:
        args.gpt, args.rounds, args.steps = "2,64,4,32,2,128", 3, 3

    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from native_torch import GPT, load_params
    from run import _mithril_backends

    import mithril as ml
    from mithril.models import CrossEntropyLoss

    _mithril_backends(log=lambda *a: None)  # PYTHONPATH-only checkouts (a GPU machine)

    cuda = torch.cuda.is_available() and not args.cpu_mesh
    torch.set_num_threads(1)
    be = ml.TorchBackend(device="cuda" if cuda else "cpu", device_mesh=(int(os.environ.get("WORLD_SIZE", "1")),))
    rank, world = dist.get_rank(), dist.get_world_size()
    layers, d, heads, t, b, vocab = (int(v) for v in args.gpt.split(","))
    cfg = GPTConfig(n_layers=layers, d_model=d, n_heads=heads, seq_len=t, batch=b * world, vocab=vocab)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((cfg.batch, t, d)).astype(np.float32)
    y = rng.integers(0, vocab, cfg.batch * t)

    layout = ml.parallel.Layout(fsdp=True) if args.fsdp else None
    step = ml.compile_step(
        gpt_lm(cfg),
        be,
        loss=CrossEntropyLoss(),
        jit=args.jit,
        sharding=layout,
        optimizer=ml.optim.AdamW(lr=args.lr, weight_decay=0.01),
        shapes={"input": [cfg.batch, t, d]},
    )
    state = step.init(seed=0)
    init = {k: be.to_numpy(v) for k, v in state.params.items()}
    xb, yb = be.array(x), be.array(y)

    device = be.torch_device
    local_cfg = GPTConfig(**{**asdict(cfg), "batch": b})
    module = GPT(local_cfg).to(device)
    load_params(module, init)
    if args.fsdp:
        from torch.distributed.fsdp import fully_shard

        for i in range(layers):
            fully_shard(getattr(module, f"h_{i}"))
        net = fully_shard(module)
    else:
        net = torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if cuda else None)
    fwd = torch.compile(net) if args.jit else net
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    lx = torch.as_tensor(x[rank * b : (rank + 1) * b], device=device)
    ly = torch.as_tensor(y[rank * b * t : (rank + 1) * b * t], device=device)

    def native():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(fwd(lx).reshape(-1, vocab), ly)
        loss.backward()
        opt.step()
        return loss.detach()

    box = {"s": state}

    def mithril():
        r = step(box["s"], {"input": xb, "target": yb})
        box["s"] = r.state
        return r.loss

    got, want = [], []
    for _ in range(3):
        got.append(float(mithril()))
        ln = native()
        dist.all_reduce(ln)
        want.append(float(ln) / world)
    same = bool(np.allclose(got, want, rtol=args.rtol))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times = {"mithril": [], "native": []}
    if same:
        for r in range(args.rounds):
            order = [("mithril", mithril), ("native", native)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                dist.barrier()
                sync()
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    out = fn()
                float(out)
                sync()
                times[name].append((time.perf_counter() - t0) / args.steps)
    if rank == 0:
        tokens = cfg.batch * t
        row = {
            "world": world,
            "fsdp": args.fsdp,
            "jit": args.jit,
            "gpt": args.gpt,
            "same_losses": same,
            "losses_mithril": got,
            "losses_native": want,
        }
        if same:
            med = {k: statistics.median(v) for k, v in times.items()}
            ratios = [a / b for a, b in zip(times["mithril"], times["native"])]
            row.update(
                {
                    "time_s": med,
                    "tokens_per_s": {k: tokens / v for k, v in med.items()},
                    "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
                }
            )
            print(
                f"world {world}{' fsdp' if args.fsdp else ''}{' jit' if args.jit else ''}: "
                f"{row['tokens_per_s']['mithril']:.0f} tok/s Mithril, {row['tokens_per_s']['native']:.0f} native "
                f"({'FSDP2' if args.fsdp else 'DDP'}), ratio {row['ratio']['median']:.3f} "
                f"({row['ratio']['min']:.3f}-{row['ratio']['max']:.3f})",
                flush=True,
            )
        else:
            print(f"world {world}: losses differ, Mithril {got} vs native {want}; not timed", flush=True)
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            name = f"torch-world{world}{'-fsdp' if args.fsdp else ''}{'-jit' if args.jit else ''}.json"
            with open(os.path.join(args.out, name), "w") as f:
                json.dump({"command": " ".join(sys.argv), **row}, f, indent=1)
    dist.barrier()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
