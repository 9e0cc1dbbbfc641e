"""Hugging Face GPT-2 weights to and from the zoo's :class:`~mithril.models.zoo.gpt2.GPT2`.

* ``gpt2_from_hf(state_dict)``: a ``GPT2LMHeadModel`` (or ``GPT2Model``) state dict of
  torch tensors or arrays -> a params dict of NumPy arrays under the zoo's names.
  ``Conv1D`` weights (``[in, out]``) are transposed to ``[out, in]``; the attention
  buffers (``attn.bias``, ``attn.masked_bias``) of older checkpoints are dropped; a
  ``lm_head.weight`` must equal ``wte`` (GPT-2 ties them).
* ``gpt2_to_hf(params)``: the inverse, ready for ``GPT2LMHeadModel.load_state_dict``.
* ``gpt2_config_from_hf(config)``: the zoo's config from a ``transformers.GPT2Config``
  (or its ``to_dict()``).

Neither torch nor transformers is imported at module import time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ParamsError, UnsupportedError
from ..models.zoo.gpt2 import ACTIVATIONS, GPT2Config
from ._arrays import numpy_copy

PREFIX = "transformer."
HEAD = "lm_head.weight"
#: Mithril names whose Hugging Face weight is a Conv1D ``[in, out]``
CONV1D = re.compile(r"^transformer\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
BUFFERS = re.compile(r"^transformer\.h\.\d+\.attn\.(bias|masked_bias)$")
LAYOUTS = ("GPT2LMHeadModel", "GPT2Model")
#: Hugging Face config options that change GPT-2's computation -> the only value the zoo supports
FIXED_OPTIONS = {
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
}


def _infer_config(arrays: Mapping[str, np.ndarray], hf_layout: bool, where: str) -> GPT2Config:
    """Sizes read from Mithril-named arrays (Conv1D weights ``[in, out]`` if ``hf_layout``).

    The head count cannot be read from shapes: the config has ``n_head=1``, for checking shapes only.
    """
    for key in ("transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.mlp.c_fc.weight"):
        if key not in arrays:
            raise ParamsError(f"{where}: missing key {key!r} (got {len(arrays)} keys)")
        if np.ndim(arrays[key]) != 2:
            raise ParamsError(f"{where}: {key} has shape {list(np.shape(arrays[key]))}, expected rank 2")
    (vocab, embd), (positions, _) = arrays["transformer.wte.weight"].shape, arrays["transformer.wpe.weight"].shape
    layers = 1 + max(int(m.group(1)) for k in arrays if (m := re.match(r"^transformer\.h\.(\d+)\.", k)))
    inner = arrays["transformer.h.0.mlp.c_fc.weight"].shape[1 if hf_layout else 0]
    return GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=embd, n_layer=layers, n_head=1, n_inner=inner)


def _check(arrays: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], where: str, layout: str) -> None:
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise ParamsError(
            f"{where}: missing key(s) {missing[:8]}{' ...' if len(missing) > 8 else ''} "
            f"({len(missing)} of {len(expected)}, {layout} layout)"
        )
    unexpected = sorted(set(arrays) - set(expected))
    if unexpected:
        raise ParamsError(
            f"{where}: unexpected key(s) {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''} ({layout} layout)"
        )
    for k, shape in expected.items():
        if tuple(arrays[k].shape) != shape:
            raise ParamsError(
                f"{where}: {k} has shape {list(arrays[k].shape)}, expected {list(shape)} ({layout} layout)"
            )


def _hf_layout(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    return {k: s[::-1] if CONV1D.match(k) else s for k, s in shapes.items()}


def gpt2_from_hf(state_dict: Mapping[str, Any], config: GPT2Config | None = None) -> dict[str, np.ndarray]:
    """A Hugging Face GPT-2 state dict -> params of :class:`~mithril.models.zoo.gpt2.GPT2` (NumPy arrays).

    Keys may carry the ``transformer.`` prefix (``GPT2LMHeadModel``) or not (``GPT2Model``).
    Sizes come from the arrays, or are checked against ``config``. Raises
    :class:`~mithril.errors.ParamsError` naming the key for missing, unexpected or
    mis-shaped entries, and for a ``lm_head.weight`` that differs from ``wte`` (untied head).
    """
    prefixed = [k for k in state_dict if k.startswith(PREFIX)]
    if prefixed and len(prefixed) != sum(1 for k in state_dict if k != HEAD):
        stray = sorted(k for k in state_dict if k != HEAD and not k.startswith(PREFIX))
        raise ParamsError(
            f"gpt2_from_hf: keys mix the GPT2LMHeadModel ('transformer.' prefix) and GPT2Model layouts: {stray[:8]}"
        )
    arrays: dict[str, np.ndarray] = {}
    head = None
    for k, v in state_dict.items():
        if k == HEAD:
            head = numpy_copy(v, None, k)
            continue
        name = k if prefixed else PREFIX + k
        if not BUFFERS.match(name):
            arrays[name] = numpy_copy(v, None, k)
    cfg = config if config is not None else _infer_config(arrays, True, "gpt2_from_hf")
    _check(arrays, _hf_layout(cfg.param_shapes()), "gpt2_from_hf", "Hugging Face")
    wte = arrays["transformer.wte.weight"]
    if head is not None and (head.shape != wte.shape or not np.array_equal(head, wte)):
        raise ParamsError(
            f"gpt2_from_hf: {HEAD} (shape {list(head.shape)}) differs from transformer.wte.weight "
            f"(shape {list(wte.shape)}): the head is not tied, and the Mithril GPT2 ties it"
        )
    return {k: np.ascontiguousarray(a.T) if CONV1D.match(k) else a for k, a in arrays.items()}


def gpt2_to_hf(
    params: Mapping[str, Any], backend: Any = None, *, layout: str = "GPT2LMHeadModel", tensors: str = "torch"
) -> dict[str, Any]:
    """Params of :class:`~mithril.models.zoo.gpt2.GPT2` -> a Hugging Face state dict.

    ``layout="GPT2LMHeadModel"`` gives ``transformer.``-prefixed keys and ``lm_head.weight``
    (the same tensor as ``wte``), which ``GPT2LMHeadModel.load_state_dict(sd, strict=True)``
    accepts; ``"GPT2Model"`` gives the unprefixed keys of ``GPT2Model``. ``tensors="torch"``
    returns torch tensors (torch is imported then), ``"numpy"`` arrays. ``backend`` converts
    backend arrays (without it, torch tensors and anything ``np.asarray`` takes work).
    """
    if layout not in LAYOUTS:
        raise ParamsError(f"gpt2_to_hf: layout must be one of {LAYOUTS}, got {layout!r}")
    if tensors not in ("torch", "numpy"):
        raise ParamsError(f"gpt2_to_hf: tensors must be 'torch' or 'numpy', got {tensors!r}")
    arrays = {k: numpy_copy(v, backend, k) for k, v in params.items()}
    cfg = _infer_config(arrays, False, "gpt2_to_hf")
    _check(arrays, cfg.param_shapes(), "gpt2_to_hf", "Mithril")
    out: dict[str, Any] = {}
    for k, a in arrays.items():
        out[k if layout == "GPT2LMHeadModel" else k[len(PREFIX) :]] = (
            np.ascontiguousarray(a.T) if CONV1D.match(k) else a
        )
    if tensors == "torch":
        try:
            import torch
        except ImportError:  # pragma: no cover - depends on the environment
            raise UnsupportedError("gpt2_to_hf(tensors='torch') needs torch; use tensors='numpy'") from None
        out = {k: torch.from_numpy(np.array(a)) for k, a in out.items()}
    if layout == "GPT2LMHeadModel":
        out[HEAD] = out["transformer.wte.weight"]
    return out


def gpt2_config_from_hf(config: Any) -> GPT2Config:
    """The zoo's :class:`~mithril.models.zoo.gpt2.GPT2Config` from a ``transformers.GPT2Config``
    (or its ``to_dict()``). Options the zoo does not implement raise
    :class:`~mithril.errors.UnsupportedError` naming them."""

    def get(key: str, default: Any = None) -> Any:
        return config.get(key, default) if isinstance(config, Mapping) else getattr(config, key, default)

    for option, supported in FIXED_OPTIONS.items():
        value = get(option, supported)
        if value is not None and bool(value) != supported:
            raise UnsupportedError(
                f"gpt2_config_from_hf: {option}={value!r} is not supported "
                f"(the Mithril GPT2 implements {option}={supported})"
            )
    act = get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise UnsupportedError(
            f"gpt2_config_from_hf: activation_function {act!r} is not supported; supported: {sorted(ACTIVATIONS)}"
        )
    fields = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
    missing = [f for f in fields if get(f) is None]
    if missing:
        raise ParamsError(f"gpt2_config_from_hf: the config has no {missing}")
    return GPT2Config(
        **{f: int(get(f)) for f in fields},
        n_inner=get("n_inner"),
        layer_norm_epsilon=float(get("layer_norm_epsilon", 1e-5)),
        activation_function=act,
        initializer_range=float(get("initializer_range", 0.02)),
    )


__all__ = ["gpt2_config_from_hf", "gpt2_from_hf", "gpt2_to_hf"]
