"""The benchmark runner works end to end (tiny sizes). No timing is asserted, ever.

Nightly (``nox -s nightly``): running every suite of the runner once takes minutes on a busy machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"

pytestmark = pytest.mark.nightly


def _installed(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ)
    src = [
        str(ROOT / "packages" / p / "src")
        for p in ("mithril-core", "mithril-numpy", "mithril-torch", "mithril-jax", "mithril-ggml")
    ]
    env["PYTHONPATH"] = os.pathsep.join([*src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_result_files_exist(smoke: tuple[Path, dict]) -> None:
    out, result = smoke
    assert (out / "results.json").is_file()
    md = (out / "results.md").read_text()
    assert "## Machine" in md
    assert result["machine"]["cpu"]
    assert result["machine"]["versions"]["numpy"]


@pytest.mark.slow
def test_every_suite_has_rows(smoke: tuple[Path, dict]) -> None:
    out, result = smoke
    rows = result["rows"]
    md = (out / "results.md").read_text()
    suites = {r["suite"] for r in rows}
    assert "compile" in suites and "runtime" in suites
    if _installed("ggml") and _installed("torch"):
        assert "ggml" in suites
        assert "## ggml" in md
    assert "## compile" in md and "## runtime" in md
    assert "train" in suites and "## train" in md
    for r in rows:
        assert "error" not in r, r


@pytest.mark.slow
def test_rows_have_statistics_and_ratios(smoke: tuple[Path, dict]) -> None:
    _, result = smoke
    for r in result["rows"]:
        if r["suite"] == "compile":
            for key in ("build_s", "compile_s", "total_s"):
                assert {"median", "min", "max"} <= set(r[key])
        else:
            assert {"median", "min", "max"} <= set(r["time_s"])
            assert "peak_mem_bytes" in r and "mem_method" in r
            if r.get("baseline"):
                assert {"median", "min", "max"} <= set(r["ratio"])
    runtime = [r for r in result["rows"] if r["suite"] == "runtime"]
    families = {r["family"] for r in runtime}
    assert "numpy" in families
    # each Mithril row is compared with a native baseline measured in the same run
    assert any(r["variant"] == "native" for r in runtime)
    modes = {r["mode"] for r in runtime}
    assert modes == {"forward", "train"}
    # the full training step: every Mithril variant agrees with its native step after 3 steps
    train = [r for r in result["rows"] if r["suite"] == "train"]
    assert {r["family"] for r in train} >= {"numpy"}
    assert any(r["variant"] == "native" for r in train)
    for r in train:
        if r.get("baseline"):
            assert r["check_ok"], r["loss_check"]
