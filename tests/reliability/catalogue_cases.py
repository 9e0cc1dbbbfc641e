"""The bad-input catalogue (issue 19): what a user gets wrong, and the Mithril error each mistake must give.

A :class:`Case` is one mistake: ``run(bn)`` makes it on backend ``bn`` (``"numpy"``, ``"torch"``,
``"jax"``, ``"ggml"``) and must raise exactly ``error`` (a :mod:`mithril.errors` class, not a
subclass) whose message contains every string of ``needles`` (the block or terminal named, and the
offending value). :func:`outcome` classifies what happened instead:

* ``ok``: that class and every needle;
* ``vague``: a Mithril error of another class, or one that does not name what it should;
* ``raw``: a non-Mithril exception from deep inside (ValueError, AxisError, SafetensorError...);
* ``silent``: no error at all (a result that looks right);
* ``abort``: the interpreter died (only cases with ``isolate=True`` run in a child process, where
  an abort is detected instead of taking the test session down).

``backends`` lists where a case applies (None: every installed backend). A mistake made before
any backend is involved (a block's constructor arguments) is still made on each backend, as the
model that would be compiled for it, so every backend's path is covered.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import mithril as ml
from mithril import errors as E
from mithril.models import (
    GRU,
    LSTM,
    MLP,
    Abs,
    AdaptiveAvgPool2d,
    Add,
    ArgMax,
    AvgPool2d,
    BasicBlock,
    BatchNorm1d,
    BatchNorm2d,
    BCEWithLogitsLoss,
    Cast,
    Concat,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    CrossEntropyLoss,
    Dropout,
    Embedding,
    Flatten,
    Gelu,
    GroupNorm,
    HuberLoss,
    IOKey,
    KLDivLoss,
    L1Loss,
    LayerNorm,
    LeakyRelu,
    Linear,
    LogSoftmax,
    MatrixMultiply,
    Max,
    MaxPool1d,
    MaxPool2d,
    Mean,
    Model,
    MSELoss,
    MultiHeadAttention,
    NLLLoss,
    Relu,
    Reshape,
    ResNet,
    RMSNorm,
    SmoothL1Loss,
    Softmax,
    Sum,
    TransformerBlock,
    Transpose,
    gpt2,
    resnet18,
)
from mithril.models.zoo import GPT2Config

ALL = ("numpy", "torch", "jax", "ggml")
#: backends with int inputs (embeddings, class-index losses); GGML computes on float data only
INDEXED = ("numpy", "torch", "jax")
JITTED = ("torch", "jax")


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[str], Any]
    error: type[E.MithrilError]
    needles: tuple[str, ...]
    backends: tuple[str, ...] | None = None
    isolate: bool = False


CASES: list[Case] = []
#: (case id, backend, outcome kind) of every run of this session, for the summary
RESULTS: list[tuple[str, str, str]] = []


def case(
    id: str,
    run: Callable[[str], Any],
    error: type[E.MithrilError],
    *needles: str,
    backends: tuple[str, ...] | None = None,
    isolate: bool = False,
) -> None:
    assert all(c.id != id for c in CASES), id
    CASES.append(Case(id, run, error, tuple(needles), backends, isolate))


# ------------------------------------------------------------------ backends and models
BACKEND_CLASSES = {"numpy": "NumpyBackend", "torch": "TorchBackend", "jax": "JaxBackend", "ggml": "GGMLBackend"}


def installed() -> list[str]:
    return [b for b in ALL if b in ml.plugins.backends()]


@functools.cache
def backend(bn: str, dtype: str = "float32", **options: Any) -> Any:
    return getattr(ml, BACKEND_CLASSES[bn])(dtype=getattr(ml, dtype), **options)


def compile_block(make: Callable[[], Any], bn: str, **kw: Any) -> Any:
    """The block ``make()`` builds, compiled for ``bn``: a construction mistake raises in ``make``."""
    block = make()
    model = Model()
    model |= block
    return ml.compile(model, backend(bn), **kw)


def mlp() -> Model:
    m = Model()
    m |= Linear(8)
    m += Relu()
    m += Linear(3)
    return m


@functools.cache
def mlp_compiled(bn: str) -> tuple[Any, dict[str, Any], Any]:
    """An MLP compiled for [4, 5] inputs on ``bn``, its params and an input."""
    be = backend(bn)
    pm = ml.compile(mlp(), be, shapes={"input": [4, 5]})
    params = pm.randomize_params(seed=0)
    return pm, params, be.array(np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32))


def one_block(block: Any, shape: list[int], bn: str, *, jit: bool = False, lazy: bool = False, **terms: Any) -> Any:
    """``block`` from ``input`` to ``output``, compiled for ``shape`` (or at evaluate when ``lazy``), run once."""
    be = backend(bn)
    m = Model()
    m |= block(input="input", output=IOKey("output"), **terms)
    pm = ml.compile(m, be, shapes=None if lazy else {"input": shape}, jit=jit)
    x = be.array(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    params = pm.randomize_params(seed=0) if not lazy else {}
    return pm.evaluate(params, {"input": x})


def two_inputs(block: Any, terms: tuple[str, str], shapes: tuple[list[int], list[int]], bn: str) -> Any:
    be = backend(bn)
    m = Model()
    m |= block(**{terms[0]: "a", terms[1]: "b"}, output=IOKey("output"))
    return ml.compile(m, be, shapes={"a": shapes[0], "b": shapes[1]})


def wrong_float(bn: str, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """(a backend, an array of the other float width): float32 data for a float64 backend (GGML: the reverse)."""
    if bn == "ggml":
        return backend(bn), np.zeros(shape, np.float64)
    be = backend(bn, "float64")
    with be.scope():
        return be, be.array(np.zeros(shape, np.float32), ml.float32)


def index_model(kind: str, bn: str, idx: list[int], *, jit: bool = False, ignore_index: int | None = -100) -> Any:
    """An Embedding(5, 3) or a class-index loss over 4 classes, evaluated on the int indices ``idx``."""
    be = backend(bn)
    m = Model()
    ids = be.array(np.array(idx, dtype=np.int64))
    if kind == "embedding":
        m |= Embedding(5, 3)(input="input", output=IOKey("output"))
        pm = ml.compile(m, be, shapes={"input": [len(idx)]}, jit=jit)
        return pm.evaluate(pm.randomize_params(seed=0), {"input": ids})
    loss = {
        "cross_entropy": lambda: CrossEntropyLoss(ignore_index=ignore_index),
        "nll": lambda: NLLLoss(ignore_index=ignore_index),
    }[kind]()
    m |= loss(input="input", target="target", output=IOKey("output"))
    pm = ml.compile(m, be, shapes={"input": [len(idx), 4], "target": [len(idx)]}, jit=jit)
    x = be.array(np.random.default_rng(0).standard_normal((len(idx), 4)).astype(np.float32))
    return pm.evaluate({}, {"input": x, "target": ids})


def batchnorm(make: Callable[[], Any], shape: list[int], bn: str, *, training: bool = True) -> Any:
    be = backend(bn)
    m = Model()
    m |= make()(input="input", output=IOKey("output"))
    pm = ml.compile(m, be, shapes={"input": shape}, training=training)
    x = be.array(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    return pm.evaluate(pm.randomize_params(seed=0), {"input": x}, return_state=training)


def loss_shapes(
    make: Callable[[], Any], pred: list[int], target: list[int], bn: str, target_dtype: str = "float32"
) -> Any:
    be = backend(bn)
    m = Model()
    m |= make()(input="input", target="target", output=IOKey("output"))
    pm = ml.compile(m, be)
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, target) if target_dtype == "int64" else rng.standard_normal(target).astype(np.float32)
    return pm.evaluate({}, {"input": be.array(rng.standard_normal(pred).astype(np.float32)), "target": be.array(t)})


# ----------------------------------------------------------------------- files
def _tmp() -> Path:
    d = Path(tempfile.gettempdir()) / f"mithril-catalogue-{os.getpid()}"
    d.mkdir(exist_ok=True)
    return d


@functools.cache
def safetensors_file() -> bytes:
    from mithril.io.safetensors import save_params

    path = _tmp() / "good.safetensors"
    save_params({"linear_0.weight": np.ones((8, 5), np.float32), "linear_0.bias": np.zeros(8, np.float32)}, path)
    return path.read_bytes()


def write(name: str, data: bytes) -> Path:
    path = _tmp() / name
    path.write_bytes(data)
    return path


def load_params(data: bytes | None, bn: str, name: str = "x.safetensors", **kw: Any) -> Any:
    from mithril.io.safetensors import load_params as load

    path = _tmp() / "missing.safetensors" if data is None else write(name, data)
    return load(path, backend(bn), **kw)


def st_header(doc: dict[str, Any], data: bytes = b"") -> bytes:
    raw = json.dumps(doc).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@functools.cache
def bfloat16_file() -> Path:
    """A safetensors file with a BF16 tensor, written by hand (the header and the top halves of float32s)."""
    values = np.array([1.5, -2.25, 3.0e38, 1.0e-30], np.float32)
    halves = (values.view(np.uint32) >> 16).astype("<u2")
    doc = {"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}
    return write("bf16.safetensors", st_header(doc, halves.tobytes()))


@functools.cache
def gguf_file(quantize: str | None = None) -> bytes:
    from mithril_ggml.gguf import save_gguf

    be = backend("ggml", quantize=quantize)
    pm = ml.compile(mlp(), be, shapes={"input": [4, 64]})
    params = pm.randomize_params(seed=0)
    path = _tmp() / f"good-{quantize}.gguf"
    pm.evaluate(params, {"input": be.randn(4, 64)})
    save_gguf(pm, path, params)
    return path.read_bytes()


def load_gguf(data: bytes, name: str) -> Any:
    from mithril_ggml.gguf import load_gguf as load

    return load(write(name, data))


def corrupt_payload(data: bytes) -> bytes:
    """One byte of the first tensor's data flipped (the header says where it is)."""
    from mithril.headers import read_gguf_header

    header = read_gguf_header(write("probe.gguf", data))
    t = header.tensors[0]
    b = bytearray(data)
    b[t.offset + t.nbytes // 2] ^= 0x5A
    return bytes(b)


def corrupt_text(data: bytes, key: bytes, old: bytes, new: bytes) -> bytes:
    """Replace ``old`` by ``new`` (same length) in the value stored after metadata key ``key``."""
    i = data.index(key)
    j = data.index(old, i)
    assert len(old) == len(new)
    return data[:j] + new + data[j + len(old) :]


def gguf_model() -> Any:
    return load_gguf(gguf_file(), "model.gguf")


def ggml_huge(kind: str) -> Any:
    """Compile a graph ggml cannot allocate (it aborts the process on a failed malloc)."""
    be = backend("ggml")
    m = Model()
    if kind == "linear":
        m |= Linear(4)(input="input", output=IOKey("output"))
        shapes = {"input": [2**31, 2**31]}
    elif kind == "relu_rank3":
        m |= Relu()(input="input", output=IOKey("output"))
        shapes = {"input": [2**16, 2**16, 2**4]}
    elif kind == "wide_linear":
        m |= Linear(2**20)(input="input", output=IOKey("output"))
        shapes = {"input": [2**20, 2**10]}
    else:  # a huge param
        m |= Linear(2**34)(input="input", output=IOKey("output"))
        shapes = {"input": [1, 4]}
    return ml.compile(m, be, shapes=shapes)


def quantized_nonfinite(quantize: str, value: float) -> Any:
    be = backend("ggml", quantize=quantize)
    pm = ml.compile(mlp_wide(), be, shapes={"input": [2, 64]})
    params = pm.randomize_params(seed=0)
    w = np.array(params["linear_0.weight"])
    w[1, 3] = value
    params["linear_0.weight"] = w
    return pm.evaluate(params, {"input": be.randn(2, 64)})


def mlp_wide() -> Model:
    m = Model()
    m |= Linear(64)
    m += Relu()
    m += Linear(32)
    return m


# ============================================================== 1. block constructor arguments
CONSTRUCTION: list[tuple[str, Callable[[], Any], tuple[str, ...]]] = [
    # (id, make, needles): each a ModelBuildError at construction
    ("Linear(dimension=0)", lambda: Linear(0), ("Linear", "dimension", "got 0")),
    ("Linear(dimension=-1)", lambda: Linear(-1), ("Linear", "dimension", "got -1")),
    ("Linear(dimension=2.5)", lambda: Linear(2.5), ("Linear", "dimension", "got 2.5")),
    ("Linear(dimension='8')", lambda: Linear("8"), ("Linear", "dimension", "got '8'")),
    ("Linear(dimension=True)", lambda: Linear(True), ("Linear", "dimension", "got True")),
    ("Linear(use_bias='False')", lambda: Linear(4, use_bias="False"), ("Linear", "use_bias", "'False'")),
    ("Linear(use_bias=1)", lambda: Linear(4, use_bias=1), ("Linear", "use_bias", "got 1")),
    ("Linear(name='a.b')", lambda: Linear(4, name="a.b"), ("block name", "'a.b'")),
    ("Linear(name='')", lambda: Linear(4, name=""), ("block name", "''")),
    ("Relu(name=3)", lambda: Relu(name=3), ("block name", "got 3")),
    ("Conv2d(in_channels=0)", lambda: Conv2d(0, 4), ("Conv2d", "in_channels", "got 0")),
    ("Conv2d(out_channels=0)", lambda: Conv2d(3, 0), ("Conv2d", "out_channels", "got 0")),
    ("Conv2d(out_channels='a')", lambda: Conv2d(3, "a"), ("Conv2d", "out_channels", "'a'")),
    ("Conv2d(kernel_size=0)", lambda: Conv2d(3, 4, kernel_size=0), ("Conv2d", "kernel_size", "got 0")),
    (
        "Conv2d(kernel_size=(1,2,3))",
        lambda: Conv2d(3, 4, kernel_size=(1, 2, 3)),
        ("Conv2d", "kernel_size", "(1, 2, 3)"),
    ),
    ("Conv2d(kernel_size='3')", lambda: Conv2d(3, 4, kernel_size="3"), ("Conv2d", "kernel_size", "'3'")),
    ("Conv2d(stride=0)", lambda: Conv2d(3, 4, stride=0), ("Conv2d", "stride", "got 0")),
    ("Conv2d(stride=-1)", lambda: Conv2d(3, 4, stride=-1), ("Conv2d", "stride", "got -1")),
    ("Conv2d(padding=-1)", lambda: Conv2d(3, 4, padding=-1), ("Conv2d", "padding", "got -1")),
    ("Conv2d(padding=(1,-2))", lambda: Conv2d(3, 4, padding=(1, -2)), ("Conv2d", "padding", "(1, -2)")),
    ("Conv2d(padding='full')", lambda: Conv2d(3, 4, padding="full"), ("Conv2d", "padding", "'full'")),
    (
        "Conv2d(padding='same', stride=2)",
        lambda: Conv2d(3, 4, 3, stride=2, padding="same"),
        ("Conv2d", "same", "stride"),
    ),
    ("Conv2d(dilation=0)", lambda: Conv2d(3, 4, dilation=0), ("Conv2d", "dilation", "got 0")),
    ("Conv2d(groups=0)", lambda: Conv2d(3, 4, groups=0), ("Conv2d", "groups", "got 0")),
    ("Conv2d(4, 6, groups=4)", lambda: Conv2d(4, 6, groups=4), ("Conv2d", "6", "groups 4")),
    ("Conv2d(3, 4, groups=2)", lambda: Conv2d(3, 4, groups=2), ("Conv2d", "in_channels 3", "groups 2")),
    ("Conv2d(bias='False')", lambda: Conv2d(3, 4, bias="False"), ("Conv2d", "bias", "'False'")),
    ("Conv2d(name='stem', padding=-1)", lambda: Conv2d(3, 4, padding=-1, name="stem"), ("Conv2d 'stem'", "got -1")),
    ("Conv1d(out_channels=0)", lambda: Conv1d(3, 0, 3), ("Conv1d", "out_channels", "got 0")),
    ("Conv1d(kernel_size=0)", lambda: Conv1d(3, 4, 0), ("Conv1d", "kernel_size", "got 0")),
    ("Conv1d(kernel_size=(1,2))", lambda: Conv1d(3, 4, (1, 2)), ("Conv1d", "kernel_size", "(1, 2)")),
    ("Conv1d(padding=-1)", lambda: Conv1d(3, 4, 3, padding=-1), ("Conv1d", "padding", "got -1")),
    ("Conv1d(stride=0)", lambda: Conv1d(3, 4, 3, stride=0), ("Conv1d", "stride", "got 0")),
    (
        "ConvTranspose2d(padding=-1)",
        lambda: ConvTranspose2d(3, 4, 3, padding=-1),
        ("ConvTranspose2d", "padding", "got -1"),
    ),
    (
        "ConvTranspose2d(output_padding=-1)",
        lambda: ConvTranspose2d(3, 4, 3, output_padding=-1),
        ("ConvTranspose2d", "output_padding", "got -1"),
    ),
    ("ConvTranspose2d(stride=0)", lambda: ConvTranspose2d(3, 4, 3, stride=0), ("ConvTranspose2d", "stride", "got 0")),
    (
        "ConvTranspose2d(groups=2) of 3 channels",
        lambda: ConvTranspose2d(3, 4, 3, groups=2),
        ("ConvTranspose2d", "(3, 4)", "groups 2"),
    ),
    (
        "ConvTranspose2d(output_padding=2, stride=2)",
        lambda: ConvTranspose2d(3, 4, 3, stride=2, output_padding=2),
        ("ConvTranspose2d", "output_padding (2, 2)", "stride"),
    ),
    ("MaxPool2d(kernel_size=0)", lambda: MaxPool2d(0), ("MaxPool2d", "kernel_size", "got 0")),
    ("MaxPool2d(kernel_size='a')", lambda: MaxPool2d("a"), ("MaxPool2d", "kernel_size", "'a'")),
    ("MaxPool2d(padding=-1)", lambda: MaxPool2d(2, padding=-1), ("MaxPool2d", "padding", "got -1")),
    ("MaxPool2d(stride=0)", lambda: MaxPool2d(2, stride=0), ("MaxPool2d", "stride", "got 0")),
    ("MaxPool2d(dilation=0)", lambda: MaxPool2d(2, dilation=0), ("MaxPool2d", "dilation", "got 0")),
    ("AvgPool2d(kernel_size=0)", lambda: AvgPool2d(0), ("AvgPool2d", "kernel_size", "got 0")),
    ("AvgPool2d(padding=-1)", lambda: AvgPool2d(2, padding=-1), ("AvgPool2d", "padding", "got -1")),
    (
        "AvgPool2d(count_include_pad='False')",
        lambda: AvgPool2d(2, count_include_pad="False"),
        ("AvgPool2d", "count_include_pad", "'False'"),
    ),
    ("MaxPool1d(kernel_size=0)", lambda: MaxPool1d(0), ("MaxPool1d", "kernel_size", "got 0")),
    ("MaxPool1d(padding=-1)", lambda: MaxPool1d(2, padding=-1), ("MaxPool1d", "padding", "got -1")),
    ("AdaptiveAvgPool2d(0)", lambda: AdaptiveAvgPool2d(0), ("output_size", "0")),
    ("AdaptiveAvgPool2d('a')", lambda: AdaptiveAvgPool2d("a"), ("AdaptiveAvgPool2d", "output_size", "'a'")),
    ("BatchNorm2d(num_features=0)", lambda: BatchNorm2d(0), ("BatchNorm2d", "num_features", "got 0")),
    ("BatchNorm2d(num_features='a')", lambda: BatchNorm2d("a"), ("BatchNorm2d", "num_features", "'a'")),
    ("BatchNorm2d(momentum=2.0)", lambda: BatchNorm2d(3, momentum=2.0), ("BatchNorm2d", "momentum", "2.0")),
    ("BatchNorm2d(eps=-1)", lambda: BatchNorm2d(3, eps=-1), ("BatchNorm2d", "eps", "got -1")),
    ("BatchNorm2d(affine='False')", lambda: BatchNorm2d(3, affine="False"), ("BatchNorm2d", "affine", "'False'")),
    (
        "BatchNorm2d(track_running_stats='False')",
        lambda: BatchNorm2d(3, track_running_stats="False"),
        ("BatchNorm2d", "track_running_stats", "'False'"),
    ),
    ("BatchNorm1d(momentum=-0.1)", lambda: BatchNorm1d(3, momentum=-0.1), ("BatchNorm1d", "momentum", "-0.1")),
    ("BatchNorm1d(eps='x')", lambda: BatchNorm1d(3, eps="x"), ("BatchNorm1d", "eps", "'x'")),
    ("BatchNorm1d(eps=nan)", lambda: BatchNorm1d(3, eps=float("nan")), ("BatchNorm1d", "eps", "nan")),
    ("LayerNorm(0)", lambda: LayerNorm(0), ("LayerNorm", "normalized_shape", "got 0")),
    ("LayerNorm('a')", lambda: LayerNorm("a"), ("LayerNorm", "normalized_shape", "'a'")),
    ("LayerNorm(eps=-1)", lambda: LayerNorm(4, eps=-1), ("LayerNorm", "eps", "got -1")),
    (
        "LayerNorm(elementwise_affine='False')",
        lambda: LayerNorm(4, elementwise_affine="False"),
        ("LayerNorm", "elementwise_affine", "'False'"),
    ),
    ("RMSNorm(0)", lambda: RMSNorm(0), ("RMSNorm", "normalized_shape", "got 0")),
    (
        "RMSNorm(elementwise_affine='no')",
        lambda: RMSNorm(4, elementwise_affine="no"),
        ("RMSNorm", "elementwise_affine", "'no'"),
    ),
    ("GroupNorm(num_groups=0)", lambda: GroupNorm(0, 4), ("GroupNorm", "num_groups", "got 0")),
    ("GroupNorm(2, 5)", lambda: GroupNorm(2, 5), ("GroupNorm", "num_channels 5", "num_groups 2")),
    ("GroupNorm('a', 4)", lambda: GroupNorm("a", 4), ("GroupNorm", "num_groups", "'a'")),
    ("Embedding(num_embeddings=0)", lambda: Embedding(0, 3), ("Embedding", "num_embeddings", "got 0")),
    ("Embedding(num_embeddings='a')", lambda: Embedding("a", 3), ("Embedding", "num_embeddings", "'a'")),
    ("Embedding(embedding_dim=0)", lambda: Embedding(3, 0), ("Embedding", "embedding_dim", "got 0")),
    ("Dropout(1.5)", lambda: Dropout(1.5), ("Dropout", "probability", "1.5")),
    ("Dropout(-0.1)", lambda: Dropout(-0.1), ("Dropout", "probability", "-0.1")),
    ("Dropout('a')", lambda: Dropout("a"), ("Dropout", "probability", "'a'")),
    (
        "MultiHeadAttention(5, 2)",
        lambda: MultiHeadAttention(5, 2),
        ("MultiHeadAttention", "embed_dim 5", "num_heads 2"),
    ),
    ("MultiHeadAttention(num_heads=0)", lambda: MultiHeadAttention(4, 0), ("MultiHeadAttention", "num_heads", "got 0")),
    ("MultiHeadAttention('a', 2)", lambda: MultiHeadAttention("a", 2), ("MultiHeadAttention", "embed_dim", "'a'")),
    ("MultiHeadAttention(dropout=2)", lambda: MultiHeadAttention(4, 2, dropout=2), ("MultiHeadAttention", "got 2")),
    (
        "MultiHeadAttention(causal='False')",
        lambda: MultiHeadAttention(4, 2, causal="False"),
        ("MultiHeadAttention", "causal", "'False'"),
    ),
    (
        "MultiHeadAttention(attn_mask='x')",
        lambda: MultiHeadAttention(4, 2, attn_mask="x"),
        ("MultiHeadAttention", "attn_mask", "'x'"),
    ),
    (
        "TransformerBlock(activation='x')",
        lambda: TransformerBlock(4, 2, activation="x"),
        ("TransformerBlock", "activation", "'x'"),
    ),
    ("LSTM(input_size=0)", lambda: LSTM(0, 4), ("LSTM", "input_size", "got 0")),
    ("LSTM(hidden_size='a')", lambda: LSTM(3, "a"), ("LSTM", "hidden_size", "'a'")),
    ("LSTM(batch_first='False')", lambda: LSTM(3, 4, batch_first="False"), ("LSTM", "batch_first", "'False'")),
    ("GRU(num_layers=0)", lambda: GRU(3, 4, num_layers=0), ("GRU", "num_layers", "got 0")),
    ("MLP([])", lambda: MLP([]), ("MLP", "dimension")),
    ("MLP([3, 0])", lambda: MLP([3, 0]), ("Linear", "dimension", "got 0")),
    ("MLP(activations=['x', 'y'])", lambda: MLP([3, 4], activations=["x", "y"]), ("MLP", "activation", "'x'")),
    ("MLP(3 dims, 2 activations)", lambda: MLP([3, 4, 5], activations=["relu", "relu"]), ("MLP", "3 dimensions", "2")),
    ("MLP(use_bias='False')", lambda: MLP([3, 4], use_bias="False"), ("MLP", "use_bias", "'False'")),
    ("MSELoss(reduction='avg')", lambda: MSELoss(reduction="avg"), ("MSELoss", "reduction", "'avg'")),
    ("L1Loss(reduction=None)", lambda: L1Loss(reduction=None), ("L1Loss", "reduction", "None")),
    ("NLLLoss(reduction='x')", lambda: NLLLoss(reduction="x"), ("NLLLoss", "reduction", "'x'")),
    ("HuberLoss(delta=0)", lambda: HuberLoss(delta=0), ("HuberLoss", "delta", "0")),
    ("SmoothL1Loss(beta=-1)", lambda: SmoothL1Loss(beta=-1), ("SmoothL1Loss", "beta", "-1")),
    (
        "CrossEntropyLoss(label_smoothing=2)",
        lambda: CrossEntropyLoss(label_smoothing=2),
        ("CrossEntropyLoss", "label_smoothing", "2"),
    ),
    (
        "CrossEntropyLoss(ignore_index='a')",
        lambda: CrossEntropyLoss(ignore_index="a"),
        ("CrossEntropyLoss", "ignore_index", "'a'"),
    ),
    ("CrossEntropyLoss(target='x')", lambda: CrossEntropyLoss(target="x"), ("CrossEntropyLoss", "target", "'x'")),
    (
        "BCEWithLogitsLoss(pos_weight='a')",
        lambda: BCEWithLogitsLoss(pos_weight="a"),
        ("BCEWithLogitsLoss", "pos_weight", "'a'"),
    ),
    ("KLDivLoss(log_target='True')", lambda: KLDivLoss(log_target="True"), ("KLDivLoss", "log_target", "'True'")),
    ("resnet18(num_classes=0)", lambda: resnet18(num_classes=0), ("ResNet", "num_classes", "0")),
    ("ResNet(layers=[1, 1])", lambda: ResNet(BasicBlock, [1, 1]), ("ResNet", "layers", "[1, 1]")),
    ("ResNet(block='x')", lambda: ResNet("x", [1, 1, 1, 1]), ("ResNet", "block", "'x'")),
    ("gpt2(n_layer=0)", lambda: gpt2(n_layer=0), ("GPT2Config", "n_layer", "0")),
    ("gpt2(foo=1)", lambda: gpt2(foo=1), ("gpt2", "foo")),
    ("GPT2Config(n_embd=5, n_head=2)", lambda: GPT2Config(n_embd=5, n_head=2), ("GPT2Config", "n_embd 5", "n_head 2")),
    # primitive blocks
    ("Softmax(axis='a')", lambda: Softmax(axis="a"), ("Softmax", "axis", "'a'")),
    ("Softmax(axis=1.5)", lambda: Softmax(axis=1.5), ("Softmax", "axis", "1.5")),
    ("LogSoftmax(axis=None)", lambda: LogSoftmax(axis=None), ("LogSoftmax", "axis", "None")),
    ("Gelu('x')", lambda: Gelu("x"), ("Gelu", "approximate", "'x'")),
    ("LeakyRelu('x')", lambda: LeakyRelu("x"), ("LeakyRelu", "slope", "'x'")),
    ("LeakyRelu(nan)", lambda: LeakyRelu(float("nan")), ("LeakyRelu", "slope", "nan")),
    ("Reshape('ab')", lambda: Reshape("ab"), ("Reshape", "shape", "'ab'")),
    ("Reshape(3)", lambda: Reshape(3), ("Reshape", "shape", "got 3")),
    ("Reshape([2, -2])", lambda: Reshape([2, -2]), ("Reshape", "shape", "[2, -2]")),
    ("Reshape([-1, -1])", lambda: Reshape([-1, -1]), ("Reshape", "shape", "[-1, -1]")),
    ("Transpose(3)", lambda: Transpose(3), ("Transpose", "axes", "got 3")),
    ("Transpose([0, 0])", lambda: Transpose([0, 0]), ("Transpose", "axes", "[0, 0]")),
    ("Transpose([0, 2])", lambda: Transpose([0, 2]), ("Transpose", "axes", "[0, 2]")),
    ("Flatten('a')", lambda: Flatten("a"), ("Flatten", "start_axis", "'a'")),
    ("Cast('complex')", lambda: Cast("complex"), ("Cast", "kind", "'complex'")),
    ("Sum(axis='a')", lambda: Sum(axis="a"), ("Sum", "axis", "'a'")),
    ("Sum(keepdims='no')", lambda: Sum(keepdims="no"), ("Sum", "keepdims", "'no'")),
    ("Mean(axis=[0, 0])", lambda: Mean(axis=[0, 0]), ("Mean", "axis", "[0, 0]")),
    ("ArgMax(axis=None)", lambda: ArgMax(axis=None), ("ArgMax", "axis", "None")),
    ("Concat(n=0)", lambda: Concat(n=0), ("Concat", "n", "got 0")),
    ("Concat(n='2')", lambda: Concat(n="2"), ("Concat", "n", "'2'")),
    ("Concat(axis='x')", lambda: Concat(axis="x"), ("Concat", "axis", "'x'")),
    # IOKey
    ("IOKey(name=3)", lambda: Relu()(input=IOKey(3)), ("IOKey", "name", "got 3")),
    ("IOKey(role='foo')", lambda: Relu()(input=IOKey("x", role="foo")), ("IOKey('x')", "role", "'foo'")),
    ("IOKey(dtype='complex')", lambda: Relu()(input=IOKey("x", dtype="complex")), ("IOKey('x')", "dtype", "'complex'")),
    ("IOKey(shape='ab')", lambda: Relu()(input=IOKey("x", shape="ab")), ("IOKey('x')", "shape", "'ab'")),
    ("IOKey(shape=[-1])", lambda: Relu()(input=IOKey("x", shape=[-1])), ("IOKey('x')", "shape", "[-1]")),
    ("IOKey(shape=[2.5])", lambda: Relu()(input=IOKey("x", shape=[2.5])), ("IOKey('x')", "shape", "[2.5]")),
    (
        "IOKey(shape=['...', '...'])",
        lambda: Relu()(input=IOKey("x", shape=["...", "..."])),
        ("IOKey('x')", "shape", "'...'"),
    ),
]
for _id, _make, _needles in CONSTRUCTION:
    case(_id, lambda bn, make=_make: compile_block(make, bn), E.ModelBuildError, *_needles)


def _add_non_block(bn: str) -> Any:
    m = Model()
    m.add(3)  # type: ignore[arg-type]


def _add_twice(bn: str) -> Any:
    layer = Linear(4)
    m = Model()
    m |= layer
    m |= layer


def _duplicate_name(bn: str) -> Any:
    m = Model()
    m |= Linear(4, name="encoder")
    m += Linear(4, name="encoder")


def _cycle(bn: str) -> Any:
    m = Model()
    m |= Relu()(input="x", output="y")
    m |= Relu()(input="y", output="x")


def _two_producers(bn: str) -> Any:
    m = Model()
    m |= Relu()(input="a", output="y")
    m |= Abs()(input="b", output="y")


case("Model.add(3)", _add_non_block, E.ModelBuildError, "Model", "got int")
case("a block instance added twice", _add_twice, E.ModelBuildError, "linear_0", "already part of")
case("two blocks named 'encoder'", _duplicate_name, E.DuplicateNameError, "'encoder'")
case("a connection that makes a cycle", _cycle, E.CycleError, "relu_1", "'y'")
case("two blocks writing one output", _two_producers, E.ModelBuildError, "'y'", "abs_0")


# ============================================================== 2. unknown terminals
def _model_terminal(bn: str) -> Any:
    m = mlp()
    return m.outptu


case("Linear(3).inp", lambda bn: Linear(3).inp, E.UnknownTerminalError, "Linear", "'inp'", "'input'")
case("Conv2d(3, 4).weights", lambda bn: Conv2d(3, 4).weights, E.UnknownTerminalError, "Conv2d", "'weights'", "'weight'")
case("model.outptu", _model_terminal, E.UnknownTerminalError, "'outptu'", "'output'")
case("Relu()(inp='x')", lambda bn: compile_block(lambda: Relu()(inp="x"), bn), E.UnknownKeyError, "Relu", "'inp'")
case(
    "Linear(3)(input='x', outptu='y')",
    lambda bn: compile_block(lambda: Linear(3)(input="x", outptu="y"), bn),
    E.UnknownKeyError,
    "Linear",
    "'outptu'",
)
case(
    "compile(shapes={'inputs': ...})",
    lambda bn: ml.compile(mlp(), backend(bn), shapes={"inputs": [4, 5]}),
    E.UnknownKeyError,
    "shapes",
    "'inputs'",
)
case(
    "compile(constants={'bias': ...})",
    lambda bn: ml.compile(mlp(), backend(bn), constants={"bias": np.zeros(3)}),
    E.UnknownKeyError,
    "constants",
    "'bias'",
)
case(
    "evaluate: an unknown input key",
    lambda bn: (lambda pm, p, x: pm.evaluate(p, {"input": x, "labels": x}))(*mlp_compiled(bn)),
    E.UnknownKeyError,
    "inputs",
    "'labels'",
)
case(
    "evaluate: an unknown output_gradients key",
    lambda bn: (lambda pm, p, x: pm.evaluate(p, {"input": x}, {"logits": x}))(*mlp_compiled(bn)),
    E.UnknownKeyError,
    "output_gradients",
    "'logits'",
)
case(
    "evaluate: an unknown params key",
    lambda bn: (lambda pm, p, x: pm.evaluate({**p, "extra": x}, {"input": x}))(*mlp_compiled(bn)),
    E.ParamsError,
    "params",
    "'extra'",
)
case(
    "evaluate: a missing params key",
    lambda bn: (lambda pm, p, x: pm.evaluate({k: v for k, v in p.items() if k != "linear_1.bias"}, {"input": x}))(
        *mlp_compiled(bn)
    ),
    E.ParamsError,
    "params",
    "'linear_1.bias'",
)
case(
    "evaluate: a misspelt input key",
    lambda bn: (lambda pm, p, x: pm.evaluate(p, {"inptu": x}))(*mlp_compiled(bn)),
    E.MissingInputError,
    "inputs",
    "'input'",
)


# ============================================================== 3. axes out of range
AXES = [
    ("Softmax(axis=2) of a rank-2 input", lambda: Softmax(axis=2), [3, 4], ("softmax_0", "axis 2", "rank 2")),
    ("Softmax(axis=-3) of a rank-2 input", lambda: Softmax(axis=-3), [3, 4], ("softmax_0", "axis -3", "rank 2")),
    ("LogSoftmax(axis=5)", lambda: LogSoftmax(axis=5), [3, 4], ("logsoftmax_0", "axis 5", "rank 2")),
    ("Sum(axis=2)", lambda: Sum(axis=2), [3, 4], ("sum_0", "axis 2", "rank 2")),
    ("Mean(axis=-3)", lambda: Mean(axis=-3), [3, 4], ("mean_0", "axis -3", "rank 2")),
    ("Max(axis=(0, 2))", lambda: Max(axis=(0, 2)), [3, 4], ("max_0", "axis 2", "rank 2")),
    ("ArgMax(axis=2)", lambda: ArgMax(axis=2), [3, 4], ("argmax_0", "axis 2", "rank 2")),
    ("Flatten(start_axis=3)", lambda: Flatten(start_axis=3), [3, 4], ("flatten_0", "axis 3", "rank 2")),
    ("Flatten(end_axis=5)", lambda: Flatten(0, end_axis=5), [3, 4], ("flatten_0", "axis 5", "rank 2")),
    ("Flatten(1, 0)", lambda: Flatten(1, 0), [3, 4, 5], ("flatten_0", "end_axis 0", "start_axis 1")),
    ("Transpose([0, 1, 2]) of a rank-2 input", lambda: Transpose([0, 1, 2]), [3, 4], ("'input'", "[3, 4]", "rank 3")),
]
for _id, _make, _shape, _needles in AXES:
    case(_id, lambda bn, make=_make, shape=_shape: one_block(make(), shape, bn), E.ShapeMismatchError, *_needles)
case(
    "Softmax(axis=2), shapes seen at evaluate",
    lambda bn: one_block(Softmax(axis=2), [3, 4], bn, lazy=True),
    E.ShapeMismatchError,
    "softmax_0",
    "axis 2",
    "[3, 4]",
)
case(
    "Sum(axis=3), shapes seen at evaluate",
    lambda bn: one_block(Sum(axis=3), [3, 4], bn, lazy=True),
    E.ShapeMismatchError,
    "sum_0",
    "axis 3",
    "[3, 4]",
)
case(
    "Concat(axis=2) of rank-2 inputs",
    lambda bn: two_inputs(Concat(2, axis=2), ("inputs_0", "inputs_1"), ([3, 4], [3, 4]), bn),
    E.ShapeMismatchError,
    "concat_0",
    "axis 2",
    "rank 2",
)

# ============================================================== 4. shapes that do not fit
SHAPES = [
    ("Linear on a scalar", lambda: Linear(3), [], ("'input'", "[]", "rank 0")),
    ("Conv2d on a rank-3 input", lambda: Conv2d(3, 4, 3), [3, 8, 8], ("'input'", "[3, 8, 8]", "rank 4")),
    ("Conv2d with 2 channels for 3", lambda: Conv2d(3, 4, 3), [1, 2, 8, 8], ("'input'", "[1, 2, 8, 8]", "3 != 2")),
    ("Conv2d kernel larger than the input", lambda: Conv2d(3, 4, 5), [1, 3, 2, 2], ("conv2d", "size 2", "kernel 5")),
    (
        "MaxPool2d kernel larger than the input",
        lambda: MaxPool2d(5),
        [1, 3, 2, 2],
        ("maxpool2d_0", "size 2", "kernel 5"),
    ),
    ("Reshape([5, 5]) of 12 elements", lambda: Reshape([5, 5]), [3, 4], ("reshape_0", "[3, 4]", "[5, 5]")),
    ("LayerNorm(5) on [3, 4]", lambda: LayerNorm(5), [3, 4], ("'input'", "[3, 4]", "5 != 4")),
    ("LSTM(3, 4) on 6 features", lambda: LSTM(3, 4), [2, 5, 6], ("'input'", "[2, 5, 6]", "3 != 6")),
    ("GroupNorm(2, 4) on 6 channels", lambda: GroupNorm(2, 4), [2, 6, 3], ("'input'", "[2, 6, 3]", "4 != 6")),
]
for _id, _make, _shape, _needles in SHAPES:
    case(_id, lambda bn, make=_make, shape=_shape: one_block(make(), shape, bn), E.ShapeMismatchError, *_needles)
case(
    "MatrixMultiply of [3, 4] and [5, 4]",
    lambda bn: two_inputs(MatrixMultiply(), ("left", "right"), ([3, 4], [5, 4]), bn),
    E.ShapeMismatchError,
    "'b'",
    "[5, 4]",
    "4 != 5",
)
case(
    "Add of [3, 4] and [3]",
    lambda bn: two_inputs(Add(), ("left", "right"), ([3, 4], [3]), bn),
    E.ShapeMismatchError,
    "add_0",
    "[3, 4]",
    "[3]",
)
case(
    "Concat of [3, 4] and [2, 4] on axis 1",
    lambda bn: two_inputs(Concat(2, axis=1), ("inputs_0", "inputs_1"), ([3, 4], [2, 4]), bn),
    E.ShapeMismatchError,
    "'b'",
    "[2, 4]",
    "3 != 2",
)


# ============================================================== 5. compile keywords and options
def _compile(bn: str, *args: Any, **kw: Any) -> Any:
    return ml.compile(mlp(), backend(bn), *args, **kw)


KEYWORDS = [
    ("shape", {"shape": {"input": [4, 5]}}, "'shapes'"),
    ("jitt", {"jitt": True}, "'jit'"),
    ("static_shape", {"static_shape": True}, "'static_shapes'"),
    ("gradient_checkpoint", {"gradient_checkpoint": True}, "'gradient_checkpointing'"),
    ("constant", {"constant": {}}, "'constants'"),
    ("trainig", {"trainig": False}, "'training'"),
    ("shardings", {"shardings": None}, "'sharding'"),
    ("static_inferance", {"static_inferance": True}, "'static_inference'"),
    ("sourcepath", {"sourcepath": "x.py"}, "'source_path'"),
]
for _kw, _given, _hint in KEYWORDS:
    case(
        f"compile({_kw}=...) (misspelt)",
        lambda bn, given=_given: _compile(bn, **given),
        E.CompileError,
        f"{_kw!r}",
        f"did you mean {_hint}?",
    )
case(
    "compile(device='cpu') (no such option)",
    lambda bn: _compile(bn, device="cpu"),
    E.CompileError,
    "'device'",
    "options",
)
case(
    "compile with a fourth positional argument",
    lambda bn: _compile(bn, {"input": [4, 5]}, True),
    E.CompileError,
    "positional",
    "True",
)
for _flag, _value, _shown in (
    ("jit", "yes", "'yes'"),
    ("training", "False", "'False'"),
    ("static_shapes", 1, "1"),
    ("static_inference", "no", "'no'"),
    ("gradient_checkpointing", None, "None"),
):
    case(
        f"compile({_flag}={_value!r})",
        lambda bn, flag=_flag, value=_value: _compile(bn, **{flag: value}),
        E.CompileError,
        f"{_flag}",
        f"got {_shown}",
    )
case("compile(model, 'numpy')", lambda bn: ml.compile(mlp(), bn), E.CompileError, "backend", "str")
case("compile('model', backend)", lambda bn: ml.compile("model", backend(bn)), E.CompileError, "model", "str")
case(
    "compile(constants={'input': None})",
    lambda bn: _compile(bn, constants={"input": None}),
    E.CompileError,
    "constants",
    "'input'",
    "None",
)
case("compile(constants=[...])", lambda bn: _compile(bn, constants=[1, 2]), E.CompileError, "constants", "list")
case(
    "compile(static_inference=True, training=True)",
    lambda bn: _compile(bn, static_inference=True, training=True),
    E.CompileError,
    "static_inference",
    "training=True",
)
case(
    "compile(static_inference=True, gradient_checkpointing=True)",
    lambda bn: _compile(bn, static_inference=True, gradient_checkpointing=True),
    E.CompileError,
    "gradient_checkpointing",
    "static_inference",
)
case(
    "compile(jit=True) without a JIT",
    lambda bn: _compile(bn, jit=True),
    E.UnsupportedError,
    "JIT",
    "jit=False",
    backends=("numpy", "ggml"),
)
case(
    "compile(shapes={'input': [None, 5]}, static_shapes=True)",
    lambda bn: _compile(bn, shapes={"input": [None, 5]}, static_shapes=True),
    E.ShapeUnknownError,
    "input",
)
case(
    "randomize_params without shapes",
    lambda bn: _compile(bn).randomize_params(),
    E.ShapeUnknownError,
    "compile(shapes=...)",
)
case(
    "compile(sharding=...) without a device mesh",
    lambda bn: _compile(bn, sharding={"*": (None,)}),
    E.CompileError,
    "sharding",
    "device mesh",
)
case(
    "GGMLBackend: compile(gradient_checkpointing=True)",
    lambda bn: _compile(bn, shapes={"input": [4, 5]}, gradient_checkpointing=True),
    E.UnsupportedError,
    "GGMLBackend",
    "gradient_checkpointing",
    backends=("ggml",),
)
case(
    "TorchBackend(autodiff='torch'): compile(gradient_checkpointing=True)",
    lambda bn: ml.compile(mlp(), backend(bn, autodiff="torch"), gradient_checkpointing=True),
    E.UnsupportedError,
    "TorchBackend",
    "gradient_checkpointing",
    "autodiff='mithril'",
    backends=("torch",),
)
case(
    "JaxBackend(autodiff='jax'): compile(gradient_checkpointing=True)",
    lambda bn: ml.compile(mlp(), backend(bn, autodiff="jax"), gradient_checkpointing=True),
    E.UnsupportedError,
    "JaxBackend",
    "gradient_checkpointing",
    "autodiff='mithril'",
    backends=("jax",),
)

# ============================================================== 6. shapes entries that are not lists of ints
BAD_SHAPES = [
    ("a string", "45", "'45'"),
    ("an int", 4, "got 4"),
    ("floats", [4.0, 5], "[4.0, 5]"),
    ("a negative size", [-4, 5], "[-4, 5]"),
    ("a bool", [True, 5], "[True, 5]"),
    ("nested lists", [[4], [5]], "[[4], [5]]"),
    ("a dict", {"n": 4}, "{'n': 4}"),
    ("strings", ["4", "5"], "['4', '5']"),
]
for _what, _spec, _shown in BAD_SHAPES:
    case(
        f"compile(shapes={{'input': {_what}}})",
        lambda bn, spec=_spec: _compile(bn, shapes={"input": spec}),
        E.CompileError,
        "'input'",
        _shown,
    )
case("compile(shapes=[4, 5])", lambda bn: _compile(bn, shapes=[4, 5]), E.CompileError, "shapes", "list")


# ============================================================== 7. evaluate arguments
def _ev(bn: str, fn: Callable[[Any, dict[str, Any], Any, Any], Any]) -> Any:
    pm, params, x = mlp_compiled(bn)
    return fn(pm, params, x, backend(bn))


EVALUATE = [
    (
        "evaluate(params=[...])",
        lambda pm, p, x, be: pm.evaluate(list(p.values()), {"input": x}),
        E.ParamsError,
        ("params", "list"),
    ),
    (
        "evaluate(params, x) (an array, not a dict)",
        lambda pm, p, x, be: pm.evaluate(p, x),
        E.EvaluationError,
        ("inputs", "'input'", "got"),
    ),
    ("evaluate(params, [x])", lambda pm, p, x, be: pm.evaluate(p, [x]), E.EvaluationError, ("inputs", "list")),
    ("evaluate(params, {})", lambda pm, p, x, be: pm.evaluate(p, {}), E.MissingInputError, ("missing", "'input'")),
    (
        "evaluate: an int array for a float input",
        lambda pm, p, x, be: pm.evaluate(p, {"input": be.array(np.ones((4, 5), dtype=np.int32))}),
        E.EvaluationError,
        ("'input'", "int", "float"),
    ),
    (
        "evaluate: a list for an array",
        lambda pm, p, x, be: pm.evaluate(p, {"input": [[0.0] * 5] * 4}),
        E.EvaluationError,
        ("'input'", "list"),
    ),
    (
        "evaluate: a [4, 6] input for [4, 5]",
        lambda pm, p, x, be: pm.evaluate(p, {"input": be.randn(4, 6)}),
        E.ShapeMismatchError,
        ("input [4, 6]", "linear_0.weight", "[8, 5]"),
    ),
    (
        "evaluate: a rank-1 input",
        lambda pm, p, x, be: pm.evaluate(p, {"input": be.randn(5)}),
        E.ShapeMismatchError,
        ("input [5]", "rank 1"),
    ),
    (
        "evaluate(training='False')",
        lambda pm, p, x, be: pm.evaluate(p, {"input": x}, training="False"),
        E.EvaluationError,
        ("training", "'False'"),
    ),
    (
        "evaluate(training=0)",
        lambda pm, p, x, be: pm.evaluate(p, {"input": x}, training=0),
        E.EvaluationError,
        ("training", "got 0"),
    ),
    (
        "evaluate(return_state='no')",
        lambda pm, p, x, be: pm.evaluate(p, {"input": x}, return_state="no"),
        E.EvaluationError,
        ("return_state", "'no'"),
    ),
    (
        "evaluate: a param of the wrong shape",
        lambda pm, p, x, be: pm.evaluate({**p, "linear_0.bias": be.randn(7)}, {"input": x}),
        E.ParamsError,
        ("'linear_0.bias'", "[7]", "[8]"),
    ),
    (
        "evaluate: a param given as a list",
        lambda pm, p, x, be: pm.evaluate({**p, "linear_0.bias": [0.0] * 8}, {"input": x}),
        E.EvaluationError,
        ("'linear_0.bias'", "list"),
    ),
    (
        "evaluate: output_gradients of the wrong shape",
        lambda pm, p, x, be: pm.evaluate(p, {"input": x}, {"output": be.randn(4, 2)}),
        E.ShapeMismatchError,
        ("output_gradients['output']", "[4, 2]", "[4, 3]"),
    ),
    (
        "evaluate: output_gradients not a dict",
        lambda pm, p, x, be: pm.evaluate(p, {"input": x}, be.randn(4, 3)),
        E.EvaluationError,
        ("output_gradients", "'output'", "got"),
    ),
    (
        "evaluate: an output gradient that is a float",
        lambda pm, p, x, be: pm.evaluate(p, {"input": x}, {"output": 1.0}),
        E.EvaluationError,
        ("output_gradients['output']", "float"),
    ),
    (
        "evaluate: int output_gradients",
        lambda pm, p, x, be: pm.evaluate(p, {"input": x}, {"output": be.array(np.ones((4, 3), dtype=np.int32))}),
        E.EvaluationError,
        ("output_gradients['output']", "int", "float32"),
    ),
]
for _id, _fn, _error, _needles in EVALUATE:
    # GGML computes inference and float32 gradients too, so every case applies to every backend
    case(_id, lambda bn, fn=_fn: _ev(bn, fn), _error, *_needles)


def _wrong_float_input(bn: str) -> Any:
    be, x = wrong_float(bn, (4, 5))
    pm = ml.compile(mlp(), be, shapes={"input": [4, 5]})
    with be.scope():
        return pm.evaluate(pm.randomize_params(seed=0), {"input": x})


def _wrong_float_gradient(bn: str) -> Any:
    be, g = wrong_float(bn, (4, 3))
    pm = ml.compile(mlp(), be, shapes={"input": [4, 5]})
    with be.scope():
        x = be.array(np.zeros((4, 5), be.dtype.numpy))
        return pm.evaluate(pm.randomize_params(seed=0), {"input": x}, {"output": g})


case("evaluate: a float input of the other width", _wrong_float_input, E.EvaluationError, "'input'", "float")
case(
    "evaluate: output_gradients of the other float width (not cast)",
    _wrong_float_gradient,
    E.EvaluationError,
    "output_gradients['output']",
    "float32",
    "float64",
)
case(
    "evaluate: a static_inference model asked for gradients",
    lambda bn: (
        lambda pm: pm.evaluate(
            pm.randomize_params(0), {"input": backend(bn).randn(4, 5)}, {"output": backend(bn).randn(4, 3)}
        )
    )(ml.compile(mlp(), backend(bn), shapes={"input": [4, 5]}, static_inference=True)),
    E.UnsupportedError,
    "static_inference",
    "gradients",
)
case(
    "evaluate: static_shapes and another shape",
    lambda bn: (lambda pm: pm.evaluate(pm.randomize_params(0), {"input": backend(bn).randn(2, 5)}))(
        ml.compile(mlp(), backend(bn), shapes={"input": [4, 5]}, static_shapes=True)
    ),
    E.ShapeMismatchError,
    "'input'",
    "[2, 5]",
    "[4, 5]",
)

# ============================================================== 8. loss target shapes
LOSSES = [
    ("MSELoss [8, 1] vs [8]", MSELoss, [8, 1], [8], "float32", ("MSELoss", "[8, 1]", "[8]")),
    ("MSELoss [4, 3] vs [3, 4]", MSELoss, [4, 3], [3, 4], "float32", ("MSELoss", "[4, 3]", "[3, 4]")),
    ("L1Loss [4, 3] vs [4]", L1Loss, [4, 3], [4], "float32", ("L1Loss", "[4, 3]", "[4]")),
    ("HuberLoss [5] vs [5, 1]", HuberLoss, [5], [5, 1], "float32", ("HuberLoss", "[5]", "[5, 1]")),
    ("SmoothL1Loss [2, 3] vs [2, 1]", SmoothL1Loss, [2, 3], [2, 1], "float32", ("SmoothL1Loss", "[2, 3]", "[2, 1]")),
    (
        "BCEWithLogitsLoss [8] vs [8, 1]",
        BCEWithLogitsLoss,
        [8],
        [8, 1],
        "float32",
        ("BCEWithLogitsLoss", "[8]", "[8, 1]"),
    ),
    ("KLDivLoss [4, 3] vs [4, 2]", KLDivLoss, [4, 3], [4, 2], "float32", ("KLDivLoss", "[4, 3]", "[4, 2]")),
    (
        "CrossEntropyLoss input [4, 3], target [4, 2]",
        CrossEntropyLoss,
        [4, 3],
        [4, 2],
        "int64",
        ("CrossEntropyLoss", "target", "[4, 2]"),
    ),
    (
        "CrossEntropyLoss input [4, 3], target [5]",
        CrossEntropyLoss,
        [4, 3],
        [5],
        "int64",
        ("CrossEntropyLoss", "target", "[5]"),
    ),
    ("NLLLoss input [4, 3, 2], target [4, 3]", NLLLoss, [4, 3, 2], [4, 3], "int64", ("NLLLoss", "target", "[4, 3]")),
    (
        "CrossEntropyLoss(target='probabilities') [4, 3] vs [4]",
        lambda: CrossEntropyLoss(target="probabilities"),
        [4, 3],
        [4],
        "float32",
        ("'target'", "[4]"),
    ),
]
for _id, _make, _p, _t, _dt, _needles in LOSSES:
    apply_to = INDEXED if _dt == "int64" else None
    case(
        _id,
        lambda bn, make=_make, p=_p, t=_t, dt=_dt: loss_shapes(make, p, t, bn, dt),
        E.ShapeMismatchError,
        *_needles,
        backends=apply_to,
    )

# ============================================================== 9. indices out of range (every backend, jit too)
INDICES = [
    ("embedding", [0, 5], "holds 5", "[0, 4]"),
    ("embedding", [0, -1], "holds -1", "[0, 4]"),
    ("embedding", [2, 10**9], "holds 1000000000", "[0, 4]"),
    ("cross_entropy", [0, 1, 4], "holds 4", "[0, 3]"),
    ("cross_entropy", [0, 1, -1], "holds -1", "[0, 3]"),
    ("nll", [3, 7], "holds 7", "[0, 3]"),
]
for _kind, _idx, _held, _range in INDICES:
    block = {"embedding": "Embedding", "cross_entropy": "CrossEntropyLoss", "nll": "NLLLoss"}[_kind]
    key = "'input'" if _kind == "embedding" else "'target'"
    case(
        f"{block} index {_idx}",
        lambda bn, k=_kind, i=_idx: index_model(k, bn, i),
        E.EvaluationError,
        key,
        block,
        _held,
        _range,
        backends=INDEXED,
    )
    case(
        f"{block} index {_idx}, jit",
        lambda bn, k=_kind, i=_idx: index_model(k, bn, i, jit=True),
        E.EvaluationError,
        key,
        block,
        _held,
        _range,
        backends=JITTED,
    )
case(
    "CrossEntropyLoss(ignore_index=None) target -100",
    lambda bn: index_model("cross_entropy", bn, [0, -100], ignore_index=None),
    E.EvaluationError,
    "'target'",
    "holds -100",
    "[0, 3]",
    backends=INDEXED,
)


def _jax_fast_path_index(bn: str) -> Any:
    """A jitted JAX model takes a fast path after its first checked call; indices are still checked."""
    be = backend(bn)
    m = Model()
    m |= Embedding(5, 3)(input="input", output=IOKey("output"))
    pm = ml.compile(m, be, shapes={"input": [2]}, jit=True)
    p = pm.randomize_params(seed=0)
    for ids in ([0, 1], [1, 2], [3, 5]):
        pm.evaluate(p, {"input": be.array(np.array(ids, dtype=np.int32))})


case(
    "Embedding index 5 on the third jitted call",
    _jax_fast_path_index,
    E.EvaluationError,
    "'input'",
    "holds 5",
    backends=JITTED,
)


def _gpt2_token(bn: str) -> Any:
    be = backend(bn)
    model = gpt2(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    pm = ml.compile(model, be, shapes={"input": [1, 4]}, training=False)
    return pm.evaluate(pm.randomize_params(seed=0), {"input": be.array(np.array([[1, 2, 11, 3]], dtype=np.int64))})


case("GPT-2 token id = vocab_size", _gpt2_token, E.EvaluationError, "'input'", "holds 11", "[0, 10]", backends=INDEXED)


def _step_target(bn: str) -> Any:
    be = backend(bn)
    step = ml.compile_step(mlp(), be, loss=CrossEntropyLoss(), optimizer=ml.optim.SGD(lr=0.1), shapes={"input": [4, 5]})
    state = step.init(seed=0)
    x = be.array(np.zeros((4, 5), np.float32))
    return step(state, {"input": x, "target": be.array(np.array([0, 1, 2, 3], dtype=np.int64))})


case(
    "a training step with target class 3 of 3",
    _step_target,
    E.EvaluationError,
    "'target'",
    "holds 3",
    "[0, 2]",
    backends=INDEXED,
)

# ============================================================== 10. BatchNorm batches
BATCHNORM = [
    (
        "BatchNorm1d, a batch of one in training mode",
        lambda: BatchNorm1d(3),
        [1, 3],
        True,
        ("batchnorm1d_0", "[1, 3, 1]"),
    ),
    (
        "BatchNorm2d, one 1x1 image in training mode",
        lambda: BatchNorm2d(3),
        [1, 3, 1, 1],
        True,
        ("batchnorm2d_0", "[1, 3, 1, 1]"),
    ),
    ("BatchNorm1d, an empty batch in training mode", lambda: BatchNorm1d(3), [0, 3], True, ("batchnorm1d_0", "empty")),
    (
        "BatchNorm2d, an empty batch in training mode",
        lambda: BatchNorm2d(3),
        [0, 3, 4, 4],
        True,
        ("batchnorm2d_0", "empty"),
    ),
    (
        "BatchNorm1d without running stats, a batch of one in inference",
        lambda: BatchNorm1d(3, track_running_stats=False),
        [1, 3],
        False,
        ("batchnorm1d_0", "[1, 3, 1]"),
    ),
    (
        "BatchNorm2d(num_features=None), a batch of one",
        lambda: BatchNorm2d(),
        [1, 2, 1, 1],
        True,
        ("batchnorm2d_0", "[1, 2, 1, 1]"),
    ),
]
for _id, _make, _shape, _train, _needles in BATCHNORM:
    case(
        _id,
        lambda bn, make=_make, shape=_shape, train=_train: batchnorm(make, shape, bn, training=train),
        E.BatchStatisticsError,
        *_needles,
        "more than 1 value per channel",
    )


# ============================================================== 11. safetensors files
def _truncated(bn: str) -> Any:
    return load_params(safetensors_file()[:-5], bn)


def _offsets_past_end(bn: str) -> Any:
    return load_params(st_header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}, b"\0" * 16), bn)


