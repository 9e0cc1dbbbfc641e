"""memory_report(): the liveness estimate against the peak tracemalloc measures on NumPy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import mithril as ml
from mithril.errors import ShapeUnknownError
from mithril.models import Linear, Model, Relu

pytest.importorskip("mithril_numpy")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_checks import traced_peak


def deep() -> Model:
    m = Model()
    m |= Linear(dimension=256)
    for _ in range(6):
        m += Relu()
        m += Linear(dimension=256)
    return m


@pytest.mark.parametrize("checkpointing", [False, True])
def test_estimate_is_within_ten_percent_of_numpy_measurement(checkpointing):
    be = ml.NumpyBackend(dtype=ml.float64)
    pm = ml.compile(deep(), be, shapes={"input": [512, 64]}, gradient_checkpointing=checkpointing)
    params = pm.randomize_params(seed=0)
    x, cot = {"input": be.randn(512, 64)}, {"output": be.ones(512, 256)}
    report = pm.memory_report()
    assert report.parameters == sum(v.nbytes for v in params.values())
    assert report.inputs == x["input"].nbytes + cot["output"].nbytes
    got = traced_peak(lambda: pm.evaluate(params, x, cot))
    assert abs(got - report.peak_activations) <= 0.10 * report.peak_activations, (got, report)
    forward = pm.memory_report(gradients=False)
    got_forward = traced_peak(lambda: pm.evaluate(params, x))
    assert abs(got_forward - forward.peak_activations) <= 0.10 * forward.peak_activations
    assert forward.kept_for_backward == 0 and forward.peak < report.peak


def test_checkpointing_keeps_fewer_activations_and_reports_the_peak_node():
    be = ml.NumpyBackend(dtype=ml.float32)
    pm = ml.compile(deep(), be, shapes={"input": [64, 64]})
    plain, ckpt = pm.memory_report(), pm.memory_report(gradient_checkpointing=True)
    assert ckpt.kept_for_backward < plain.kept_for_backward
    assert plain.peak_node and plain.largest_at_peak and "MiB" in str(plain)
    assert "estimated peak memory" in pm.summary()


def test_unknown_shapes_are_a_clear_error():
    pm = ml.compile(deep(), ml.NumpyBackend())
    with pytest.raises(ShapeUnknownError, match="every input's shape"):
        pm.memory_report()
