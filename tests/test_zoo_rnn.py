"""LSTM and GRU of the zoo against torch.nn.LSTM / torch.nn.GRU on every installed backend.

Each case draws its sizes from a generator seeded by its name and fixes the
structure (layers, direction, batch_first, initial state, bias, projection) so
that the cases together cover each option both ways. Mithril randomises the
parameters; torch gets them by state-dict name (so names and shapes must map one
to one). Compared: ``output``, ``h_n`` (and ``c_n``), and the gradients of
``sum(cot * outputs)`` with respect to the input, the initial states and every
parameter (the input and states are parameters of a wrapping model, so
``evaluate`` returns their gradients). References run in float64 torch on the
exact values the backend holds; tolerances: float64 1e-9, float32 1e-4 (relative
to the reference's magnitude).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.errors import ModelBuildError, ShapeMismatchError
from mithril.ir.graph import Graph, GraphBuilder, Value, ValueRole
from mithril.models import GRU, LSTM, IOKey, Model
from mithril.testing.variants import installed, variant_backend, variants

torch = pytest.importorskip("torch")

INSTALLED = installed()
#: each installed backend, and torch once more with gradients by torch.autograd
VARIANTS = variants()
TARGETS = [(b, d) for b in VARIANTS for d in ("float64", "float32") if (b, d) != ("torch-autograd", "float32")]
TOL = {"float64": 1e-9, "float32": 1e-4}
#: JAX compiles one XLA computation per kernel and attribute set on first use (~0.1 s each here), so it
#: runs the cases that combine the most options; the expansion is the same graph on every backend
JAX_CASES = {
    "float64": ("gru_2layers_bidirectional_h0", "lstm_proj_bidirectional_h0", "lstm_2layers_batch_first_no_bias"),
    "float32": ("lstm_2layers_bidirectional_batch_first_h0",),
}


@dataclass(frozen=True)
class Case:
    """The structure of one case; sizes come from its seeded generator."""

    mode: str  # 'lstm' or 'gru'
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    initial_state: bool = False
    bias: bool = True
    proj_size: bool = False


CASES = {
    "lstm": Case("lstm"),
    "lstm_2layers_bidirectional_batch_first_h0": Case("lstm", 2, True, True, True),
    "lstm_bidirectional_h0": Case("lstm", 1, True, False, True),
    "lstm_2layers_batch_first_no_bias": Case("lstm", 2, False, True, False, bias=False),
    "lstm_proj_bidirectional_h0": Case("lstm", 2, True, False, True, proj_size=True),
    "gru_batch_first": Case("gru", 1, False, True),
    "gru_2layers_bidirectional_h0": Case("gru", 2, True, False, True),
    "gru_bidirectional_batch_first": Case("gru", 1, True, True, False),
    "gru_2layers_h0_no_bias": Case("gru", 2, False, False, True, bias=False),
}

#: one shared backend per (variant, dtype)
backend = variant_backend


def build(case: Case, rng: np.random.Generator) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """The zoo block, its torch twin (float64) and the data of every input terminal."""
    n, t, i, h = (int(rng.integers(1, 4)), int(rng.integers(2, 5)), int(rng.integers(2, 5)), int(rng.integers(2, 5)))
    kw: dict[str, Any] = dict(
        num_layers=case.num_layers, bias=case.bias, batch_first=case.batch_first, bidirectional=case.bidirectional
    )
    if case.proj_size:
        kw["proj_size"] = int(rng.integers(1, h))
    block = (LSTM if case.mode == "lstm" else GRU)(i, h, initial_state=case.initial_state, **kw)
    module = (torch.nn.LSTM if case.mode == "lstm" else torch.nn.GRU)(i, h, **kw).double()
    data = {"input": rng.standard_normal((n, t, i) if case.batch_first else (t, n, i))}
    if case.initial_state:
        dl, r = case.num_layers * (2 if case.bidirectional else 1), kw.get("proj_size") or h
        data["h0"] = rng.standard_normal((dl, n, r))
        if case.mode == "lstm":
            data["c0"] = rng.standard_normal((dl, n, h))
    return block, module, data


def torch_forward(case: Case, module: Any, t_in: dict[str, Any]) -> dict[str, Any]:
    states = None
    if case.initial_state:
        states = (t_in["h0"], t_in["c0"]) if case.mode == "lstm" else t_in["h0"]
    output, hidden = module(t_in["input"], states)
    if case.mode == "lstm":
        return {"output": output, "h_n": hidden[0], "c_n": hidden[1]}
    return {"output": output, "h_n": hidden}


def close(got: Any, want: np.ndarray, dtype: str, what: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    tol = TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


def as_f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


RUNS = [(c, b, d) for b, d in TARGETS for c in sorted(CASES) if b != "jax" or c in JAX_CASES[d]]


@pytest.mark.parametrize("name,backend_name,dtype", RUNS, ids=[f"{c}-{b}-{d}" for c, b, d in RUNS])
def test_rnn_matches_torch_nn(name: str, backend_name: str, dtype: str) -> None:
    case = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    block, module, data = build(case, rng)
    be = backend(backend_name, dtype)
    model = Model()
    outs = ("output", "h_n", "c_n") if case.mode == "lstm" else ("output", "h_n")
    model |= block(**{k: IOKey(k, role="param") for k in data}, **{k: IOKey(k) for k in outs})
    prefix = block._local_name
    pm = ml.compile(model, be, shapes={k: list(v.shape) for k, v in data.items()})
    params = pm.randomize_params(seed=1)
    for k, v in data.items():
        params[k] = be.array(v)
    held = {k: as_f64(be.to_numpy(v)) for k, v in params.items()}

    sd = module.state_dict()
    assert {f"{prefix}.{k}" for k in sd} | set(data) == set(held), "parameter names differ from torch's"
    module.load_state_dict({k: torch.tensor(held[f"{prefix}.{k}"]) for k in sd})
    t_in = {k: torch.tensor(held[k], requires_grad=True) for k in data}
    ref = torch_forward(case, module, t_in)
    cots = {k: rng.standard_normal(tuple(v.shape)) for k, v in ref.items()}
    sum((v * torch.tensor(cots[k])).sum() for k, v in ref.items()).backward()

    out, grads = pm.evaluate(params, {}, {k: be.array(v) for k, v in cots.items()})
    for k, v in ref.items():
        close(be.to_numpy(out[k]), v.detach().numpy(), dtype, k)
    for k, p in module.named_parameters():
        close(be.to_numpy(grads[f"{prefix}.{k}"]), p.grad.numpy(), dtype, f"d/d {k}")
    for k, v in t_in.items():
        close(be.to_numpy(grads[k]), v.grad.numpy(), dtype, f"d/d {k}")


@pytest.mark.parametrize("backend_name", [b for b in ("torch", "jax") if b in INSTALLED])
def test_small_lstm_runs_jitted(backend_name: str) -> None:
    """Forward and gradients of a jitted LSTM equal NumPy's (checked against torch.nn above).

    torch.compile runs with ``backend="aot_eager"``: dynamo traces the unrolled code and AOT
    autograd its backward, which is where an unrolled graph could break; inductor's code
    generation takes about 30 s for this graph on a small machine.
    """
    if backend_name == "torch":
        be = ml.TorchBackend(dtype=ml.float64, compile_options={"backend": "aot_eager"})
    else:
        be = backend(backend_name, "float64")
    ref = backend("numpy", "float64")
    shapes = {"input": [2, 2, 3]}
    jitted = ml.compile(LSTM(3, 2, batch_first=True, bidirectional=True), be, shapes=shapes, jit=True)
    eager = ml.compile(LSTM(3, 2, batch_first=True, bidirectional=True), ref, shapes=shapes)
    params = eager.randomize_params(seed=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 3))
    cot = {k: np.ones(s) for k, s in (("output", (2, 2, 4)), ("h_n", (2, 2, 2)), ("c_n", (2, 2, 2)))}
    want_out, want_grads = eager.evaluate(params, {"input": x}, cot)
    got_out, got_grads = jitted.evaluate(
        {k: be.array(v) for k, v in params.items()}, {"input": be.array(x)}, {k: be.array(v) for k, v in cot.items()}
    )
    for k in want_out:
        close(be.to_numpy(got_out[k]), want_out[k], "float64", k)
    for k in want_grads:
        close(be.to_numpy(got_grads[k]), want_grads[k], "float64", f"d/d {k}")


def test_randomize_params_follows_torch_initialisation() -> None:
    h = 16
    pm = ml.compile(
        GRU(5, h, num_layers=2, bidirectional=True), ml.NumpyBackend(dtype=ml.float64), shapes={"input": [3, 2, 5]}
    )
    params = pm.randomize_params(seed=0)
    names = set(torch.nn.GRU(5, h, num_layers=2, bidirectional=True).state_dict())
    assert set(params) == names
    bound = 1.0 / math.sqrt(h)
    for k, v in params.items():
        assert np.max(np.abs(v)) <= bound and np.std(v) > bound / 4, k


def test_input_size_comes_from_the_input_when_not_given() -> None:
    pm = ml.compile(LSTM(None, 4, num_layers=2), ml.NumpyBackend(), shapes={"input": [5, 2, 7]})
    assert pm.shapes["weight_ih_l0"] == [16, 7] and pm.shapes["weight_ih_l1"] == [16, 4]
    assert pm.shapes["output"] == [5, 2, 4] and pm.shapes["h_n"] == [2, 2, 4]


def test_shape_errors_name_the_terminal_and_both_shapes() -> None:
    with pytest.raises(ShapeMismatchError, match=r"'input' is \[2, 5, 7\] but the model needs \[.*, 3\]"):
        ml.compile(LSTM(3, 4), ml.NumpyBackend(), shapes={"input": [2, 5, 7]})
    with pytest.raises(ShapeMismatchError, match=r"'h0' is \[1, 2, 5\] but the model needs \[1, .*, 4\]"):
        ml.compile(GRU(3, 4, initial_state=True), ml.NumpyBackend(), shapes={"input": [5, 2, 3], "h0": [1, 2, 5]})


def test_the_primitive_names_the_weight_that_does_not_fit() -> None:
    graph = Graph()
    x, w_ih, w_hh = (
        Value(ValueRole.INPUT, name=k, kind="float", shape=s)
        for k, s in (("x", (5, 2, 3)), ("w_ih", (12, 3)), ("w_hh", (12, 5)))
    )
    b = GraphBuilder(graph, where="rnn")
    with pytest.raises(ShapeMismatchError, match=r"rnn: gru.*weight_hh_l0 must be \[12, 4\], got \[12, 5\]"):
        b.emit("gru", x, w_ih, w_hh, hidden_size=4, bias=False)
    with pytest.raises(ShapeMismatchError, match=r"takes 3 inputs \(input, weight_ih_l0, weight_hh_l0\), got 2"):
        b.emit("gru", x, w_ih, hidden_size=4, bias=False)
    with pytest.raises(ModelBuildError, match=r"result must be one of \('output', 'h_n'\), got 'c_n'"):
        b.emit("gru", x, w_ih, w_hh, hidden_size=4, bias=False, result="c_n")


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_dropout_between_layers_as_torch(mode: str) -> None:
    """Inference ignores dropout; p=1 zeroes what layer 1 sees (deterministic, as torch); with
    0 < p < 1 layer 0's final state is untouched and the last layer's is not."""
    case = Case(mode, 2, True, True, True)
    rng = np.random.default_rng(zlib.crc32(mode.encode()))
    be = backend("numpy", "float64")
    data = build(case, rng)[2]
    i, h = data["input"].shape[-1], data["h0"].shape[-1]
    kw = dict(num_layers=2, batch_first=True, bidirectional=True)
    for p, training in ((0.3, False), (1.0, True), (0.5, True)):
        block = (LSTM if mode == "lstm" else GRU)(i, h, dropout=p, initial_state=True, **kw)
        pm = ml.compile(block, be, shapes={k: list(v.shape) for k, v in data.items()})
        params = pm.randomize_params(seed=2)
        module = (torch.nn.LSTM if mode == "lstm" else torch.nn.GRU)(i, h, dropout=p, **kw).double()
        module.load_state_dict({k: torch.tensor(v) for k, v in params.items()})
        module.train(training and p == 1.0)
        ref = torch_forward(case, module, {k: torch.tensor(v) for k, v in data.items()})
        out = pm.evaluate(params, data, training=training)
        if p < 1.0 and training:
            close(out["h_n"][:2], ref["h_n"][:2].detach().numpy(), "float64", "h_n of layer 0")
            assert not np.allclose(out["h_n"][2:], ref["h_n"][2:].detach().numpy()), "no dropout applied"
            continue
        for k, v in ref.items():
            close(out[k], v.detach().numpy(), "float64", f"{k} (p={p}, training={training})")


def test_unsupported_options_are_rejected_clearly() -> None:
    with pytest.raises(ModelBuildError, match=r"LSTM: dropout probability must be a number in \[0, 1\], got 1.5"):
        LSTM(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(ModelBuildError, match=r"LSTM: proj_size .* \[0, hidden_size=4\)"):
        LSTM(3, 4, proj_size=4)
    with pytest.raises(ModelBuildError, match="GRU: num_layers"):
        GRU(3, 4, num_layers=0)
