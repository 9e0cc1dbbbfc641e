"""The backward pass's node order (mithril.ir.passes.autodiff.differentiate, ``eager``).

Each forward node's VJP is emitted as soon as its outputs' cotangents are complete, so a weight's
gradient follows the VJP that read the weight instead of coming after every input gradient. The
generated code must give the same bits as the plain reverse order (``eager=False``): outputs, gradients,
Dropout draws and optimizer steps, on NumPy and eager torch; the deep MLP's estimated peak must drop, and
the estimate must still match what tracemalloc measures.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.ir.graph import Graph, GraphBuilder, Value, ValueRole
from mithril.ir.passes import autodiff

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "reliability"))
sys.path.insert(0, str(ROOT.parent / "benchmarks"))

import fuzz  # noqa: E402
from models import deep_mlp, seed_cnn, seed_mlp  # noqa: E402
from shared_checks import float64_backends, same_bits, traced_peak  # noqa: E402

pytest.importorskip("mithril_numpy")

DIFFERENTIATE = autodiff.differentiate


@contextlib.contextmanager
def eager(on: bool) -> Iterator[None]:
    """Compile with the eager order (the default) or plain reverse graph order."""
    autodiff.differentiate = functools.partial(DIFFERENTIATE, eager=on)
    try:
        yield
    finally:
        autodiff.differentiate = DIFFERENTIATE


BACKENDS = float64_backends()


def compare(model_factory: Callable[[], Any], be: Any, data: dict[str, np.ndarray], seed: int) -> bool:
    """Outputs and gradients in both orders, bit for bit; returns whether the generated code differs."""
    shapes = {k: list(v.shape) for k, v in data.items()}
    got: dict[bool, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    sources: dict[bool, str] = {}
    for on in (True, False):
        with eager(on):
            pm = ml.compile(model_factory(), be, shapes=shapes)
            params = pm.randomize_params(seed=seed)
            inputs = {k: be.array(v) if v.dtype.kind == "f" else be.array(v, dtype=ml.int64) for k, v in data.items()}
            out = pm.evaluate(params, inputs)
            rng = np.random.default_rng(seed + 7)
            cot = {
                k: be.array(rng.standard_normal(np.shape(be.to_numpy(v))))
                for k, v in out.items()
                if be.to_numpy(v).dtype.kind == "f"
            }
            be.seed(seed)  # Dropout: the same draws in both orders
            outs, grads = pm.evaluate(params, inputs, cot)
        sources[on] = pm.source
        got[on] = ({k: be.to_numpy(v) for k, v in outs.items()}, {k: be.to_numpy(v) for k, v in grads.items()})
    for part, new, old in zip(("outputs", "gradients"), got[True], got[False]):
        assert new.keys() == old.keys()
        for k in old:
            assert same_bits(new[k], old[k]), f"{part}[{k!r}] differs with the eager backward order"
    return sources[True] != sources[False]


def dropout_mlp() -> Any:
    from mithril.models import Dropout, Linear, Model, Relu

    m = Model()
    m |= Linear(dimension=12)
    m += Dropout(0.3)
    m += Relu()
    m += Linear(dimension=12)
    m += Dropout(0.5)
    m += Linear(dimension=4)
    return m


def cases() -> list[tuple[str, Callable[[], Any], dict[str, np.ndarray], bool]]:
    """(name, model, inputs, whether the order must change)."""
    from mithril.models import LSTM, gpt2

    rng = np.random.default_rng(3)
    return [
        ("seed-mlp", seed_mlp, {"input": rng.standard_normal((8, 16))}, True),
        ("deep-mlp", lambda: deep_mlp(12, 24), {"input": rng.standard_normal((8, 24))}, True),
        ("seed-cnn", seed_cnn, {"input": rng.standard_normal((2, 3, 32, 32))}, True),
        (
            "gpt2",
            lambda: gpt2(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=16),
            {"input": rng.integers(0, 97, (2, 8))},
            True,
        ),
        ("lstm", lambda: LSTM(5, 6, num_layers=2, batch_first=True), {"input": rng.standard_normal((3, 4, 5))}, False),
        ("dropout", dropout_mlp, {"input": rng.standard_normal((16, 8))}, True),
    ]


CASES = cases()


@pytest.mark.parametrize("name,make", BACKENDS, ids=[b for b, _ in BACKENDS])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_models_agree_bit_for_bit_in_both_orders(name: str, make: Any, case: Any) -> None:
    _, factory, data, changes = case
    differs = compare(factory, make(), data, seed=11)
    if changes:
        assert differs, "the eager order emitted the same code as reverse order: nothing was tested"


@pytest.mark.parametrize("name,make", BACKENDS, ids=[b for b, _ in BACKENDS])
@pytest.mark.parametrize("start", [0, 15, 30, 45])  # 45: a cotangent summed out of order would differ
def test_fuzzed_graphs_agree_bit_for_bit_in_both_orders(name: str, make: Any, start: int) -> None:
    specs = [fuzz.generate(s) for s in range(start, start + 15)]

    def forest() -> Any:
        model = ml.models.Model()
        for i, spec in enumerate(specs):
            fuzz.build(spec, f"g{i}_", model)
        return model

    rng = np.random.default_rng(start)
    data = {
        k: rng.standard_normal(s) for i, spec in enumerate(specs) for k, s in fuzz.input_shapes(spec, f"g{i}_").items()
    }
    compare(forest, make(), data, seed=start)


@pytest.mark.parametrize("name,make", BACKENDS, ids=[b for b, _ in BACKENDS])
def test_adamw_steps_agree_bit_for_bit_in_both_orders(name: str, make: Any) -> None:
    """Three AdamW steps (donated in-place updates appended after the backward pass) give the same state."""
    from mithril.models import CrossEntropyLoss

    be = make()
    rng = np.random.default_rng(5)
    batches = [{"input": rng.standard_normal((8, 16)), "target": rng.integers(0, 10, 8)} for _ in range(3)]
    final: dict[bool, dict[str, np.ndarray]] = {}
    for on in (True, False):
        with eager(on):
            step = ml.compile_step(
                deep_mlp(3, 16, out=10),
                be,
                loss=CrossEntropyLoss(),
                optimizer=ml.optim.AdamW(lr=1e-2, weight_decay=0.1),
                shapes={"input": [8, 16]},
            )
            state = step.init(seed=3)
            for b in batches:
                arrays = {"input": be.array(b["input"]), "target": be.array(b["target"], dtype=ml.int64)}
                state = step(state, arrays).state
        final[on] = {k: be.to_numpy(v) for k, v in {**state.params, **state.optimizer}.items()}
    assert final[True].keys() == final[False].keys()
    for k in final[False]:
        assert same_bits(final[True][k], final[False][k]), k
    start = {k: be.to_numpy(v) for k, v in step.init(seed=3).params.items()}
    assert any(not same_bits(start[k], final[True][k]) for k in start), "the steps changed nothing"


def test_the_deep_mlp_peak_drops_and_the_estimate_matches_the_measurement() -> None:
    be = ml.NumpyBackend(dtype=ml.float32)
    n, width, batch = 8, 256, 256
    estimate, measured = {}, {}
    for on in (True, False):
        with eager(on):
            pm = ml.compile(deep_mlp(n, width), be, shapes={"input": [batch, width]})
            estimate[on] = pm.memory_report().peak_activations
            params = pm.randomize_params(seed=0)
            x = {"input": be.randn(batch, width)}
            measured[on] = traced_peak(
                lambda: pm.evaluate(params, x, {"output": be.ones(batch, width)})
            )  # compiles the gradient
    one = batch * width * 4
    # reverse order: every layer's activation and input gradient alive at the end (16 arrays);
    # eager: each weight gradient frees its layer's activation at once
    assert estimate[True] <= estimate[False] - 4 * one, (estimate, one)
    for on in (True, False):
        assert abs(measured[on] - estimate[on]) <= 0.1 * estimate[on], (on, measured, estimate)


def test_contributions_are_summed_in_reader_order_whatever_order_they_arrive_in() -> None:
    graph = Graph()
    b = GraphBuilder(graph)
    g = [Value(ValueRole.INPUT, name=f"g{i}", kind="float", shape=(2,)) for i in range(4)]
    acc = autodiff._Cotangents(b)
    for unit, pos in ((9, 0), (7, 0), (7, 1), (3, 0)):  # reverse graph order, then input order
        acc.expect(1, unit, pos)
    acc.give(1, 3, 0, g[3])
    acc.give(1, 7, 1, None)
    assert 1 not in acc.total and not graph.nodes  # waits for the readers before it
    acc.give(1, 9, 0, g[0])
    assert acc.total[1] is g[0] and not graph.nodes
    acc.give(1, 7, 0, g[1])
    outer = acc.total[1].producer
    assert outer is not None and outer.primitive.name == "add" and outer.inputs[1] is g[3]
    inner = outer.inputs[0].producer
    assert inner is not None and inner.inputs == [g[0], g[1]]
    assert len(graph.nodes) == 2
