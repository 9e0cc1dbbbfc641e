"""An IOKey declaring a shape or dtype for a new connection is applied to the terminal's own term
(a speed-up over a fresh term unified with it): shapes must come out as before, a declaration that
does not fit must fail with the terminal check's message and leave the model as it was."""

import re

import numpy as np
import pytest

import mithril as ml
from mithril.errors import DTypeMismatchError, ShapeMismatchError
from mithril.models import IOKey, Linear, Model, Relu


def _base() -> Model:
    m = Model()
    m |= Linear(dimension=4)(input=IOKey("x", shape=[None, 6]), output="h")
    return m


def _canonical(shapes: dict[str, list[object]]) -> dict[str, list[object]]:
    """Symbol names (d12) depend on which symbol is a class's root: rename them by first appearance."""
    names: dict[object, str] = {}
    return {
        k: [names.setdefault(d, f"s{len(names)}") if isinstance(d, str) and re.fullmatch(r"d\d+", d) else d for d in v]
        for k, v in shapes.items()
    }


def test_declared_shapes_give_the_terminal_shapes() -> None:
    m = _base()
    m |= Relu()(input="h", output=IOKey("y", shape=[None, 4]))
    m |= Relu()(input="h", output=IOKey("z", shape=["n", 4], dtype="float"))
    assert _canonical(m.shapes()) == {"x": ["s0", 6], "h": ["s0", 4], "y": ["s0", 4], "z": ["s0", 4]}
    lin = Linear(dimension=3)
    assert _canonical(lin.shapes()) == {
        "weight": [3, "s0"],
        "input": ["...", "s1", "s0"],
        "bias": [3],
        "output": ["...", "s1", 3],
    }


def test_a_declared_shape_that_does_not_fit_fails_as_the_terminal_check_and_changes_nothing() -> None:
    m = _base()
    before = _canonical(m.shapes())
    n_conns, n_blocks = len(m._conns), len(m._blocks)
    with pytest.raises(ShapeMismatchError) as info:
        m |= Relu()(input="h", output=IOKey("y", shape=[None, 5]))
    assert re.search(
        r"cannot connect relu_0\.output \(Relu, shape \[.*, 4\]\) to 'y' \(shape \[.*, 5\]\)", str(info.value)
    )
    assert _canonical(m.shapes()) == before
    assert (len(m._conns), len(m._blocks)) == (n_conns, n_blocks)
    m |= Relu()(input="h", output="y")  # the model is still usable, and "y" still free
    assert _canonical(m.shapes())["y"] == before["h"]


def test_a_declared_dtype_that_does_not_fit_fails_as_the_terminal_check() -> None:
    m = _base()
    with pytest.raises(
        DTypeMismatchError, match=r"cannot connect relu_0\.output \(Relu, dtype float\) to 'z' \(dtype int\)"
    ):
        m |= Relu()(input="h", output=IOKey("z", dtype="int"))
    m |= Relu()(input="h", output=IOKey("z", dtype="float"))


def test_declared_shapes_compile_and_agree_with_numpy() -> None:
    m = _base()
    m |= Relu()(input="h", output=IOKey("y", shape=[None, 4], expose=True))
    be = ml.backend("numpy", dtype=ml.float64)
    pm = ml.compile(m, be, shapes={"x": [2, 6]})
    params = pm.randomize_params()
    x = np.random.default_rng(0).standard_normal((2, 6))
    out = pm.evaluate(params, {"x": x})
    w, b = np.asarray(params["linear_0.weight"]), np.asarray(params["linear_0.bias"])
    np.testing.assert_allclose(np.asarray(out["y"]), np.maximum(x @ w.T + b, 0), rtol=1e-12)
