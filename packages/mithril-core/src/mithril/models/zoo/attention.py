"""Multi-head attention and a pre-LN transformer block with torch.nn state-dict names."""

from __future__ import annotations

import math

from ...errors import ModelBuildError
from .. import arguments as A
from ..connections import IOKey, TerminalRef, zeros
from ..layers import Linear
from ..model import Model
from ..primitive_blocks import Gelu, Relu
from ._util import xavier_uniform
from .dropout import Dropout, check_probability
from .norm import LayerNorm

MASK_KINDS = (None, "additive", "bool")


class MultiHeadAttention(Model, template=True):
    """torch.nn.MultiheadAttention(embed_dim, num_heads, dropout, batch_first=True).

    Terminals: ``query [N, L, E]``, ``key [N, S, E]``, ``value [N, S, E]`` (or one
    ``input`` with ``self_attention=True``), ``output [N, L, E]``. Parameters:
    ``in_proj_weight [3E, E]``, ``in_proj_bias [3E]``, ``out_proj.weight``,
    ``out_proj.bias``, as in torch's state dict.

    ``causal=True`` masks keys after the query position (top-left aligned, as
    ``torch.nn.Transformer.generate_square_subsequent_mask``). ``attn_mask``:
    ``"additive"`` adds a float input ``attn_mask`` (broadcast to ``[N, H, L, S]``,
    e.g. ``[L, S]``) to the scores; ``"bool"`` takes a bool ``attn_mask`` where True
    means *not allowed to attend* (torch's convention). ``dropout`` applies
    :class:`~mithril.models.Dropout` to the attention weights in training mode (block
    ``dropout``; none for 0.0, the default).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        bias: bool = True,
        *,
        causal: bool = False,
        attn_mask: str | None = None,
        self_attention: bool = False,
        dropout: float = 0.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        at = A.where("MultiHeadAttention", name)
        dropout = check_probability(dropout, at)
        embed_dim, num_heads = A.size(embed_dim, "embed_dim", at), A.size(num_heads, "num_heads", at)
        assert embed_dim is not None and num_heads is not None
        bias, causal = A.flag(bias, "bias", at), A.flag(causal, "causal", at)
        self_attention = A.flag(self_attention, "self_attention", at)
        if embed_dim % num_heads:
            raise ModelBuildError(f"MultiHeadAttention: embed_dim {embed_dim} not divisible by num_heads {num_heads}")
        if attn_mask not in MASK_KINDS:
            raise ModelBuildError(f"MultiHeadAttention: attn_mask must be one of {MASK_KINDS}, got {attn_mask!r}")
        e, h = embed_dim, num_heads
        dh = e // h
        self.embed_dim, self.num_heads = e, h
        names = ("input",) * 3 if self_attention else ("query", "key", "value")
        w = IOKey("in_proj_weight", shape=[3 * e, e], role="param", init=xavier_uniform)
        b = IOKey("in_proj_bias", shape=[3 * e], role="param", init=zeros) if bias else None
        heads: list[TerminalRef] = []
        for i, src in enumerate(names):
            wi = self.call("slice", w, starts=(i * e,), stops=((i + 1) * e,), steps=(None,))
            y = self.call("matmul", IOKey(src, shape=[None, None, e]), self.call("transpose", wi, axes=(1, 0)))
            if bias:
                bi = self.call("slice", b, starts=(i * e,), stops=((i + 1) * e,), steps=(None,))
                y = y + bi
            y = self.call("unflatten", y, axis=-1, sizes=(h, dh))  # [N, L, H, Dh]
            heads.append(self.call("transpose", y, axes=(0, 2, 3, 1) if i == 1 else (0, 2, 1, 3)))
        q, k_t, v = heads
        scores = self.call("matmul", q, k_t) * (1.0 / math.sqrt(dh))  # [N, H, L, S]
        if attn_mask == "additive":
            scores = scores + IOKey("attn_mask")
        elif attn_mask == "bool":
            scores = self.call("where", IOKey("attn_mask", dtype="bool"), float("-inf"), scores)
        if causal:
            scores = self.call("where", self.call("tril_mask", scores), scores, float("-inf"))
        attn = self.call("softmax", scores, axis=-1)
        if dropout:
            attn = _dropout(self, attn, dropout, "dropout")
        ctx = self.call("transpose", self.call("matmul", attn, v), axes=(0, 2, 1, 3))  # [N, L, H, Dh]
        ctx = self.call("flatten", ctx, start_axis=2, end_axis=3)
        self |= Linear(e, use_bias=bias, name="out_proj")(input=ctx, output=IOKey("output"))
        self.set_canonical(input=names[0], output="output")


class TransformerBlock(Model, template=True):
    """A pre-LN transformer encoder block (torch.nn.TransformerEncoderLayer with ``norm_first=True``,
    ``batch_first=True``)::

        x = x + dropout1(self_attn(norm1(x)))
        x = x + dropout2(linear2(dropout(activation(linear1(norm2(x))))))

    Parameter names follow torch's state dict (``self_attn.in_proj_weight``,
    ``linear1.weight``, ``norm1.weight``...). ``causal``/``attn_mask`` as in
    :class:`MultiHeadAttention`. ``dropout`` is torch's: the probability of every
    :class:`~mithril.models.Dropout` above and of the attention weights' (default 0.0,
    no Dropout blocks; torch's default is 0.1).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        *,
        causal: bool = False,
        attn_mask: str | None = None,
        dropout: float = 0.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        at = A.where("TransformerBlock", name)
        dropout = check_probability(dropout, at)
        for arg, v in (("d_model", d_model), ("nhead", nhead), ("dim_feedforward", dim_feedforward)):
            A.size(v, arg, at)
        bias, causal = A.flag(bias, "bias", at), A.flag(causal, "causal", at)
        acts = {"relu": Relu, "gelu": Gelu}
        if activation not in acts:
            raise ModelBuildError(f"TransformerBlock: activation must be 'relu' or 'gelu', got {activation!r}")
        x = IOKey("input", shape=[None, None, d_model])
        norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, name="norm1")
        self |= norm1(input=x)
        attn = MultiHeadAttention(
            d_model,
            nhead,
            bias=bias,
            causal=causal,
            attn_mask=attn_mask,
            self_attention=True,
            dropout=dropout,
            name="self_attn",
        )
        conns: dict[str, TerminalRef | str] = {"input": norm1.output}
        if attn_mask is not None:
            conns["attn_mask"] = "attn_mask"
        self |= attn(**conns)
        h = self.call("add", "input", _dropout(self, attn.output, dropout, "dropout1"))
        norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, name="norm2")
        self |= norm2(input=h)
        lin1 = Linear(dim_feedforward, use_bias=bias, name="linear1")
        self |= lin1(input=norm2.output)
        act = acts[activation]()
        self |= act(input=lin1.output)
        lin2 = Linear(d_model, use_bias=bias, name="linear2")
        self |= lin2(input=_dropout(self, act.output, dropout, "dropout"))
        self.call("add", h, _dropout(self, lin2.output, dropout, "dropout2"), output=IOKey("output"))
        self.set_canonical(input="input", output="output")


def _dropout(model: Model, x: TerminalRef, p: float, name: str) -> TerminalRef:
    """``x`` through a :class:`Dropout` block ``name`` added to ``model``; ``x`` itself when ``p`` is 0."""
    if not p:
        return x
    block = Dropout(p, name=name)
    model |= block(input=x)
    return block.output


__all__ = ["MultiHeadAttention", "TransformerBlock"]
