"""memory_report() against peaks measured with tracemalloc on NumPy (NumPy's allocations are traced).

Whole calls: an MLP, the seed CNN (both im2col layouts of the NumPy convolution), the CNN with gradient
checkpointing and an LSTM (a scan), forward + backward, estimate within 10% of the measured peak, with
in-place reuse on and off. Kernels: each declared NumPy workspace (mithril_numpy.workspace) against the
peak of one kernel call. And the check that the whole-call test can fail: without the kernels'
declarations the CNN's estimate is more than 10% under the measurement.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.models import LSTM
from mithril.physical.memory import estimate, float_bytes_of
from mithril.physical.pipeline import _forward_prefix, compile_graph

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import deep_mlp, seed_cnn
from shared_checks import traced_peak

pytest.importorskip("mithril_numpy")

from mithril_numpy import conv, pool
from mithril_numpy.workspace import kernel_memory

MiB = 2**20
#: not declared: NumPy's ufunc buffers (``np.getbufsize()`` elements for each of up to three operands of a
#: strided or casting loop, float32 here) and small Python objects
SLACK = 3 * np.getbufsize() * 4 + 16 * 1024


def lstm() -> ml.models.Model:
    return LSTM(16, 64)


CASES: dict[str, tuple[Callable[[], Any], list[int], bool]] = {
    "mlp": (lambda: deep_mlp(4, 256), [128, 256], False),
    "cnn": (seed_cnn, [8, 3, 32, 32], False),
    "cnn-checkpointed": (seed_cnn, [8, 3, 32, 32], True),
    "lstm": (lstm, [24, 8, 16], False),
}


def call(name: str, dtype: Any = ml.float32) -> tuple[Any, Callable[[], Any]]:
    build, shape, ckpt = CASES[name]
    be = ml.NumpyBackend(dtype=dtype)
    pm = ml.compile(build(), be, shapes={"input": shape}, gradient_checkpointing=ckpt)
    params = pm.randomize_params(seed=0)
    x = {"input": be.randn(*shape)}
    cot = {k: be.ones(*v.shape) for k, v in pm.evaluate(params, x).items() if v.dtype.kind == "f"}
    return pm, lambda: pm.evaluate(params, x, cot)


@pytest.mark.parametrize("reuse", ["1", "0"], ids=["inplace", "no-inplace"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_estimate_within_ten_percent_of_the_traced_peak(name, reuse, monkeypatch):
    monkeypatch.setenv("MITHRIL_INPLACE", reuse)
    pm, run = call(name, ml.float64 if name == "lstm" else ml.float32)
    got = traced_peak(run)
    report = pm.memory_report()
    assert abs(got - report.peak_activations) <= 0.10 * report.peak_activations, (name, got / MiB, str(report))


def test_without_the_kernel_declarations_the_cnn_estimate_is_off():
    """The whole-call test can fail: the im2col workspace and padded outputs are >10% of the CNN's peak."""
    pm, run = call("cnn")
    got = traced_peak(run)
    graph = pm.checked_graph(pm.training, {"input": tuple(CASES["cnn"][1])})
    g = compile_graph(graph, pm.backend, pm.options, cotangent_outputs=("output",)).graph
    bare = estimate(g, float_bytes_of(pm.backend), _forward_prefix(g))
    declared = pm.memory_report()
    assert got > 1.10 * bare.peak_activations, (got / MiB, bare.peak_activations / MiB)
    assert declared.workspace > 0 and bare.workspace == 0
    assert "workspace" in str(declared) and "workspace" in declared.peak_node + str(declared.largest_at_peak)


# ------------------------------------------------------------------------- kernels one by one
def _kernel_case(kernel: Callable[..., Any], args: list[np.ndarray], attrs: dict[str, Any]) -> tuple[int, int]:
    """(measured peak above the inputs, bytes the output keeps alive) of one kernel call."""
    out = kernel(*args, **attrs)
    base = out.base if out.base is not None else out
    keeps = base.nbytes
    del out, base
    return traced_peak(lambda: kernel(*args, **attrs)), keeps


