"""The zoo's GPT-2 against Hugging Face's ``GPT2LMHeadModel``, and the weight converter.

Tiny randomly initialised Hugging Face models (no download) in ``eval()`` mode (no
dropout) are the oracle: their state dict goes through ``gpt2_from_hf`` into the
Mithril model on every installed backend (torch also with torch.autograd's
gradients); logits and every parameter gradient (HF's autograd gradients mapped
through the same converter, so Conv1D gradients are transposed) must agree, float64
within 1e-9 and float32 within 1e-4 relative to the reference's magnitude.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.errors import ModelBuildError, ParamsError, UnsupportedError
from mithril.io import gpt2_config_from_hf, gpt2_from_hf, gpt2_to_hf
from mithril.models import CrossEntropyLoss, GPT2Config, IOKey, gpt2
from mithril.testing.variants import installed, variant_backend, variants

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

INSTALLED = installed()
VARIANTS = variants()
TOL = {"float64": 1e-9, "float32": 1e-4}
#: tiny Hugging Face configs: two head counts, a custom MLP width, another epsilon and activation
HF_CONFIGS = {
    "l2-h4": dict(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=16),
    "l1-h2-inner": dict(
        n_layer=1,
        n_embd=24,
        n_head=2,
        vocab_size=53,
        n_positions=12,
        n_inner=40,
        layer_norm_epsilon=1e-3,
        activation_function="gelu_pytorch_tanh",
    ),
}
#: (backend, dtype, config): each backend runs one config in float64 and the other in float32 (torch.autograd:
#: both in float64); the fast backends also run the second config in float64, jax (a jit compile per case) not
CASES = [
    (b, d, c)
    for b in VARIANTS
    for d, c in (("float64", "l2-h4"), ("float32", "l1-h2-inner"), ("float64", "l1-h2-inner"))
    if not (b == "torch-autograd" and d == "float32") and not (b == "jax" and (d, c) == ("float64", "l1-h2-inner"))
]


def hf_model(config: str, *, head: bool = True, dtype: Any = None) -> Any:
    """A seeded random Hugging Face GPT-2 in eval mode (float64 unless ``dtype``)."""
    torch.manual_seed(zlib.crc32(config.encode()))
    hf_cfg = transformers.GPT2Config(**HF_CONFIGS[config], bos_token_id=0, eos_token_id=0)
    cls = transformers.GPT2LMHeadModel if head else transformers.GPT2Model
    return cls(hf_cfg).to(dtype or torch.float64).eval()


#: one shared backend per (variant, dtype)
backend = variant_backend


def close(got: Any, want: Any, dtype: str, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=what)


def hf_reference(hf: Any, ids: np.ndarray, cot: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """HF logits and d(sum(logits * cot))/d params, mapped to Mithril names and layout."""
    hf.zero_grad()
    logits = hf(torch.tensor(ids)).logits
    (logits * torch.tensor(cot)).sum().backward()
    return logits.detach().numpy(), gpt2_from_hf({k: p.grad for k, p in hf.named_parameters()})


# ------------------------------------------------------------------ parity
@pytest.mark.parametrize("backend_name,dtype,config", CASES, ids=["-".join(c) for c in CASES])
def test_logits_and_gradients_match_hugging_face(backend_name: str, dtype: str, config: str) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{backend_name}{dtype}{config}".encode()))
    hf = hf_model(config)
    cfg = gpt2_config_from_hf(hf.config)
    params = gpt2_from_hf(hf.state_dict())
    batch, length = int(rng.integers(1, 4)), int(rng.integers(1, cfg.n_positions + 1))
    ids = rng.integers(0, cfg.vocab_size, (batch, length))
    cot = rng.standard_normal((batch, length, cfg.vocab_size))

    be = backend(backend_name, dtype)
    pm = ml.compile(gpt2(cfg), be, shapes={"input": [batch, length]}, jit=backend_name == "jax")
    assert dict(pm.param_shapes) == cfg.param_shapes()
    # the reference runs on the values the backend holds (float32-rounded for float32)
    held = {k: be.array(v) for k, v in params.items()}
    hf.load_state_dict(gpt2_to_hf({k: be.to_numpy(v).astype(np.float64) for k, v in held.items()}))
    want_logits, want_grads = hf_reference(hf, ids, cot)

    out, grads = pm.evaluate(held, {"input": be.array(ids)}, {"output": be.array(cot)})
    close(be.to_numpy(out["output"]), want_logits, dtype, f"logits (T={length})")
    assert set(grads) == set(want_grads)
    for k, want in want_grads.items():
        close(be.to_numpy(grads[k]), want, dtype, f"d/d {k}")


def test_every_sequence_length_up_to_n_positions() -> None:
    """Positions 0..T-1 come from the input's length: every T from 1 to n_positions."""
    hf = hf_model("l1-h2-inner")
    cfg = gpt2_config_from_hf(hf.config)
    params = gpt2_from_hf(hf.state_dict())
    be = backend("numpy", "float64")
    model = gpt2(cfg)
    rng = np.random.default_rng(7)
    for length in range(1, cfg.n_positions + 1):
        ids = rng.integers(0, cfg.vocab_size, (2, length))
        got = ml.compile(model, be, shapes={"input": [2, length]}).evaluate(params, {"input": ids})["output"]
        with torch.no_grad():
            close(got, hf(torch.tensor(ids)).logits.numpy(), "float64", f"logits (T={length})")


