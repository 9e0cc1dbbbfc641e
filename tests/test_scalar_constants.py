"""Scalar constants in a backend's own form (``Backend.scalar_operand_primitives`` / ``scalar_constant``).

torch on an accelerator hands a float scalar constant to element-wise kernels in host memory; here a
NumPy backend declares the same for a few primitives, with Python floats as its scalar form, so the
generated namespace shows which constants took it. A constant may take it only where every node that
reads it is a declared primitive with a non-constant operand, and it is no result: a constant broadcast
into a state (the LSTM's zeros) or read by a matmul stays an array. Results agree bit for bit with the
plain backend on the seed models, GPT-2 and the LSTM, values and gradients.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.codegen.python_source import _scalar_constants
from mithril.ir.graph import Graph, Node, Value, ValueRole
from mithril.primitives.base import registry

pytest.importorskip("mithril_numpy")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from models import seed_cnn, seed_mlp

from mithril_numpy import NumpyBackend

DECLARED = frozenset({"add", "sub", "mul", "div", "maximum", "minimum", "where", "pow", "greater", "less"})


class ScalarNumpy(NumpyBackend):
    """NumPy whose element-wise kernels take float scalar constants as Python floats."""

    made: list[float]

    def scalar_operand_primitives(self, *, jit: bool) -> frozenset[str]:
        return DECLARED

    def scalar_constant(self, value: np.ndarray) -> Any:
        self.made.append(float(value))
        return float(value)


def scalar_backend() -> ScalarNumpy:
    be = ScalarNumpy(dtype=ml.float64)
    be.made = []
    return be


def node(graph: Graph, prim: str, *ins: Value, shape: tuple[int, ...]) -> Value:
    out = Value(ValueRole.NODE, name=f"{prim}{len(graph.nodes)}", kind="float", shape=shape)
    out.producer = Node(registry.get(prim), list(ins), {}, out)
    graph.nodes.append(out.producer)
    return out


def const(value: float) -> Value:
    v = Value(ValueRole.CONST, name="c", kind="float", shape=())
    v.data = np.asarray(value)
    return v


def test_only_constants_read_by_declared_primitives_beside_a_non_constant_qualify() -> None:
    g = Graph()
    x = Value(ValueRole.INPUT, name="x", kind="float", shape=(2, 3))
    g.inputs["x"] = x
    scale, shift, shared, lone_a, lone_b = const(0.5), const(1.0), const(2.0), const(3.0), const(4.0)
    a = node(g, "mul", x, scale, shape=(2, 3))  # qualifies
    b = node(g, "add", a, shared, shape=(2, 3))
    c = node(g, "broadcast_to", shared, shape=(2, 3))  # shared is also read by a non-declared primitive
    d = node(g, "add", lone_a, lone_b, shape=())  # only constants: the result would be a scalar too
    e = node(g, "sub", b, shift, shape=(2, 3))
    g.outputs.update({"e": e, "c": c, "d": d, "shift": shift})  # shift is also a result
    ok = _scalar_constants(g, DECLARED)
    assert ok == {scale.uid}
    assert _scalar_constants(g, frozenset()) == set()


def cases() -> list[tuple[str, Any, dict[str, np.ndarray]]]:
    from mithril.models import LSTM, gpt2

    rng = np.random.default_rng(5)
    return [
        ("seed-mlp", seed_mlp, {"input": rng.standard_normal((8, 20))}),
        ("seed-cnn", seed_cnn, {"input": rng.standard_normal((2, 3, 32, 32))}),
        (
            "gpt2",
            lambda: gpt2(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=16),
            {"input": rng.integers(0, 97, (2, 8))},
        ),
        ("lstm", lambda: LSTM(5, 6, num_layers=2, batch_first=True), {"input": rng.standard_normal((3, 4, 5))}),
    ]


@pytest.mark.parametrize("case", cases(), ids=lambda c: c[0])
def test_results_agree_bit_for_bit_with_the_plain_backend(case: Any) -> None:
    _, make, data = case
    plain, scalar = NumpyBackend(dtype=ml.float64), scalar_backend()
    shapes = {k: list(v.shape) for k, v in data.items()}
    pm_plain = ml.compile(make(), plain, shapes=shapes)
    pm_scalar = ml.compile(make(), scalar, shapes=shapes)
    params = pm_plain.randomize_params(seed=0)
    out_p = pm_plain.evaluate(params, data)
    cot = {k: np.ones_like(np.asarray(v)) for k, v in out_p.items() if np.asarray(v).dtype.kind == "f"}
    out_p, grads_p = pm_plain.evaluate(params, data, cot)
    out_s, grads_s = pm_scalar.evaluate(params, data, cot)
    for k in out_p:
        np.testing.assert_array_equal(np.asarray(out_s[k]), np.asarray(out_p[k]))
    for k in grads_p:
        np.testing.assert_array_equal(np.asarray(grads_s[k]), np.asarray(grads_p[k]))


def test_the_scalar_form_is_taken_where_it_may_be() -> None:
    from mithril.models import gpt2

    be = scalar_backend()
    ml.compile(gpt2(n_layer=1, n_embd=32, n_head=4, vocab_size=97, n_positions=16), be, shapes={"input": [2, 8]})
    assert be.made, "GPT-2's attention scale and LayerNorm constants took no scalar form"
    assert ScalarNumpy.scalar_operand_primitives(be, jit=False) == DECLARED


def test_torch_declares_host_scalars_only_eagerly_on_an_accelerator() -> None:
    torch_backend = pytest.importorskip("mithril_torch").TorchBackend
    be = torch_backend(dtype=ml.float32)
    assert be.scalar_operand_primitives(jit=False) == frozenset()  # the CPU: every 0-d tensor is a scalar there
    assert be.scalar_operand_primitives(jit=True) == frozenset()
