"""Mithril benchmarks against hand-written native code, measured in the same run.

    python benchmarks/run.py                  # full CPU run (about 9 min on 2 cores)
    python benchmarks/run.py --quick          # smaller sizes, fewer rounds (< 2 min)
    python benchmarks/run.py --smoke          # tiny sizes, for the test suite (< 60 s)
    python benchmarks/run.py --only compile   # one suite: compile | runtime | train | ggml
    python benchmarks/run.py --device cuda    # torch (cuda) and JAX (gpu) runtime cases on a GPU

Writes ``results.md`` and ``results.json`` (every case: median, min and max over
rounds, peak memory, ratio to the native baseline of the same run, the machine)
into ``--out`` (default ``benchmarks/results``). See benchmarks/README.md and the
docstrings of harness.py and bench_*.py for exactly what is timed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SUITES = ("compile", "runtime", "train", "ggml")


def _available(mod: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


LIBS = {"numpy": "numpy", "torch": "torch", "jax": "jax", "ggml": "ggml"}


def _mithril_backends(log: Any = print) -> list[str]:
    """Backends whose Mithril package *and* library import here.

    Where the packages are on ``PYTHONPATH`` but not pip-installed (no entry
    points, e.g. on a remote GPU machine), their plugin modules are registered
    in-process, the way a notebook registers a plugin.
    """
    import importlib

    import mithril as ml

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        names = set(ml.plugins.backends())
        for name, lib in LIBS.items():
            if name in names or not _available(lib) or not _available(f"mithril_{name}"):
                continue
            try:
                ml.plugins.register(importlib.import_module(f"mithril_{name}.plugin"), name=name)
                names = set(ml.plugins.backends())
                log(f"registered mithril_{name}.plugin in-process (no entry point installed)")
            except Exception as e:
                log(f"backend {name}: cannot load: {type(e).__name__}: {e}")
    return sorted(n for n in names if _available(LIBS.get(n, n)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds (< 2 min)")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, one round each, for the test suite (< 60 s); wins over --quick",
    )
    ap.add_argument("--only", choices=SUITES, action="append", help="run only this suite (repeatable)")
    ap.add_argument("--out", default=str(HERE / "results"), help="output folder (default benchmarks/results)")
    ap.add_argument(
        "--device", default="cpu", help="device of the torch and JAX runtime cases: cpu, cuda, cuda:N, gpu (JAX name)"
    )
    ap.add_argument(
        "--backends",
        default=None,
        help="comma-separated backend families for the runtime suite (numpy,torch,jax,ggml); "
        "default: all installed (torch and jax only with --device other than cpu)",
    )
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per case")
    ap.add_argument("--target", type=float, default=None, help="seconds per variant per round")
    ap.add_argument("--no-memory", action="store_true", help="skip peak-memory measurements")
    ap.add_argument("--no-torch-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument(
        "--models",
        default=None,
        help="comma-separated model keys of the runtime suite to run (seed_mlp, mlp, seed_cnn, gpt)",
    )
    ap.add_argument(
        "--gpt",
        default=None,
        help="GPT shape of the runtime suite as layers,d_model,heads,seq,batch (e.g. 12,768,12,1024,8)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for every library (BLAS, torch, XLA, GGML); default 1, which gives "
        "stable figures on a shared machine; 0 leaves each library's default (all cores)",
    )
    return ap.parse_args(argv)


def set_threads(n: int) -> None:
    """Pin every library to ``n`` CPU threads (before they are imported)."""
    if n <= 0:
        return
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ):
        os.environ[var] = str(n)
    os.environ["MITHRIL_BENCH_THREADS"] = str(n)
    if n == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = (
                flags + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            ).strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads if args.device == "cpu" else 0)
    if args.device != "cpu":
        # torch and JAX share the GPU: JAX must not grab 75% of it up front
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    level = "smoke" if args.smoke else "quick" if args.quick else "full"
    suites = tuple(args.only) if args.only else SUITES
    on_gpu = args.device != "cpu"
    if on_gpu:
        suites = tuple(s for s in suites if s in ("runtime", "train"))
    rounds = args.rounds or {"smoke": 1, "quick": 3, "full": 7}[level]
    target = args.target or {"smoke": 0.005, "quick": 0.05, "full": 0.25}[level]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"mithril\.plugins.*")
    import harness
    from harness import dump_json, machine_info

    if level != "full":
        harness.MEM_REPEATS = 1
    from report import write_markdown

    if args.threads > 0 and args.device == "cpu" and _available("torch"):
        import torch

        torch.set_num_threads(args.threads)
    installed = _mithril_backends(log)
    log(f"backends: {installed}; suites: {list(suites)}; level: {level}; device: {args.device}")
    if args.backends:
        families = [b.strip() for b in args.backends.split(",") if b.strip()]
    else:
        families = [b for b in ("numpy", "torch", "jax", "ggml") if b in installed]
        if on_gpu:
            families = [b for b in families if b in ("torch", "jax")]
    missing = [b for b in families if b not in installed]
    families = [b for b in families if b in installed]
    result: dict[str, Any] = {
        "command": " ".join(
            [
                os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "run.py",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "level": level,
        "machine": machine_info(args.device),
        "settings": {
            "rounds": rounds,
            "target_s_per_round": target,
            "families": families,
            "threads": args.threads if args.threads > 0 and args.device == "cpu" else "library default",
            "missing_backends": missing,
            "memory": not args.no_memory,
        },
        "rows": [],
        "skipped": [f"backend {b}: not installed" for b in missing],
    }

    def save() -> None:
        result["elapsed_s"] = time.perf_counter() - t_start
        dump_json(str(out / "results.json"), result)
        write_markdown(str(out / "results.md"), result)

    if "compile" in suites:
        import bench_compile

        result["rows"] += bench_compile.run(
            level,
            reps={"smoke": 1, "quick": 2, "full": 5}[level],
            backends=installed,
            memory=not args.no_memory,
            log=log,
        )
        save()
    if "runtime" in suites:
        import bench_runtime
        import models as M

        gpt_cfg = None
        if args.gpt:
            n, d, h, t, b = (int(v) for v in args.gpt.split(","))
            gpt_cfg = M.GPTConfig(n_layers=n, d_model=d, n_heads=h, seq_len=t, batch=b)
        if args.no_torch_compile:
            jit_models: list[str] | None = []
        elif on_gpu:
            jit_models = None  # every model
        elif level == "full":
            jit_models = ["seed_mlp", "mlp*", "seed_cnn", "gpt2"]
        elif level == "quick":
            jit_models = ["seed_mlp"]
        else:
            jit_models = []
        if jit_models is not None and "torch" in families:
            result["skipped"].append(
                "torch.compile variants only for "
                + (", ".join(jit_models) or "no model")
                + f" at --{level} (on a small CPU, torch.compile of the 12-layer GPT "
                "training step alone takes minutes)"
            )

        def sink(new: list[dict[str, Any]]) -> None:  # partial results survive an interrupted run
            result["rows"].extend(new)
            save()

        bench_runtime.run(
            level,
            device=args.device,
            families=families,
            rounds=rounds,
            target_s=target,
            torch_jit_models=jit_models,
            memory=not args.no_memory,
            log=log,
            gpt_cfg=gpt_cfg,
            models=args.models.split(",") if args.models else None,
            sink=sink,
        )
        save()
    if "train" in suites:
        import bench_train
        import models as M

        gpt_cfg = None
        if args.gpt:
            n, d, h, t, b = (int(v) for v in args.gpt.split(","))
            gpt_cfg = M.GPTConfig(n_layers=n, d_model=d, n_heads=h, seq_len=t, batch=b)
        if args.no_torch_compile:
            train_jit: list[str] | None = []
        elif on_gpu:
            train_jit = None
        else:
            train_jit = {"full": ["seed_mlp", "seed_cnn", "gpt2"], "quick": ["seed_mlp"], "smoke": []}[level]
        if train_jit is not None and "torch" in families:
            result["skipped"].append(
                "train suite: torch.compile variants only for "
                + (", ".join(train_jit) or "no model")
                + f" at --{level}"
            )
        if "optax" not in sys.modules and not _available("optax") and "jax" in families:
            result["skipped"].append("train suite: jax family skipped (optax is not installed)")
            train_families = [f for f in families if f != "jax"]
        else:
            train_families = list(families)

        def train_sink(new: list[dict[str, Any]]) -> None:
            result["rows"].extend(new)
            save()

        bench_train.run(
            level,
            device=args.device,
            families=train_families,
            rounds=rounds,
            target_s=target,
            torch_jit_models=train_jit,
            memory=not args.no_memory,
            log=log,
            gpt_cfg=gpt_cfg,
            models=args.models.split(",") if args.models else None,
            sink=train_sink,
        )
        save()
    if "ggml" in suites:
        if "ggml" in installed and _available("torch"):
            import bench_ggml

            modes = (None, "int8") if level == "smoke" else (None, "int8", "int4")
            result["rows"] += bench_ggml.run(
                level, rounds=rounds, target_s=target, memory=not args.no_memory, modes=modes, log=log
            )
        else:
            result["skipped"].append("ggml suite: needs mithril-ggml (ggml-python) and torch")
        save()
    save()
    log(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
