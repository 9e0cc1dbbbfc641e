"""Convolution and pooling over NCHW data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Lowerer, Mode, Rule
from .structure import slice_axis

if TYPE_CHECKING:  # pragma: no cover
    from mithril.ir.graph import Node

    from ..emitter import T


def _check_conv(node: Node, mode: Mode) -> str | None:
    if node.attrs["groups"] != 1 and mode.grad:
        return f"ggml cannot differentiate a grouped convolution (groups={node.attrs['groups']}; CONCAT)"
    return None


def _emit_conv(L: Lowerer, node: Node) -> T:
    """im2col + one matrix product with the (O, C*KH*KW) weight as ggml's first operand.

    That order lets a quantized weight be used (``ggml_conv_2d`` puts the weight second).
    Groups are lowered one by one and concatenated along the channels.
    """
    em = L.em
    groups = node.attrs["groups"]
    x = L.arg(node, 0)
    stored = L.folded_weight(node, 1)
    if groups == 1:
        if stored is not None:
            return _conv_group(L, node, x, stored, None)
        w = L.arg(node, 1)
        return _conv_group(L, node, x, w, None if L.mode.grad else w)
    w = L.arg(node, 1)
    cg, og = x.shape[1] // groups, w.shape[0] // groups
    out = None
    for g in range(groups):
        xg = slice_axis(L, x, 1, g * cg, (g + 1) * cg)
        wg = slice_axis(L, w, 0, g * og, (g + 1) * og)
        yg = _conv_group(L, node, xg, wg, wg)
        out = yg if out is None else em.concat(out, yg, 1, (yg.shape[0], out.shape[1] + og) + yg.shape[2:])
    assert out is not None
    return out


def _conv_group(L: Lowerer, node: Node, x: T, w: T, carrier: T | None) -> T:
    """One group: ``x`` (N, C, H, W), ``w`` (O, C, KH, KW) or stored (O, C*KH*KW)."""
    em = L.em
    n, c = x.shape[:2]
    _, _, kh, kw = node.inputs[1].shape
    o = w.shape[0]
    oh, ow = node.output.shape[2:]
    w2 = em.reshape(w, (o, c * kh * kw))
    if carrier is None:
        # im2col reads only its kernel's shape. A stored (2-d) weight has none; and
        # ggml's backward of IM2COL crashes when that kernel itself needs a gradient.
        carrier = em.new((1, c, kh, kw))
    cols = em.im2col(carrier, x, node.attrs["stride"], node.attrs["padding"], node.attrs["dilation"], (oh, ow))
    cols = em.reshape(cols, (n * oh * ow, c * kh * kw))
    y = em.mul_mat(w2, cols)  # (N*OH*OW, O)
    y = em.reshape(y, (n, oh, ow, o))
    return em.transpose(y, (0, 3, 1, 2))  # NCHW


def _check_max_pool(node: Node, mode: Mode) -> str | None:
    if tuple(node.attrs["dilation"]) != (1, 1):
        return "dilated max pooling is not supported by ggml_pool_2d"
    return None


def _check_avg_pool(node: Node, mode: Mode) -> str | None:
    if not node.attrs["count_include_pad"] and any(node.attrs["padding"]):
        return "avg_pool2d with count_include_pad=False and padding: ggml_pool_2d divides by the full window"
    return None


def _emit_pool(op: str):
    def emit(L: Lowerer, node: Node) -> T:
        a = node.attrs
        return L.em.pool2d(L.arg(node, 0), op, a["kernel_size"], a["stride"], a["padding"], node.output.shape)

    return emit


RULES: dict[str, Rule] = {
    "conv2d": Rule(_emit_conv, _check_conv),
    "max_pool2d": Rule(_emit_pool("max"), _check_max_pool),
    "avg_pool2d": Rule(_emit_pool("avg"), _check_avg_pool),
}
