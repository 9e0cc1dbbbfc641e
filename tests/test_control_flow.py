"""Scan, Cond and Switch (issue 18) against hand-written torch loops and branches, NumPy and finite differences.

Each model is compiled on NumPy, torch (eager and torch.compile, core autodiff and torch.autograd)
and JAX (jit), in float64. The oracle of a loop is the same recurrence written as a Python loop in
torch, differentiated by torch.autograd; of a branch, the branch's formula. Data inputs and initial
carries are parameters of a wrapping model, so ``evaluate`` returns their gradients too.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.errors import ModelBuildError, ShapeMismatchError, UnsupportedError
from mithril.models import LSTM, Cond, Dropout, IOKey, Linear, Model, Relu, Scan, Switch, Tanh
from mithril.testing.variants import installed, variant_backend

torch = pytest.importorskip("torch")

#: (backend variant, jit)
TARGETS = [(b, False) for b in installed() if b != "jax"] + [(b, True) for b in installed() if b != "numpy"]
TARGETS += [("torch-autograd", False), ("torch-autograd", True)] if "torch" in installed() else []
IDS = [f"{b}{'-jit' if j else ''}" for b, j in TARGETS]


def _cell() -> Model:
    """``h' = tanh(W h + b + x)``, ``s' = s + h'``, ``y = h' * scale``."""
    cell = Model()
    cell |= Linear(4)(input="h", output="hw")
    cell.call("add", "hw", "x", output="pre")
    cell |= Tanh()(input="pre", output=IOKey("h_next", expose=True))
    cell.call("add", "s", "h_next", output=IOKey("s_next"))
    cell.call("mul", "h_next", "scale", output=IOKey("y"))
    return cell


def _rnn(reverse: bool) -> Model:
    rnn = Scan(_cell(), carry={"h": "h_next", "s": "s_next"}, xs="x", ys="y", reverse=reverse)
    m = Model()
    data = {"h": "h0", "s": "s0", "x": "xs", "scale": "scale"}
    m |= rnn(**{k: IOKey(v, role="param") for k, v in data.items()}, h_next="h_T", s_next="s_T", y="ys")
    return m


def _run(target: tuple[str, bool], model: Model, shapes: dict[str, list[int]], data: dict[str, np.ndarray],
         cots: dict[str, np.ndarray], inputs: dict[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], ...]:  # fmt: skip
    name, jit = target
    b = variant_backend(name, "float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a torch.compile fallback to eager fails the test
        pm = ml.compile(model, b, shapes=shapes, jit=jit)
        params = pm.randomize_params()
        params.update({k: b.array(v) for k, v in data.items()})
        ins = {k: b.array(v) for k, v in (inputs or {}).items()}
        out, grads = pm.evaluate(params, ins, output_gradients={k: b.array(v) for k, v in cots.items()})
    as_np = {k: np.asarray(b.to_numpy(v)) for k, v in params.items()}
    return (
        {k: np.asarray(b.to_numpy(v)) for k, v in out.items()},
        {k: np.asarray(b.to_numpy(v)) for k, v in grads.items()},
        as_np,
    )


def _close(a: np.ndarray, b: np.ndarray, what: str) -> None:
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert float(np.abs(a - b).max(initial=0.0)) <= 1e-9 * scale, f"{what}: {np.abs(a - b).max()}"


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_scan_matches_a_hand_written_torch_loop(target: tuple[str, bool], reverse: bool) -> None:
    rng = np.random.default_rng(7 + reverse)
    t, n = 5, 3
    data = {"h0": rng.normal(size=(n, 4)), "s0": rng.normal(size=(n, 4)), "xs": rng.normal(size=(t, n, 4))}
    data["scale"] = rng.normal(size=(4,))
    cots = {"ys": rng.normal(size=(t, n, 4)), "h_T": rng.normal(size=(n, 4)), "s_T": rng.normal(size=(n, 4))}
    shapes = {"h0": [n, 4], "s0": [n, 4], "xs": [t, n, 4], "scale": [4]}
    out, grads, params = _run(target, _rnn(reverse), shapes, data, cots)

    ref = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    w, bias = ref["scan_0.linear_0.weight"], ref["scan_0.linear_0.bias"]
    h, s, ys = ref["h0"], ref["s0"], [None] * t
    for step in reversed(range(t)) if reverse else range(t):
        h = torch.tanh(h @ w.T + bias + ref["xs"][step])
        s = s + h
        ys[step] = h * ref["scale"]
    want = {"h_T": h, "s_T": s, "ys": torch.stack(ys)}  # type: ignore[arg-type]
    sum(torch.sum(want[k] * torch.tensor(c)) for k, c in cots.items()).backward()  # type: ignore[union-attr]
    for k, v in want.items():
        _close(out[k], v.detach().numpy(), k)
    for k, p in ref.items():
        _close(grads[k], p.grad.numpy(), f"d {k}")  # type: ignore[union-attr]


def test_scan_gradient_against_finite_differences() -> None:
    """The core's reverse loop on NumPy against central differences of the forward loop."""
    b = ml.NumpyBackend(dtype=ml.float64)
    pm = ml.compile(_rnn(False), b, shapes={"h0": [2, 4], "s0": [2, 4], "xs": [3, 2, 4], "scale": [4]})
    params = pm.randomize_params()
    rng = np.random.default_rng(3)
    cot = {"ys": rng.normal(size=(3, 2, 4)), "h_T": rng.normal(size=(2, 4)), "s_T": rng.normal(size=(2, 4))}

    def loss(p: dict[str, Any]) -> float:
        out = pm.evaluate(p, {})
        return float(sum(np.sum(out[k] * c) for k, c in cot.items()))

    _, grads = pm.evaluate(params, {}, output_gradients=cot)
    for k in ("scan_0.linear_0.weight", "xs", "h0"):
        flat = params[k].reshape(-1)
        for i in (0, flat.size // 2, flat.size - 1):
            plus, minus = {**params, k: params[k].copy()}, {**params, k: params[k].copy()}
            plus[k].reshape(-1)[i] += 1e-6
            minus[k].reshape(-1)[i] -= 1e-6
            fd = (loss(plus) - loss(minus)) / 2e-6
            assert abs(grads[k].reshape(-1)[i] - fd) < 1e-6 * max(1.0, abs(fd)), (k, i)


def _graph_size(pm: Any) -> int:
    return sum(len(c.graph.nodes) for c in pm._cache.values())


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "gradients"])
def test_lstm_graph_is_the_same_size_for_every_length(backward: bool) -> None:
    """One scan per layer and direction: the compiled graph does not grow with T (no unrolling)."""
    b = ml.NumpyBackend(dtype=ml.float64)
    sizes = []
    for steps in (2, 64):
        pm = ml.compile(LSTM(3, 5, num_layers=2, bidirectional=True), b, shapes={"input": [steps, 2, 3]})
        params = pm.randomize_params()
        x = np.zeros((steps, 2, 3))
        if backward:
            pm.evaluate(params, {"input": x}, output_gradients={"output": np.ones((steps, 2, 10))})
        else:
            pm.evaluate(params, {"input": x})
        sizes.append(_graph_size(pm))
        assert pm.source.count("k_scan(") == (8 if backward else 4)
    assert sizes[0] == sizes[1]


