"""results.json -> results.md (tables per suite, the goals, the machine)."""

from __future__ import annotations

import math
from typing import Any

from harness import UNSTABLE_SPREAD, fmt_bytes, fmt_load, fmt_ratio, fmt_time, md_table

#: fewer rounds than this and a ratio is only indicative: its goal is neither met nor missed
MIN_ROUNDS = 3


def _t(d: dict[str, float] | None) -> str:
    if not d:
        return "—"
    return f"{fmt_time(d['median'])} ({fmt_time(d['min'])}–{fmt_time(d['max'])})"


def _err(x: float | None) -> str:
    return "—" if x is None else f"{x:.1e}"


def judge(ok: bool, stats: dict[str, Any] | None = None) -> str:
    """``met`` / ``not met``, unless the figure's per-round spread or round count does not allow to say."""
    if stats is not None:
        if stats.get("n", MIN_ROUNDS) < MIN_ROUNDS:
            return f"indicative ({stats['n']} round{'s' if stats['n'] != 1 else ''})"
        if stats.get("spread", 0.0) > UNSTABLE_SPREAD:
            return f"**unstable** (spread {stats['spread']:.0%})"
    return "met" if ok else "**not met**"


def _figure(x: float, stats: dict[str, Any] | None, unit: str = "x") -> str:
    spread = f", spread {stats['spread']:.0%}" if stats and "spread" in stats else ""
    load = f", load {fmt_load(stats)}" if stats and stats.get("load_avg") else ""
    return f"{x:.2f}{unit}{spread}{load}" if unit == "x" else f"{x:.3f}{unit}{spread}{load}"