@pytest.mark.parametrize("backend_name", [b for b in VARIANTS if b != "jax"])
def test_next_token_cross_entropy_matches_hugging_face_loss(backend_name: str) -> None:
    """GPT2 + CrossEntropyLoss over next tokens equals HF's ``labels=`` loss, gradients included."""
    hf = hf_model("l2-h4")
    cfg = gpt2_config_from_hf(hf.config)
    b, t, v = 2, 9, cfg.vocab_size
    lm = gpt2(cfg)  # extended in place: its parameter names stay those of the converter
    logits = lm.call("slice", "output", starts=(None, 0), stops=(None, -1), steps=(None, None))  # drop the last
    lm |= CrossEntropyLoss()(input=lm.call("reshape", logits, shape=(-1, v)), target="targets", output=IOKey("loss"))
    be = backend(backend_name, "float64")
    pm = ml.compile(lm, be, shapes={"input": [b, t], "targets": [b * (t - 1)]})
    assert pm.output_keys == ("loss",)
    ids = np.random.default_rng(3).integers(0, v, (b, t))
    params = {k: be.array(a) for k, a in gpt2_from_hf(hf.state_dict()).items()}
    out, grads = pm.evaluate(
        params,
        {"input": be.array(ids), "targets": be.array(ids[:, 1:].reshape(-1))},
        {"loss": be.array(np.float64(1.0))},
    )

    hf.zero_grad()
    t_ids = torch.tensor(ids)
    result = hf(t_ids, labels=t_ids)  # HF shifts the labels itself (and computes its loss in float32)
    loss = torch.nn.functional.cross_entropy(result.logits[:, :-1].reshape(-1, v), t_ids[:, 1:].reshape(-1))
    loss.backward()
    close(be.to_numpy(out["loss"]), loss.item(), "float64", "loss")
    close(be.to_numpy(out["loss"]), result.loss.item(), "float32", "HF's own loss")
    for k, want in gpt2_from_hf({k: p.grad for k, p in hf.named_parameters()}).items():
        close(be.to_numpy(grads[k]), want, "float64", f"d loss/d {k}")


# --------------------------------------------------------------- converter
def test_round_trip_and_loading_into_hugging_face() -> None:
    hf = hf_model("l2-h4", dtype=torch.float32)
    sd = hf.state_dict()
    params = gpt2_from_hf(sd)
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in params.values())
    # Conv1D [in, out] -> [out, in]; the head is tied, not a separate parameter
    np.testing.assert_array_equal(
        params["transformer.h.0.mlp.c_fc.weight"], sd["transformer.h.0.mlp.c_fc.weight"].numpy().T
    )
    assert "lm_head.weight" not in params
    back = gpt2_to_hf(params)
    assert set(back) == set(sd)
    for k, t in sd.items():
        assert isinstance(back[k], torch.Tensor) and back[k].dtype == t.dtype
        torch.testing.assert_close(back[k], t, rtol=0, atol=0, msg=k)
    fresh = transformers.GPT2LMHeadModel(hf.config).eval()
    fresh.load_state_dict(back, strict=True)
    ids = torch.tensor(np.random.default_rng(0).integers(0, 97, (1, 5)))
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, hf(ids).logits, rtol=0, atol=0)
    as_numpy = gpt2_to_hf(params, tensors="numpy")
    assert all(isinstance(a, np.ndarray) for a in as_numpy.values())


