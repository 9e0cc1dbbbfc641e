"""TorchBackend(device_mesh=...) over torch.distributed, launched as users launch it: torchrun.

Each test starts ``python -m torch.distributed.run`` on a worker (distributed_workers/worker.py,
which compares every result with the single-device one it computes itself) or on the script of
docs/parallelization.md, with gloo on the CPU, and asserts the exit status; the processes'
output is shown on failure. Launches are few and each runs many checks: every process imports
torch, which costs seconds on a small machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import mithril as ml
from mithril.errors import UnsupportedError

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

HERE = Path(__file__).resolve().parent
WORKER = HERE / "distributed_workers" / "worker.py"
DOCS = HERE.parents[2] / "docs" / "parallelization.md"
TIMEOUT = 240

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def python(args: list[str], *, cwd: Path | None = None) -> subprocess.Popen[str]:
    """``python *args`` in a session of its own (a timeout kills it and whatever it started), output captured."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def torchrun(args: list[str], *, cwd: Path | None = None) -> subprocess.Popen[str]:
    return python(["-m", "torch.distributed.run", *args], cwd=cwd)


def output(proc: subprocess.Popen[str], what: str) -> str:
    """What ``proc`` printed; on a timeout its whole process group is killed and the test fails."""
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{what} did not finish in {TIMEOUT}s:\n{out}")
    return out


def finish(proc: subprocess.Popen[str], what: str) -> str:
    out = output(proc, what)
    assert proc.returncode == 0, f"{what} exited with {proc.returncode}:\n{out}"
    return out


def launch(nproc: int, *checks: str) -> str:
    args = [f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(WORKER)]
    return finish(torchrun(args + list(checks)), f"torchrun --nproc_per_node={nproc} worker.py {' '.join(checks)}")


@pytest.mark.slow
def test_two_processes_dp_tp_fsdp_jit_and_errors() -> None:
    """Data parallel (MLP, MLP with Dropout, Conv2d+BatchNorm CNN, GPT-2), tensor parallel
    ({"data": 1, "model": 2}), fsdp, torch.autograd, torch.compile, checkpoints, bad input."""
    out = launch(2, "dp", "tp", "fsdp", "autograd", "jit", "checkpoint", "errors")
    assert "all checks passed" in out, out


@pytest.mark.slow
def test_four_processes() -> None:
    """(4,) data parallel, {"data": 2, "model": 2} tensor parallel, 4-way fsdp."""
    out = launch(4, "dp:mlp,cnn", "tp", "fsdp:mlp,cnn")
    assert "all checks passed" in out, out


@pytest.mark.slow
def test_two_hosts() -> None:
    """Two torchrun launches (--nnodes=2, one process each) standing in for two hosts."""
    port = free_port()
    procs = [
        torchrun(
            [
                "--nnodes=2",
                "--nproc_per_node=1",
                f"--node_rank={r}",
                "--master_addr=127.0.0.1",
                f"--master_port={port}",
                str(WORKER),
                "dp:mlp,cnn",
                "fsdp:mlp",
            ]
        )
        for r in (0, 1)
    ]
    outs = [finish(p, f"node {r} of 2") for r, p in enumerate(procs)]
    assert "all checks passed" in outs[0], outs[0]


def docs_script() -> str:
    """The ```python block of docs/parallelization.md's PyTorch section."""
    text = DOCS.read_text()
    section = text.split("## PyTorch: torch.distributed", 1)[1]
    m = re.search(r"<!-- docs-test: skip -->\n```python\n(.*?)\n```", section, re.S)
    assert m, "docs/parallelization.md: the PyTorch section has no script"
    return m.group(1) + "\n"


@pytest.mark.slow
def test_docs_script_under_torchrun(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(docs_script())
    out = finish(
        torchrun(
            ["--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(script)], cwd=tmp_path
        ),
        "torchrun --nproc_per_node=2 train.py (the docs' script)",
    )
    assert "2 process(es): loss" in out, out


@pytest.mark.slow
def test_docs_script_on_one_device(tmp_path: Path) -> None:
    """The same script without torchrun runs on one device."""
    script = tmp_path / "train.py"
    script.write_text(docs_script())
    assert "1 process(es): loss" in finish(python([str(script)], cwd=tmp_path), "python train.py")


_FAILING_RANK = """
import torch.distributed as dist

import mithril as ml

backend = ml.TorchBackend(device="cpu", device_mesh=(2,))
if dist.get_rank() == 1:
    raise ValueError("rank 1 fails here")
dist.barrier()  # rank 0 waits for a peer that never comes
"""


@pytest.mark.slow
def test_a_failing_rank_ends_the_run(tmp_path: Path) -> None:
    """A rank that raises does not wait for its peers at exit: it exits, and torchrun stops the rest."""
    script = tmp_path / "fail.py"
    script.write_text(_FAILING_RANK)
    proc = torchrun(
        ["--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(script)], cwd=tmp_path
    )
    out = output(proc, "torchrun with a failing rank")
    assert proc.returncode != 0, out
    assert "rank 1 fails here" in out, out
    assert "not every rank reached the barrier" not in out, out


def test_mesh_outside_torchrun_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    if dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    with pytest.raises(UnsupportedError, match=r"not started by torchrun .*--nproc_per_node=2"):
        ml.TorchBackend(device_mesh=(2,))
    with pytest.raises(UnsupportedError, match="axis 'data' has size 0"):
        ml.TorchBackend(device_mesh=(0,))
    assert not dist.is_initialized()
