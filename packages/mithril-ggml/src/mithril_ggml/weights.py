"""How each parameter is stored in ggml: layout, type, and the quantization report.

A weight is quantized (Q8_0 for ``"int8"``, Q4_0 for ``"int4"``) when every use
of it is a matrix-product weight ggml can read quantized:

* the right operand of ``matmul``, directly (stored transposed, (..., N, K)) or
  through a ``transpose`` of its last two axes (stored as is; the transpose
  node is folded away);
* the weight of a ``conv2d`` with one group (stored as (O, C*KH*KW) rows).

and, for a matrix product, its stored rows (length K) are a multiple of the
32-element block. A convolution's rows are zero-padded to the next multiple
(the lowering pads the im2col columns alike): zeros add nothing to the products.
Everything else stays float32; the report says why.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mithril.errors import ParamsError
from mithril.ir.graph import Graph, Node, Value

from ._lib import ggml
from .emitter import LoweringBug

Layout = Literal["natural", "transposed", "conv_rows"]
QUANT_TYPES = {"int8": "q8_0", "int4": "q4_0"}
BLOCK = 32


@dataclass(frozen=True)
class WeightPlan:
    """Storage of one param: ``layout`` of the NumPy array, ggml type name, stored shape."""

    name: str
    layout: Layout
    type_name: str  # "f32", "q8_0", "q4_0"
    shape: tuple[int, ...]  # the param's shape
    stored_shape: tuple[int, ...]  # NumPy-order shape of the ggml tensor
    reason: str = ""  # why it stays float32 when quantization was asked for

    def to_storage(self, arr: np.ndarray) -> np.ndarray:
        """The float32 array in stored layout (before any quantization)."""
        a = np.asarray(arr, dtype=np.float32)
        if self.layout == "transposed":
            a = np.swapaxes(a, -1, -2)
        if self.layout == "conv_rows":
            rows = np.ascontiguousarray(a).reshape(a.shape[0], -1)
            return np.pad(rows, ((0, 0), (0, self.stored_shape[-1] - rows.shape[1])))
        return np.ascontiguousarray(a).reshape(self.stored_shape)

    @property
    def ggml_type(self) -> int:
        return getattr(ggml(), f"GGML_TYPE_{self.type_name.upper()}")


@dataclass
class QuantizationReport(Mapping[str, str]):
    """Which weights are stored quantized and which stayed float32 (with the reason).

    As a mapping: param name -> "q8_0" / "q4_0" / "float32 (reason)", for summaries.
    """

    mode: str | None
    quantized: dict[str, str] = field(default_factory=dict)  # name -> ggml type ("q8_0")
    float32: dict[str, str] = field(default_factory=dict)  # name -> reason

    def __getitem__(self, name: str) -> str:
        if name in self.quantized:
            return self.quantized[name]
        return f"float32 ({self.float32[name]})"

    def __iter__(self) -> Iterator[str]:
        return iter([*self.quantized, *self.float32])

    def __len__(self) -> int:
        return len(self.quantized) + len(self.float32)

    def __str__(self) -> str:
        head = f"quantize={self.mode!r}: {len(self.quantized)} weight(s) quantized, {len(self.float32)} float32"
        return "\n".join([head, *(f"  {k}: {v}" for k, v in self.items())])


def _swaps_last_two(node: Node) -> bool:
    rank = len(node.inputs[0].shape or ())
    axes = node.attrs["axes"]
    if axes is None:
        return rank == 2
    axes = tuple(a % rank for a in axes)
    return rank >= 2 and axes == tuple(range(rank - 2)) + (rank - 1, rank - 2)


def folded_transposes(graph: Graph) -> set[int]:
    """uids of ``transpose`` outputs (last two axes) read only as a ``matmul`` right operand.

    ``x @ y.T`` is ``ggml_mul_mat(y, x)``: such transposes are never built.
    """
    consumers = graph.consumers()
    results = {v.uid for v in graph.results()}
    out = set()
    for n in graph.nodes:
        users = consumers.get(n.output.uid)
        if (
            n.primitive.name == "transpose"
            and users
            and n.output.uid not in results
            and _swaps_last_two(n)
            and all(
                c.primitive.name == "matmul" and c.inputs[1] is n.output and c.inputs[0] is not n.output for c in users
            )
        ):
            out.add(n.output.uid)
    return out


def _uses(v: Value, consumers: dict[int, list[Node]], outputs: set[int], folded: set[int]) -> list[str]:
    """Classify each use of param ``v``."""
    uses: list[str] = ["output"] if v.uid in outputs else []
    for n in consumers.get(v.uid, []):
        p = n.primitive.name
        if p == "matmul" and n.inputs[1] is v and n.inputs[0] is not v:
            uses.append("matmul")
        elif p == "conv2d" and n.inputs[1] is v and n.attrs["groups"] == 1:
            uses.append("conv")
        elif n.output.uid in folded:
            uses.append("matmul_t")
        elif p == "matmul":
            # the left operand (or both): ggml reads it in natural layout, never quantized
            uses.append("matmul as the left operand")
        else:
            uses.append(p)
    return uses


def plan_weights(graph: Graph, quantize: str | None, *, grad: bool) -> dict[str, WeightPlan]:
    """Storage plan per param."""
    consumers = graph.consumers()
    outputs = {v.uid for v in graph.results()}
    folded = folded_transposes(graph)
    qtype = QUANT_TYPES.get(quantize or "", "f32")
    plans: dict[str, WeightPlan] = {}
    for name, v in graph.params.items():
        shape = tuple(v.shape or ())
        kinds = set(_uses(v, consumers, outputs, folded))
        layout: Layout = "natural"
        stored = shape
        row = None
        reason = ""
        if grad:
            reason = "gradients are computed in float32"
        elif not kinds:
            reason = "unused"
        elif kinds == {"matmul"}:
            layout, stored = "transposed", shape[:-2] + (shape[-1], shape[-2])
            row = shape[-2]
        elif kinds == {"matmul_t"}:
            row = shape[-1]
        elif kinds == {"conv"}:
            _o, c, kh, kw = shape
            row = c * kh * kw
        else:
            other = sorted(k for k in kinds if k not in ("matmul", "matmul_t", "conv"))
            reason = (
                f"used by {', '.join(other) if other else 'mixed matrix products'}, not only as a matrix-product weight"
            )
        type_name = "f32"
        if row is not None:
            if quantize is None:
                reason = "quantize=None"
            elif row % BLOCK and kinds != {"conv"}:
                reason = f"row length {row} is not a multiple of the {BLOCK}-element block"
            else:
                type_name = qtype
            if kinds == {"conv"} and type_name != "f32":
                layout, stored = "conv_rows", (shape[0], -(-row // BLOCK) * BLOCK)
        plans[name] = WeightPlan(name, layout, type_name, shape, stored, reason)
    return plans


def report(plans: dict[str, WeightPlan], quantize: str | None) -> QuantizationReport:
    rep = QuantizationReport(quantize)
    for name, p in plans.items():
        if p.type_name == "f32":
            rep.float32[name] = p.reason or "not a matrix-product weight"
        else:
            rep.quantized[name] = p.type_name
    return rep


#: stored type -> the quantize mode that stores it
_MODE_OF = {"q8_0": "int8", "q4_0": "int4"}


def quantize_into(plan: WeightPlan, arr: np.ndarray, dst: int, nbytes: int) -> None:
    """Quantize (or copy) ``arr`` into the tensor data at address ``dst``."""
    g = ggml()
    src = plan.to_storage(arr)
    if plan.type_name == "f32":
        if src.nbytes != nbytes:
            raise LoweringBug(f"{plan.name}: {src.nbytes} bytes for a {nbytes}-byte tensor")
        ctypes.memmove(dst, src.ctypes.data, nbytes)
        return
    if not np.isfinite(src).all():
        # a block's scale is its largest magnitude: NaN would quantize to a number, inf makes the block NaN
        bad = np.argwhere(~np.isfinite(np.asarray(arr)))
        pos = [int(i) for i in bad[0]] if len(bad) else []
        value = np.asarray(arr)[tuple(pos)] if pos else "NaN"
        raise ParamsError(
            f"param {plan.name!r} holds {value} at {pos}: GGMLBackend(quantize="
            f"{_MODE_OF.get(plan.type_name, plan.type_name)!r}) "
            f"cannot quantize non-finite values (a NaN would become a number); use quantize=None, "
            f"which keeps them, or fix the weights"
        )
    row = plan.stored_shape[-1]
    nrows = math.prod(plan.stored_shape[:-1])
    if g.ggml_row_size(plan.ggml_type, row) * nrows != nbytes:
        raise LoweringBug(f"{plan.name}: quantized size mismatch")
    written = g.ggml_quantize_chunk(
        plan.ggml_type, src.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), dst, 0, nrows, row, None
    )
    if written != nbytes:
        raise LoweringBug(f"{plan.name}: ggml wrote {written} bytes, expected {nbytes}")


__all__ = ["QuantizationReport", "WeightPlan", "folded_transposes", "plan_weights", "quantize_into", "report"]
