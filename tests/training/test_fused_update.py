"""The fused optimizer update (``adam_update``): torch eager updates donated params in place with the
arithmetic of the core's expansion, and only where nothing reads the old values afterwards."""

from __future__ import annotations

import numpy as np
import pytest

import mithril as ml
from mithril.ir.graph import Graph, GraphBuilder, Value, ValueRole, const_value
from mithril.models import Linear, Model, MSELoss, Relu
from mithril.training.optim.fused import RESULTS

torch = pytest.importorskip("torch")
from mithril_torch.optim import mark_donated_updates  # noqa: E402


def _mlp() -> Model:
    m = Model()
    m |= Linear(dimension=16)
    m += Relu()
    m += Linear(dimension=4)
    return m


def _train(backend: ml.Backend, optimizer: ml.optim.Optimizer, params: dict[str, np.ndarray], steps: int) -> tuple:
    step = ml.compile_step(
        _mlp(), backend, loss=MSELoss(), optimizer=optimizer, shapes={"input": [8, 5], "target": [8, 4]}
    )
    state = step.init({k: backend.array(v) for k, v in params.items()})
    rng = np.random.default_rng(0)
    batch = {"input": backend.array(rng.standard_normal((8, 5))), "target": backend.array(rng.standard_normal((8, 4)))}
    first = dict(state.params)
    for _ in range(steps):
        state = step(state, batch).state
    return step, first, {k: backend.to_numpy(v) for k, v in state.params.items()}, state


@pytest.mark.parametrize(
    "optimizer",
    [lambda: ml.optim.AdamW(lr=1e-2), lambda: ml.optim.Adam(lr=1e-2, weight_decay=0.1), lambda: ml.optim.Adam()],
    ids=["adamw", "adam-l2", "adam"],
)
def test_torch_eager_updates_in_place_as_the_expansion(optimizer) -> None:  # type: ignore[no-untyped-def]
    np_be = ml.NumpyBackend(dtype=ml.float64)
    init = ml.compile(_mlp(), np_be, shapes={"input": [8, 5]}).randomize_params(seed=1)
    params = {k: np_be.to_numpy(v) for k, v in init.items()}
    np_step, _, want, _ = _train(np_be, optimizer(), params, 5)
    assert "adam_update" not in np_step.source  # NumPy has no kernel: the expansion, the core's arithmetic
    step, first, got, state = _train(ml.TorchBackend(dtype=ml.float64), optimizer(), params, 5)
    assert "donated=True" in step.source
    for k in want:
        assert state.params[k] is first[k]  # the same tensors, updated in place
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14)


def _graph(*, donates: bool = True, grad_is_param: bool = False, read_after: bool = False) -> Graph:
    g = Graph(donates_params=donates)
    p = g.params["w"] = Value(ValueRole.PARAM, name="w", kind="float", shape=(3,))
    m = g.state["m"] = Value(ValueRole.STATE, name="m", kind="float", shape=(3,))
    v = g.state["v"] = Value(ValueRole.STATE, name="v", kind="float", shape=(3,))
    grad = p if grad_is_param else g.inputs.setdefault("g", Value(ValueRole.INPUT, name="g", kind="float", shape=(3,)))
    b = GraphBuilder(g)
    lr, t = const_value(1e-3, "float"), const_value(1.0, "float")
    new = {r: b.emit("adam_update", p, grad, m, v, lr, t, result=r) for r in RESULTS}
    g.state_updates = {"w": new["param"], "m": new["m"], "v": new["v"]}
    if read_after:
        g.outputs["norm"] = b.emit("sum", b.emit("mul", p, p), axis=None, keepdims=False)
    return g


@pytest.mark.parametrize(
    ("kwargs", "donated"),
    [
        ({}, True),
        ({"donates": False}, False),
        ({"grad_is_param": True}, False),
        ({"read_after": True}, False),
    ],
    ids=["donated", "not-donating-graph", "grad-is-the-param", "param-read-after"],
)
def test_in_place_only_where_nothing_reads_the_old_values(kwargs: dict, donated: bool) -> None:
    graph = _graph(**kwargs)
    mark_donated_updates(graph)
    flags = {n.attrs["donated"] for n in graph.nodes if n.primitive.name == "adam_update"}
    assert flags == {donated}
