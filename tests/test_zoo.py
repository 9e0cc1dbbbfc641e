"""The model zoo against torch.nn: forward, parameter gradients and state, on every installed backend.

Each case builds a zoo block and the torch.nn module it mirrors, with random shapes
(seeded per case). The block's parameters are randomised by Mithril, loaded into the
torch module by state-dict name (so names and shapes must map one to one), and both
run: outputs, ``evaluate(params, inputs, output_gradients)`` against torch autograd,
and (BatchNorm) the running statistics. Inputs whose gradients are checked are
turned into parameters of a wrapping model (``evaluate`` returns parameter
gradients). References run in float64 torch on the exact values the backend holds;
tolerances: float64 1e-9, float32 1e-4 (relative to the magnitude of the reference).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.models import (
    MLP,
    AdaptiveAvgPool2d,
    BatchNorm1d,
    BCEWithLogitsLoss,
    Conv1d,
    ConvTranspose2d,
    CrossEntropyLoss,
    Embedding,
    Gelu,
    GroupNorm,
    HuberLoss,
    IOKey,
    KLDivLoss,
    L1Loss,
    LayerNorm,
    LogSoftmax,
    MaxPool1d,
    Model,
    MSELoss,
    MultiHeadAttention,
    NLLLoss,
    RMSNorm,
    Silu,
    SmoothL1Loss,
    TransformerBlock,
)
from mithril.testing.variants import installed, variant_backend, variants

torch = pytest.importorskip("torch")
nn = torch.nn

INSTALLED = installed()
#: backends under test: each installed one, and torch once more with gradients by torch.autograd
VARIANTS = variants()
TOL = {"float64": 1e-9, "float32": 1e-4}


@dataclass
class Instance:
    """One concrete case: the block, its torch twin and the data."""

    block: Any
    module: Any  # torch.nn.Module (float64) or a plain callable for parameter-free blocks
    inputs: dict[str, np.ndarray]  # every input terminal of the block
    diff: tuple[str, ...] = ("input",)  # inputs whose gradients are checked
    call: Callable[[Any, dict[str, Any]], Any] | None = None  # torch forward; default module(input)
    names: dict[str, str] = field(default_factory=dict)  # torch state-dict name -> zoo name, when they differ
    state: dict[str, np.ndarray] = field(default_factory=dict)  # zoo state values to use
    training: bool = True
    check_inference: bool = False


def distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least ~0.05 apart: no ties in max pooling."""
    n = math.prod(shape)
    return ((rng.permutation(n) - n / 2) * 0.05 + rng.uniform(0, 0.005, n)).reshape(shape)


def normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


# ---------------------------------------------------------------------- cases
def conv1d(rng):
    g = int(rng.choice([1, 2]))
    c, o, k = 2 * g, 3 * g, int(rng.integers(1, 4))
    s, p, d = int(rng.integers(1, 3)), int(rng.integers(0, 2)), int(rng.integers(1, 3))
    length = int(rng.integers(d * (k - 1) + 2, 10))
    return Instance(
        Conv1d(c, o, k, stride=s, padding=p, dilation=d, groups=g),
        nn.Conv1d(c, o, k, stride=s, padding=p, dilation=d, groups=g),
        {"input": normal(rng, 2, c, length)},
    )


def conv1d_same_no_bias(rng):
    return Instance(
        Conv1d(3, 4, 3, padding="same", bias=False),
        nn.Conv1d(3, 4, 3, padding="same", bias=False),
        {"input": normal(rng, 2, 3, int(rng.integers(3, 8)))},
    )


def conv_transpose2d(rng):
    g = int(rng.choice([1, 2]))
    c, o = 2 * g, 3 * g
    k = (int(rng.integers(1, 4)), int(rng.integers(2, 4)))
    s = (int(rng.integers(1, 3)), 2)
    d = (1, int(rng.integers(1, 3)))
    p = (int(rng.integers(0, 2)), 1)
    op = (int(rng.integers(0, s[0])), 1)
    return Instance(
        ConvTranspose2d(c, o, k, stride=s, padding=p, output_padding=op, groups=g, dilation=d),
        nn.ConvTranspose2d(c, o, k, stride=s, padding=p, output_padding=op, groups=g, dilation=d),
        {"input": normal(rng, 2, c, int(rng.integers(2, 5)), int(rng.integers(2, 5)))},
    )


