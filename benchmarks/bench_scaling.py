"""Scaling: the GPT training step (forward, cross-entropy, backward, AdamW) data-parallel over 1..N devices.

Mithril's JAX backend on a device mesh (``JaxBackend(device_mesh=(n,))``, one ``jax.jit`` with
``NamedSharding``s) against a hand-written ``jax.jit`` of ``value_and_grad`` + ``optax.adamw``
with the same shardings (batch split along the mesh, params and optimizer state replicated, or
fully sharded with ``--fsdp``) and donation, timed in the same run, interleaved. The batch per
device is fixed, so the global batch grows with n. Reports tokens/s, the ratio Mithril/native
at each n, and scaling efficiency tokens/s(n) / (n tokens/s(1)).

    python benchmarks/bench_scaling.py                  # GPT-2-small shapes, B=8/device, T=1024
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/bench_scaling.py --cpu-mesh
                                                        # a tiny GPT on 1, 2, 4, 8 CPU devices
                                                        # (checks the harness, says nothing of speed)

Before timing, 3 steps of Mithril and native from the same weights must give the same losses
(``--rtol``); otherwise the case is reported as wrong and not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from harness import Variant, machine_info, md_table, ratio_stats, time_variants
from models import GPTConfig, gpt_lm


def native_step(cfg: GPTConfig, mesh, fsdp: bool, lr: float):
    """Hand-written ``jax.jit`` step: value_and_grad of cross-entropy + optax.adamw, donated."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P
    from native_jax import gpt

    forward = gpt(cfg)
    opt = optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01)

    def loss_fn(p, x, y):
        logits = forward(p, x).reshape(-1, cfg.vocab)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(p, s, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    def param_sharding(arr):
        if fsdp and mesh.size > 1:
            for dim, size in enumerate(arr.shape):
                if size % mesh.size == 0:
                    return NamedSharding(mesh, P(*[("data" if d == dim else None) for d in range(arr.ndim)]))
        return NamedSharding(mesh, P())

    def init(params):
        p = {k: jax.device_put(jnp.asarray(v), param_sharding(np.asarray(v))) for k, v in params.items()}
        s = opt.init(p)
        return p, s

    batch = NamedSharding(mesh, P("data"))
    jitted = jax.jit(step, donate_argnums=(0, 1))
    return init, jitted, batch


def run_case(n: int, cfg: GPTConfig, args) -> dict:
    import jax
    from run import _mithril_backends

    import mithril as ml
    from mithril.models import CrossEntropyLoss

    _mithril_backends(log=lambda *a: None)  # PYTHONPATH-only checkouts (a GPU machine)

    per_device = cfg.batch
    gcfg = GPTConfig(**{**asdict(cfg), "batch": per_device * n})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((gcfg.batch, gcfg.seq_len, gcfg.d_model)).astype(np.float32)
    y = rng.integers(0, gcfg.vocab, gcfg.batch * gcfg.seq_len)

    be = ml.JaxBackend(device=args.platform, device_mesh=(n,))
    layout = ml.parallel.Layout(fsdp=True) if args.fsdp else None
    step = ml.compile_step(
        gpt_lm(gcfg),
        be,
        loss=CrossEntropyLoss(),
        jit=True,
        sharding=layout,
        optimizer=ml.optim.AdamW(lr=args.lr, weight_decay=0.01),
        shapes={"input": [gcfg.batch, gcfg.seq_len, gcfg.d_model]},
    )
    state = step.init(seed=0)
    init_params = {k: be.to_numpy(v) for k, v in state.params.items()}
    xb, yb = be.array(x), be.array(y)

    init, jitted, batch_sharding = native_step(gcfg, be.jax_mesh, args.fsdp, args.lr)
    p, s = init(init_params)
    xn, yn = jax.device_put(x, batch_sharding), jax.device_put(y, batch_sharding)

    # the same computation: 3 steps from the same weights give the same losses
    st, pn, sn = state, p, s
    got, want = [], []
    for _ in range(3):
        r = step(st, {"input": xb, "target": yb})
        st = r.state
        got.append(float(be.to_numpy(r.loss)))
        pn, sn, ln = jitted(pn, sn, xn, yn)
        want.append(float(ln))
    same = bool(np.allclose(got, want, rtol=args.rtol))
    row = {
        "devices": n,
        "global_batch": gcfg.batch,
        "tokens_per_step": gcfg.batch * gcfg.seq_len,
        "losses_mithril": got,
        "losses_native": want,
        "same_losses": same,
    }
    if not same:
        print(f"  n={n}: Mithril and native losses differ: {got} vs {want}; not timed", flush=True)
        return row

    box = {"m": st, "p": pn, "s": sn}

    def mithril_call():
        r = step(box["m"], {"input": xb, "target": yb})
        box["m"] = r.state
        r.loss.block_until_ready()

    def native_call():
        box["p"], box["s"], loss = jitted(box["p"], box["s"], xn, yn)
        loss.block_until_ready()

    variants = [
        Variant("mithril", mithril_call, mem_method="none", framework="Mithril JAX mesh", baseline="native"),
        Variant("native", native_call, mem_method="none", framework="jax.jit + optax"),
    ]
    times = time_variants(variants, rounds=args.rounds, target_s=args.target, warmup=1)
    med = {k: float(np.median(v)) for k, v in times.items()}
    row.update(
        {
            "time_s": med,
            "tokens_per_s": {k: row["tokens_per_step"] / t for k, t in med.items()},
            "ratio": ratio_stats(times["mithril"], times["native"]).as_dict(),
        }
    )
    if args.memory:
        row["bytes_per_device"] = _per_device_bytes(box["m"])  # the live state (earlier ones are donated)
    return row


def _per_device_bytes(state) -> dict:
    """Bytes of params and optimizer state held by the first device (shards only)."""
    total = {"params": 0, "optimizer": 0}
    for what, table in (("params", state.params), ("optimizer", state.optimizer)):
        for v in table.values():
            shards = getattr(v, "addressable_shards", None)
            if shards:
                total[what] += shards[0].data.nbytes
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--gpt",
        default="12,768,12,1024,8,50304",
        help="layers,d_model,heads,seq_len,batch_per_device,vocab (default: GPT-2 small shapes)",
    )
    ap.add_argument("--devices", default="1,2,4,8", help="device counts to run (those that exist)")
    ap.add_argument("--platform", default=None, help="JAX platform (default: gpu if present, else cpu)")
    ap.add_argument("--cpu-mesh", action="store_true", help="tiny GPT on CPU devices (harness check)")
    ap.add_argument("--fsdp", action="store_true", help="fully sharded params and optimizer state")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--target", type=float, default=1.0, help="seconds per variant per round")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--rtol", type=float, default=2e-3, help="loss agreement, Mithril vs native (float32)")
    ap.add_argument("--memory", action="store_true", help="bytes of params/optimizer state per device")
    ap.add_argument("--out", default=None, help="write results.json and results.md into this folder")
    args = ap.parse_args(argv)
    import jax

    if args.cpu_mesh:
        args.gpt, args.platform, args.rounds, args.target = "2,64,4,32,2,128", "cpu", min(args.rounds, 3), 0.2
    if args.platform is None:
        args.platform = "gpu" if any(d.platform == "gpu" for d in jax.devices()) else "cpu"
    layers, d, heads, t, b, vocab = (int(v) for v in args.gpt.split(","))
    cfg = GPTConfig(n_layers=layers, d_model=d, n_heads=heads, seq_len=t, batch=b, vocab=vocab)
    available = len(jax.devices(args.platform))
    counts = [n for n in (int(v) for v in args.devices.split(",")) if n <= available]
    print(
        f"GPT {args.gpt} on {args.platform} ({available} devices): {counts}{' fsdp' if args.fsdp else ''}", flush=True
    )
    rows = []
    for n in counts:
        row = run_case(n, cfg, args)
        rows.append(row)
        if "tokens_per_s" in row:
            print(
                f"  n={n}: {row['tokens_per_s']['mithril']:.0f} tok/s Mithril, {row['tokens_per_s']['native']:.0f} "
                f"native, ratio {row['ratio']['median']:.3f}",
                flush=True,
            )
    base = next((r for r in rows if r["devices"] == 1 and "tokens_per_s" in r), None)
    table = []
    for r in rows:
        if "tokens_per_s" not in r:
            table.append([r["devices"], "-", "-", "WRONG", "-", "-"])
            continue
        eff = {
            k: r["tokens_per_s"][k] / (r["devices"] * base["tokens_per_s"][k]) if base else float("nan")
            for k in ("mithril", "native")
        }
        r["scaling_efficiency"] = eff
        table.append(
            [
                r["devices"],
                f"{r['tokens_per_s']['mithril']:.0f}",
                f"{r['tokens_per_s']['native']:.0f}",
                f"{r['ratio']['median']:.3f} ({r['ratio']['min']:.3f}-{r['ratio']['max']:.3f})",
                f"{eff['mithril']:.2f}",
                f"{eff['native']:.2f}",
            ]
        )
    md = md_table(
        [
            "devices",
            "tokens/s Mithril",
            "tokens/s native",
            "time ratio (min-max)",
            "scaling eff. Mithril",
            "scaling eff. native",
        ],
        table,
    )
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        info = machine_info("gpu" if args.platform == "gpu" else "cpu")
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(
                {"command": " ".join(sys.argv), "machine": info, "config": vars(args), "rows": rows},
                f,
                indent=1,
                default=str,
            )
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(f"# Scaling: GPT training step, JAX mesh\n\n`{' '.join(sys.argv)}`\n\n{md}\n")
    return 0 if all(r["same_losses"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
