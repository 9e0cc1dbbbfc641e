"""ml.compare / ml.certify: block-by-block differences between backends, and the first divergence."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mithril as ml
from mithril.errors import CompileError
from mithril.models import BatchNorm2d, Conv2d, Embedding, Flatten, Linear, MaxPool2d, Model, Relu
from mithril.testing.variants import installed

BACKENDS = installed()
pytestmark = pytest.mark.skipif(len(BACKENDS) < 2, reason="needs two backends")


def cnn() -> Model:
    m = Model()
    m |= Conv2d(in_channels=1, out_channels=4, kernel_size=3, padding=1)
    m += BatchNorm2d(num_features=4)
    m += Relu()
    m += MaxPool2d(kernel_size=2)
    m += Flatten()
    m += Linear(dimension=3)
    return m


def test_float64_backends_agree_everywhere():
    result = ml.compare(cnn(), BACKENDS, shapes={"input": [2, 1, 6, 6]})
    assert result.ok
    for name in result.differences:
        assert result.first_divergence(name) is None
        blocks = [d.block for d in result.differences[name] if d.kind == "forward"]
        assert blocks.index("conv2d_0") < blocks.index("batchnorm2d_0") < blocks.index("linear_0")
        grads = {d.value for d in result.differences[name] if d.kind == "gradient"}
        assert {"conv2d_0.weight", "batchnorm2d_0.bias", "linear_0.weight"} <= grads
        assert result.max_difference(name) < 1e-12


class _Wrong(ml.NumpyBackend):
    """A NumPy backend whose relu leaks negatives: the divergence must be found at relu_0."""

    name = "numpy"

    def core_kernels(self):
        table = dict(super().core_kernels())
        table["relu"] = lambda x: np.where(x > 0, x, 0.01 * x)
        table.pop("relu_grad", None)
        return table


def test_the_first_diverging_block_is_named():
    if "numpy" not in BACKENDS:
        pytest.skip("needs mithril-numpy")
    result = ml.compare(
        cnn(), [ml.NumpyBackend(dtype=ml.float64), _Wrong(dtype=ml.float64)], shapes={"input": [2, 1, 6, 6]}, depth=0
    )
    label = next(iter(result.differences))
    first = result.first_divergence(label)
    assert first is not None and first.block == "relu_0", result.table()
    rows = {d.block: d for d in result.differences[label] if d.kind == "forward"}
    assert not rows["conv2d_0"].diverges and not rows["batchnorm2d_0"].diverges
    assert rows["linear_0"].diverges and not result.ok
    assert "relu_0" in result.summary()


def test_certify_writes_a_report(tmp_path):
    report = ml.certify(cnn(), BACKENDS[:2], shapes={"input": [2, 1, 6, 6]}, path=tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text()) == json.loads(json.dumps(report))
    assert report["passed"] is True and len(report["model_sha256"]) == 64
    assert [b["name"] for b in report["backends"]] == BACKENDS[:2]
    assert report["model_sha256"] == ml.divergence.model_hash(cnn())
    other = Model()
    other |= Linear(dimension=3)
    assert ml.divergence.model_hash(other) != report["model_sha256"]


def test_integer_inputs_must_be_given_and_errors_are_clear():
    emb = Model()
    emb |= Embedding(num_embeddings=10, embedding_dim=4)
    with pytest.raises(CompileError, match="holds integers"):
        ml.compare(emb, BACKENDS[:2], shapes={"input": [3]})
    ok = ml.compare(emb, BACKENDS[:2], shapes={"input": [3]}, inputs={"input": np.array([1, 2, 9])})
    assert ok.ok
    with pytest.raises(CompileError, match="at least two backends"):
        ml.compare(cnn(), BACKENDS[:1], shapes={"input": [2, 1, 6, 6]})


def test_command_line_compare(tmp_path):
    import subprocess
    import sys

    (tmp_path / "my_models.py").write_text(
        "from mithril.models import Model, Linear, Relu\n"
        "def mlp():\n    m = Model()\n    m |= Linear(dimension=8)\n    m += Relu()\n    m += Linear(dimension=2)\n"
        "    return m\n"
    )

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "mithril", "compare", *a],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
        )

    ok = run(
        "my_models:mlp", "--shape", "input=4,3", "--backends", ",".join(BACKENDS[:2]), "--certificate", "cert.json"
    )
    assert ok.returncode == 0, ok.stderr
    assert "first diverging block: none" in ok.stdout
    assert json.loads((tmp_path / "cert.json").read_text())["passed"] is True
    bad = run("my_models:nothing", "--shape", "input=4,3")
    assert bad.returncode == 2 and "has no attribute 'nothing'" in bad.stderr