def _branch(act: type) -> Model:
    m = Model()
    m |= Linear(3)(input="x", output="h")
    m |= act()(input="h", output=IOKey("y"))
    return m


def _cond_model() -> Model:
    """``y = tanh(lin_t(x))`` when ``sum(x) > 0``, else ``relu(lin_f(x))``: the predicate is computed in the model."""
    m = Model()
    m.call("sum", "x", output="total")
    m.call("greater", "total", 0.0, output="positive")
    m |= Cond(_branch(Tanh), _branch(Relu))(x=IOKey("x", role="param"), pred="positive", y=IOKey("y"))
    return m


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["true", "false"])
@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_cond_runs_and_differentiates_the_branch_taken(target: tuple[str, bool], sign: float) -> None:
    rng = np.random.default_rng(11)
    x = np.abs(rng.normal(size=(2, 4))) * sign
    cot = rng.normal(size=(2, 3))
    out, grads, params = _run(target, _cond_model(), {"x": [2, 4]}, {"x": x}, {"y": cot})
    taken, other = ("true_branch", "false_branch") if sign > 0 else ("false_branch", "true_branch")
    ref = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    h = ref["x"] @ ref[f"cond_0.{taken}.linear_0.weight"].T + ref[f"cond_0.{taken}.linear_0.bias"]
    y = torch.tanh(h) if sign > 0 else torch.relu(h)
    (y * torch.tensor(cot)).sum().backward()
    _close(out["y"], y.detach().numpy(), "y")
    for k, p in ref.items():
        want = p.grad.numpy() if p.grad is not None else np.zeros_like(params[k])
        _close(grads[k], want, f"d {k}")
    assert not np.any(grads[f"cond_0.{other}.linear_0.weight"])


