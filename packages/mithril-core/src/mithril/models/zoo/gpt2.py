"""GPT-2 in the Hugging Face layout: parameter names of ``GPT2LMHeadModel``'s state dict.

``gpt2(GPT2Config(...))`` builds the language model: int token ids ``input [B, T]``
(``T <= n_positions``) to logits ``output [B, T, vocab_size]``. Parameters::

    transformer.wte.weight  [vocab_size, n_embd]   (also the head: logits = h @ wte.T)
    transformer.wpe.weight  [n_positions, n_embd]
    transformer.h.{i}.ln_1.weight / .bias, transformer.h.{i}.ln_2.weight / .bias
    transformer.h.{i}.attn.c_attn.weight [3 n_embd, n_embd], .bias [3 n_embd]
    transformer.h.{i}.attn.c_proj.weight [n_embd, n_embd], .bias
    transformer.h.{i}.mlp.c_fc.weight [inner, n_embd], .bias; mlp.c_proj.weight [n_embd, inner], .bias
    transformer.ln_f.weight / .bias

Weights are in Mithril's linear layout ``[out, in]`` (torch.nn.Linear); Hugging Face's
``Conv1D`` stores ``[in, out]``: :mod:`mithril.io.huggingface` converts. No dropout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import ModelBuildError
from ..connections import Initializer, IOKey, TerminalRef, zeros
from ..model import Model
from ..primitive_blocks import Gelu, Relu
from .norm import LayerNorm

#: Hugging Face ``activation_function`` values this builder supports -> Gelu approximation (None: Relu)
ACTIVATIONS: dict[str, str | None] = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none", "relu": None}


@dataclass(frozen=True)
class GPT2Config:
    """Sizes of a GPT-2 (the fields of Hugging Face's ``GPT2Config`` that shape the model).

    ``n_inner`` is the MLP width (None: ``4 * n_embd``); ``initializer_range`` the std of
    the random weights (``randomize_params``), as Hugging Face initialises GPT-2.
    """

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        for f in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            v = getattr(self, f)
            if not isinstance(v, int) or v <= 0:
                raise ModelBuildError(f"GPT2Config: {f} must be a positive int, got {v!r}")
        if self.n_inner is not None and (not isinstance(self.n_inner, int) or self.n_inner <= 0):
            raise ModelBuildError(f"GPT2Config: n_inner must be a positive int or None, got {self.n_inner!r}")
        if self.n_embd % self.n_head:
            raise ModelBuildError(f"GPT2Config: n_embd {self.n_embd} not divisible by n_head {self.n_head}")
        if self.activation_function not in ACTIVATIONS:
            raise ModelBuildError(
                f"GPT2Config: activation_function must be one of {sorted(ACTIVATIONS)}, "
                f"got {self.activation_function!r}"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter of :class:`GPT2` with its shape (Mithril layout), in model order."""
        e, inner = self.n_embd, self.inner_dim
        shapes: dict[str, tuple[int, ...]] = {
            "transformer.wte.weight": (self.vocab_size, e),
            "transformer.wpe.weight": (self.n_positions, e),
        }
        for i in range(self.n_layer):
            p = f"transformer.h.{i}."
            shapes.update(
                {
                    p + "ln_1.weight": (e,),
                    p + "ln_1.bias": (e,),
                    p + "attn.c_attn.weight": (3 * e, e),
                    p + "attn.c_attn.bias": (3 * e,),
                    p + "attn.c_proj.weight": (e, e),
                    p + "attn.c_proj.bias": (e,),
                    p + "ln_2.weight": (e,),
                    p + "ln_2.bias": (e,),
                    p + "mlp.c_fc.weight": (inner, e),
                    p + "mlp.c_fc.bias": (inner,),
                    p + "mlp.c_proj.weight": (e, inner),
                    p + "mlp.c_proj.bias": (e,),
                }
            )
        shapes.update({"transformer.ln_f.weight": (e,), "transformer.ln_f.bias": (e,)})
        return shapes


def normal_init(std: float) -> Initializer:
    """N(0, std²) (GPT-2's initialisation of weights and embeddings)."""
    return Initializer(lambda backend, shape, ref: backend.randn(*shape) * std, label=f"normal(0, {std}²)")


class _Projection(Model):
    """``input @ weight.T + bias``, weight ``[out, in]`` ~ N(0, std²), bias zeros (GPT-2's Conv1D, transposed)."""

    def __init__(self, out: int, inp: int, std: float, *, name: str) -> None:
        super().__init__(name=name)
        w = IOKey("weight", shape=[out, inp], role="param", init=normal_init(std))
        h = self.call("matmul", IOKey("input", shape=["...", inp]), self.call("transpose", w, axes=(1, 0)))
        self.call("add", h, IOKey("bias", shape=[out], role="param", init=zeros), output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class _Table(Model):
    """``weight[input]``: an embedding table ``weight [rows, dim]`` ~ N(0, std²)."""

    def __init__(self, rows: int, dim: int, std: float, *, name: str) -> None:
        super().__init__(name=name)
        w = IOKey("weight", shape=[rows, dim], role="param", init=normal_init(std))
        ids = self.call(
            "index_range",
            IOKey("input", dtype="int"),
            w,
            like_axis=0,
            block=type(self).__name__,
            names=("input", "weight"),
        )
        self.call("gather_rows", "weight", ids, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


def _layer_norm(cfg: GPT2Config, name: str) -> LayerNorm:
    return LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, name=name)


class GPT2Attention(Model):
    """Causal multi-head self-attention over ``[B, T, n_embd]``: one fused q/k/v projection
    ``c_attn`` (``[3 n_embd, n_embd]``, q, k, v stacked in that order), all heads in one batched
    matmul, then ``c_proj``."""

    def __init__(self, cfg: GPT2Config, *, name: str | None = None) -> None:
        super().__init__(name=name)
        e, h, dh = cfg.n_embd, cfg.n_head, cfg.head_dim
        std = cfg.initializer_range
        c_attn = _Projection(3 * e, e, std, name="c_attn")
        self |= c_attn(input=IOKey("input", shape=[None, None, e]))

        def head(i: int, axes: tuple[int, ...]) -> TerminalRef:  # [B, T, 3E] -> [B, H, T, Dh] (k: [B, H, Dh, T])
            part = self.call(
                "slice",
                c_attn.output,
                starts=(None, None, i * e),
                stops=(None, None, (i + 1) * e),
                steps=(None, None, None),
            )
            return self.call("transpose", self.call("unflatten", part, axis=-1, sizes=(h, dh)), axes=axes)

        q = head(0, (0, 2, 1, 3)) * (1.0 / math.sqrt(dh))
        k_t, v = head(1, (0, 2, 3, 1)), head(2, (0, 2, 1, 3))
        scores = self.call("matmul", q, k_t)  # [B, H, T, T]
        scores = self.call("where", self.call("tril_mask", scores), scores, float("-inf"))
        ctx = self.call("matmul", self.call("softmax", scores, axis=-1), v)  # [B, H, T, Dh]
        ctx = self.call("flatten", self.call("transpose", ctx, axes=(0, 2, 1, 3)), start_axis=2, end_axis=3)
        # GPT-2 scales the residual projections' init by 1/sqrt(2 n_layer)
        c_proj = _Projection(e, e, std / math.sqrt(2 * cfg.n_layer), name="c_proj")
        self |= c_proj(input=ctx, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class GPT2MLP(Model):
    """``c_proj(act(c_fc(x)))`` with GPT-2's activation (``gelu_new``: GELU, tanh approximation)."""

    def __init__(self, cfg: GPT2Config, *, name: str | None = None) -> None:
        super().__init__(name=name)
        e, inner = cfg.n_embd, cfg.inner_dim
        approx = ACTIVATIONS[cfg.activation_function]
        self |= _Projection(inner, e, cfg.initializer_range, name="c_fc")(input=IOKey("input", shape=[None, None, e]))
        self += Gelu(approximate=approx) if approx is not None else Relu()
        self += _Projection(e, inner, cfg.initializer_range / math.sqrt(2 * cfg.n_layer), name="c_proj")(
            output=IOKey("output")
        )
        self.set_canonical(input="input", output="output")


class GPT2Block(Model):
    """GPT-2's pre-LN block: ``x + attn(ln_1(x))``, then ``h + mlp(ln_2(h))``."""

    def __init__(self, cfg: GPT2Config, *, name: str | None = None) -> None:
        super().__init__(name=name)
        ln_1, attn, ln_2, mlp = (
            _layer_norm(cfg, "ln_1"),
            GPT2Attention(cfg, name="attn"),
            _layer_norm(cfg, "ln_2"),
            GPT2MLP(cfg, name="mlp"),
        )
        self |= ln_1(input=IOKey("input", shape=[None, None, cfg.n_embd]))
        self |= attn(input=ln_1.output)
        h = self.call("add", "input", attn.output)
        self |= ln_2(input=h)
        self |= mlp(input=ln_2.output)
        self.call("add", h, mlp.output, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class GPT2Transformer(Model):
    """Hugging Face's ``GPT2Model`` without dropout: token ids ``input [B, T]`` to the hidden
    states after ``ln_f``, ``output [B, T, n_embd]``. Parameters ``wte``, ``wpe``, ``h.{i}``, ``ln_f``."""

    def __init__(self, cfg: GPT2Config, *, name: str | None = None) -> None:
        super().__init__(name=name)
        wte = _Table(cfg.vocab_size, cfg.n_embd, cfg.initializer_range, name="wte")
        wpe = _Table(cfg.n_positions, cfg.n_embd, cfg.initializer_range, name="wpe")
        self |= wte(input=IOKey("input", shape=[None, None], dtype="int"))
        self |= wpe(input=self.call("positions", "input", axis=-1))  # [T]: 0..T-1
        blocks = Model(name="h")
        for i in range(cfg.n_layer):
            blocks.add(GPT2Block(cfg, name=str(i)), chain=i > 0)
        self |= blocks(input=wte.output + wpe.output)
        self |= _layer_norm(cfg, "ln_f")(input=blocks.output, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


class GPT2(Model):
    """GPT-2 language model (Hugging Face's ``GPT2LMHeadModel``, no dropout): int token ids
    ``input [B, T]``, ``T <= n_positions``, to logits ``output [B, T, vocab_size]``.

    The head is tied to the token embedding (``logits = h @ transformer.wte.weight.T``): one
    parameter serves both, and its gradient sums both uses.
    """

    def __init__(self, config: GPT2Config | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.config = cfg = config if config is not None else GPT2Config()
        wte = IOKey(
            "transformer.wte.weight",
            shape=[cfg.vocab_size, cfg.n_embd],
            role="param",
            init=normal_init(cfg.initializer_range),
        )
        body = GPT2Transformer(cfg, name="transformer")
        self |= body(input=IOKey("input", shape=[None, None], dtype="int"), **{"wte.weight": wte})
        head = self.call("transpose", "transformer.wte.weight", axes=(1, 0))
        self.call("matmul", body.output, head, output=IOKey("output"))
        self.set_canonical(input="input", output="output")


def gpt2(config: GPT2Config | None = None, **overrides: int | float | str | None) -> GPT2:
    """Build a :class:`GPT2`; ``overrides`` replace fields of ``config`` (default: GPT-2 small)."""
    cfg = config if config is not None else GPT2Config()
    if overrides:
        unknown = sorted(set(overrides) - set(GPT2Config.__dataclass_fields__))
        if unknown:
            raise ModelBuildError(
                f"gpt2: unknown config field(s) {unknown}; fields: {sorted(GPT2Config.__dataclass_fields__)}"
            )
        from dataclasses import replace

        cfg = replace(cfg, **overrides)  # type: ignore[arg-type]  # field names checked just above
    return GPT2(cfg)


__all__ = ["GPT2", "GPT2MLP", "GPT2Attention", "GPT2Block", "GPT2Config", "GPT2Transformer", "gpt2"]