def _size_mismatch(bn: str) -> Any:
    return load_params(st_header({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, b"\0" * 16), bn)


SAFETENSORS = [
    ("load_params: no such file", lambda bn: load_params(None, bn), ("missing.safetensors", "no such file")),
    ("load_params: truncated data", _truncated, ("x.safetensors", "truncated")),
    (
        "load_params: truncated header",
        lambda bn: load_params(safetensors_file()[:10], bn),
        ("x.safetensors", "truncated"),
    ),
    ("load_params: an empty file", lambda bn: load_params(b"", bn), ("x.safetensors", "0 bytes")),
    ("load_params: garbage", lambda bn: load_params(b"\x00" * 100, bn), ("x.safetensors", "JSON")),
    (
        "load_params: a header length of 2**60",
        lambda bn: load_params(struct.pack("<Q", 2**60) + b"{}", bn),
        ("x.safetensors", str(2**60)),
    ),
    ("load_params: a JSON list header", lambda bn: load_params(st_header([1, 2]), bn), ("x.safetensors", "list")),
    ("load_params: data_offsets past the end", _offsets_past_end, ("x.safetensors", "'w'", "64")),
    ("load_params: a size that does not match the shape", _size_mismatch, ("x.safetensors", "'w'", "[3]")),
    (
        "load_params: a directory",
        lambda bn: __import__("mithril.io.safetensors", fromlist=["x"]).load_params(_tmp(), backend(bn)),
        ("mithril-catalogue", "not a file"),
    ),
]
for _id, _fn, _needles in SAFETENSORS:
    case(_id, _fn, E.CheckpointError, *_needles)
case(
    "load_params: an F8 tensor",
    lambda bn: load_params(st_header({"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4), bn),
    E.UnsupportedError,
    "'w'",
    "F8_E4M3",
)
case(
    "load_params(keep_dtypes=True): a bfloat16 file into a NumPy backend",
    lambda bn: __import__("mithril.io.safetensors", fromlist=["x"]).load_params(
        bfloat16_file(), backend(bn), keep_dtypes=True
    ),
    E.UnsupportedError,
    "'w'",
    "bfloat16",
    "NumpyBackend",
    backends=("numpy",),
)

# ============================================================== 12. GGUF files and GGUFModel
GGUF = [
    ("load_gguf: truncated data", lambda: load_gguf(gguf_file()[: len(gguf_file()) - 600], "t.gguf"), ("t.gguf",)),
    ("load_gguf: truncated header", lambda: load_gguf(gguf_file()[:200], "h.gguf"), ("h.gguf", "truncated")),
    ("load_gguf: an empty file", lambda: load_gguf(b"", "e.gguf"), ("e.gguf", "not a GGUF file")),
    ("load_gguf: a bad version", lambda: load_gguf(b"GGUF" + b"\xff" * 100, "v.gguf"), ("v.gguf", "version")),
    (
        "load_gguf: a corrupted tensor payload",
        lambda: load_gguf(corrupt_payload(gguf_file()), "p.gguf"),
        ("p.gguf", "corrupted", "CRC-32"),
    ),
    (
        "load_gguf: a corrupted int8 payload",
        lambda: load_gguf(corrupt_payload(gguf_file("int8")), "q.gguf"),
        ("q.gguf", "corrupted", "CRC-32"),
    ),
    (
        "load_gguf: corrupted graph JSON",
        lambda: load_gguf(corrupt_text(gguf_file(), b"mithril.graph", b'"values"', b'"valuez"'), "j.gguf"),
        ("j.gguf", "metadata", "corrupted"),
    ),
    (
        "load_gguf: graph JSON that does not parse",
        lambda: load_gguf(corrupt_text(gguf_file(), b"mithril.graph", b'{"', b"{["), "k.gguf"),
        ("k.gguf", "metadata", "corrupted"),
    ),
    (
        "load_gguf: corrupted params JSON",
        lambda: load_gguf(corrupt_text(gguf_file(), b"mithril.params", b'"name"', b'"nane"'), "m.gguf"),
        ("m.gguf", "corrupted"),
    ),
    (
        "load_gguf: a GGUF file not written by Mithril",
        lambda: load_gguf(corrupt_text(gguf_file(), b"mithril.graph", b"mithril.graph", b"mithril.grapf"), "n.gguf"),
        ("n.gguf", "'mithril.graph'"),
    ),
]
for _id, _fn, _needles in GGUF:
    from_gguf = (
        __import__("mithril_ggml.gguf", fromlist=["GGUFError"]).GGUFError
        if "ggml" in ml.plugins.backends()
        else E.MithrilError
    )
    case(_id, lambda bn, fn=_fn: fn(), from_gguf, *_needles, backends=("ggml",))

GGUF_MODEL = [
    (
        "GGUFModel.evaluate: an extra input",
        lambda g: g.evaluate({"input": np.zeros((4, 64), np.float32), "junk": np.zeros(2, np.float32)}),
        E.UnknownKeyError,
        ("GGUFModel", "'junk'"),
    ),
    ("GGUFModel.evaluate: a missing input", lambda g: g.evaluate({}), E.MissingInputError, ("GGUFModel", "'input'")),
    (
        "GGUFModel.evaluate: a float64 input",
        lambda g: g.evaluate({"input": np.zeros((4, 64))}),
        E.EvaluationError,
        ("'input'", "float64", "float32"),
    ),
    (
        "GGUFModel.evaluate: the wrong shape",
        lambda g: g.evaluate({"input": np.zeros((2, 64), np.float32)}),
        E.ShapeMismatchError,
        ("'input'", "[2, 64]", "[4, 64]"),
    ),
    (
        "GGUFModel.evaluate: an array, not a dict",
        lambda g: g.evaluate(np.zeros((4, 64), np.float32)),
        E.EvaluationError,
        ("GGUFModel", "'input'", "ndarray"),
    ),
    (
        "GGUFModel.evaluate: a list input",
        lambda g: g.evaluate({"input": [[0.0] * 64] * 4}),
        E.EvaluationError,
        ("'input'", "list"),
    ),
]
for _id, _fn, _error, _needles in GGUF_MODEL:
    case(_id, lambda bn, fn=_fn: fn(gguf_model()), _error, *_needles, backends=("ggml",))

# ============================================================== 13. GGML: sizes, quantization
for _kind, _needles in (
    ("linear", ("GGMLBackend", "[2147483648, 2147483648]", "GiB")),
    ("relu_rank3", ("GGMLBackend", "relu_0", "[65536, 65536, 16]")),
    ("wide_linear", ("GGMLBackend", "linear_0", "[1048576, 1048576]")),
    ("huge_param", ("GGMLBackend", "'linear_0.weight'", "[17179869184, 4]")),
):
    case(
        f"GGML: a huge shape ({_kind})",
        lambda bn, kind=_kind: ggml_huge(kind),
        E.UnsupportedError,
        *_needles,
        backends=("ggml",),
        isolate=True,
    )
for _mode, _value, _shown in (
    ("int8", float("nan"), "nan"),
    ("int8", float("inf"), "inf"),
    ("int4", float("nan"), "nan"),
    ("int4", float("-inf"), "-inf"),
):
    case(
        f"GGML quantize={_mode}: a weight {_shown}",
        lambda bn, mode=_mode, value=_value: quantized_nonfinite(mode, value),
        E.ParamsError,
        "'linear_0.weight'",
        f"holds {_shown}",
        "[1, 3]",
        f"quantize='{_mode}'",
        backends=("ggml",),
    )
case(
    "GGMLBackend(quantize='int2')",
    lambda bn: ml.GGMLBackend(quantize="int2"),
    E.UnsupportedError,
    "quantize",
    "'int2'",
    backends=("ggml",),
)
case(
    "GGMLBackend(n_threads=0)",
    lambda bn: ml.GGMLBackend(n_threads=0),
    E.UnsupportedError,
    "n_threads",
    "got 0",
    backends=("ggml",),
)
case(
    "NumpyBackend(dtype=bfloat16)",
    lambda bn: ml.NumpyBackend(dtype=ml.bfloat16),
    E.UnsupportedError,
    "NumpyBackend",
    "bfloat16",
    backends=("numpy",),
)
case(
    "NumpyBackend(device='cuda')",
    lambda bn: ml.NumpyBackend(device="cuda"),
    E.UnsupportedError,
    "NumpyBackend",
    "'cuda'",
    backends=("numpy",),
)
case("ml.backend('tpu_v9')", lambda bn: ml.backend("tpu_v9"), E.BackendNotInstalledError, "tpu_v9")


# ================================================================= running a case
def outcome(c: Case, bn: str) -> tuple[str, str]:
    """``(kind, detail)``: kind is ok, vague, raw or silent (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            c.run(bn)
        except E.MithrilError as e:
            msg = str(e)
            detail = f"{type(e).__name__}: {msg}"
            if type(e) is not c.error:
                return "vague", f"expected {c.error.__name__}, got {detail}"
            missing = [n for n in c.needles if n not in msg]
            if missing:
                return "vague", f"the message does not name {missing}: {detail}"
            return "ok", detail
        except Exception as e:
            return "raw", f"{type(e).__module__}.{type(e).__name__}: {e}"
    return "silent", "no error"


def outcome_isolated(c: Case, bn: str, timeout: float = 120) -> tuple[str, str]:
    """:func:`outcome` in a child interpreter: an abort (SIGABRT, a segfault) is the kind ``abort``."""
    code = (
        "import json, sys; sys.path.insert(0, {here!r}); import catalogue_cases as C; "
        "c = next(c for c in C.CASES if c.id == {id!r}); print('RESULT ' + json.dumps(C.outcome(c, {bn!r})))"
    )
    env = dict(os.environ, GGML_NO_BACKTRACE="1")
    proc = subprocess.run(
        [sys.executable, "-c", code.format(here=str(Path(__file__).parent), id=c.id, bn=bn)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            kind, detail = json.loads(line[7:])
            return kind, detail
    return "abort", f"the child process died with status {proc.returncode}: {proc.stderr[-1500:]}"


def runs() -> list[tuple[Case, str]]:
    """Every (case, backend) pair to run on the installed backends."""
    have = installed()
    return [(c, bn) for c in CASES for bn in (c.backends or ALL) if bn in have]


__all__ = ["CASES", "Case", "installed", "outcome", "outcome_isolated", "runs"]


if __name__ == "__main__":  # python tests/reliability/catalogue_cases.py: the table of outcomes
    counts: dict[str, int] = {}
    for c, bn in runs():
        kind, detail = outcome_isolated(c, bn) if c.isolate else outcome(c, bn)
        counts[kind] = counts.get(kind, 0) + 1
        if kind != "ok":
            print(f"{kind:7} {bn:6} {c.id}: {detail[:300]}")
    print(f"{len(CASES)} cases, {sum(counts.values())} runs: {counts}")


def SUMMARY() -> list[str]:
    if not RESULTS:
        return []
    counts: dict[str, int] = {}
    for _, _, kind in RESULTS:
        counts[kind] = counts.get(kind, 0) + 1
    backends = sorted({bn for _, bn, _ in RESULTS})
    figures = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("ok", "vague", "raw", "silent", "abort"))
    return [
        f"bad-input catalogue: {len({c for c, _, _ in RESULTS})} cases, {len(RESULTS)} runs on "
        f"{', '.join(backends)}: {figures}"
    ]