def _scaled(factor: float) -> Model:
    m = Model()
    m.call("mul", "x", factor, output=IOKey("y"))
    return m


@pytest.mark.parametrize(
    "target", [t for t in TARGETS if t[0] != "torch-autograd"], ids=[i for i in IDS if "autograd" not in i]
)
def test_switch_picks_by_an_int_index_and_clamps_it(target: tuple[str, bool]) -> None:
    m = Model()
    m |= Switch([_scaled(1.0), _scaled(2.0), _scaled(3.0)])(x=IOKey("x", role="param"), index="k", y=IOKey("y"))
    name, jit = target
    b = variant_backend(name, "float64")
    pm = ml.compile(m, b, shapes={"x": [3], "k": []}, jit=jit)
    x = np.array([1.0, -2.0, 0.5])
    for k, factor in ((-4, 1.0), (0, 1.0), (1, 2.0), (2, 3.0), (9, 3.0)):
        out, grads = pm.evaluate({"x": b.array(x)}, {"k": b.array(np.array(k))}, output_gradients={"y": b.ones(3)})
        np.testing.assert_allclose(np.asarray(b.to_numpy(out["y"])), factor * x, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(b.to_numpy(grads["x"])), np.full(3, factor), rtol=1e-12)


def test_cond_branches_that_disagree_name_the_branch_and_terminal() -> None:
    narrow = Model()
    narrow |= Linear(3)(input="x", output=IOKey("y"))
    wide = Model()
    wide |= Linear(5)(input="x", output=IOKey("y"))
    with pytest.raises(
        ShapeMismatchError, match=r"true_branch: output 'y' is \[.*, 5\] .* false_branch gives \[.*, 3\]"
    ):
        Cond(wide, narrow)


def test_scan_refuses_what_it_cannot_loop() -> None:
    with pytest.raises(ModelBuildError, match="no input 'hidden'"):
        Scan(_cell(), carry={"hidden": "h_next"}, xs="x", ys="y")
    with pytest.raises(ModelBuildError, match="no output 'h_new'"):
        Scan(_cell(), carry={"h": "h_new"}, xs="x")
    with pytest.raises(ModelBuildError, match="name the ys apart"):
        Scan(_cell(), carry={"h": "h_next"}, xs="x", ys="h_next")
    noisy = Model()
    noisy |= Dropout(0.5)(input="h", output=IOKey("h_next"))
    with pytest.raises(UnsupportedError, match="Dropout"):
        Scan(noisy, carry={"h": "h_next"}, length=3)


@pytest.mark.skipif("ggml" not in ml.plugins.backends(), reason="mithril-ggml is not installed")
def test_backend_without_control_flow_kernels_unrolls_loops_and_refuses_branches() -> None:
    """GGML has no scan/cond kernels: the loop is unrolled (exact), a branch is an UnsupportedError."""
    rnn = Scan(_cell(), carry={"h": "h_next", "s": "s_next"}, xs="x", ys={"y": "ys"})
    shapes = {"h": [2, 4], "s": [2, 4], "x": [3, 2, 4], "scale": [4]}
    ref = ml.compile(rnn, ml.NumpyBackend(), shapes=shapes)
    params = ref.randomize_params()
    rng = np.random.default_rng(5)
    data = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    want = ref.evaluate(params, data)
    g = ml.GGMLBackend()
    got = ml.compile(rnn, g, shapes=shapes).evaluate(
        {k: g.array(v) for k, v in params.items()}, {k: g.array(v) for k, v in data.items()}
    )
    for k in want:
        np.testing.assert_allclose(np.asarray(g.to_numpy(got[k])), want[k], rtol=1e-4, atol=1e-5)
    with pytest.raises(UnsupportedError, match="cond"):
        ml.compile(_cond_model(), g, shapes={"x": [2, 4]})


