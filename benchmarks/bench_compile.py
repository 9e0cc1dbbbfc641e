"""Suite ``compile``: time to build a logical model and to compile it.

* ``build``: constructing the logical model (``Model()``, ``+=``/``|=``, shape
  inference while connecting).
* ``compile``: ``ml.compile(model, backend, shapes=...)`` (flatten, shape
  solving, passes, code generation for the forward graph, lowering). A backend
  instance is created before timing (plugin loading is not counted).
* ``total``: build + compile of the same repetition.

Every repetition runs in a fresh Python process (``python bench_compile.py --one``)
that imports Mithril, builds and compiles a one-layer model of the family (imports,
templates and caches warm), then times one build and compile. In one long-lived
process the sizes would not run under the same conditions: the memory a build frees
is reused by the next one, so the smaller sizes of a family ran on memory already
mapped and cached while the largest always had to fault in fresh pages (at 2000
layers 12k page faults against 3k at 1000; with sizes 1000/2000/4000 in one process
1000->2000 grew 2.00x and 2000->4000 2.22x, with 250..2000 the 1000->2000 step grew
2.20x: the size's place in the list, not the size, set the figure). A fresh process
is also what a user's script is. The sizes of a family (the ``+=`` MLP, the GPT) are
timed *interleaved*: every round builds and compiles each size once, in a rotating
order, so the growth ratios of a round are measured under the same load. Wall time
(``perf_counter``) and the process's CPU time (``process_time``) are both recorded: building and compiling are single-threaded
Python, so on a shared machine with more runnable jobs than cores the wall time
also counts time spent waiting for a core, while the CPU time is what the work
costs; the goals are judged on CPU time.

Growth: total(n) / total(previous n) per round (median, min, max, spread); per
doubling = growth ** (1 / log2(size ratio)). Peak memory is ``tracemalloc``'s peak
over build + compile, measured in a separate repetition (tracemalloc slows Python
down).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import models as M
from harness import UNSTABLE_SPREAD, Rounds, Stats, load_1min, spread


@dataclass(frozen=True)
class Case:
    family: str  # "mlp" | "gpt"
    title: str
    size: int  # layers
    build: Callable[[], Any]
    shapes: dict[str, list[int]]
    #: builds the family's one-layer model (the warm-up of a measuring process)
    warm: Callable[[], Any]
    level: str


@dataclass
class Times:
    """One case's per-round seconds: wall and CPU, of build and compile."""

    build: Rounds
    compile: Rounds
    cpu_build: Rounds
    cpu_compile: Rounds

    @classmethod
    def empty(cls) -> Times:
        return cls(Rounds(), Rounds(), Rounds(), Rounds())

    def total(self, cpu: bool = False) -> Rounds:
        b, c = (self.cpu_build, self.cpu_compile) if cpu else (self.build, self.compile)
        out = Rounds(x + y for x, y in zip(b, c))
        out.load_avg = self.build.load_avg
        return out


def _backend(name: str) -> Any:
    import mithril as ml

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ml.backend(name, dtype=ml.float32)


def _one(case: Case, backend: str, into: Times | None = None) -> None:
    """Build and compile ``case`` once in a fresh process; append the four times to ``into``."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", case.level, case.family, str(case.size), backend]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed:\n{proc.stderr[-2000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if into is not None:
        into.build.append(got["build"])
        into.compile.append(got["compile"])
        into.cpu_build.append(got["cpu_build"])
        into.cpu_compile.append(got["cpu_compile"])


def measure_here(case: Case, backend_name: str) -> dict[str, float]:
    """In this (fresh) process: warm up on the family's one-layer model, then time one build and compile."""
    import mithril as ml

    backend = _backend(backend_name)
    ml.compile(case.warm(), backend, shapes=case.shapes)
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    model = case.build()
    w1, c1 = time.perf_counter(), time.process_time()
    ml.compile(model, backend, shapes=case.shapes)
    w2, c2 = time.perf_counter(), time.process_time()
    return dict(build=w1 - w0, compile=w2 - w1, cpu_build=c1 - c0, cpu_compile=c2 - c1)


def _peak(case: Case, backend: Any) -> int:
    import mithril as ml

    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        pm = ml.compile(case.build(), backend, shapes=case.shapes)
        _, peak = tracemalloc.get_traced_memory()
        del pm
    finally:
        tracemalloc.stop()
    return peak - before


def mlp_sizes(level: str) -> list[int]:
    return {"smoke": [5, 10], "quick": [125, 250, 500]}.get(level, [250, 500, 1000, 2000])


def gpt_sizes(level: str) -> list[int]:
    return {"smoke": [1, 2], "quick": [2, 12]}.get(level, [2, 12, 24, 48])


def cases(level: str) -> list[Case]:
    """The MLP family (seed-style ``+=`` chain of Linear 64 + Relu) and the GPT family."""
    gcfg: dict[str, Any] = dict(d_model=64, n_heads=4, seq_len=16, vocab=64) if level == "smoke" else {}
    out = [
        Case(
            "mlp",
            f"MLP {n} layers (Linear 64 + Relu, +=)",
            n,
            lambda n=n: M.deep_mlp(n, 64),
            {"input": [8, 64]},
            lambda: M.deep_mlp(1, 64),
            level,
        )
        for n in mlp_sizes(level)
    ]
    one = M.GPTConfig(n_layers=1, **gcfg)
    for n in gpt_sizes(level):
        cfg = M.GPTConfig(n_layers=n, **gcfg)
        out.append(
            Case(
                "gpt",
                f"GPT {n} layers (d={cfg.d_model}, {cfg.n_heads} heads, T={cfg.seq_len})",
                n,
                lambda cfg=cfg: M.gpt(cfg),
                {"input": M.gpt_input_shape(cfg)},
                lambda: M.gpt(one),
                level,
            )
        )
    return out