def _batchnorm1d(rng, shape):
    c = shape[1]
    return Instance(
        BatchNorm1d(c),
        nn.BatchNorm1d(c),
        {"input": normal(rng, *shape)},
        state={"running_mean": normal(rng, c), "running_var": rng.uniform(0.5, 2.0, c)},
        check_inference=True,
    )


def batchnorm1d_2d(rng):
    return _batchnorm1d(rng, (int(rng.integers(3, 7)), int(rng.integers(2, 5))))


def batchnorm1d_3d(rng):
    return _batchnorm1d(rng, (int(rng.integers(2, 4)), int(rng.integers(2, 5)), int(rng.integers(2, 6))))


def layernorm(rng):
    d = int(rng.integers(2, 7))
    return Instance(LayerNorm(d), nn.LayerNorm(d), {"input": normal(rng, 2, int(rng.integers(1, 4)), d)})


def layernorm_2d_shape(rng):
    ns = (int(rng.integers(2, 4)), int(rng.integers(2, 5)))
    return Instance(LayerNorm(ns, eps=1e-3), nn.LayerNorm(ns, eps=1e-3), {"input": normal(rng, 3, *ns)})


def groupnorm_4d(rng):
    g = int(rng.choice([1, 2, 3]))
    c = g * int(rng.integers(1, 3))
    return Instance(GroupNorm(g, c), nn.GroupNorm(g, c), {"input": normal(rng, 2, c, 3, int(rng.integers(2, 5)))})


def groupnorm_3d(rng):
    return Instance(
        GroupNorm(2, 4, eps=1e-4), nn.GroupNorm(2, 4, eps=1e-4), {"input": normal(rng, 3, 4, int(rng.integers(2, 6)))}
    )


def rmsnorm(rng):
    d = int(rng.integers(2, 7))
    return Instance(RMSNorm(d, eps=1e-6), nn.RMSNorm(d, eps=1e-6), {"input": normal(rng, 2, 3, d)})


def embedding(rng):
    v, d = int(rng.integers(4, 9)), int(rng.integers(2, 5))
    idx = rng.integers(0, v, (3, int(rng.integers(2, 6))))
    idx[0, 0] = idx[1, 1] = 1  # a repeated row: its gradients accumulate
    return Instance(Embedding(v, d), nn.Embedding(v, d), {"input": idx}, diff=())