# ---------------------------------------------------------------- torch.compile (jit=True)


def _graphs_of(pm: Any, *args: Any) -> list[Any]:
    """The FX graphs dynamo captures from the generated function ``pm`` ran last."""
    return list(torch._dynamo.explain(pm._last.executable.raw)(*args).graphs)


def _three_branches() -> list[Model]:
    third = Model()
    third |= Linear(3)(input="x", output="h")
    third.call("reshape", "h", shape=(2, 3), output=IOKey("y"))  # a view of a branch's value
    return [_branch(Tanh), _branch(Relu), third]


@pytest.mark.parametrize("kind", ["cond", "switch"])
def test_torch_compile_captures_a_branch_as_torch_cond(kind: str) -> None:
    """Under jit=True a branch is ``torch.cond`` inside the compiled graph, forward and gradients:
    one graph, no graph break, no recompilation when another branch is taken; values and gradients
    equal eager torch (f64, 1e-9) for every branch, an out-of-range Switch index clamped."""
    from torch._dynamo.utils import counters

    if kind == "cond":
        model = _cond_model()
        selections: list[dict[str, Any]] = [{"x_sign": 1.0}, {"x_sign": -1.0}]
    else:
        model = Model()
        model |= Switch(_three_branches())(x=IOKey("x", role="param"), index="k", y=IOKey("y"))
        selections = [{"k": k} for k in (-3, 0, 1, 2, 7)]
    shapes = {"x": [2, 4], **({"k": []} if kind == "switch" else {})}
    b = variant_backend("torch", "float64")
    eager = ml.compile(model, b, shapes=shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a torch.compile fallback to eager fails the test
        jitted = ml.compile(model, b, shapes=shapes, jit=True)
        params = eager.randomize_params()
        rng = np.random.default_rng(2)
        x, cot = np.abs(rng.normal(size=(2, 4))), {"y": b.array(rng.normal(size=(2, 3)))}
        torch._dynamo.reset()
        counters.clear()
        for sel in selections:
            p = {**params, "x": b.array(x * sel.get("x_sign", 1.0))}
            ins = {"k": b.array(np.array(sel["k"]))} if "k" in sel else {}
            want, want_d = eager.evaluate(p, ins, output_gradients=cot)
            got, got_d = jitted.evaluate(p, ins, output_gradients=cot)
            _close(np.asarray(got["y"]), np.asarray(want["y"]), f"y {sel}")
            for k in want_d:
                _close(np.asarray(got_d[k]), np.asarray(want_d[k]), f"d {k} {sel}")
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    (graph,) = _graphs_of(jitted, p, ins, cot)

    def conds(gm: Any) -> int:
        return sum(n.target is torch.ops.higher_order.cond for n in gm.graph.nodes)

    # the forward and the gradient cond; a Switch of 3 is a tree of two torch.cond (one nested in a branch)
    assert conds(graph) == 2, graph.code
    nested = sum(conds(sub) for name, sub in graph.named_modules() if name and hasattr(sub, "graph"))
    assert nested == (0 if kind == "cond" else 2), graph.code


def test_torch_compile_leaves_a_branch_that_loops_out_of_the_graph() -> None:
    """A branch that runs a Scan cannot be captured by torch.cond (the loop is a graph break): it
    stays a Python branch behind a graph break, with the same values and gradients as eager."""
    from torch._dynamo.utils import counters

    looped = Model()
    looped |= Scan(_cell(), carry={"h": "h_next", "s": "s_next"}, xs="x", ys="y")(
        h="h", s="h", x="xs", scale="scale", h_next=IOKey("out"), s_next=IOKey("s_T"), y=IOKey("ys")
    )
    plain = Model()
    plain.call("mul", "h", "scale", output="a")
    plain.call("sum", "xs", axis=0, output="b")
    plain.call("add", "a", "b", output=IOKey("out"))
    plain.call("mul", "xs", 2.0, output=IOKey("ys"))
    plain.call("sub", "a", "h", output=IOKey("s_T"))
    m = Model()
    m.call("sum", "h", output="total")
    m.call("greater", "total", 0.0, output="positive")
    data = {k: IOKey(k, role="param") for k in ("h", "xs", "scale")}
    m |= Cond(looped, plain)(**data, pred="positive", out=IOKey("out"), s_T=IOKey("s_T"), ys=IOKey("ys"))
    shapes = {"h": [2, 4], "xs": [3, 2, 4], "scale": [4]}
    b = variant_backend("torch", "float64")
    eager = ml.compile(m, b, shapes=shapes)
    rng = np.random.default_rng(4)
    cot = {k: b.array(rng.normal(size=s)) for k, s in {"out": (2, 4), "s_T": (2, 4), "ys": (3, 2, 4)}.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        jitted = ml.compile(m, b, shapes=shapes, jit=True)
        params = eager.randomize_params()
        counters.clear()
        for sign in (1.0, -1.0):
            p = {**params, "h": sign * params["h"].abs()}
            want, want_d = eager.evaluate(p, {}, output_gradients=cot)
            got, got_d = jitted.evaluate(p, {}, output_gradients=cot)
            for k in want:
                _close(np.asarray(got[k]), np.asarray(want[k]), f"{k} {sign}")
            for k in want_d:
                _close(np.asarray(got_d[k]), np.asarray(want_d[k]), f"d {k} {sign}")
    assert any("_python_branch" in reason for reason in counters["graph_break"]), dict(counters["graph_break"])


def _compiled_bodies(pm: Any) -> dict[str, int]:
    """How many times dynamo compiled each loop body of the generated function ``pm`` ran last."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    namespace = pm._last.executable.raw.__globals__
    generated = {k: v for k, v in namespace.items() if getattr(v, "__globals__", None) is namespace}
    bodies = {
        k: v for k, v in generated.items() if k != "run" and not k.startswith("__")
    }  # not dynamo's resume functions
    return {k: len(_debug_get_cache_entry_list(v.__code__)) for k, v in bodies.items()}


@pytest.mark.parametrize("compile_bodies", [True, False], ids=["compiled-body", "eager-body"])
def test_torch_compile_compiles_a_loop_body_once_whatever_the_length(
    compile_bodies: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under jit=True the loop stays out of the graph; its body and the reverse loop's body are
    each compiled once (or, with COMPILE_BODIES off, run eagerly): the number of graphs does not
    depend on T, a broadcast initial state and a second call recompile nothing, and values and
    gradients equal eager torch (f64, 1e-9)."""
    from torch._dynamo.utils import counters

    from mithril_torch import control_flow

    monkeypatch.setattr(control_flow, "COMPILE_BODIES", compile_bodies)
    b = variant_backend("torch", "float64")
    graphs = []
    for t in (2, 7):
        shapes = {"h0": [3, 4], "s0": [3, 4], "xs": [t, 3, 4], "scale": [4]}
        rng = np.random.default_rng(t)
        cot = {"ys": rng.normal(size=(t, 3, 4)), "h_T": rng.normal(size=(3, 4)), "s_T": rng.normal(size=(3, 4))}
        cot_b = {k: b.array(v) for k, v in cot.items()}
        eager = ml.compile(_rnn(False), b, shapes=shapes)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            jitted = ml.compile(_rnn(False), b, shapes=shapes, jit=True)
            params = eager.randomize_params()
            params["h0"] = b.zeros(1, 4).expand(3, 4)  # strides (0, 1), unlike the carry of later steps
            torch._dynamo.reset()
            counters.clear()
            got, got_d = jitted.evaluate(params, {}, output_gradients=cot_b)
            first = counters["stats"]["unique_graphs"]
            got, got_d = jitted.evaluate(params, {}, output_gradients=cot_b)
        assert counters["stats"]["unique_graphs"] == first, "the second call compiled again"
        graphs.append(first)
        bodies = _compiled_bodies(jitted)
        assert len(bodies) == 2 and set(bodies.values()) == {1 if compile_bodies else 0}, bodies
        want, want_d = eager.evaluate(params, {}, output_gradients=cot_b)
        for k in want:
            _close(np.asarray(got[k]), np.asarray(want[k]), k)
        for k in want_d:
            _close(np.asarray(got_d[k]), np.asarray(want_d[k]), f"d {k}")
    assert graphs[0] == graphs[1], graphs
