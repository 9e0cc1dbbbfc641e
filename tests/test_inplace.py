"""In-place buffer reuse (mithril.codegen.inplace): the planner on hand-built graphs, and generated code
with reuse against the same code without it (``MITHRIL_INPLACE=0``) on NumPy and eager torch.

Outputs and gradients must agree bit for bit, and no array the caller passed (params, inputs, output
gradients) may change; graphs come from the fuzzer's generator (tests/reliability/fuzz.py), the seed
models, and the zoo's GPT-2 and LSTM. The tests also check that reuse happens (a plan that is never
taken would pass the rest)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.codegen import inplace
from mithril.ir.graph import Graph, Node, Value, ValueRole
from mithril.primitives.base import registry

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "reliability"))
sys.path.insert(0, str(ROOT.parent / "benchmarks"))

import fuzz  # noqa: E402
from models import deep_mlp, seed_cnn, seed_mlp  # noqa: E402
from shared_checks import float64_backends, same_bits, traced_peak  # noqa: E402

pytest.importorskip("mithril_numpy")

ELEMENTWISE = frozenset({"add", "sub", "mul", "relu", "exp", "neg", "where"})
FRESH = frozenset({"matmul", "linear"})


# ============================================================ the planner on hand-built graphs
class G:
    """A graph built by hand: sources, nodes, results."""

    def __init__(self) -> None:
        self.graph = Graph()

    def source(self, role: ValueRole, name: str, shape: tuple[int, ...], kind: str = "float") -> Value:
        v = Value(role, name=name, kind=kind, shape=shape)
        table = {ValueRole.PARAM: self.graph.params, ValueRole.INPUT: self.graph.inputs}
        if role in table:
            table[role][name] = v
        elif role is ValueRole.CONST:
            v.data = np.zeros(shape)
        return v

    def __call__(self, prim: str, *ins: Value, shape: tuple[int, ...], kind: str = "float", **attrs: Any) -> Value:
        out = Value(ValueRole.NODE, name=f"{prim}{len(self.graph.nodes)}", kind=kind, shape=shape)
        node = Node(registry.get(prim), list(ins), attrs, out)
        out.producer = node
        self.graph.nodes.append(node)
        return out

    def plan(self, *outputs: Value) -> dict[int, int]:
        self.graph.outputs = {f"y{i}": v for i, v in enumerate(outputs)}
        return inplace.plan(self.graph, ELEMENTWISE, FRESH)


def mlp_graph() -> tuple[G, Value, Value]:
    g = G()
    x = g.source(ValueRole.INPUT, "x", (4, 4))
    w = g.source(ValueRole.PARAM, "w", (4, 4))
    return g, x, w


def test_a_chain_of_elementwise_nodes_reuses_the_matmul_buffer() -> None:
    g, x, w = mlp_graph()
    m = g("matmul", x, w, shape=(4, 4))
    a = g("add", m, w, shape=(4, 4))
    r = g("relu", a, shape=(4, 4))
    assert g.plan(r) == {1: 0, 2: 0}


def test_params_inputs_and_constants_are_never_written() -> None:
    g, x, w = mlp_graph()
    c = g.source(ValueRole.CONST, "c", (4, 4))
    r1 = g("relu", w, shape=(4, 4))
    r2 = g("exp", x, shape=(4, 4))
    r3 = g("neg", c, shape=(4, 4))
    assert g.plan(r1, r2, r3) == {}


def test_an_input_read_later_or_a_result_is_not_reused() -> None:
    g, x, w = mlp_graph()
    m = g("matmul", x, w, shape=(4, 4))
    r = g("relu", m, shape=(4, 4))  # m is read again below
    s = g("add", m, r, shape=(4, 4))  # the last reader of both: may write into m (the first)
    assert g.plan(s) == {2: 0}
    g2, x, w = mlp_graph()
    m = g2("matmul", x, w, shape=(4, 4))
    r = g2("relu", m, shape=(4, 4))
    assert g2.plan(r, m) == {}  # m is an output


def test_a_value_made_by_a_primitive_not_known_to_allocate_is_never_a_target() -> None:
    g, x, w = mlp_graph()
    t = g("transpose", x, shape=(4, 4), axes=(1, 0))  # a view of the caller's input
    c = g("cast", w, shape=(4, 4), kind="float")  # may be w itself
    r1 = g("relu", t, shape=(4, 4))
    r2 = g("relu", c, shape=(4, 4))
    assert g.plan(r1, r2) == {}


def test_a_live_view_keeps_its_base_from_being_written() -> None:
    g, x, w = mlp_graph()
    m = g("matmul", x, w, shape=(4, 4))
    t = g("transpose", m, shape=(4, 4), axes=(1, 0))
    r = g("relu", m, shape=(4, 4))  # m's last reader, but t (its view) is read below
    y = g("add", t, r, shape=(4, 4))
    assert 2 not in g.plan(y)
    # the view read by the same node: writing m while reading its transpose would corrupt it
    g2, x, w = mlp_graph()
    m = g2("matmul", x, w, shape=(4, 4))
    t = g2("transpose", m, shape=(4, 4), axes=(1, 0))
    s = g2("add", m, t, shape=(4, 4))
    assert g2.plan(s) == {}
    # a view that is a result keeps its base alive to the end
    g3, x, w = mlp_graph()
    m = g3("matmul", x, w, shape=(4, 4))
    t = g3("flatten", m, shape=(16,), start_axis=0, end_axis=-1)
    r = g3("relu", m, shape=(4, 4))
    assert g3.plan(r, t) == {}
    # once the view is dead too, the buffer is free
    g4, x, w = mlp_graph()
    m = g4("matmul", x, w, shape=(4, 4))
    t = g4("transpose", m, shape=(4, 4), axes=(1, 0))
    u = g4("exp", t, shape=(4, 4))  # t's last reader; t itself is a view, so not a target
    r = g4("relu", m, shape=(4, 4))
    assert g4.plan(u, r) == {3: 0}


def test_nothing_is_broadcast_into_a_smaller_input_and_kinds_must_match() -> None:
    g, x, w = mlp_graph()
    v = g.source(ValueRole.INPUT, "v", (4, 1))
    u = g("matmul", v, g.source(ValueRole.PARAM, "p", (1, 1)), shape=(4, 1))
    s = g("add", u, w, shape=(4, 4))  # u is (4, 1): the (4, 4) result does not fit
    assert g.plan(s) == {}
    g2, x, w = mlp_graph()
    m = g2("matmul", x, w, shape=(4, 4))
    b = g2("matmul", x, w, shape=(4, 1))
    s = g2("add", b, m, shape=(4, 4))  # b does not fit, m does
    assert g2.plan(s) == {2: 1}
    g3, x, w = mlp_graph()
    i = g3("matmul", x, w, shape=(4, 4), kind="int")
    f = g3("add", i, w, shape=(4, 4), kind="float")
    assert g3.plan(f) == {}


def test_the_output_of_an_inplace_node_can_be_reused_again_but_a_pass_through_joins_its_class() -> None:
    g, x, w = mlp_graph()
    m = g("matmul", x, w, shape=(4, 4))
    c = g("cast", m, shape=(4, 4), kind="float")  # may return m itself
    e = g("exp", m, shape=(4, 4))  # m's last reader, but c (maybe m) is read below
    y = g("add", c, e, shape=(4, 4))  # c is not an owner: the result goes into e
    assert g.plan(y) == {3: 1}


def test_random_multi_result_and_unknown_primitives_are_conservative() -> None:
    g, x, w = mlp_graph()
    m = g("matmul", x, w, shape=(4, 4))
    d = g("bernoulli", m, shape=(4, 4), p=0.5)  # random: never planned, output never an owner
    r = g("relu", d, shape=(4, 4))
    assert g.plan(r) == {}


def test_capabilities_skip_primitives_a_plugin_took_over_and_the_switch_turns_it_off(monkeypatch: Any) -> None:
    be = ml.NumpyBackend()
    kernels, fresh = inplace.capabilities(be, jit=False)
    assert {"add", "relu", "mul"} <= set(kernels) and "matmul" in fresh
    monkeypatch.setattr(type(be), "kernels", property(lambda self: {**self.core_kernels(), "add": lambda a, b: a + b}))
    kernels, fresh = inplace.capabilities(be, jit=False)
    assert "add" not in kernels and "add" not in fresh and "relu" in kernels
    monkeypatch.setenv(inplace.ENV, "0")
    assert inplace.capabilities(be, jit=False) == ({}, frozenset())


def test_torch_offers_inplace_kernels_only_eagerly_with_the_core_autodiff() -> None:
    pytest.importorskip("mithril_torch")
    assert ml.TorchBackend().inplace_kernels(jit=False)
    assert not ml.TorchBackend().inplace_kernels(jit=True)
    assert not ml.TorchBackend(autodiff="torch").inplace_kernels(jit=False)


# ================================================= generated code with and without reuse
@contextlib.contextmanager
def reuse(on: bool) -> Iterator[None]:
    old = os.environ.get(inplace.ENV)
    os.environ[inplace.ENV] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ[inplace.ENV]
        else:
            os.environ[inplace.ENV] = old


BACKENDS = float64_backends()


def compare(model_factory: Callable[[], Any], be: Any, data: dict[str, np.ndarray], seed: int) -> int:
    """Run ``model_factory()`` with and without reuse on the same data; assert bitwise equality and
    untouched arguments. Returns how many nodes the plan writes in place."""
    shapes = {k: list(v.shape) for k, v in data.items()}
    got: dict[bool, tuple[Any, ...]] = {}
    planned = 0
    for on in (True, False):
        with reuse(on):
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
        before = {k: be.to_numpy(v).copy() for k, v in {**params, **inputs, **cot}.items()}
        forward = pm.evaluate(params, inputs)
        if on:
            planned += pm.source.count(" = ki_")  # in run and in the sub-graphs' functions
        outs, grads = pm.evaluate(params, inputs, cot)
        if on:
            planned += pm.source.count(" = ki_")
        for k, v in {**params, **inputs, **cot}.items():
            assert same_bits(be.to_numpy(v), before[k]), f"{k!r} the caller passed was modified (reuse={on})"
        got[on] = (
            {k: be.to_numpy(v) for k, v in forward.items()},
            {k: be.to_numpy(v) for k, v in outs.items()},
            {k: be.to_numpy(v) for k, v in grads.items()},
        )
    for part, with_reuse, without in zip(("forward", "outputs", "gradients"), got[True], got[False]):
        assert with_reuse.keys() == without.keys()
        for k in without:
            assert same_bits(with_reuse[k], without[k]), f"{part}[{k!r}] differs with in-place reuse"
    return planned


FOREST = 15
FORESTS = 10  # 150 fuzzed graphs per backend


@pytest.mark.parametrize("name,make", BACKENDS, ids=[b for b, _ in BACKENDS])
@pytest.mark.parametrize("start", range(0, FOREST * FORESTS, FOREST))
def test_fuzzed_graphs_agree_bit_for_bit_with_and_without_reuse(name: str, make: Any, start: int) -> None:
    specs = [fuzz.generate(s) for s in range(start, start + FOREST)]

    def forest() -> Any:
        model = ml.models.Model()
        for i, spec in enumerate(specs):
            fuzz.build(spec, f"g{i}_", model)
        return model

    rng = np.random.default_rng(start)
    data = {
        k: rng.standard_normal(s) for i, spec in enumerate(specs) for k, s in fuzz.input_shapes(spec, f"g{i}_").items()
    }
    planned = compare(forest, make(), data, seed=start)
    assert planned > 0, "no node of 15 fuzzed graphs was planned in place"


def seed_cases() -> list[tuple[str, Callable[[], Any], dict[str, np.ndarray]]]:
    from mithril.models import LSTM, gpt2

    rng = np.random.default_rng(3)
    return [
        ("seed-mlp", seed_mlp, {"input": rng.standard_normal((8, 16))}),
        ("deep-mlp", lambda: deep_mlp(4, 32), {"input": rng.standard_normal((8, 32))}),
        ("seed-cnn", seed_cnn, {"input": rng.standard_normal((2, 3, 32, 32))}),
        (
            "gpt2",
            lambda: gpt2(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=16),
            {"input": rng.integers(0, 97, (2, 8))},
        ),
        ("lstm", lambda: LSTM(5, 6, num_layers=2, batch_first=True), {"input": rng.standard_normal((3, 4, 5))}),
        ("cond", cond_model, {"x": np.abs(rng.standard_normal((2, 4)))}),
        ("cond-other-branch", cond_model, {"x": -np.abs(rng.standard_normal((2, 4)))}),
    ]


def cond_model() -> Any:
    """Cond over two branches (Linear -> Tanh -> Exp, Linear -> Relu -> Exp), picked by the sign of sum(x)."""
    from mithril.models import Cond, Exp, IOKey, Linear, Model, Relu, Tanh

    def branch(activation: Any) -> Any:
        m = Model()
        m |= Linear(6)(input="x", output="h")
        m |= activation()(input="h", output="a")
        m |= Exp()(input="a", output=IOKey("y"))
        return m

    model = Model()
    model.call("sum", "x", output="total")
    model.call("greater", "total", 0.0, output="positive")
    model |= Cond(branch(Tanh), branch(Relu))(x="x", pred="positive", y=IOKey("y"))
    return model


SEEDS = seed_cases()


@pytest.mark.parametrize("name,make", BACKENDS, ids=[b for b, _ in BACKENDS])
@pytest.mark.parametrize("case", SEEDS, ids=[c[0] for c in SEEDS])
def test_models_agree_bit_for_bit_with_and_without_reuse(name: str, make: Any, case: Any) -> None:
    _, factory, data = case
    planned = compare(factory, make(), data, seed=11)
    assert planned > 0


def chain() -> Any:
    from mithril.models import Exp, Linear, Model, Relu, Tanh

    m = Model()
    m |= Linear(dimension=256)
    m += Relu()
    m += Tanh()
    m += Exp()
    return m


def test_generated_source_calls_the_inplace_kernel_and_the_estimate_and_peak_count_it() -> None:
    be = ml.NumpyBackend(dtype=ml.float32)
    x = {"input": be.randn(128, 64)}
    report, peak = {}, {}
    for on in (True, False):
        with reuse(on):
            pm = ml.compile(chain(), be, shapes={"input": [128, 64]})
            report[on] = pm.memory_report(gradients=False)
        params = pm.randomize_params(seed=0)
        peak[on] = traced_peak(lambda: pm.evaluate(params, x))
        assert ("ki_relu(linear, out=linear)" in pm.source) is on
        assert ("ki_" in pm.source) is on
    # without reuse a linear's output and its relu's are alive together; with it, one buffer all along
    one = 128 * 256 * 4
    assert report[False].peak_activations == 2 * one and report[True].peak_activations == one
    # measured: one activation fewer (the linear kernel's own scratch, not estimated here, is the same in both)
    assert peak[False] - peak[True] >= 0.7 * one, peak


@pytest.mark.parametrize("name,make", BACKENDS, ids=[b for b, _ in BACKENDS])
def test_training_steps_agree_bit_for_bit_with_and_without_reuse(name: str, make: Any) -> None:
    """Three Adam steps (the optimizer's donated updates as well) give the same params and moments."""
    from mithril.models import CrossEntropyLoss

    be = make()
    rng = np.random.default_rng(5)
    batches = [{"input": rng.standard_normal((8, 16)), "target": rng.integers(0, 10, 8)} for _ in range(3)]
    final = {}
    for on in (True, False):
        with reuse(on):
            step = ml.compile_step(
                seed_mlp(), be, loss=CrossEntropyLoss(), optimizer=ml.optim.Adam(lr=1e-2), shapes={"input": [8, 16]}
            )
            state = step.init(seed=3)
            for b in batches:
                arrays = {"input": be.array(b["input"]), "target": be.array(b["target"], dtype=ml.int64)}
                state = step(state, arrays).state
                assert same_bits(be.to_numpy(arrays["input"]), b["input"])
        final[on] = {k: be.to_numpy(v) for k, v in {**state.params, **state.optimizer}.items()}
    assert final[True].keys() == final[False].keys()
    for k in final[False]:
        assert same_bits(final[True][k], final[False][k]), k
