"""Two processes on one CPU host stand in for two hosts: jax.distributed + a mesh over both."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mithril as ml
from mithril.models import CrossEntropyLoss, Linear, Model, Relu

WORKER = Path(__file__).parent / "workers" / "multihost.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one_device(tmp_path):
    model = Model()
    model |= Linear(dimension=16)
    model += Relu()
    model += Linear(dimension=4)
    be = ml.JaxBackend(dtype=ml.float64)
    step = ml.compile_step(
        model, be, loss=CrossEntropyLoss(), optimizer=ml.optim.AdamW(lr=1e-2), shapes={"input": [8, 6]}, jit=True
    )
    state = step.init(seed=0)
    np.savez(tmp_path / "init.npz", **{k: be.to_numpy(v) for k, v in state.params.items()})
    rng = np.random.default_rng(0)
    want = []
    for _ in range(3):
        x, y = rng.standard_normal((8, 6)), rng.integers(0, 4, 8)
        r = step(state, {"input": be.array(x), "target": be.array(y)})
        state = r.state
        want.append(float(be.to_numpy(r.loss)))
    want_sum = float(be.to_numpy(state.params["linear_0.weight"]).sum())

    port = str(_free_port())
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(i), "2", port, str(tmp_path / "init.npz")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the JAX processes did not finish in 240 s")
        outputs.append(out)
        assert p.returncode == 0, out[-3000:]
    for out in outputs:
        assert "of 2, 4 devices" in out, out[-2000:]
        m = re.search(r"losses (\[.*?\]) weight_sum (\S+)", out)
        assert m, out[-2000:]
        np.testing.assert_allclose(eval(m.group(1)), want, rtol=1e-10)
        assert float(m.group(2)) == pytest.approx(want_sum, rel=1e-10)