def _noisy(times: list[Times]) -> bool:
    """Whether some growth ratio between consecutive sizes (CPU time, per round) spreads over 10%."""
    tot = [t.total(cpu=True) for t in times]
    return any(spread([a / b for a, b in zip(x, y)]) > UNSTABLE_SPREAD for x, y in zip(tot[1:], tot))


def time_family(family: Sequence[Case], backend: str, reps: int, max_reps: int | None = None) -> list[Times]:
    """``reps`` rounds, each building and compiling every case once in a rotating order; more rounds
    (up to ``max_reps``, default ``2 * reps``) while a growth ratio's spread exceeds 10%."""
    times = [Times.empty() for _ in family]
    _one(family[0], backend)  # warm-up of the OS's file cache (each measuring process warms up itself)
    load_before = load_1min()
    n = len(family)
    limit = max(reps, max_reps if max_reps is not None else 2 * reps)
    r = 0
    while r < reps or (r < limit and _noisy(times)):
        order = [(r + i) % n for i in range(n)]
        if r % 2:
            order.reverse()
        for i in order:
            _one(family[i], backend, times[i])
        r += 1
    load_after = load_1min()
    for t in times:
        if load_before is not None and load_after is not None:
            t.build.load_avg = (load_before, load_after)
    return times


def _growth(t: Rounds, t_prev: Rounds, doublings: float) -> dict[str, Any]:
    """Per-round growth t/t_prev and its per-doubling equivalent."""
    g = Rounds(a / b for a, b in zip(t, t_prev))
    g.load_avg = t.load_avg
    st = Stats.of(g).as_dict()
    st["per_doubling"] = Stats.of([x ** (1 / doublings) for x in g]).as_dict()
    return st


def _row(case: Case, t: Times, backend: str, peak: int | None) -> dict[str, Any]:
    return dict(
        suite="compile",
        family=case.family,
        case=case.title,
        size=case.size,
        backend=backend,
        build_s=Stats.of(t.build).as_dict(),
        compile_s=Stats.of(t.compile).as_dict(),
        total_s=Stats.of(t.total()).as_dict(),
        cpu_build_s=Stats.of(t.cpu_build).as_dict(),
        cpu_compile_s=Stats.of(t.cpu_compile).as_dict(),
        cpu_total_s=Stats.of(t.total(cpu=True)).as_dict(),
        peak_mem_bytes=peak,
        mem_method="tracemalloc" if peak is not None else "none",
    )


def run(
    level: str, *, reps: int, backends: Sequence[str], memory: bool, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    numpy_be = _backend("numpy")
    all_cases = cases(level)
    for fam in ("mlp", "gpt"):
        family = [c for c in all_cases if c.family == fam]
        times = time_family(family, "numpy", reps)
        for i, (case, t) in enumerate(zip(family, times)):
            row = _row(case, t, "numpy", _peak(case, numpy_be) if memory else None)
            if i:
                prev_case, prev = family[i - 1], times[i - 1]
                doublings = math.log2(case.size / prev_case.size)
                row["growth_from"] = prev_case.size
                row["growth"] = _growth(t.total(), prev.total(), doublings)
                row["cpu_growth"] = _growth(t.total(cpu=True), prev.total(cpu=True), doublings)
                row["growth_vs_previous"] = row["cpu_growth"]["median"]
            rows.append(row)
            log(
                f"compile: {case.title}: build {row['build_s']['median']:.3f}s compile "
                f"{row['compile_s']['median']:.3f}s (cpu {row['cpu_total_s']['median']:.3f}s"
                + (f", growth x{row['growth_vs_previous']:.2f}" if i else "")
                + f"; load {load_1min()})"
            )
        if len(family) > 1:  # largest over smallest size (the 48-layer GPT over the 12-layer one)
            ref_i = next((i for i, c in enumerate(family) if c.size == 12), 0) if fam == "gpt" else 0
            ref, last = family[ref_i], family[-1]
            rows[-1]["span_from"] = ref.size
            rows[-1]["span"] = _growth(
                times[-1].total(cpu=True), times[ref_i].total(cpu=True), math.log2(last.size / ref.size)
            )
    # the 12-layer GPT (or the largest smoke one) on every backend
    gpt_cases = [c for c in all_cases if c.family == "gpt"]
    ref_case = next((c for c in gpt_cases if c.size == 12), gpt_cases[-1])
    for name in backends:
        if name == "numpy":
            continue
        try:
            (t,) = time_family([ref_case], name, reps)
            rows.append(dict(_row(ref_case, t, name, None), family="gpt-backend"))
            log(f"compile: {ref_case.title} on {name}: compile {Stats.of(t.compile).median:.3f}s")
        except Exception as e:
            rows.append(
                dict(
                    suite="compile",
                    family="gpt-backend",
                    case=ref_case.title,
                    size=ref_case.size,
                    backend=name,
                    error=f"{type(e).__name__}: {str(e)[:300]}",
                )
            )
    return rows


def _main() -> None:
    ap = argparse.ArgumentParser(description="one measurement of the compile suite, in this process")
    ap.add_argument("--one", nargs=4, metavar=("LEVEL", "FAMILY", "SIZE", "BACKEND"), required=True)
    level, family, size, backend = ap.parse_args().one
    (case,) = [c for c in cases(level) if c.family == family and c.size == int(size)]
    print(json.dumps(measure_here(case, backend)))


if __name__ == "__main__":
    _main()
