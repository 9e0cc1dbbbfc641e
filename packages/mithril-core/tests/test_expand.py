"""Composite primitives (``Primitive.expand``) and the expansion pass.

The composites here are registered by an in-process plugin: ``cumsum0`` (a
prefix sum over axis 0, unrolled over that axis like an RNN over time),
``halves`` (two results from one expansion), ``cumsum0_twice`` (a composite
that emits composites) and two broken ones. NumPy is the oracle.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

import mithril as ml
from mithril.errors import CompileError, ModelBuildError
from mithril.models import IOKey, Model, primitive_block
from mithril.models.flatten import flatten
from mithril.physical.pipeline import build_graph
from mithril.plugins import hookimpl
from mithril.primitives import COMPOSITE_PRIMITIVES, CORE_PRIMITIVES, Primitive
from mithril.shapes.kinds import bind_kind, unify_kinds
from mithril.shapes.rules import with_rank
from mithril.shapes.symbolic import Dim, unify, unify_dims

EXPANSIONS: list[str] = []  # names of the composites expanded, in order


def same_shape(ins: Any, out: Any, attrs: Any) -> bool:
    bind_kind(ins[0].kind, "float")
    unify_kinds(ins[0].kind, out.kind)
    unify(ins[0].shape, out.shape)
    return True


def cumsum0(b: Any, node: Any) -> Any:
    (x,) = node.inputs
    EXPANSIONS.append("cumsum0")
    rows, acc = [], None
    for t in range(x.shape[0]):
        row = b.emit("slice", x, starts=(t,), stops=(t + 1,), steps=(None,))
        acc = row if acc is None else b.emit("add", acc, row)
        rows.append(acc)
    return rows[0] if len(rows) == 1 else b.emit("concat", *rows, axis=0)


def cumsum0_twice(b: Any, node: Any) -> Any:
    EXPANSIONS.append("cumsum0_twice")
    return b.emit("cumsum0", b.emit("cumsum0", node.inputs[0]))


def halves_rule(ins: Any, out: Any, attrs: Any) -> bool:
    """``[N, 2k] -> [N, k]``: either half of the last axis."""
    unify_kinds(ins[0].kind, out.kind)
    n, two_k = with_rank(ins[0].shape, 2)
    m, k = with_rank(out.shape, 2)
    unify_dims(n, m)
    if two_k.known is None:
        return False  # called again once the input's last axis is known
    unify_dims(k, Dim(two_k.known // 2))
    return True


def halves(b: Any, node: Any) -> dict[str, Any]:
    (x,) = node.inputs
    EXPANSIONS.append("halves")
    k = x.shape[1] // 2
    return {
        "first": b.emit("slice", x, starts=(None, 0), stops=(None, k), steps=(None, None)),
        "second": b.emit("slice", x, starts=(None, k), stops=(None, None), steps=(None, None)),
    }


COMPOSITES = [
    Primitive("cumsum0", ("input",), same_shape, expand=cumsum0, doc="prefix sums over axis 0"),
    Primitive("cumsum0_twice", ("input",), same_shape, expand=cumsum0_twice),
    Primitive("halves", ("input",), halves_rule, attrs={"result": "first"}, expand=halves, results=("first", "second")),
    Primitive(
        "bad_shape", ("input",), same_shape, expand=lambda b, n: b.emit("sum", n.inputs[0], axis=(0,), keepdims=False)
    ),
    Primitive("endless", ("input",), same_shape, expand=lambda b, n: b.emit("endless", n.inputs[0])),
]


class Composites:
    @hookimpl
    def mithril_register_primitives(self, register: Any) -> None:
        for p in COMPOSITES:
            register(p)


@pytest.fixture(autouse=True)
def composites() -> Iterator[None]:
    ml.plugins.register(Composites(), name="test_composites")
    EXPANSIONS.clear()
    yield
    ml.plugins.unregister("test_composites")


def one(name: str, **attrs: Any) -> Model:
    model = Model()
    model |= primitive_block(name, **attrs)(input="input", output=IOKey("output"))
    return model


def run(model: Model, backend: Any, x: np.ndarray, cot: dict[str, np.ndarray] | None = None, **kw: Any) -> Any:
    pm = ml.compile(model, backend, shapes={"input": list(x.shape)}, **kw)
    params = {"input": backend.array(x)} if "input" in pm.param_keys else {}
    inputs = {} if params else {"input": backend.array(x)}
    if cot is None:
        return pm.evaluate(params, inputs)
    return pm.evaluate(params, inputs, {k: backend.array(v) for k, v in cot.items()})


def as_param(name: str) -> Model:
    model = Model()
    model |= primitive_block(name)(input=IOKey("input", role="param"), output=IOKey("output"))
    return model


# ------------------------------------------------------------------ tests
def test_a_composite_is_one_node_until_shapes_are_concrete() -> None:
    model = one("cumsum0")
    flat = flatten(model)
    assert [n.primitive.name for n in flat.graph.nodes] == ["cumsum0"]
    assert model.shapes()["output"] == model.shapes()["input"]  # the ordinary shape rule, symbolic
    short = build_graph(flat, {"input": [3, 2]}, {})
    long = build_graph(flatten(model), {"input": [6, 2]}, {})
    assert not any(n.primitive.expand for n in short.nodes + long.nodes)
    assert len(long.nodes) > len(short.nodes)  # unrolled: the graph grows with the axis length


def test_expansion_runs_and_differentiates_on_a_backend_without_its_kernel() -> None:
    backend = ml.NumpyBackend(dtype=ml.float64)
    assert "cumsum0" not in backend.kernels
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    out, grads = run(as_param("cumsum0"), backend, x, {"output": g})
    np.testing.assert_allclose(out["output"], np.cumsum(x, axis=0), rtol=1e-12)
    np.testing.assert_allclose(grads["input"], np.flip(np.cumsum(np.flip(g, 0), axis=0), 0), rtol=1e-12)


def test_backends_with_their_own_autodiff_differentiate_the_expansion() -> None:
    torch_backend = pytest.importorskip("mithril_torch").TorchBackend
    backend = torch_backend(dtype=ml.float64, autodiff="torch")
    rng = np.random.default_rng(1)
    x, g = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    out, grads = run(as_param("cumsum0"), backend, x, {"output": g})
    np.testing.assert_allclose(backend.to_numpy(out["output"]), np.cumsum(x, axis=0), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(grads["input"]), np.flip(np.cumsum(np.flip(g, 0), 0), 0), rtol=1e-12)


def test_composites_emitted_by_an_expansion_are_expanded_too() -> None:
    x = np.random.default_rng(2).standard_normal((3, 2))
    out = run(one("cumsum0_twice"), ml.NumpyBackend(dtype=ml.float64), x)
    np.testing.assert_allclose(out["output"], np.cumsum(np.cumsum(x, 0), 0), rtol=1e-12)
    assert EXPANSIONS.count("cumsum0_twice") == 1 and EXPANSIONS.count("cumsum0") == 2


def test_results_of_one_call_share_one_expansion() -> None:
    model = Model()
    model |= primitive_block("halves", result="first")(input="input", output=IOKey("first"))
    model |= primitive_block("halves", result="second")(input="input", output=IOKey("second"))
    x = np.random.default_rng(3).standard_normal((2, 6))
    pm = ml.compile(model, ml.NumpyBackend(dtype=ml.float64), shapes={"input": [2, 6]})
    out = pm.evaluate({}, {"input": x})
    np.testing.assert_array_equal(out["first"], x[:, :3])
    np.testing.assert_array_equal(out["second"], x[:, 3:])
    assert EXPANSIONS == ["halves"]  # one graph compiled, one expansion for both nodes


class HalvesKernel(ml.NumpyBackend):
    """NumPy with a kernel for ``halves``: a kept multi-result composite."""

    CALLS: ClassVar[list[tuple[int, ...]]] = []

    def core_kernels(self) -> dict[str, Any]:
        def halves_kernel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            HalvesKernel.CALLS.append(x.shape)
            k = x.shape[1] // 2
            return x[:, :k].copy(), x[:, k:].copy()

        return {**super().core_kernels(), "halves": halves_kernel}


@pytest.mark.parametrize("wanted", [("first", "second"), ("second",), ("first", "second", "first")])
def test_kept_results_share_one_kernel_call(wanted: tuple[str, ...]) -> None:
    model = Model()
    for i, r in enumerate(wanted):
        model |= primitive_block("halves", result=r)(input="input", output=IOKey(f"out_{i}"))
    x = np.random.default_rng(4).standard_normal((2, 6))
    HalvesKernel.CALLS.clear()
    pm = ml.compile(model, HalvesKernel(dtype=ml.float64), shapes={"input": [2, 6]})
    out = pm.evaluate({}, {"input": x})
    for i, r in enumerate(wanted):
        np.testing.assert_array_equal(out[f"out_{i}"], x[:, :3] if r == "first" else x[:, 3:])
    assert HalvesKernel.CALLS == [(2, 6)] and EXPANSIONS == []  # one call, nothing expanded
    assert pm.source.count("k_halves(") == 1


def test_a_result_must_be_declared() -> None:
    with pytest.raises(ModelBuildError, match=r"result must be one of \('first', 'second'\), got 'third'"):
        primitive_block("halves", result="third")
    with pytest.raises(ValueError, match="results need a 'result' attribute and an expand rule"):
        Primitive("broken", ("input",), same_shape, results=("a", "b"))


def test_an_expansion_that_contradicts_the_shape_rule_is_reported() -> None:
    with pytest.raises(
        CompileError,
        match=r"bad_shape_0: the expansion of 'bad_shape' gives float \[2\], "
        r"its shape rule says float \[3, 2\]",
    ):
        ml.compile(one("bad_shape"), ml.NumpyBackend(), shapes={"input": [3, 2]})


def test_an_endless_expansion_is_reported() -> None:
    with pytest.raises(CompileError, match=r"endless.*still expands into composites after 16 levels"):
        ml.compile(one("endless"), ml.NumpyBackend(), shapes={"input": [3, 2]})


def test_composites_need_no_kernels() -> None:
    assert {"lstm", "gru", "cumsum0"} <= set(COMPOSITE_PRIMITIVES) | {p.name for p in COMPOSITES}
    assert not {"lstm", "gru"} & set(CORE_PRIMITIVES)
