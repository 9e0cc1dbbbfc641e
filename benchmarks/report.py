"""results.json -> results.md (tables per suite, the goals, the machine)."""

from __future__ import annotations

import math
from typing import Any

from harness import fmt_bytes, fmt_ratio, fmt_time, md_table


def _t(d: dict[str, float] | None) -> str:
    if not d:
        return "—"
    return f"{fmt_time(d['median'])} ({fmt_time(d['min'])}–{fmt_time(d['max'])})"


def _err(x: float | None) -> str:
    return "—" if x is None else f"{x:.1e}"


def goals(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, figure, met?) for every goal the rows allow to judge."""
    rows = result["rows"]
    out: list[tuple[str, str, str]] = []

    def yes(ok: bool) -> str:
        return "met" if ok else "**not met**"

    comp = {r["size"]: r for r in rows if r.get("suite") == "compile" and r.get("family") == "gpt" and "total_s" in r}
    if 12 in comp:
        t12 = comp[12]["total_s"]["median"]
        out.append(("12-layer GPT build+compile < 0.3 s", f"{t12:.3f} s", yes(t12 < 0.3)))
        if 48 in comp:
            r = comp[48]["total_s"]["median"] / t12
            out.append(("48-layer GPT < 4.5x the 12-layer time", f"{r:.2f}x", yes(r < 4.5)))
    for r in rows:
        if r.get("suite") != "runtime" or "ratio" not in r:
            continue
        lim = {"mithril": 1.05 if r["family"] == "torch" else None, "mithril-jit": 1.02}.get(r["variant"])
        if lim is None:
            continue
        what = {
            "torch": {"mithril": "torch eager", "mithril-jit": "torch jit vs torch.compile"},
            "jax": {"mithril-jit": "jax jit"},
        }.get(r["family"], {}).get(r["variant"])
        if what is None:
            continue
        med = r["ratio"]["median"]
        out.append((f"{what} ratio <= {lim}: {r['model']} {r['mode']}", f"{med:.2f}", yes(med <= lim)))
    for r in rows:
        if r.get("suite") != "train" or "ratio" not in r:
            continue
        lim = {("torch", "mithril"): 1.05, ("torch", "mithril-jit"): 1.02, ("jax", "mithril-jit"): 1.02}.get(
            (r["family"], r["variant"])
        )
        if lim is None:
            continue
        what = {"mithril": "torch eager vs torch.nn + AdamW"}.get(r["variant"]) if r["family"] == "torch" else None
        what = what or ("torch jit vs torch.compile step" if r["family"] == "torch" else "jax jit vs jax.jit + optax")
        med = r["ratio"]["median"]
        status = yes(med <= lim) if r.get("check_ok", True) else "**check FAILED**"
        out.append((f"training step, {what} <= {lim}: {r['model']}", f"{med:.2f}", status))
    for r in rows:
        if r.get("suite") == "ggml" and r.get("variant") == "ggml-int8" and r["model"].startswith("mlp"):
            s = r.get("speedup_vs_torch")
            if s is not None:
                out.append((f"GGML int8 {r['model']} >= 2x faster than PyTorch float32", f"{s:.2f}x", yes(s >= 2)))
            w = r.get("weight_bytes_ratio")
            if w is not None:
                out.append((f"GGML int8 {r['model']} weights <= 0.3x float32 bytes", f"{w:.3f}x", yes(w <= 0.3)))
    return out


def write_markdown(path: str, result: dict[str, Any]) -> None:
    rows = result["rows"]
    m = result["machine"]
    lines = [
        f"# Mithril benchmark results ({result['level']})",
        "",
        f"Command: `{result['command']}`  ",
        f"Elapsed: {result.get('elapsed_s', 0):.0f} s",
        "",
        "## Machine",
        "",
        f"* CPU: {m.get('cpu')} ({m.get('cores_usable')} usable cores of {m.get('cores_logical')}), "
        f"{m.get('memory_gib')} GiB" + (f"; GPU: {m['gpu']}" if m.get("gpu") else ""),
        f"* device: {m.get('device')}; torch threads: {m.get('torch_threads')}; "
        f"load average at start: {m.get('load_average_at_start')}",
        f"* {m.get('platform')}, Python {m.get('python')}, commit {m.get('git_commit')}",
        "* versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v),
        f"* rounds per case: {result['settings']['rounds']}, about "
        f"{result['settings']['target_s_per_round']} s per variant per round",
        "",
    ]
    if result.get("skipped"):
        lines += ["Skipped: " + "; ".join(result["skipped"]), ""]
    g = goals(result)
    if g:
        lines += ["## Goals", "", md_table(["goal", "figure", "status"], g), ""]

    comp = [r for r in rows if r.get("suite") == "compile"]
    if comp:
        lines += [
            "## compile: build and compile time",
            "",
            "Median (min–max) over repetitions; growth = total / total of the previous size; per "
            "doubling = growth ** (1 / log2(size ratio)); peak memory: tracemalloc over build + compile.",
            "",
        ]
        body = []
        prev: dict[str, tuple[int, float]] = {}
        for r in comp:
            if "error" in r:
                body.append([r["case"], r["backend"], "error", r["error"], "", "", "", ""])
                continue
            growth = per_doubling = "—"
            if r["family"] in ("mlp", "gpt"):
                t = r["total_s"]["median"]
                if r["family"] in prev:
                    n0, t0 = prev[r["family"]]
                    g = t / t0
                    growth = f"{g:.2f}x ({n0}→{r['size']})"
                    per_doubling = f"{g ** (1 / math.log2(r['size'] / n0)):.2f}x"
                prev[r["family"]] = (r["size"], t)
            body.append(
                [
                    r["case"],
                    r["backend"],
                    _t(r["build_s"]),
                    _t(r["compile_s"]),
                    _t(r["total_s"]),
                    growth,
                    per_doubling,
                    fmt_bytes(r.get("peak_mem_bytes")),
                ]
            )
        lines += [
            md_table(["case", "backend", "build", "compile", "total", "growth", "per doubling", "peak mem"], body),
            "",
        ]

    rt = [r for r in rows if r.get("suite") == "runtime"]
    if rt:
        lines += [
            "## runtime: Mithril vs hand-written native code",
            "",
            "Per call: median (min–max) over rounds. Ratio = Mithril / its baseline, per round, "
            "median (min–max); < 1 is faster than native. `forward`: one evaluate; `train`: forward + "
            "backward to every param's gradient (see bench_runtime.py). check: relative L2 error of "
            "Mithril's output (forward) or gradients (train) against the native code.",
            "",
        ]
        models: dict[str, str] = {}
        for r in rt:
            models.setdefault(r["model"], r["model_title"])
        for key, title in models.items():
            lines += [f"### {title}", ""]
            body = []
            for r in (r for r in rt if r["model"] == key):
                if r["variant"] == "error":
                    body.append([r["mode"], r["framework"], "error: " + r["error"], "", "", "", "", ""])
                    continue
                extra = f"{r['tokens_per_s']:.0f} tok/s" if r.get("tokens_per_s") else ""
                body.append(
                    [
                        r["mode"],
                        r["framework"],
                        _t(r["time_s"]),
                        f"{fmt_ratio(r.get('ratio'))} vs {r['baseline']}" if r.get("ratio") else "baseline",
                        f"{fmt_bytes(r.get('peak_mem_bytes'))} ({r['mem_method']})",
                        fmt_time(r.get("first_call_s")),
                        _err(r.get("check_rel_err")),
                        extra,
                    ]
                )
                for n in r.get("notes") or []:
                    body.append(["", "note", n, "", "", "", "", ""])
            lines += [
                md_table(["mode", "variant", "time per call", "ratio", "peak mem", "first call", "check", ""], body),
                "",
            ]

    tr = [r for r in rows if r.get("suite") == "train"]
    if tr:
        lines += [
            "## train: full training step (forward, loss, backward, AdamW update)",
            "",
            "One optimizer step per call, state carried over (see bench_train.py). Per step: median "
            "(min–max) over rounds. Ratio = Mithril / the native step of the same library, per round, "
            "median (min–max). mem ratio = peak memory / the baseline's. Loss check: largest relative "
            "difference of the first 3 losses from the same initial weights against the group's first "
            "(native) variant, and of the params after those 3 steps; first call = the first step "
            "(compilation included).",
            "",
        ]
        models = {}
        for r in tr:
            models.setdefault(r["model"], r["model_title"])
        for key, title in models.items():
            lines += [f"### {title}", ""]
            body = []
            for r in (r for r in tr if r["model"] == key):
                if r["variant"] == "error":
                    body.append([r["framework"], "error: " + r["error"], "", "", "", "", "", ""])
                    continue
                c = r.get("loss_check") or {}
                if c.get("reference") is None:
                    check = "reference" + (
                        f" (vs {c['cross_reference'].split(':', 1)[1]}: {c['cross_rel_err']:.1e})"
                        if c.get("cross_reference")
                        else ""
                    )
                else:
                    check = f"{c['loss_rel_err']:.1e} / {c['param_rel_err']:.1e}" + (
                        "" if c.get("ok") else " **CHECK FAILED**"
                    )
                extra = f"{r['tokens_per_s']:.0f} tok/s" if r.get("tokens_per_s") else f"{r['steps_per_s']:.0f} steps/s"
                mr = f" ×{r['peak_mem_ratio']:.2f}" if r.get("peak_mem_ratio") is not None else ""
                body.append(
                    [
                        r["framework"],
                        _t(r["time_s"]),
                        f"{fmt_ratio(r.get('ratio'))} vs {r['baseline']}" if r.get("ratio") else "baseline",
                        f"{fmt_bytes(r.get('peak_mem_bytes'))}{mr} ({r['mem_method']})",
                        fmt_time(r.get("first_call_s")),
                        check,
                        extra,
                    ]
                )
                for n in r.get("notes") or []:
                    body.append(["note", n, "", "", "", "", ""])
            lines += [
                md_table(
                    ["variant", "time per step", "ratio", "peak mem", "first call", "loss check (loss / params)", ""],
                    body,
                ),
                "",
            ]

    gg = [r for r in rows if r.get("suite") == "ggml"]
    if gg:
        lines += [
            "## ggml: batch-1 inference vs PyTorch float32 (CPU)",
            "",
            "speedup = torch time / variant time (per-round ratios: variant / torch). "
            "weights = bytes GGML stores for the params (ratio to float32 bytes). ggml context = the "
            "memory GGML allocates once for weights, activations and graph (so peak mem per call is "
            "about 0).",
            "",
        ]
        body = []
        for r in gg:
            if r["variant"] == "error":
                body.append([r["model_title"], "error", r["error"], "", "", "", "", ""])
                continue
            w = r.get("weight_bytes")
            wr = r.get("weight_bytes_ratio")
            body.append(
                [
                    r["model_title"],
                    r["framework"],
                    _t(r["time_s"]),
                    f"{r['speedup_vs_torch']:.2f}x" if r.get("speedup_vs_torch") else "baseline",
                    fmt_ratio(r.get("ratio")) if r.get("ratio") else "—",
                    (fmt_bytes(w) + (f" ({wr:.3f}x)" if wr else "")) if w else "—",
                    fmt_bytes(r.get("context_bytes")) if r.get("context_bytes") else "—",
                    f"{fmt_bytes(r.get('peak_mem_bytes'))} ({r['mem_method']})",
                    _err(r.get("check_rel_err")),
                ]
            )
        lines += [
            md_table(
                [
                    "model",
                    "variant",
                    "time per call",
                    "speedup",
                    "ratio",
                    "weights",
                    "ggml context",
                    "peak mem",
                    "check",
                ],
                body,
            ),
            "",
        ]
    lines += [
        "## Memory columns",
        "",
        "* tracemalloc: peak bytes traced during one call above those traced before it (NumPy buffers "
        "and Python objects).",
        "* rss: growth of the resident set during one call (VmHWM after, reset before via "
        "/proc/self/clear_refs, minus VmRSS before, after malloc_trim). Caches a library keeps between "
        "calls are not counted.",
        "* cuda: torch.cuda.max_memory_allocated during one call minus memory_allocated before.",
        "* jax-device: peak_bytes_in_use after minus bytes_in_use before (peak is process-wide: upper bound).",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":  # re-render a results.json: python benchmarks/report.py results.json [results.md]
    import json
    import sys

    src = sys.argv[1]
    dst = sys.argv[2] if len(sys.argv) > 2 else src[: -len(".json")] + ".md"
    with open(src) as f:
        write_markdown(dst, json.load(f))