CONV = [  # (N, C, H, W), (O, C, KH, KW), stride, padding
    ((16, 3, 32, 32), (8, 3, 3, 3), (1, 1), (1, 1)),  # per-sample layout (32*32 >= 512 pixels)
    ((16, 8, 16, 16), (16, 8, 3, 3), (1, 1), (1, 1)),  # one matrix over N*Ho*Wo
    ((8, 4, 24, 24), (6, 4, 5, 5), (2, 2), (0, 0)),  # strided, unpadded
    ((8, 8, 32, 32), (8, 8, 1, 1), (1, 1), (0, 0)),  # 1x1: the window view needs no copy
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding", CONV)
@pytest.mark.parametrize("which", ["conv2d", "conv2d_input_grad", "conv2d_weight_grad"])
def test_numpy_conv_workspace_matches_what_the_kernel_allocates(which, x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    attrs: dict[str, Any] = {"stride": stride, "padding": padding, "dilation": (1, 1), "groups": 1}
    y = conv.conv2d(x, w, **attrs)
    g = np.ones_like(y)
    if which == "conv2d":
        args, shapes, kattrs, fn = [x, w], [x.shape, w.shape], attrs, conv.conv2d
    elif which == "conv2d_input_grad":
        kattrs = {**attrs, "input_shape": x.shape}
        args, shapes, fn = [g, w], [g.shape, w.shape], conv.conv2d_input_grad
    else:
        kattrs = {**attrs, "weight_shape": w.shape}
        args, shapes, fn = [x, g], [x.shape, g.shape], conv.conv2d_weight_grad
    got, keeps = _kernel_case(fn, args, kattrs)
    km = kernel_memory(which, shapes, kattrs, 4, [True, True])
    out_bytes = km.output_bytes if km.output_bytes is not None else keeps
    assert out_bytes == keeps
    assert abs(got - (out_bytes + km.workspace)) <= max(0.02 * got, SLACK), (got, out_bytes, km)


POOL = [  # (N, C, H, W), kernel, stride, padding
    ((16, 8, 32, 32), (2, 2), (2, 2), (0, 0)),
    ((16, 8, 31, 31), (3, 3), (2, 2), (1, 1)),  # overlapping, padded
]


@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL)
@pytest.mark.parametrize("which", ["max_pool2d", "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad"])
def test_numpy_pool_workspace_matches_what_the_kernel_allocates(which, x_shape, kernel, stride, padding):
    x = np.random.default_rng(0).standard_normal(x_shape, dtype=np.float32)
    attrs: dict[str, Any] = {"kernel_size": kernel, "stride": stride, "padding": padding}
    if which.startswith("max"):
        attrs["dilation"] = (1, 1)
    forward = pool.max_pool2d if which.startswith("max") else pool.avg_pool2d
    g = np.ones_like(forward(x, **attrs))
    if which in ("max_pool2d", "avg_pool2d"):
        args, shapes, kattrs = [x], [x.shape], attrs
    elif which == "max_pool2d_grad":
        args, shapes, kattrs = [x, g], [x.shape, g.shape], attrs
    else:
        args, shapes, kattrs = [g], [g.shape], {**attrs, "input_shape": x.shape}
    got, keeps = _kernel_case(getattr(pool, which), args, kattrs)
    km = kernel_memory(which, shapes, kattrs, 4, [True] * len(shapes))
    out_bytes = km.output_bytes if km.output_bytes is not None else keeps
    assert out_bytes == keeps
    assert abs(got - (out_bytes + km.workspace)) <= max(0.02 * got, SLACK), (got, out_bytes, km)


def test_views_share_their_base_and_copies_of_strided_arrays_count():
    """A reshape of a dense array is a view (no bytes, keeps its base alive); of a transpose, a copy."""
    assert kernel_memory("reshape", [(4, 6)], {"shape": (24,)}, 4, [True]).view
    t = kernel_memory("transpose", [(4, 6)], {"axes": (1, 0)}, 4, [True])
    assert t.view and not t.contiguous
    assert not kernel_memory("reshape", [(6, 4)], {"shape": (24,)}, 4, [False]).view
    assert kernel_memory("transpose", [(1, 6)], {"axes": (1, 0)}, 4, [True]).contiguous


def test_report_shows_the_workspace_and_the_summary_stays_one_line():
    pm, run = call("cnn")
    run()
    report = pm.memory_report()
    assert report.workspace > 0
    assert f"largest kernel workspace {report.workspace / MiB:.2f} MiB" in str(report)
    lines = [ln for ln in pm.summary().splitlines() if "estimated peak memory" in ln]
    assert len(lines) == 1 and "workspace" in lines[0]


def test_unread_results_of_a_call_are_dropped_at_once():
    """The LSTM's gradient scan leaves two carries unread: the generated code deletes them at once."""
    pm, run = call("lstm")
    run()
    source = pm._last.executable.source
    lines = source.splitlines()
    at = [i for i, ln in enumerate(lines) if ln.strip().startswith("_,")]
    assert at and all(lines[i + 1].strip() == "del _" for i in at)


def test_torch_declares_unread_results_views_and_recomputed_pool_indices():
    """What the torch kernels' code shows (this CPU has no torch allocator trace; CUDA: bench_memory.py)."""
    pytest.importorskip("mithril_torch")
    from mithril_torch.workspace import kernel_memory as torch_kernel_memory

    x, pool_attrs = (8, 16, 32, 32), {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0), "dilation": (1, 1)}
    norm = torch_kernel_memory(
        "normalize_affine",
        [x, (1, 16, 1, 1), (1, 16, 1, 1)],
        {"axes": (0, 2, 3), "eps": 1e-5},
        4,
        [True] * 3,
        ("mean", "rstd"),
    )
    assert norm.workspace == 8 * 16 * 32 * 32 * 4  # the normalized output nobody reads
    indices = torch_kernel_memory("max_pool2d_with_indices", [x], pool_attrs, 4, [True], ("output",))
    assert indices.workspace == 8 * 16 * 16 * 16 * 8  # int64 indices nobody reads
    regrad = torch_kernel_memory("max_pool2d_grad", [x, (8, 16, 16, 16)], pool_attrs, 4, [True, True])
    assert regrad.workspace == 8 * 16 * 16 * 16 * (4 + 8)  # pooled output and indices, recomputed
    assert torch_kernel_memory("flatten", [x], {"start_axis": 1, "end_axis": -1}, 4, [True]).view

    be = ml.TorchBackend(dtype=ml.float32)
    pm = ml.compile(seed_cnn(), be, shapes={"input": list(x[:1]) + [3, 32, 32]}, gradient_checkpointing=True)
    params = pm.randomize_params(seed=0)
    inputs = {"input": be.randn(8, 3, 32, 32)}
    pm.evaluate(params, inputs, {"output": be.ones(8, 10)})
    assert "del _" in pm.source  # the recomputed batch norm's unread output is dropped at once
    assert pm.memory_report().workspace == 8 * 16 * 32 * 32 * 4


def test_torch_and_numpy_scans_declare_the_listed_steps_alike():
    """Both scan kernels list every step's ys and stack them at the end: the same estimate (NumPy's is
    checked against tracemalloc above; on an H200 the torch LSTM measured 62.4 MiB against 61.1)."""
    pytest.importorskip("mithril_torch")
    from mithril.models import LSTM

    reports = []
    for be in (ml.NumpyBackend(dtype=ml.float32), ml.TorchBackend(dtype=ml.float32)):
        pm = ml.compile(LSTM(16, 32, batch_first=True), be, shapes={"input": [8, 12, 16]})
        reports.append(pm.memory_report())
    steps = 12 * 8 * 32 * 4  # the hidden states of 12 steps, listed before torch.stack / np.stack
    assert reports[0].workspace >= steps
    assert reports[1].workspace == reports[0].workspace
    assert reports[1].peak_activations == reports[0].peak_activations