def test_gpt2model_layout_and_old_buffers() -> None:
    """GPT2Model keys (no ``transformer.`` prefix) convert; older checkpoints' attention buffers are dropped."""
    base = hf_model("l1-h2-inner", head=False)
    sd = dict(base.state_dict())
    sd["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 12, 12, dtype=torch.bool))
    sd["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    params = gpt2_from_hf(sd)
    assert set(params) == set(gpt2_config_from_hf(base.config).param_shapes())
    back = gpt2_to_hf(params, layout="GPT2Model")
    assert set(back) == set(base.state_dict())
    base.load_state_dict(back, strict=True)


def test_backend_arrays_convert_back() -> None:
    """Params held by a backend (torch tensors here) go back through ``backend``."""
    hf = hf_model("l2-h4")
    be = backend("torch", "float64") if "torch" in INSTALLED else backend("numpy", "float64")
    params = {k: be.array(a) for k, a in gpt2_from_hf(hf.state_dict()).items()}
    back = gpt2_to_hf(params, be)
    for k, t in hf.state_dict().items():
        torch.testing.assert_close(back[k], t, rtol=0, atol=0, msg=k)


def test_converter_errors_name_the_key() -> None:
    sd = dict(hf_model("l2-h4").state_dict())
    params = gpt2_from_hf(sd)

    missing = {k: v for k, v in sd.items() if k != "transformer.h.1.ln_2.bias"}
    with pytest.raises(ParamsError, match=r"transformer\.h\.1\.ln_2\.bias"):
        gpt2_from_hf(missing)
    with pytest.raises(ParamsError, match=r"transformer\.wte\.weight"):
        gpt2_from_hf({k: v for k, v in sd.items() if "wte" not in k and k != "lm_head.weight"})
    wrong = {**sd, "transformer.h.0.attn.c_attn.weight": sd["transformer.h.0.attn.c_attn.weight"].T}
    with pytest.raises(
        ParamsError,
        match=r"transformer\.h\.0\.attn\.c_attn\.weight has shape \[96, 32\], "
        r"expected \[32, 96\]",
    ):
        gpt2_from_hf(wrong)
    with pytest.raises(ParamsError, match=r"unexpected key\(s\) \['transformer\.h\.0\.attn\.extra'\]"):
        gpt2_from_hf({**sd, "transformer.h.0.attn.extra": torch.zeros(3)})
    untied = {**sd, "lm_head.weight": sd["lm_head.weight"] + 1.0}
    with pytest.raises(ParamsError, match=r"lm_head.weight.*not tied"):
        gpt2_from_hf(untied)
    with pytest.raises(ParamsError, match="mix"):
        gpt2_from_hf({**sd, "h.0.ln_1.weight": sd["transformer.h.0.ln_1.weight"]})
    with pytest.raises(ParamsError, match=r"transformer\.wte\.weight has shape \[97, 32\], expected \[90, 32\]"):
        gpt2_from_hf(sd, GPT2Config(vocab_size=90, n_positions=16, n_embd=32, n_layer=2, n_head=4))

    with pytest.raises(ParamsError, match=r"missing key\(s\) \['transformer\.ln_f\.bias'\]"):
        gpt2_to_hf({k: v for k, v in params.items() if k != "transformer.ln_f.bias"}, tensors="numpy")
    square = dict(params, **{"transformer.h.1.mlp.c_proj.weight": params["transformer.h.1.mlp.c_fc.weight"]})
    with pytest.raises(ParamsError, match=r"transformer\.h\.1\.mlp\.c_proj\.weight has shape \[128, 32\]"):
        gpt2_to_hf(square, tensors="numpy")
    with pytest.raises(ParamsError, match="layout"):
        gpt2_to_hf(params, layout="GPT2ForSequenceClassification")


def test_config_conversion() -> None:
    hf_cfg = hf_model("l1-h2-inner").config
    cfg = gpt2_config_from_hf(hf_cfg)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_positions, cfg.inner_dim) == (
        hf_cfg.n_layer,
        hf_cfg.n_embd,
        hf_cfg.n_head,
        hf_cfg.vocab_size,
        hf_cfg.n_positions,
        hf_cfg.n_inner,
    )
    assert cfg.layer_norm_epsilon == hf_cfg.layer_norm_epsilon
    assert gpt2_config_from_hf(hf_cfg.to_dict()) == cfg
    with pytest.raises(UnsupportedError, match="scale_attn_by_inverse_layer_idx"):
        gpt2_config_from_hf({**hf_cfg.to_dict(), "scale_attn_by_inverse_layer_idx": True})
    with pytest.raises(UnsupportedError, match="tie_word_embeddings"):
        gpt2_config_from_hf({**hf_cfg.to_dict(), "tie_word_embeddings": False})
    with pytest.raises(UnsupportedError, match="swish"):
        gpt2_config_from_hf({**hf_cfg.to_dict(), "activation_function": "swish"})


# ------------------------------------------------------------------ builder
def test_builder_checks_its_config() -> None:
    with pytest.raises(ModelBuildError, match="n_embd 30 not divisible by n_head 4"):
        GPT2Config(n_embd=30, n_head=4)
    with pytest.raises(ModelBuildError, match="activation_function"):
        GPT2Config(activation_function="swish")
    with pytest.raises(ModelBuildError, match="n_layer"):
        GPT2Config(n_layer=0)
    with pytest.raises(ModelBuildError, match=r"unknown config field\(s\) \['n_layers'\]"):
        gpt2(n_layers=2)
    small = gpt2(GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2), n_layer=3)
    assert small.config.n_layer == 3


def test_random_init_follows_gpt2() -> None:
    """randomize_params: N(0, 0.02²) weights, residual projections scaled by 1/sqrt(2 n_layer), LN ones."""
    cfg = GPT2Config(vocab_size=301, n_positions=64, n_embd=64, n_layer=2, n_head=4)
    pm = ml.compile(gpt2(cfg), backend("numpy", "float64"), shapes={"input": [1, 4]})
    p = pm.randomize_params(seed=0)
    assert abs(np.std(p["transformer.wte.weight"]) / cfg.initializer_range - 1) < 0.05
    assert abs(np.std(p["transformer.h.1.mlp.c_proj.weight"]) * 2 / cfg.initializer_range - 1) < 0.05
    np.testing.assert_array_equal(p["transformer.h.0.ln_1.weight"], np.ones(cfg.n_embd))
    np.testing.assert_array_equal(p["transformer.h.0.attn.c_attn.bias"], np.zeros(3 * cfg.n_embd))
