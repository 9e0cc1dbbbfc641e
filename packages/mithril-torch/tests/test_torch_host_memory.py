"""TorchBackend keeps freed host memory for the next step (mithril_torch.host_memory)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from mithril_torch import TorchBackend, host_memory

#: a step that frees 10 MiB at its end, after glibc's thresholds adapted to a 3 MiB block
CHURN = textwrap.dedent("""
    import resource, sys
    import numpy as np
    if sys.argv[1] == "backend":
        from mithril_torch import TorchBackend
        print(TorchBackend(device="cpu").host_memory)
    else:
        print("untouched")
    big = np.ones(3 << 18, np.float32)
    del big
    def step():
        blocks = [np.ones(1 << 18, np.float32) for _ in range(10)]
        return len(blocks)
    for _ in range(3):
        step()
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 10)
""")


def _faults_per_step(mode: str) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True, env=env)
    state, faults = out.stdout.split()
    return state, float(faults)


@pytest.mark.skipif(host_memory.why_not() is not None, reason=f"malloc left alone here: {host_memory.why_not()}")
def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    _, untouched = _faults_per_step("untouched")
    state, retained = _faults_per_step("backend")
    assert state == "set"
    # 10 MiB handed back to the OS and touched again: 2,560 pages; glibc keeps some of them
    assert untouched > 1000, untouched
    assert retained < 50, retained


def test_user_tuning_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert "MALLOC_TRIM_THRESHOLD_" in (host_memory.why_not() or "")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    assert "jemalloc" in (host_memory.why_not() or "")


def test_opt_out_and_non_cpu_devices_leave_malloc_alone() -> None:
    assert TorchBackend(device="cpu", retain_host_memory=False).host_memory == "off"
    state = TorchBackend(device="cpu").host_memory
    assert state == "set" or state.startswith("skipped: ")