def compile_goals(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Issue 21's build/compile goals, judged on CPU time (see bench_compile.py)."""
    out: list[tuple[str, str, str]] = []

    def fam(name: str) -> dict[int, dict[str, Any]]:
        return {
            r["size"]: r for r in rows if r.get("suite") == "compile" and r.get("family") == name and "total_s" in r
        }

    def cpu(r: dict[str, Any]) -> dict[str, Any]:
        return r.get("cpu_total_s") or r["total_s"]

    def clock(r: dict[str, Any]) -> str:
        return "CPU time" if "cpu_total_s" in r else "wall time"

    mlp, gpt = fam("mlp"), fam("gpt")
    if 1000 in mlp:
        st = cpu(mlp[1000])
        t = st["median"]
        out.append(
            (f"1000-layer MLP build+compile <= 0.5 s ({clock(mlp[1000])})", _figure(t, st, " s"), judge(t <= 0.5, st))
        )
    growth = [(n, r) for n, r in sorted(mlp.items()) if n >= 250 and "cpu_growth" in r and r["growth_from"] >= 250]
    if growth:
        worst_n, worst = max(growth, key=lambda nr: nr[1]["cpu_growth"]["per_doubling"]["median"])
        st = worst["cpu_growth"]["per_doubling"]
        sizes = f"{growth[0][1]['growth_from']}→{growth[-1][0]}"
        noisy = [(n, r) for n, r in growth if r["cpu_growth"]["per_doubling"]["unstable"]]
        status = judge(
            all(r["cpu_growth"]["per_doubling"]["median"] <= 2.1 for _, r in growth),
            noisy[0][1]["cpu_growth"]["per_doubling"] if noisy else st,
        )
        if noisy:
            status += " at " + ", ".join(f"{r['growth_from']}→{n}" for n, r in noisy)
        out.append(
            (
                f"MLP growth per doubling <= 2.1x, {sizes} layers (worst: {worst['growth_from']}→{worst_n})",
                _figure(st["median"], st),
                status,
            )
        )
    if 12 in gpt:
        st = cpu(gpt[12])
        t12 = st["median"]
        out.append(
            (f"12-layer GPT build+compile < 0.3 s ({clock(gpt[12])})", _figure(t12, st, " s"), judge(t12 < 0.3, st))
        )
        if 48 in gpt and gpt[48].get("span_from") == 12:
            sp = gpt[48]["span"]
            out.append(
                ("48-layer GPT <= 4.2x the 12-layer time", _figure(sp["median"], sp), judge(sp["median"] <= 4.2, sp))
            )
        elif 48 in gpt:
            r = cpu(gpt[48])["median"] / t12
            out.append(("48-layer GPT <= 4.2x the 12-layer time", f"{r:.2f}x", judge(r <= 4.2)))
    return out


def goals(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, figure, status) for every goal the rows allow to judge; a ratio whose per-round spread
    exceeds 10% (or with fewer than 3 rounds) is reported as unstable (indicative), not met or missed."""
    rows = result["rows"]
    out = compile_goals(rows)

    def yes(ok: bool, stats: dict[str, Any] | None = None) -> str:
        return judge(ok, stats)

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
        out.append(
            (f"{what} ratio <= {lim}: {r['model']} {r['mode']}", _figure(med, r["ratio"]), yes(med <= lim, r["ratio"]))
        )
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
        status = yes(med <= lim, r["ratio"]) if r.get("check_ok", True) else "**check FAILED**"
        out.append((f"training step, {what} <= {lim}: {r['model']}", _figure(med, r["ratio"]), status))
    for r in rows:
        if r.get("suite") == "ggml" and r.get("variant") == "ggml-int8" and r["model"].startswith("mlp"):
            s = r.get("speedup_vs_torch")
            if s is not None:
                out.append(
                    (
                        f"GGML int8 {r['model']} >= 2x faster than PyTorch float32",
                        _figure(s, r.get("ratio")),
                        yes(s >= 2, r.get("ratio")),
                    )
                )
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
        lines += [
            "## Goals",
            "",
            f"A figure's spread is the interquartile range of its per-round values over their median; above "
            f"{UNSTABLE_SPREAD:.0%} the goal is reported **unstable** (and with fewer than {MIN_ROUNDS} rounds "
            "indicative), neither met nor missed. load = 1-minute load average before→after the rounds.",
            "",
            md_table(["goal", "figure", "status"], g),
            "",
        ]

    comp = [r for r in rows if r.get("suite") == "compile"]
    if comp:
        lines += [
            "## compile: build and compile time",
            "",
            "Wall time, median (min–max) over repetitions; the sizes of a family are timed interleaved (each "
            "round builds and compiles every size once). cpu total = the process's CPU time (build and compile "
            "are single-threaded; on a loaded machine wall time also counts waiting for a core). growth = CPU "
            "total / CPU total of the previous size, per round: median (min–max) and spread; per doubling = "
            "growth ** (1 / log2(size ratio)); peak memory: tracemalloc over build + compile.",
            "",
        ]
        body = []
        prev: dict[str, tuple[int, float]] = {}
        for r in comp:
            if "error" in r:
                body.append([r["case"], r["backend"], "error", r["error"], "", "", "", "", "", ""])
                continue
            growth = per_doubling = "—"
            cpu = r.get("cpu_total_s") or r["total_s"]
            if "cpu_growth" in r:
                g = r["cpu_growth"]
                growth = (
                    f"{fmt_ratio({k: v for k, v in g.items() if k != 'load_avg'})} ({r['growth_from']}→{r['size']})"
                )
                per_doubling = f"{g['per_doubling']['median']:.2f}x"
            elif r["family"] in ("mlp", "gpt") and r["family"] in prev:  # results written before growth per round
                n0, t0 = prev[r["family"]]
                ratio = cpu["median"] / t0
                growth = f"{ratio:.2f}x ({n0}→{r['size']})"
                per_doubling = f"{ratio ** (1 / math.log2(r['size'] / n0)):.2f}x"
            if r["family"] in ("mlp", "gpt"):
                prev[r["family"]] = (r["size"], cpu["median"])
            body.append(
                [
                    r["case"],
                    r["backend"],
                    _t(r["build_s"]),
                    _t(r["compile_s"]),
                    _t(r["total_s"]),
                    _t(r.get("cpu_total_s")),
                    growth,
                    per_doubling,
                    fmt_load(r["total_s"]),
                    fmt_bytes(r.get("peak_mem_bytes")),
                ]
            )
        header = ["case", "backend", "build", "compile", "total", "cpu total", "growth", "per doubling", "load"]
        lines += [md_table([*header, "peak mem"], body), ""]

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
            "(compilation included); time to first step = building the variant (compile_step and init; the "
            "module, optimizer and compile wrapper) plus that first step, cold compile caches, with its "
            "ratio to the native variant's.",
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
                        fmt_time(r.get("first_step_total_s"))
                        + (f" ({r['first_step_ratio']:.2f}x)" if r.get("first_step_ratio") is not None else ""),
                        check,
                        extra,
                    ]
                )
                for n in r.get("notes") or []:
                    body.append(["note", n, "", "", "", "", "", ""])
            lines += [
                md_table(
                    [
                        "variant",
                        "time per step",
                        "ratio",
                        "peak mem",
                        "first call",
                        "time to first step",
                        "loss check (loss / params)",
                        "",
                    ],
                    body,
                ),
                "",
            ]

    gg = [r for r in rows if r.get("suite") == "ggml"]
    if gg:
        lines += [
            "## ggml: inference (batch 1 and batched) vs PyTorch float32 (CPU)",
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
