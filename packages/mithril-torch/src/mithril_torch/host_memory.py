"""Keep freed host memory for the next step instead of handing it back to the OS.

glibc's malloc serves large blocks with ``mmap`` and gives the free top of its heap
back to the OS, with thresholds it adapts as the program runs (up to 32 MiB for
``mmap`` and twice that for trimming on 64-bit). A training step frees megabytes of
activations at its end; when glibc trims them, the next step's first touch of each
page is a page fault. On the seed CNN training step (1 CPU thread) that was about
1,000 faults per step with ``jit=True`` (300 eager), some 3 ms of a 14 ms step, while
the hand-written module's allocation pattern happened to stay under the threshold.

:func:`retain_freed_memory` sets both thresholds once per process to the values the
adaptive heuristic reaches at most, so blocks below 32 MiB come from the heap and up
to 64 MiB of free heap is kept. It changes nothing when the user already chose: a
``MALLOC_*_`` tuning variable set, or another allocator preloaded (jemalloc,
tcmalloc, mimalloc); nor off glibc. ``TorchBackend(retain_host_memory=False)`` skips it.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit, and the trim threshold it pairs with it
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

_USER_TUNING = (
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "GLIBC_TUNABLES",
)
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

_state: str | None = None


def why_not() -> str | None:
    """Why :func:`retain_freed_memory` leaves malloc alone here, or None if it may tune it."""
    if not sys.platform.startswith("linux"):
        return f"not glibc (platform {sys.platform})"
    chosen = [k for k in _USER_TUNING if os.environ.get(k)]
    if chosen:
        return f"malloc tuned by the environment ({', '.join(chosen)})"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(a in preload for a in _OTHER_ALLOCATORS):
        return f"another allocator is preloaded ({preload})"
    try:
        libc = ctypes.CDLL(None)
        _ = libc.gnu_get_libc_version, libc.mallopt  # AttributeError unless glibc
    except (OSError, AttributeError):
        return "not glibc"
    return None


def retain_freed_memory() -> str:
    """Set glibc's trim and mmap thresholds once per process; returns what was done.

    ``"set"`` (now or by an earlier call) or ``"skipped: <reason>"``.
    """
    global _state
    if _state is not None:
        return _state
    reason = why_not()
    if reason is not None:
        _state = f"skipped: {reason}"
        return _state
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _state = "set" if ok else "skipped: mallopt refused the values"
    return _state
