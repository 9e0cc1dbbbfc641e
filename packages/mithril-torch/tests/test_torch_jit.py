"""TorchBackend.jit: torch.compile when it works, a warned eager fallback when it does not."""

from __future__ import annotations

import warnings

import pytest
import torch

from mithril_torch import TorchBackend
from mithril_torch.jit import CompiledFunction


def _generated(params, inputs, cotangents):
    """Shaped like the code the core generates: dicts in, three dicts out."""
    return {"output": torch.relu(inputs["input"] @ params["w"])}, {}, {}


def _args(b):
    return {"w": b.randn(3, 2)}, {"input": b.randn(4, 3)}, {}


def test_jit_compiles_with_the_default_torch_compile():
    """Real torch.compile (inductor): the result matches eager; a fallback, if any, is announced."""
    b = TorchBackend()
    params, inputs, cots = _args(b)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn = b.jit(_generated, what="evaluate")
        out, _, _ = fn(params, inputs, cots)
    assert torch.allclose(out["output"], _generated(params, inputs, cots)[0]["output"])
    fallback = [w for w in caught if issubclass(w.category, RuntimeWarning) and "torch.compile" in str(w.message)]
    assert isinstance(fn, CompiledFunction)
    assert fn.eager == bool(fallback)


def test_compile_options_reach_torch_compile(monkeypatch):
    seen = {}

    def fake_compile(fn, **options):
        seen.update(options)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    b = TorchBackend(compile_options={"mode": "reduce-overhead", "dynamic": False})
    b.jit(_generated, what="evaluate")
    assert seen == {"mode": "reduce-overhead", "dynamic": False}


def test_failure_on_first_call_warns_and_falls_back_to_eager(monkeypatch):
    calls = {"compiled": 0}

    def broken_compile(fn, **options):
        def compiled(*args, **kwargs):
            calls["compiled"] += 1
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\nno compiler found")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    b = TorchBackend()
    params, inputs, cots = _args(b)
    fn = b.jit(_generated, what="gradients")
    with pytest.warns(RuntimeWarning, match=r"torch\.compile is not usable for 'gradients'.*CppCompileError.*eagerly"):
        out, _, _ = fn(params, inputs, cots)
    assert torch.equal(out["output"], _generated(params, inputs, cots)[0]["output"])
    assert fn.eager
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        fn(params, inputs, cots)
    assert calls["compiled"] == 1  # the compiled function is not retried


def test_torch_compile_missing_warns_once_and_returns_the_function(monkeypatch):
    monkeypatch.delattr(torch, "compile")
    with pytest.warns(RuntimeWarning, match="has no torch.compile"):
        fn = TorchBackend().jit(_generated, what="evaluate")
    assert fn is _generated


def test_torch_compile_raising_when_wrapping_falls_back(monkeypatch):
    def refusing_compile(fn, **options):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", refusing_compile)
    with pytest.warns(RuntimeWarning, match="Dynamo is not supported"):
        fn = TorchBackend().jit(_generated, what="evaluate")
    assert fn is _generated


def test_an_error_of_the_call_itself_is_raised_not_blamed_on_the_compiler(monkeypatch):
    def broken_compile(fn, **options):
        def compiled(*args, **kwargs):
            return fn(*args, **kwargs)

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    b = TorchBackend()
    fn = b.jit(_generated, what="evaluate")
    params, inputs, cots = _args(b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(KeyError, match="input"):
            fn(params, {}, cots)
    assert not fn.eager
    fn(params, inputs, cots)  # still compiled, works


def test_each_compiled_model_gets_static_shapes_of_its_own():
    """torch.compile learns which dimensions vary per function name and line: generated functions
    sharing one file name looked like one function called with new shapes, so every model compiled
    after the first got dynamic-shape kernels (the seed CNN ran 15% slower after an MLP)."""
    import mithril as ml
    from mithril.models import Linear, Model, Relu

    dynamic: list[bool] = []

    def recorder(gm, example_inputs):
        shapes = [getattr(n.meta.get("example_value"), "shape", ()) for n in gm.graph.nodes if n.op == "placeholder"]
        dynamic.append(any(isinstance(d, torch.SymInt) for s in shapes for d in s))
        return gm.forward

    torch._dynamo.reset()
    b = TorchBackend(compile_options={"backend": recorder})
    for batch, width in ((4, 8), (3, 5), (6, 2)):
        model = Model()
        model |= Linear(dimension=width)(input="input", output="hidden")
        model += Relu()(input="hidden", output=ml.IOKey("output"))
        pm = ml.compile(model, b, shapes={"input": [batch, width + 1]}, jit=True)
        params = pm.randomize_params(seed=0)
        x = b.randn(batch, width + 1)
        out = pm.evaluate(params, {"input": x})
        pm.evaluate(params, {"input": x}, {"output": torch.ones_like(out["output"])})
    assert len(dynamic) == 6 and not any(dynamic)