def maxpool1d(rng):
    k = int(rng.integers(2, 4))
    s, p = int(rng.integers(1, 3)), int(rng.integers(0, k // 2 + 1))
    return Instance(
        MaxPool1d(k, stride=s, padding=p),
        nn.MaxPool1d(k, stride=s, padding=p),
        {"input": distinct(rng, (2, 3, int(rng.integers(k + 1, 10))))},
    )


def adaptive_avg_pool2d(rng):
    oh, ow = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    return Instance(
        AdaptiveAvgPool2d((oh, ow)),
        nn.AdaptiveAvgPool2d((oh, ow)),
        {"input": normal(rng, 2, 3, oh * int(rng.integers(1, 3)), ow * int(rng.integers(1, 4)))},
    )


def adaptive_avg_pool2d_any_size(rng):
    """Sizes that do not divide: overlapping windows, as torch's."""
    oh, ow = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    h, w = oh + int(rng.integers(1, 4)), ow + int(rng.integers(1, 6))
    return Instance(AdaptiveAvgPool2d((oh, ow)), nn.AdaptiveAvgPool2d((oh, ow)), {"input": normal(rng, 2, 3, h, w)})


def adaptive_avg_pool2d_global(rng):
    return Instance(AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d(1), {"input": normal(rng, 2, 3, 4, 5)})


def silu(rng):
    return Instance(Silu(), nn.SiLU(), {"input": normal(rng, 3, int(rng.integers(2, 6)))})


def gelu_tanh(rng):
    return Instance(Gelu(approximate="tanh"), nn.GELU(approximate="tanh"), {"input": normal(rng, 3, 4)})


def log_softmax(rng):
    return Instance(LogSoftmax(axis=1), nn.LogSoftmax(dim=1), {"input": normal(rng, 3, 5)})


def mha_cross(rng):
    h = int(rng.choice([1, 2]))
    e = h * int(rng.integers(2, 4))
    n, lq, s = 2, int(rng.integers(1, 5)), int(rng.integers(1, 6))
    return Instance(
        MultiHeadAttention(e, h),
        nn.MultiheadAttention(e, h, batch_first=True),
        {"query": normal(rng, n, lq, e), "key": normal(rng, n, s, e), "value": normal(rng, n, s, e)},
        diff=("query", "key", "value"),
        call=lambda m, t: m(t["query"], t["key"], t["value"], need_weights=False)[0],
    )


def mha_self_causal(rng):
    e, h, length = 6, 3, int(rng.integers(2, 6))
    mask = nn.Transformer.generate_square_subsequent_mask(length, dtype=torch.float64)
    return Instance(
        MultiHeadAttention(e, h, causal=True, self_attention=True),
        nn.MultiheadAttention(e, h, batch_first=True),
        {"input": normal(rng, 2, length, e)},
        call=lambda m, t: m(t["input"], t["input"], t["input"], attn_mask=mask, need_weights=False)[0],
    )


def mha_additive_mask_no_bias(rng):
    e, h, lq, s = 4, 2, 3, int(rng.integers(2, 5))
    return Instance(
        MultiHeadAttention(e, h, bias=False, attn_mask="additive"),
        nn.MultiheadAttention(e, h, bias=False, batch_first=True),
        {
            "query": normal(rng, 2, lq, e),
            "key": normal(rng, 2, s, e),
            "value": normal(rng, 2, s, e),
            "attn_mask": normal(rng, lq, s),
        },
        diff=("query", "key", "value"),
        call=lambda m, t: m(t["query"], t["key"], t["value"], attn_mask=t["attn_mask"], need_weights=False)[0],
    )


def mha_bool_mask(rng):
    e, h, lq, s = 4, 2, 3, 4
    mask = rng.random((lq, s)) < 0.4
    mask[:, 0] = False  # every query attends to something
    return Instance(
        MultiHeadAttention(e, h, attn_mask="bool"),
        nn.MultiheadAttention(e, h, batch_first=True),
        {"query": normal(rng, 2, lq, e), "key": normal(rng, 2, s, e), "value": normal(rng, 2, s, e), "attn_mask": mask},
        diff=("query",),
        call=lambda m, t: m(t["query"], t["key"], t["value"], attn_mask=t["attn_mask"], need_weights=False)[0],
    )


def transformer_block(rng):
    d, h, ff, length = 8, 2, int(rng.integers(8, 17)), int(rng.integers(2, 6))
    act = str(rng.choice(["relu", "gelu"]))
    causal = bool(rng.integers(0, 2))
    mask = nn.Transformer.generate_square_subsequent_mask(length, dtype=torch.float64) if causal else None
    layer = nn.TransformerEncoderLayer(d, h, ff, dropout=0.0, activation=act, batch_first=True, norm_first=True)
    return Instance(
        TransformerBlock(d, h, ff, activation=act, causal=causal),
        layer,
        {"input": normal(rng, 2, length, d)},
        call=lambda m, t: m(t["input"], src_mask=mask),
    )


def mlp(rng):
    dims = [int(rng.integers(2, 6)) for _ in range(3)]
    i = int(rng.integers(2, 5))
    seq = nn.Sequential(
        nn.Linear(i, dims[0]), nn.GELU(), nn.Linear(dims[0], dims[1]), nn.Tanh(), nn.Linear(dims[1], dims[2])
    )
    return Instance(
        MLP(dims, activations=["gelu", "tanh", None]),
        seq,
        {"input": normal(rng, 3, i)},
        names={
            "0.weight": "linear_0.weight",
            "0.bias": "linear_0.bias",
            "2.weight": "linear_1.weight",
            "2.bias": "linear_1.bias",
            "4.weight": "linear_2.weight",
            "4.bias": "linear_2.bias",
        },
    )


def _loss(block, module, x, target, call=None):
    return Instance(
        block, module, {"input": x, "target": target}, call=call or (lambda m, t: m(t["input"], t["target"]))
    )


def mse_loss(rng):
    s = (3, int(rng.integers(1, 5)))
    return _loss(MSELoss(), nn.MSELoss(), normal(rng, *s), normal(rng, *s))


def l1_loss_sum(rng):
    s = (int(rng.integers(2, 5)), 3)
    return _loss(L1Loss(reduction="sum"), nn.L1Loss(reduction="sum"), normal(rng, *s), normal(rng, *s))


def huber_loss(rng):
    delta = float(rng.uniform(0.5, 1.5))
    s = (4, 3)
    return _loss(HuberLoss(delta=delta), nn.HuberLoss(delta=delta), 2 * normal(rng, *s), normal(rng, *s))


def cross_entropy(rng):
    n, c = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    eps = float(rng.choice([0.0, 0.1]))
    return _loss(
        CrossEntropyLoss(label_smoothing=eps),
        nn.CrossEntropyLoss(label_smoothing=eps),
        normal(rng, n, c),
        rng.integers(0, c, n),
    )


def cross_entropy_none(rng):
    return _loss(
        CrossEntropyLoss(reduction="none", label_smoothing=0.2),
        nn.CrossEntropyLoss(reduction="none", label_smoothing=0.2),
        normal(rng, 4, 3),
        rng.integers(0, 3, 4),
    )


def nll_loss(rng):
    n, c = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    return _loss(NLLLoss(), nn.NLLLoss(), normal(rng, n, c), rng.integers(0, c, n))


def cross_entropy_4d_ignore_index(rng):
    n, c, h, w = 2, int(rng.integers(2, 5)), int(rng.integers(1, 4)), 3
    target = rng.integers(0, c, (n, h, w))
    target[0, 0, 0] = target[1, -1, 1] = -100
    eps = float(rng.choice([0.0, 0.15]))
    return _loss(
        CrossEntropyLoss(label_smoothing=eps), nn.CrossEntropyLoss(label_smoothing=eps), normal(rng, n, c, h, w), target
    )


def nll_loss_3d_ignore_sum(rng):
    target = rng.integers(0, 4, (3, 5))
    target[1, 2] = 2
    return _loss(
        NLLLoss(reduction="sum", ignore_index=2),
        nn.NLLLoss(reduction="sum", ignore_index=2),
        normal(rng, 3, 4, 5),
        target,
    )


def cross_entropy_none_3d(rng):
    target = rng.integers(0, 3, (2, 4))
    target[0, 1] = -100
    return _loss(
        CrossEntropyLoss(reduction="none", label_smoothing=0.1),
        nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1),
        normal(rng, 2, 3, 4),
        target,
    )


def bce_with_logits(rng):
    s = (int(rng.integers(2, 5)), 3)
    return _loss(BCEWithLogitsLoss(), nn.BCEWithLogitsLoss(), 3 * normal(rng, *s), rng.uniform(0, 1, s))


def smooth_l1_loss(rng):
    beta = float(rng.uniform(0.5, 1.5))
    s = (4, 3)
    return _loss(SmoothL1Loss(beta=beta), nn.SmoothL1Loss(beta=beta), 2 * normal(rng, *s), normal(rng, *s))


def cross_entropy_probabilities(rng):
    n, c = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    p = rng.uniform(0, 1, (n, c, 2))
    return _loss(
        CrossEntropyLoss(label_smoothing=0.1, target="probabilities"),
        nn.CrossEntropyLoss(label_smoothing=0.1),
        normal(rng, n, c, 2),
        p / p.sum(axis=1, keepdims=True),
    )


def kl_div_batchmean(rng):
    s = (3, int(rng.integers(2, 5)))
    p = rng.uniform(0, 1, s)
    p[0, 0] = 0.0
    return _loss(
        KLDivLoss(reduction="batchmean"),
        nn.KLDivLoss(reduction="batchmean"),
        torch.log_softmax(torch.tensor(normal(rng, *s)), 1).numpy(),
        p / p.sum(axis=1, keepdims=True),
    )


CASES: dict[str, Callable[[np.random.Generator], Instance]] = {
    f.__name__: f
    for f in [
        conv1d,
        conv1d_same_no_bias,
        conv_transpose2d,
        batchnorm1d_2d,
        batchnorm1d_3d,
        layernorm,
        layernorm_2d_shape,
        groupnorm_4d,
        groupnorm_3d,
        rmsnorm,
        embedding,
        maxpool1d,
        adaptive_avg_pool2d,
        adaptive_avg_pool2d_any_size,
        adaptive_avg_pool2d_global,
        silu,
        gelu_tanh,
        log_softmax,
        mha_cross,
        mha_self_causal,
        mha_additive_mask_no_bias,
        mha_bool_mask,
        transformer_block,
        mlp,
        mse_loss,
        l1_loss_sum,
        huber_loss,
        cross_entropy,
        cross_entropy_none,
        nll_loss,
        cross_entropy_4d_ignore_index,
        nll_loss_3d_ignore_sum,
        cross_entropy_none_3d,
        bce_with_logits,
        smooth_l1_loss,
        cross_entropy_probabilities,
        kl_div_batchmean,
    ]
}


# --------------------------------------------------------------------- harness
#: one shared backend per (variant, dtype)
backend = variant_backend


def wrap(inst: Instance) -> tuple[Model, str]:
    """The block in a model whose checked inputs are parameters (so evaluate returns their gradients)."""
    block = inst.block
    conns = {k: IOKey(k, role="param") if k in inst.diff else IOKey(k) for k in inst.inputs}
    model = Model()
    model |= block(**conns, output=IOKey("output"))
    return model, block._local_name


def close(got: Any, want: np.ndarray, dtype: str, what: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    tol = TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


def torch_twin(inst: Instance, held: Mapping[str, np.ndarray], prefix: str) -> tuple[Any, dict[str, Any]]:
    """The float64 torch module with the zoo's parameter values, and the mapping torch name -> zoo key."""
    module = inst.module.double()
    sd = module.state_dict()
    keys = {}
    for tname in sd:
        if tname.endswith("num_batches_tracked"):
            continue
        keys[tname] = f"{prefix}.{inst.names.get(tname, tname)}"
    missing = sorted(v for v in keys.values() if v not in held)
    assert not missing, f"torch parameters with no zoo counterpart: {missing}; zoo has {sorted(held)}"
    module.load_state_dict({t: torch.tensor(held[k]) for t, k in keys.items()}, strict=False)
    return module, keys


#: (backend, dtype) pairs: every backend in float64 and float32; torch.autograd's gradients in float64
TARGETS = [(b, d) for b in VARIANTS for d in ("float64", "float32") if (b, d) != ("torch-autograd", "float32")]


@pytest.mark.parametrize("backend_name,dtype", TARGETS, ids=[f"{b}-{d}" for b, d in TARGETS])
@pytest.mark.parametrize("case", sorted(CASES))
def test_zoo_block_matches_torch_nn(case: str, backend_name: str, dtype: str) -> None:
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    inst = CASES[case](rng)
    be = backend(backend_name, dtype)
    model, prefix = wrap(inst)
    # jax runs jitted (one XLA program per graph): op-by-op dispatch would dominate the file's runtime
    pm = ml.compile(model, be, shapes={k: list(np.shape(v)) for k, v in inst.inputs.items()}, jit=backend_name == "jax")
    params = pm.randomize_params(seed=1)
    for k, v in inst.state.items():
        params[f"{prefix}.{k}"] = be.array(v)
    inputs = {k: be.array(v) for k, v in inst.inputs.items() if k not in inst.diff}
    for k in inst.diff:
        params[k] = be.array(inst.inputs[k])
    held = {k: be.to_numpy(v) for k, v in {**params, **inputs}.items()}
    held = {
        k: v.astype(np.float64) if v.dtype.kind == "f" else v.astype(np.int64) if v.dtype.kind in "iu" else v
        for k, v in held.items()
    }

    module, keys = torch_twin(inst, held, prefix)
    module.train(inst.training)
    t_in = {k: torch.tensor(held[k], requires_grad=k in inst.diff) for k in inst.inputs}
    call = inst.call or (lambda m, t: m(t["input"]))
    ref = call(module, t_in)
    out_shape = tuple(ref.shape)
    cot = rng.standard_normal(out_shape)
    (ref * torch.tensor(cot)).sum().backward()

    result = pm.evaluate(params, inputs, {"output": be.array(cot)}, return_state=bool(pm.state_keys))
    out, grads = result[0], result[1]
    close(be.to_numpy(out["output"]), ref.detach().numpy(), dtype, "output")
    tparams = dict(module.named_parameters())
    for tname, key in keys.items():
        if tname in tparams:
            close(be.to_numpy(grads[key]), tparams[tname].grad.numpy(), dtype, f"d/d {key}")
    for k in inst.diff:
        close(be.to_numpy(grads[k]), t_in[k].grad.numpy(), dtype, f"d/d input {k}")
    if pm.state_keys:
        state = result[2]
        for tname, key in keys.items():
            if key in state:
                close(be.to_numpy(state[key]), module.state_dict()[tname].numpy(), dtype, f"state {key}")
    if inst.check_inference:
        module.eval()
        params = {
            **params,
            **{keys[t]: be.array(module.state_dict()[t].numpy()) for t in keys if keys[t] in pm.state_keys},
        }
        with torch.no_grad():
            ref_eval = call(module, {k: torch.tensor(held[k]) for k in inst.inputs})
        close(
            be.to_numpy(pm.evaluate(params, inputs, training=False)["output"]),
            ref_eval.numpy(),
            dtype,
            "output (inference)",
        )


# ------------------------------------------------------------------- errors
def test_shape_errors_name_the_problem() -> None:
    from mithril.errors import ModelBuildError, ShapeMismatchError

    be = ml.NumpyBackend(dtype=ml.float64)
    with pytest.raises(ModelBuildError, match="output_size"):
        AdaptiveAvgPool2d((2, 0))
    with pytest.raises(ShapeMismatchError, match="input"):
        ml.compile(AdaptiveAvgPool2d(3), be, shapes={"input": [4]})  # needs [..., H, W]
    with pytest.raises(ModelBuildError, match="num_heads"):
        MultiHeadAttention(6, 4)
    with pytest.raises(ModelBuildError, match="num_groups"):
        GroupNorm(3, 4)
    with pytest.raises(ModelBuildError, match="activation"):
        MLP([3, 2], activations="swishy")


def test_int_indices_are_inferred_from_the_primitive() -> None:
    """Embedding/CrossEntropyLoss inputs are int because gather_rows/gather_last say so."""
    be = ml.NumpyBackend(dtype=ml.float64)
    pm = ml.compile(Embedding(5, 2), be, shapes={"input": [3]})
    params = pm.randomize_params(seed=0)
    out = pm.evaluate(params, {"input": np.array([0, 4, 4])})["output"]
    np.testing.assert_array_equal(out, params["weight"][[0, 4, 4]])
    from mithril.errors import DTypeMismatchError, EvaluationError

    with pytest.raises((DTypeMismatchError, EvaluationError), match="int"):
        pm.evaluate(params, {"input": np.array([0.0, 1.0, 2.0])})


# --------------------------------------------------------------- safetensors
@pytest.mark.parametrize("backend_name", INSTALLED)
def test_safetensors_round_trip(backend_name: str, tmp_path: Any) -> None:
    pytest.importorskip("safetensors")
    from mithril.io import load_params, save_params

    be = backend(backend_name, "float32")
    pm = ml.compile(BatchNorm1d(3), be, shapes={"input": [4, 3]})
    params = pm.randomize_params(seed=0)
    path = tmp_path / "bn.safetensors"
    save_params(params, path, be, metadata={"model": "BatchNorm1d"})
    loaded = load_params(path, be)
    assert set(loaded) == set(params) == {*pm.param_keys, *pm.state_keys}
    for k in params:
        got, want = be.to_numpy(loaded[k]), be.to_numpy(params[k])
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    x = {"input": be.array(np.random.default_rng(0).standard_normal((4, 3)))}
    np.testing.assert_array_equal(
        be.to_numpy(pm.evaluate(loaded, x)["output"]), be.to_numpy(pm.evaluate(params, x)["output"])
    )
    assert load_params(path, rename=lambda n: None if n.startswith("running") else n.upper()).keys() == {
        "WEIGHT",
        "BIAS",
    }


def test_a_torch_checkpoint_loads_by_name(tmp_path: Any) -> None:
    """A state dict saved by safetensors.torch fills the params of the matching zoo block."""
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    from mithril.io import load_params

    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=True).double()
    save_file({k: v.contiguous() for k, v in layer.state_dict().items()}, str(tmp_path / "layer.safetensors"))
    be = ml.NumpyBackend(dtype=ml.float64)
    pm = ml.compile(TransformerBlock(8, 2, 16), be, shapes={"input": [2, 3, 8]})
    params = load_params(tmp_path / "layer.safetensors", be)
    assert set(params) == set(pm.param_keys)
    x = np.random.default_rng(0).standard_normal((2, 3, 8))
    want = layer(torch.tensor(x)).detach().numpy()
    close(pm.evaluate(params, {"input": x})["output"], want, "float64", "output")


# ------------------------------------------- gradient rules of the transposes
def _primitive_model(prim: str, diff: Mapping[str, tuple[int, ...]], other: Mapping[str, Any], **attrs: Any) -> Model:
    from mithril.models import primitive_block

    block = primitive_block(prim, **attrs)
    model = Model()
    conns = {k: IOKey(k, role="param", shape=list(s)) for k, s in diff.items()}
    conns.update({k: IOKey(k, shape=list(np.shape(v))) for k, v in other.items()})
    model |= block(**conns, output=IOKey("output"))
    return model


PRIMITIVE_GRADIENT_CASES = {
    # conv2d_input_grad(grad, weight): its forward is torch.nn.grad.conv2d_input
    "conv2d_input_grad": (
        {"grad": (2, 4, 3, 2), "weight": (4, 3, 3, 2)},
        {},
        dict(input_shape=(2, 6, 6, 4), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
        lambda t, a: torch.nn.grad.conv2d_input(
            a["input_shape"], t["weight"], t["grad"], a["stride"], a["padding"], a["dilation"], a["groups"]
        ),
    ),
    "scatter_add_rows": (
        {"grad": (3, 2, 4)},
        {"indices": np.array([[0, 2], [2, 2], [4, 0]])},
        dict(num_rows=5),
        lambda t, a: torch.zeros(5, 4, dtype=torch.float64).index_add(
            0, t["indices"].reshape(-1), t["grad"].reshape(-1, 4)
        ),
    ),
    "scatter_last": (
        {"grad": (3, 2)},
        {"indices": np.array([[0, 2], [1, 1], [3, 0]])},
        dict(size=4),
        lambda t, a: torch.zeros(3, 2, 4, dtype=torch.float64).scatter(
            -1, t["indices"][..., None], t["grad"][..., None]
        ),
    ),
}


@pytest.mark.parametrize("backend_name", VARIANTS)
@pytest.mark.parametrize("prim", sorted(PRIMITIVE_GRADIENT_CASES))
def test_gradient_rules_of_transposed_primitives(prim: str, backend_name: str) -> None:
    """The vjp rules this work adds (conv2d_input_grad's among them) against torch autograd, in float64."""
    diff, other, attrs, torch_fn = PRIMITIVE_GRADIENT_CASES[prim]
    rng = np.random.default_rng(zlib.crc32(prim.encode()))
    be = backend(backend_name, "float64")
    pm = ml.compile(_primitive_model(prim, diff, other, **attrs), be, jit=backend_name == "jax")
    values = {k: rng.standard_normal(s) for k, s in diff.items()}
    params = {k: be.array(v) for k, v in values.items()}
    inputs = {k: be.array(v) for k, v in other.items()}
    t = {k: torch.tensor(v, requires_grad=True) for k, v in values.items()}
    t.update({k: torch.tensor(v) for k, v in other.items()})
    ref = torch_fn(t, attrs)
    cot = rng.standard_normal(tuple(ref.shape))
    (ref * torch.tensor(cot)).sum().backward()
    out, grads = pm.evaluate(params, inputs, {"output": be.array(cot)})
    close(be.to_numpy(out["output"]), ref.detach().numpy(), "float64", "output")
    for k in diff:
        close(be.to_numpy(grads[k]), t[k].grad.numpy(), "float64", f"d/d {k}")


def test_zoo_blocks_compose_at_build_time() -> None:
    """Rank-agnostic blocks accept a rank-2 producer (no declared [N, C, ...] meets a rule's [..., d])."""
    from mithril.errors import ShapeMismatchError

    model = Model()
    model |= MLP([3])
    model += BatchNorm1d(3)
    model += GroupNorm(3, 3)
    model += CrossEntropyLoss()(target="labels", output=IOKey("loss"))
    be = ml.NumpyBackend(dtype=ml.float64)
    pm = ml.compile(model, be, shapes={"input": [4, 5]})
    out = pm.evaluate(pm.randomize_params(seed=0), {"input": np.ones((4, 5)), "labels": np.array([0, 1, 2, 0])})
    assert np.isclose(out["loss"], math.log(3.0))  # constant input: normalised to 0, uniform logits
    with pytest.raises(ShapeMismatchError, match="5"):
        ml.compile(BatchNorm1d(3), be, shapes={"input": [4, 5]})
