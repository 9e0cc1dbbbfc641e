"""Timing, memory and machine information shared by every suite.

Timing
    Every variant of a case (Mithril and its native baseline) is warmed up, then
    timed in *rounds*: in each round each variant runs ``k`` calls back to back
    (``k`` calibrated so a round takes about ``target_s``), the variants in a
    rotating order. A round gives one per-call time per variant; we report the
    median, min and max over rounds, and the ratio Mithril/native of each round
    (median, min, max). Interleaving the variants makes the ratio robust to other
    jobs on the machine.

Stability
    A ratio's *spread* is the interquartile range of its per-round ratios divided
    by their median (for 3 rounds: half of max - min, over the median). While
    some ratio's spread exceeds :data:`UNSTABLE_SPREAD` (10%), more rounds are run,
    up to ``max_rounds`` (default twice ``rounds``); a ratio still above it is
    marked ``unstable`` and the report says so instead of calling its goal met or
    missed. The 1-minute load average before and after timing travels with the
    per-round times (:class:`Rounds`) into every ratio.

    Before timing, ``gc.freeze()`` moves the objects that
    exist after set-up (torch, JAX, the models) out of the collector's reach, so a
    collection costs what the calls themselves allocate; the collector stays on
    while timing (Mithril and native pay for their own garbage).

Peak memory (what each number means, ``mem_method`` in the results)
    * ``tracemalloc``: the peak of bytes traced by ``tracemalloc`` during one call,
      above what was traced before it (Python objects and NumPy buffers; NumPy
      reports its allocations to tracemalloc).
    * ``rss``: growth of the process's resident set during one call: ``VmHWM`` after
      the call minus ``VmRSS`` before it, with the high-water mark reset through
      ``/proc/self/clear_refs`` and malloc's free memory returned with
      ``malloc_trim(0)`` before the call (so reuse of cached malloc memory is
      counted). Memory a library keeps cached between calls (XLA's buffers,
      PyTorch's compiled graphs) is part of the resident set before the call and
      is not counted. Linux only.
    * ``cuda``: ``torch.cuda.max_memory_allocated`` during one call minus
      ``torch.cuda.memory_allocated`` before it (the caching allocator's live bytes).
    * ``jax-device``: a JAX GPU's ``peak_bytes_in_use`` after the call minus
      ``bytes_in_use`` before it (JAX cannot reset its peak: process-wide, an upper bound).
    Each memory figure is the median of ``MEM_REPEATS`` (3) measured calls after warm-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: measured calls per memory figure (run.py --smoke sets 1)
MEM_REPEATS = 3

#: a ratio whose spread (interquartile range / median of its per-round values) exceeds this is unstable
UNSTABLE_SPREAD = 0.10


# ----------------------------------------------------------------------------- variants
@dataclass
class Variant:
    """One way of doing a case's work: ``fn()`` does one unit of it, synchronised."""

    name: str  # "mithril", "native", "mithril-jit", ...
    fn: Callable[[], Any]
    mem_method: str = "rss"  # tracemalloc | rss | cuda | jax-device | none
    framework: str = ""  # "Mithril numpy", "torch eager", ...
    baseline: str | None = None  # name of the variant this one is compared with
    first_call_s: float | None = None  # warm-up: the first call (compilation) time
    info: dict[str, Any] = field(default_factory=dict)


class Rounds(list[float]):
    """Per-round values of one variant, with the 1-minute load average before and after the rounds."""

    load_avg: tuple[float, float] | None = None


def spread(xs: Sequence[float]) -> float:
    """Interquartile range / median (0 for fewer than 2 values); see the module doc."""
    if len(xs) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    med = statistics.median(xs)
    return (q3 - q1) / abs(med) if med else float("inf")


@dataclass
class Stats:
    median: float
    min: float
    max: float
    n: int
    spread: float = 0.0
    load_avg: tuple[float, float] | None = None

    @classmethod
    def of(cls, xs: Sequence[float]) -> Stats:
        return cls(statistics.median(xs), min(xs), max(xs), len(xs), spread(xs), getattr(xs, "load_avg", None))

    @property
    def unstable(self) -> bool:
        return self.spread > UNSTABLE_SPREAD

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"median": self.median, "min": self.min, "max": self.max, "n": self.n}
        d["spread"] = self.spread
        d["unstable"] = self.unstable
        if self.load_avg is not None:
            d["load_avg"] = list(self.load_avg)
        return d


