"""Suite ``ggml``: inference, GGML (float32, int8, int4) against PyTorch float32 on the CPU.

Cases: a 4-layer 4096-wide MLP at batch 1 (memory-bound: where quantized weights pay), and the
seed MLP and the seed CNN at the batch sizes of :data:`BATCHES` (batched inference: products of
at least 16 rows go through NumPy's BLAS inside the ggml graph, see ``mithril_ggml.blas``).

One call: ``pm.evaluate(params, {"input": x})`` for Mithril (compiled with
``static_inference=True``: inference mode, BatchNorm with running statistics),
``module(x)`` under ``torch.inference_mode()`` with the module in ``eval()`` mode
for PyTorch. Both use every core (GGML ``n_threads`` = ``os.cpu_count()``, torch's
default intra-op threads). Variants are timed interleaved (see :mod:`harness`).

Weight bytes: the bytes GGML stores for the params (``executable.stored_params()``,
quantized blocks with their scales) over the float32 bytes of the same params.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import models as M
import numpy as np
from harness import Stats, Variant, bench_threads, measure_memory, ratio_stats, time_variants

#: batch sizes of the seed MLP and the seed CNN per level (issue 21 part 4: batched inference)
BATCHES = {
    "smoke": {"seed_mlp": (1, 64), "seed_cnn": (1,)},
    "quick": {"seed_mlp": (1, 64, 512), "seed_cnn": (1, 64)},
    "full": {"seed_mlp": (1, 16, 64, 256, 512), "seed_cnn": (1, 64, 256, 512)},
}


def _specs(level: str) -> list[tuple[str, str, Callable[[], Any], tuple[int, ...], Callable[[], Any]]]:
    import native_torch as NT

    width, n = (256, 2) if level == "smoke" else (4096, 4)
    specs: list[tuple[str, str, Callable[[], Any], tuple[int, ...], Callable[[], Any]]] = [
        (
            f"mlp{n}x{width}",
            f"MLP {n}x{width} (Relu), B=1",
            lambda: M.deep_mlp(n, width),
            (1, width),
            lambda: NT.DeepMLP(n, width),
        )
    ]
    batches = BATCHES[level]
    for b in batches["seed_mlp"]:
        specs.append((f"seed_mlp_b{b}", f"seed MLP (inference), B={b}", M.seed_mlp, (b, 20), NT.SeedMLP))
    for b in batches["seed_cnn"]:
        key = "seed_cnn" if b == 1 else f"seed_cnn_b{b}"
        specs.append((key, f"seed CNN (inference), B={b}", M.seed_cnn, (b, 3, 32, 32), NT.SeedCNN))
    return specs


def _executable(pm: Any) -> Any:
    """The lowered GGML executable of the last compiled graph."""
    exe = getattr(pm, "executable", None)
    return exe if exe is not None else pm._last.executable


def run(
    level: str, *, rounds: int, target_s: float, memory: bool, modes: tuple[str | None, ...], log: Callable[[str], None]
) -> list[dict[str, Any]]:
    import native_torch as NT
    import torch

    import mithril as ml

    rows: list[dict[str, Any]] = []
    for key, title, build, shape, torch_module in _specs(level):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                model = build()
                npm = ml.compile(
                    model, ml.NumpyBackend(dtype=ml.float32), shapes={"input": list(shape)}, static_inference=True
                )
                params = npm.randomize_params(seed=0)
                x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
                ref = npm.evaluate(params, {"input": x})["output"]
                variants: list[Variant] = []
                info: dict[str, dict[str, Any]] = {}
                f32_bytes = sum(int(np.asarray(v).nbytes) for v in params.values())
                for q in modes:
                    be = ml.GGMLBackend(quantize=q, n_threads=bench_threads())
                    pm = ml.compile(model, be, shapes={"input": list(shape)}, static_inference=True)
                    inputs = {"input": x}
                    out = pm.evaluate(params, inputs)["output"]
                    exe = _executable(pm)
                    stored = sum(int(raw.nbytes) for _, raw in exe.stored_params().values())
                    name = f"ggml-{q or 'f32'}"
                    info[name] = dict(
                        batch=shape[0],
                        blas_nodes=exe.source.count("(BLAS)") if exe.source else 0,
                        weight_bytes=stored,
                        weight_bytes_f32=f32_bytes,
                        weight_bytes_ratio=stored / f32_bytes,
                        context_bytes=getattr(exe, "memory_bytes", None),
                        quantized=len(exe.quantization_report.quantized),
                        kept_f32=len(exe.quantization_report.float32),
                        check_rel_err=float(np.linalg.norm(out - ref) / np.linalg.norm(ref)),
                    )
                    variants.append(
                        Variant(
                            name,
                            (lambda pm=pm, inputs=inputs: pm.evaluate(params, inputs)),
                            "rss",
                            f"Mithril GGML {q or 'float32'}",
                            baseline="torch",
                        )
                    )
                tbe = ml.TorchBackend(dtype=ml.float32)
                tpm = ml.compile(model, tbe, shapes={"input": list(shape)}, static_inference=True)
                tparams = {k: tbe.array(v) for k, v in params.items()}
                tin = {"input": tbe.array(x)}

                def mithril_torch() -> Any:
                    with torch.inference_mode():
                        return tpm.evaluate(tparams, tin)

                info["mithril-torch"] = dict(
                    check_rel_err=float(
                        np.linalg.norm(tbe.to_numpy(mithril_torch()["output"]) - ref) / np.linalg.norm(ref)
                    )
                )
                variants.append(
                    Variant("mithril-torch", mithril_torch, "rss", "Mithril torch eager float32", baseline="torch")
                )
                module = torch_module()
                NT.load_params(module, params)
                module.eval()
                xt = torch.from_numpy(x)

                def native() -> Any:
                    with torch.inference_mode():
                        return module(xt)

                info["torch"] = dict(
                    check_rel_err=float(np.linalg.norm(native().numpy() - ref) / np.linalg.norm(ref)),
                    weight_bytes=f32_bytes,
                )
                variants.append(Variant("torch", native, "rss", "torch.nn float32 eager (inference_mode)"))
                log(f"ggml: {key}: {', '.join(v.name for v in variants)}")
                times = time_variants(variants, rounds=rounds, target_s=target_s)
                mems = {v.name: measure_memory(v) if memory else None for v in variants}
        except Exception as e:
            log(f"ggml: {key} FAILED: {type(e).__name__}: {e}")
            rows.append(
                dict(
                    suite="ggml",
                    model=key,
                    model_title=title,
                    variant="error",
                    error=f"{type(e).__name__}: {str(e)[:300]}",
                )
            )
            continue
        tt = times["torch"]
        for v in variants:
            st = Stats.of(times[v.name])
            row = dict(
                suite="ggml",
                model=key,
                model_title=title,
                mode="inference",
                variant=v.name,
                framework=v.framework,
                time_s=st.as_dict(),
                first_call_s=v.first_call_s,
                calls_per_round=v.info.get("calls_per_round"),
                peak_mem_bytes=mems[v.name],
                mem_method=v.mem_method,
                baseline=v.baseline,
                **info.get(v.name, {}),
            )
            if v.baseline:
                row["ratio"] = ratio_stats(times[v.name], tt).as_dict()
                row["speedup_vs_torch"] = Stats.of(tt).median / st.median
            rows.append(row)
    return rows