def load_1min() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def time_variants(
    variants: Sequence[Variant],
    *,
    rounds: int,
    target_s: float,
    warmup: int = 2,
    max_calls: int = 10_000,
    max_rounds: int | None = None,
) -> dict[str, Rounds]:
    """Per-call seconds of each variant, one entry per round (see the module doc).

    After ``rounds`` rounds, rounds are added while a variant's ratio to its ``baseline`` has a
    spread above :data:`UNSTABLE_SPREAD`, up to ``max_rounds`` (default ``2 * rounds``).
    """
    calls: dict[str, int] = {}
    gc.collect()
    gc.freeze()
    for v in variants:
        t0 = time.perf_counter()
        v.fn()
        v.first_call_s = time.perf_counter() - t0
        for _ in range(max(warmup - 1, 0)):
            v.fn()
        t0 = time.perf_counter()
        v.fn()
        one = max(time.perf_counter() - t0, 1e-7)
        calls[v.name] = int(min(max(1, target_s / one), max_calls))
    per_round: dict[str, Rounds] = {v.name: Rounds() for v in variants}
    n = len(variants)
    pairs = [(v.name, v.baseline) for v in variants if v.baseline in per_round]
    limit = max(rounds, max_rounds if max_rounds is not None else 2 * rounds)
    load_before = load_1min()
    r = 0
    while r < rounds or (
        r < limit
        and any(spread([a / b for a, b in zip(per_round[x], per_round[y])]) > UNSTABLE_SPREAD for x, y in pairs)
    ):
        order = [variants[(r + i) % n] for i in range(n)]
        if r % 2:
            order.reverse()
        for v in order:
            k = calls[v.name]
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(k):
                v.fn()
            dt = time.perf_counter() - t0
            per_round[v.name].append(dt / k)
        r += 1
    load_after = load_1min()
    for v in variants:
        v.info["calls_per_round"] = calls[v.name]
        if load_before is not None and load_after is not None:
            per_round[v.name].load_avg = (load_before, load_after)
    return per_round


def ratio_stats(a: Sequence[float], b: Sequence[float]) -> Stats:
    """Round-by-round ratios a/b (same rounds), with their spread and the load average ``a`` was timed under."""
    out = Rounds(x / y for x, y in zip(a, b))
    out.load_avg = getattr(a, "load_avg", None) or getattr(b, "load_avg", None)
    return Stats.of(out)


# ----------------------------------------------------------------------------- memory
_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            _LIBC = False
    return _LIBC


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_available() -> bool:
    return _status_kib("VmHWM") is not None and _reset_hwm()


def measure_memory(v: Variant, repeats: int | None = None) -> int | None:
    """Peak extra bytes of one call of ``v`` by its ``mem_method`` (median of ``repeats``), or None."""
    out = []
    for _ in range(repeats or MEM_REPEATS):
        b = _memory_once(v)
        if b is None:
            return None
        out.append(b)
    return int(statistics.median(out))


def _memory_once(v: Variant) -> int | None:
    m = v.mem_method
    gc.collect()
    if m == "tracemalloc":
        started = not tracemalloc.is_tracing()
        if started:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            v.fn()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            if started:
                tracemalloc.stop()
        return max(peak - before, 0)
    if m == "rss":
        libc = _libc()
        if libc:
            libc.malloc_trim(0)
        before = _status_kib("VmRSS")
        if before is None or not _reset_hwm():
            return None
        v.fn()
        hwm = _status_kib("VmHWM")
        return max((hwm or 0) - before, 0) * 1024
    if m == "cuda":
        import torch

        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        v.fn()
        torch.cuda.synchronize()
        return max(torch.cuda.max_memory_allocated() - before, 0)
    if m == "jax-device":
        import jax

        dev = jax.devices()[0]
        stats = dev.memory_stats() or {}
        before = stats.get("bytes_in_use")
        v.fn()
        stats = dev.memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
        if before is None or peak is None:
            return None
        return max(peak - before, 0)
    return None


# ----------------------------------------------------------------------------- machine
def bench_threads() -> int | None:
    """The thread count ``run.py --threads`` set (None: each library's default)."""
    n = os.environ.get("MITHRIL_BENCH_THREADS")
    return int(n) if n else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(mod: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": _mem_gib(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "device": device,
        "load_average_at_start": _loadavg(),
        "versions": {
            k: _version(k)
            for k in (
                "mithril",
                "mithril-numpy",
                "mithril-torch",
                "mithril-jax",
                "mithril-ggml",
                "numpy",
                "torch",
                "jax",
                "jaxlib",
                "ggml-python",
            )
        },
        "git_commit": _git_commit(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["versions"]["torch"] = info["versions"]["torch"] or torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    for mod in ("jax", "numpy", "mithril"):
        if info["versions"].get(mod) is None:
            with contextlib.suppress(Exception):
                info["versions"][mod] = __import__(mod).__version__
    return info


def _mem_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"MemTotal:\s+(\d+) kB", f.read())
        return round(int(m.group(1)) / 2**20, 1) if m else None
    except OSError:
        return None


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _git_commit() -> str | None:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode:
            return None
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except Exception:
        return None


# ----------------------------------------------------------------------------- formatting
def fmt_time(s: float | None) -> str:
    if s is None:
        return "—"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_bytes(b: float | None) -> str:
    if b is None:
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{int(b)} B"


def fmt_ratio(r: Mapping[str, Any] | None) -> str:
    """``median (min–max)``, the spread (**unstable** above :data:`UNSTABLE_SPREAD`) and the load average."""
    if not r:
        return "—"
    out = f"{r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f})"
    if "spread" in r:
        out += f" spread {r['spread']:.0%}" + (" **unstable**" if r.get("unstable") else "")
    if r.get("load_avg"):
        out += f", load {fmt_load(r)}"
    return out


def fmt_load(r: Mapping[str, Any] | None) -> str:
    """The load average a ratio was measured under: ``before→after``."""
    la = (r or {}).get("load_avg")
    return "—" if not la else f"{la[0]:.1f}→{la[1]:.1f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def dump_json(path: str, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")
