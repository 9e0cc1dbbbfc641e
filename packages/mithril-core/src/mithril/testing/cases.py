"""Test cases of the conformance suite: one list per core primitive, and block cases.

A :class:`PrimitiveCase` is one call of one primitive: the shapes, kinds and
value generators of its inputs (in kernel order) and its attributes. Values
come from a NumPy ``Generator`` seeded from the case id, so every backend (and
every run) sees the same numbers. Generators keep finite-difference gradients
meaningful: inputs of ``log``/``sqrt`` are positive, inputs of kinks
(``relu``, ``abs``, ``leaky_relu``) stay away from 0, inputs of selections
(``max``, ``maximum``, ``max_pool2d``...) have no ties.

A :class:`BlockCase` is a small logical model built from the model zoo
(``Linear``, ``Conv2d``, ``BatchNorm2d``...) with a NumPy reference that
follows torch.nn semantics.

``PRIMITIVE_CASES``/``BLOCK_CASES`` are what :mod:`mithril.testing.conformance`
runs; ``cases_for(name)`` gives the cases of one primitive.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..primitives import reference as ref

Gen = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
Arrays = dict[str, np.ndarray]


# ----------------------------------------------------------------- generators
def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal."""
    return rng.standard_normal(shape)


def wide(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal with standard deviation 2.5 (exercises saturating functions)."""
    return 2.5 * rng.standard_normal(shape)


def positive(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform in [0.5, 2] (log, sqrt, pow bases, variances)."""
    return rng.uniform(0.5, 2.0, shape)


def nonzero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Either sign, magnitude in [0.25, 2]: no kink of relu/abs within a finite-difference step."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.25, 2.0, shape)


def distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.09 apart (no ties for max, argmax, pooling)."""
    n = math.prod(shape)
    vals = (rng.permutation(n) - n / 2.0) * 0.1 + rng.uniform(0.0, 0.01, n)
    return vals.reshape(shape) / max(1.0, n / 40.0)


def small_ints(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Floats in {-2, ..., 2}: plenty of ties (comparisons, forward-only maximum)."""
    return rng.integers(-2, 3, shape).astype(np.float64)


def with_zeros(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal with about a third exact zeros (sign, cast to bool)."""
    x = rng.standard_normal(shape)
    x[rng.random(shape) < 0.35] = 0.0
    return x


def fractional(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Either sign, away from integers (cast to int truncates unambiguously)."""
    return rng.integers(-4, 5, shape) + rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 0.9, shape)


def ints(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """int64 in [-5, 5]."""
    return rng.integers(-5, 6, shape).astype(np.int64)


def bools(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.random(shape) < 0.5


def indices(high: int) -> Gen:
    """int64 indices in [0, high), repeats included (scatters must accumulate)."""

    def gen(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(0, high, shape).astype(np.int64)

    gen.__name__ = f"indices({high})"
    return gen


# ----------------------------------------------------------------- primitives
@dataclass(frozen=True)
class Arg:
    """One input of a primitive case: shape, value generator, dtype kind, differentiated or not."""

    shape: tuple[int, ...]
    gen: Gen = normal
    kind: str = "float"
    diff: bool = True

    @property
    def differentiable(self) -> bool:
        return self.kind == "float" and self.diff


@dataclass(frozen=True, eq=False)
class PrimitiveCase:
    """One call of a primitive, checked forward and (when ``gradient``) backward."""

    primitive: str
    label: str
    args: tuple[Arg, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    #: check gradients wrt the differentiable float inputs (against finite differences)
    gradient: bool = False
    #: makes all input values at once (for inputs that must relate, e.g. no ties across two inputs)
    make: Callable[[np.random.Generator, Sequence[Arg]], list[np.ndarray]] | None = None
    #: a known core bug makes this case fail everywhere: the tests mark it xfail(strict=True)
    xfail: str | None = None
    #: the exception that bug raises (any other failure still fails the test)
    xfail_raises: type[BaseException] | None = None

    @property
    def id(self) -> str:
        return f"{self.primitive}-{self.label}"

    @property
    def seed(self) -> int:
        return zlib.crc32(self.id.encode())

    def inputs(self) -> list[np.ndarray]:
        """The input values (float64, int64 or bool NumPy arrays), the same on every call."""
        rng = np.random.default_rng(self.seed)
        if self.make is not None:
            vals = self.make(rng, self.args)
        else:
            vals = [a.gen(rng, a.shape) for a in self.args]
        return [
            np.asarray(v, dtype={"float": np.float64, "int": np.int64, "bool": np.bool_}[a.kind])
            for v, a in zip(vals, self.args)
        ]

    def cotangent(self, shape: tuple[int, ...]) -> np.ndarray:
        """The output cotangent used by gradient tests."""
        return np.random.default_rng(self.seed + 1).standard_normal(shape)

    def reference(self, values: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(ref.reference(self.primitive)(*values, **self.attrs))

    def __repr__(self) -> str:
        return f"PrimitiveCase({self.id})"


def _joint_distinct(rng: np.random.Generator, args: Sequence[Arg]) -> list[np.ndarray]:
    """All float inputs drawn from one set of distinct values: no ties between inputs either."""
    sizes = [math.prod(a.shape) for a in args]
    pool = distinct(rng, (sum(sizes),))
    out, at = [], 0
    for a, n in zip(args, sizes):
        out.append(pool[at : at + n].reshape(a.shape))
        at += n
    return out


def _with_stats(
    axes: tuple[int, ...], eps: float, affine: bool = False
) -> Callable[[np.random.Generator, Sequence[Arg]], list[np.ndarray]]:
    """``(x, [w,] g, mean(x), 1/sqrt(var(x) + eps))``: the saved statistics of the normalize gradients,
    consistent with x."""

    def make(rng: np.random.Generator, args: Sequence[Arg]) -> list[np.ndarray]:
        vals = [normal(rng, a.shape) for a in args[:-2]]
        x = vals[0]
        return [*vals, np.mean(x, axis=axes, keepdims=True), 1.0 / np.sqrt(np.var(x, axis=axes, keepdims=True) + eps)]

    return make


def _with_pool_indices(attrs: Mapping[str, Any]) -> Callable[[np.random.Generator, Sequence[Arg]], list[np.ndarray]]:
    """``(x, argmax indices of x's windows, g)``: max_pool2d_grad_indices' saved indices, consistent with x."""

    def make(rng: np.random.Generator, args: Sequence[Arg]) -> list[np.ndarray]:
        x = distinct(rng, args[0].shape)
        return [x, ref.max_pool2d_with_indices(x, **attrs, result="indices"), normal(rng, args[2].shape)]

    return make


def _slice_shape(
    shape: Sequence[int], starts: Sequence[Any], stops: Sequence[Any], steps: Sequence[Any]
) -> tuple[int, ...]:
    head = tuple(len(range(n)[slice(a, b, c)]) for n, a, b, c in zip(shape, starts, stops, steps))
    return head + tuple(shape[len(starts) :])


def _conv_out(
    shape: Sequence[int], wshape: Sequence[int], stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]
) -> tuple[int, ...]:
    return (shape[0], wshape[0]) + tuple(
        (shape[2 + i] + 2 * padding[i] - dilation[i] * (wshape[2 + i] - 1) - 1) // stride[i] + 1 for i in range(2)
    )


def _pool_out(
    shape: Sequence[int],
    k: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int] = (1, 1),
) -> tuple[int, ...]:
    return tuple(shape[:2]) + tuple(
        (shape[2 + i] + 2 * padding[i] - dilation[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(2)
    )


def _build_primitive_cases() -> list[PrimitiveCase]:
    cases: list[PrimitiveCase] = []

    def add(primitive: str, label: str, *args: Arg, gradient: bool = True, **kw: Any) -> None:
        attrs = kw.pop("attrs", {})
        cases.append(PrimitiveCase(primitive, label, tuple(args), dict(attrs), gradient=gradient, **kw))

    A = Arg

    # ---- binary arithmetic (broadcasting, scalars)
    add("add", "same", A((3, 4)), A((3, 4)))
    add("add", "broadcast", A((2, 1, 4)), A((3, 1)))
    add("add", "rank-broadcast", A((4,)), A((2, 3, 1)))
    add("add", "scalar", A((3, 4)), A(()))
    add("sub", "broadcast", A((2, 1, 4)), A((3, 1)))
    add("sub", "scalar-left", A(()), A((3, 4)))
    add("mul", "same", A((3, 4)), A((3, 4)))
    add("mul", "rank-broadcast", A((4,)), A((2, 3, 1)))
    add("add", "int", A((3, 4), ints, "int"), A((4,), ints, "int"), gradient=False)
    add("mul", "int", A((2, 3), ints, "int"), A((2, 1), ints, "int"), gradient=False)
    add("div", "same", A((3, 4)), A((3, 4), nonzero))
    add("div", "broadcast", A((2, 3, 4)), A((3, 1), nonzero))
    add("div", "scalar-numerator", A(()), A((2, 5), nonzero))
    add("pow", "same", A((3, 4), positive), A((3, 4)))
    add("pow", "broadcast", A((2, 3), positive), A((1, 3)))
    add("pow", "scalar-exponent", A((2, 2, 3), positive), A(()))
    add("pow", "negative-base-integer-exponent", A((3, 4), nonzero), A((3, 4), small_ints), gradient=False)
    for p in ("maximum", "minimum"):
        add(p, "same", A((3, 4)), A((3, 4)), make=_joint_distinct)
        add(p, "broadcast", A((2, 1, 4)), A((3, 1)), make=_joint_distinct)
        add(p, "ties", A((3, 4), small_ints), A((3, 4), small_ints), gradient=False)

    # ---- comparisons (bool output, ties on purpose)
    for p in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"):
        add(p, "broadcast", A((2, 3, 1), small_ints), A((4,), small_ints), gradient=False)
    add("equal", "same", A((3, 4), small_ints), A((3, 4), small_ints), gradient=False)
    add("equal", "int", A((3, 4), ints, "int"), A((3, 4), ints, "int"), gradient=False)
    add("greater", "int", A((3, 4), ints, "int"), A((4,), ints, "int"), gradient=False)

    # ---- where / cast
    add("where", "same", A((3, 4), bools, "bool"), A((3, 4)), A((3, 4)))
    add("where", "broadcast", A((3, 1), bools, "bool"), A((1, 4)), A((2, 3, 4)))
    add("where", "scalar-branch", A((2, 3), bools, "bool"), A((2, 3)), A(()))
    add("cast", "float-to-float", A((3, 4)), attrs={"kind": "float"})
    add("cast", "float-to-int", A((3, 4), fractional), attrs={"kind": "int"}, gradient=False)
    add("cast", "float-to-bool", A((3, 4), with_zeros), attrs={"kind": "bool"}, gradient=False)
    add("cast", "int-to-float", A((3, 4), ints, "int"), attrs={"kind": "float"}, gradient=False)
    add("cast", "bool-to-float", A((3, 4), bools, "bool"), attrs={"kind": "float"}, gradient=False)
    add("cast", "int-to-bool", A((3, 4), ints, "int"), attrs={"kind": "bool"}, gradient=False)
    add("cast", "bool-to-int", A((3, 4), bools, "bool"), attrs={"kind": "int"}, gradient=False)

    # ---- unary
    add("neg", "matrix", A((3, 4)))
    add("abs", "rank3", A((2, 3, 4), nonzero))
    add("sign", "with-zeros", A((3, 5), with_zeros), gradient=False)
    add("sign", "nonzero", A((3, 5), nonzero))  # gradient 0 away from 0, as torch
    add("exp", "matrix", A((3, 4)))
    add("exp", "scalar", A(()))
    add("log", "matrix", A((3, 4), positive))
    add("sqrt", "matrix", A((3, 4), positive))
    add("sin", "matrix", A((3, 4), wide))
    add("cos", "matrix", A((3, 4), wide))
    add("tanh", "matrix", A((3, 4), wide))
    add("sigmoid", "matrix", A((3, 4), wide))
    add("relu", "matrix", A((3, 4), nonzero))
    add("relu", "rank4", A((2, 2, 2, 3), nonzero))
    add("erf", "matrix", A((3, 4), wide))
    add("leaky_relu", "default-slope", A((3, 4), nonzero))
    add("leaky_relu", "slope-0.2", A((2, 5), nonzero), attrs={"slope": 0.2})
    add("gelu", "exact", A((3, 4), wide), attrs={"approximate": "none"})
    add("gelu", "tanh", A((3, 4), wide), attrs={"approximate": "tanh"})

    # ---- reductions
    for p, gen in (("sum", normal), ("mean", normal), ("max", distinct), ("min", distinct)):
        add(p, "all", A((3, 4), gen), attrs={"axis": None, "keepdims": False})
        if p in ("sum", "mean"):
            add(p, "all-keepdims", A((2, 3), gen), attrs={"axis": None, "keepdims": True})
        add(p, "axis1", A((3, 4, 2), gen), attrs={"axis": (1,), "keepdims": False})
        add(p, "negative-axes-keepdims", A((2, 3, 4), gen), attrs={"axis": (-1, 0), "keepdims": True})
        add(p, "axes02", A((2, 3, 4), gen), attrs={"axis": (0, 2), "keepdims": False})
    add("argmax", "last", A((3, 5), distinct), attrs={"axis": (-1,), "keepdims": False}, gradient=False)
    add("argmax", "axis0-keepdims", A((4, 3), distinct), attrs={"axis": (0,), "keepdims": True}, gradient=False)
    add("argmax", "middle", A((2, 4, 3), distinct), attrs={"axis": (1,), "keepdims": False}, gradient=False)
    for p in ("softmax", "log_softmax"):
        add(p, "last", A((3, 5), wide), attrs={"axis": -1})
        add(p, "middle", A((2, 3, 4), wide), attrs={"axis": 1})
        add(p, "negative-axis", A((2, 3, 4), wide), attrs={"axis": -2})

    # ---- fused composites (kernel where the backend has one, else the expansion)
    add("normalize", "last-axis", A((3, 5)), attrs={"axes": (-1,), "eps": 1e-5})
    add("normalize", "trailing-two", A((2, 3, 4)), attrs={"axes": (-2, -1), "eps": 1e-3})
    add("normalize", "batch-norm-axes", A((4, 3, 2, 2)), attrs={"axes": (0, 2, 3), "eps": 1e-5})
    add("normalize", "middle-axis", A((2, 5, 3)), attrs={"axes": (1,), "eps": 0.1})
    for result in ("mean", "rstd"):
        add("normalize", f"{result}-last-axis", A((3, 5)), attrs={"axes": (-1,), "eps": 1e-5, "result": result})
        add(
            "normalize",
            f"{result}-batch-norm-axes",
            A((4, 3, 2, 2)),
            attrs={"axes": (0, 2, 3), "eps": 1e-3, "result": result},
        )
    affine: tuple[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...] = (
        ("layer", (2, 3, 4), (-2, -1), (3, 4)),
        ("batch", (4, 3, 2, 2), (0, 2, 3), (1, 3, 1, 1)),
        ("other", (2, 5, 3), (1,), (3,)),
    )
    for label, shape, axes, wshape in affine:
        for result in ("output", "mean", "rstd"):
            add(
                "normalize_affine",
                f"{result}-{label}",
                A(shape),
                A(wshape),
                A(wshape),
                attrs={"axes": axes, "eps": 1e-3, "result": result},
            )
        stat = tuple(1 if i in {a % len(shape) for a in axes} else d for i, d in enumerate(shape))
        for result in ("input", "weight", "bias"):
            add(
                "normalize_affine_grad",
                f"{result}-{label}",
                A(shape),
                A(wshape),
                A(shape),
                A(stat),
                A(stat),
                attrs={"axes": axes, "result": result},
                gradient=False,
                make=_with_stats(axes, 1e-4, affine=True),
            )
    for label, shape, axes in (
        ("last-axis", (3, 5), (-1,)),
        ("batch-norm-axes", (4, 3, 2, 2), (0, 2, 3)),
        ("middle-axis", (2, 5, 3), (1,)),
    ):
        stat = tuple(1 if i in {a % len(shape) for a in axes} else d for i, d in enumerate(shape))
        add(
            "normalize_grad",
            label,
            A(shape),
            A(shape),
            A(stat),
            A(stat),
            attrs={"axes": axes},
            gradient=False,
            make=_with_stats(axes, 1e-4),
        )
    add("relu_grad", "same", A((3, 4)), A((3, 4)), gradient=False)
    add("gelu_grad", "exact", A((3, 4), wide), A((3, 4)), attrs={"approximate": "none"}, gradient=False)
    add("gelu_grad", "tanh", A((3, 4), wide), A((3, 4)), attrs={"approximate": "tanh"}, gradient=False)
    add("softmax_grad", "last", A((3, 5)), A((3, 5)), attrs={"axis": -1}, gradient=False)
    add("softmax_grad", "middle", A((2, 3, 4)), A((2, 3, 4)), attrs={"axis": 1}, gradient=False)

    # ---- structure
    add("matmul", "matrix", A((3, 4)), A((4, 5)))
    add("matmul", "batched", A((2, 3, 4)), A((2, 4, 5)))
    add("matmul", "broadcast-batch", A((2, 1, 3, 4)), A((5, 4, 2)))
    add("matmul", "matrix-times-batch", A((3, 4)), A((2, 4, 2)))
    add("transpose", "reverse", A((2, 3, 4)), attrs={"axes": None})
    add("transpose", "matrix", A((3, 4)), attrs={"axes": (1, 0)})
    add("transpose", "negative-axes", A((2, 3, 4)), attrs={"axes": (-1, 0, 1)})
    add("transpose", "rank4", A((2, 3, 1, 4)), attrs={"axes": (0, 2, 3, 1)})
    add("reshape", "merge", A((2, 3, 4)), attrs={"shape": (4, 6)})
    add("reshape", "infer", A((2, 3, 4)), attrs={"shape": (3, -1, 2)})
    add("reshape", "split", A((12,)), attrs={"shape": (2, 2, 3)})
    add("reshape", "to-scalar", A((1, 1)), attrs={"shape": ()})
    add("flatten", "default", A((2, 3, 4, 5)), attrs={"start_axis": 1, "end_axis": -1})
    add("flatten", "all", A((2, 3, 4)), attrs={"start_axis": 0, "end_axis": -1})
    add("flatten", "middle", A((2, 3, 4, 5)), attrs={"start_axis": 1, "end_axis": 2})
    add("flatten", "negative-axes", A((2, 3, 4, 5)), attrs={"start_axis": -3, "end_axis": -2})
    add("broadcast_to", "expand", A((3, 1)), attrs={"shape": (2, 3, 4)})
    add("broadcast_to", "prepend", A((4,)), attrs={"shape": (3, 4)})
    add("broadcast_to", "scalar", A(()), attrs={"shape": (2, 3)})
    add("concat", "three-axis1", A((2, 1, 3)), A((2, 2, 3)), A((2, 4, 3)), attrs={"axis": 1})
    add("concat", "three-negative-axis", A((2, 3)), A((2, 1)), A((2, 2)), attrs={"axis": -1})
    add("concat", "two-axis0", A((1, 4)), A((3, 4)), attrs={"axis": 0})
    add("concat", "one", A((2, 3)), attrs={"axis": 0})
    slices: list[tuple[str, tuple[int, ...], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]] = [
        ("range-step", (5, 6), (1, None), (4, None), (1, 2)),
        ("reverse", (5, 3), (None,), (None,), (-1,)),
        ("negative-steps", (6, 5), (4, -1), (0, None), (-2, -2)),
        ("negative-bounds", (6, 4), (-4, None), (-1, -1), (1, None)),
        ("clipped", (5, 4), (1, -10), (100, 100), (2, 1)),
        ("leading-axis", (4, 3, 2), (1,), (3,), (None,)),
        ("empty", (4, 3), (3,), (1,), (1,)),
    ]
    for label, shape, starts, stops, steps in slices:
        attrs: dict[str, Any] = {"starts": starts, "stops": stops, "steps": steps}
        add("slice", label, A(shape), attrs=attrs)
        add("slice_grad", label, A(_slice_shape(shape, starts, stops, steps)), attrs={"input_shape": shape, **attrs})

    # ---- convolution
    convs: list[tuple[str, tuple[int, ...], tuple[int, ...], dict[str, Any]]] = [
        ("basic", (2, 3, 6, 6), (4, 3, 3, 3), {}),
        ("stride-padding", (2, 2, 7, 7), (3, 2, 3, 3), {"stride": (2, 2), "padding": (1, 1)}),
        ("dilation", (1, 2, 8, 7), (2, 2, 3, 2), {"dilation": (2, 1), "padding": (2, 1)}),
        ("groups", (2, 4, 5, 5), (6, 2, 3, 3), {"groups": 2}),
        ("depthwise", (1, 3, 5, 6), (3, 1, 3, 3), {"groups": 3, "stride": (1, 2), "padding": (1, 0)}),
        ("uneven", (2, 2, 9, 6), (3, 2, 4, 2), {"stride": (3, 2), "padding": (1, 1)}),
        ("pointwise", (2, 3, 4, 4), (5, 3, 1, 1), {}),
    ]
    for label, xs, ws, kw in convs:
        attrs = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1, **kw}
        ys = _conv_out(xs, ws, attrs["stride"], attrs["padding"], attrs["dilation"])
        add("conv2d", label, A(xs), A(ws), attrs=attrs)
        add("conv2d_input_grad", label, A(ys), A(ws), attrs={"input_shape": xs, **attrs})
        add("conv2d_weight_grad", label, A(xs), A(ys), attrs={"weight_shape": ws, **attrs}, gradient=False)

    # ---- pooling
    max_pools: list[tuple[str, tuple[int, ...], dict[str, Any]]] = [
        ("k2s2", (2, 3, 6, 6), {"kernel_size": (2, 2), "stride": (2, 2)}),
        ("k3s2p1", (1, 2, 7, 7), {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1)}),
        ("overlapping", (2, 2, 5, 6), {"kernel_size": (3, 2), "stride": (1, 2)}),
        ("dilation", (1, 2, 6, 6), {"kernel_size": (2, 2), "stride": (1, 1), "dilation": (2, 2)}),
        ("floor", (1, 1, 5, 7), {"kernel_size": (2, 2), "stride": (2, 2)}),
    ]
    for label, xs, kw in max_pools:
        attrs = {"padding": (0, 0), "dilation": (1, 1), **kw}
        ys = _pool_out(xs, attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs["dilation"])
        add("max_pool2d", label, A(xs, distinct), attrs=attrs)
        add("max_pool2d_grad", label, A(xs, distinct), A(ys), attrs=attrs, gradient=False)
        for result in ("output", "indices"):  # optional: tested where the backend has the kernel
            add(
                "max_pool2d_with_indices",
                f"{result}-{label}",
                A(xs, distinct),
                attrs={**attrs, "result": result},
                gradient=False,
            )
        add(
            "max_pool2d_grad_indices",
            label,
            A(xs, distinct),
            A(ys, kind="int"),
            A(ys),
            attrs=attrs,
            gradient=False,
            make=_with_pool_indices(attrs),
        )
    avg_pools: list[tuple[str, tuple[int, ...], dict[str, Any]]] = [
        ("k2s2", (2, 3, 6, 6), {"kernel_size": (2, 2), "stride": (2, 2)}),
        ("k3s2p1", (1, 2, 7, 7), {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1)}),
        (
            "k3s2p1-exclude-pad",
            (1, 2, 7, 7),
            {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1), "count_include_pad": False},
        ),
        ("overlapping", (2, 2, 5, 6), {"kernel_size": (3, 2), "stride": (1, 2)}),
        ("floor", (1, 1, 5, 7), {"kernel_size": (2, 3), "stride": (2, 2), "padding": (1, 1)}),
    ]
    for label, xs, kw in avg_pools:
        attrs = {"padding": (0, 0), "count_include_pad": True, **kw}
        ys = _pool_out(xs, attrs["kernel_size"], attrs["stride"], attrs["padding"])
        add("avg_pool2d", label, A(xs), attrs=attrs)
        add("avg_pool2d_grad", label, A(ys), attrs={"input_shape": xs, **attrs}, gradient=False)

    convts: list[tuple[str, tuple[int, ...], tuple[int, ...], dict[str, Any]]] = [
        ("basic", (2, 3, 4, 4), (3, 2, 3, 3), {}),
        (
            "stride-padding-output-padding",
            (1, 2, 3, 4),
            (2, 3, 3, 3),
            {"stride": (2, 2), "padding": (1, 1), "output_padding": (1, 0)},
        ),
        ("groups-dilation", (2, 4, 3, 3), (4, 1, 2, 3), {"groups": 2, "dilation": (2, 1), "stride": (1, 2)}),
        ("uneven", (1, 2, 3, 2), (2, 2, 4, 2), {"stride": (3, 2), "padding": (1, 0), "output_padding": (2, 1)}),
    ]
    for label, xs, ws, kw in convts:
        attrs = {"stride": (1, 1), "padding": (0, 0), "output_padding": (0, 0), "dilation": (1, 1), "groups": 1, **kw}
        add("conv_transpose2d", label, A(xs), A(ws), attrs=attrs)

    # ---- indexing
    add("gather_rows", "vector", A((5, 3)), A((4,), indices(5), "int"))
    add("gather_rows", "repeated-2d", A((4, 2)), A((2, 5), indices(4), "int"))
    add("scatter_add_rows", "repeated", A((2, 5, 3)), A((2, 5), indices(4), "int"), attrs={"num_rows": 4})
    add("gather_last", "matrix", A((3, 5)), A((3,), indices(5), "int"))
    add("gather_last", "rank3", A((2, 3, 4)), A((2, 3), indices(4), "int"))
    add("scatter_last", "rank2", A((2, 3)), A((2, 3), indices(4), "int"), attrs={"size": 4})
    add("unflatten", "middle", A((2, 12, 3)), attrs={"axis": 1, "sizes": (3, 4)})
    add("unflatten", "negative-axis-infer", A((2, 3, 12)), attrs={"axis": -1, "sizes": (2, -1, 3)})
    add("unflatten", "first", A((6, 2)), attrs={"axis": 0, "sizes": (-1, 2)})
    add("reshape_as", "matrix", A((2, 6)), A((3, 4), diff=False))
    add("reshape_as", "to-rank3", A((12,)), A((2, 3, 2), diff=False))
    add("tril_mask", "batched-square", A((2, 4, 4), diff=False), gradient=False)
    add("tril_mask", "wide-offset", A((3, 5), diff=False), attrs={"diagonal": 1}, gradient=False)
    add("tril_mask", "tall-negative", A((5, 3), diff=False), attrs={"diagonal": -1}, gradient=False)
    add("positions", "last-axis", A((2, 7), diff=False), gradient=False)
    add("positions", "first-axis", A((5, 3), diff=False), attrs={"axis": 0}, gradient=False)
    add("positions", "middle-negative", A((2, 4, 3), diff=False), attrs={"axis": -2}, gradient=False)

    # ---- optional (fused) primitives: run only where the backend has a kernel
    add("linear", "matrix", A((3, 5)), A((4, 5)), A((4,)), gradient=False)
    add("linear", "batched", A((2, 3, 5)), A((4, 5)), A((4,)), gradient=False)

    # ---- int and bool data through kind-polymorphic primitives (forward only)
    add("sub", "int-broadcast", A((2, 3), ints, "int"), A((3,), ints, "int"), gradient=False)
    add("maximum", "int", A((3, 4), ints, "int"), A((3, 1), ints, "int"), gradient=False)
    add("neg", "int", A((3, 4), ints, "int"), gradient=False)
    add("abs", "int", A((3, 4), ints, "int"), gradient=False)
    add("sign", "int", A((3, 4), ints, "int"), gradient=False)
    add("where", "int-branches", A((3, 4), bools, "bool"), A((3, 4), ints, "int"), A((4,), ints, "int"), gradient=False)
    add("sum", "int", A((3, 4), ints, "int"), attrs={"axis": (1,), "keepdims": False}, gradient=False)
    add("max", "int", A((3, 4), ints, "int"), attrs={"axis": (0,), "keepdims": True}, gradient=False)
    add(
        "argmax",
        "int-distinct",
        A((2, 5), lambda rng, shape: rng.permutation(10).reshape(shape), "int"),
        attrs={"axis": (-1,), "keepdims": False},
        gradient=False,
    )
    add("transpose", "bool", A((2, 3, 4), bools, "bool"), attrs={"axes": (2, 0, 1)}, gradient=False)
    add("reshape", "int", A((2, 6), ints, "int"), attrs={"shape": (3, -1)}, gradient=False)
    add("broadcast_to", "bool", A((3, 1), bools, "bool"), attrs={"shape": (2, 3, 4)}, gradient=False)
    add("concat", "bool", A((2, 1), bools, "bool"), A((2, 3), bools, "bool"), attrs={"axis": 1}, gradient=False)
    add(
        "slice",
        "int-negative-step",
        A((5, 4), ints, "int"),
        attrs={"starts": (None, 3), "stops": (None, None), "steps": (2, -1)},
        gradient=False,
    )

    # primitives without a gradient rule are forward-only, whatever the table says
    from ..primitives import registry

    out = []
    for c in cases:
        differentiable = registry.get(c.primitive).differentiable and any(a.differentiable for a in c.args)
        if c.gradient and not differentiable:
            c = PrimitiveCase(
                c.primitive,
                c.label,
                c.args,
                c.attrs,
                gradient=False,
                make=c.make,
                xfail=c.xfail,
                xfail_raises=c.xfail_raises,
            )
        out.append(c)
    return out


PRIMITIVE_CASES: tuple[PrimitiveCase, ...] = tuple(_build_primitive_cases())


def cases_for(primitive: str) -> list[PrimitiveCase]:
    """The cases of one primitive."""
    return [c for c in PRIMITIVE_CASES if c.primitive == primitive]


# --------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class ParamSpec:
    shape: tuple[int, ...]
    gen: Gen = normal
    #: state (running statistics) rather than a trained parameter
    state: bool = False


BlockReference = Callable[[Arrays, Arrays, bool], tuple[Arrays, Arrays]]
"""``reference(params_and_state, inputs, training) -> (outputs, new_state)`` in float64."""


@dataclass(frozen=True, eq=False)
class BlockCase:
    """A small model of zoo blocks with a NumPy (torch.nn semantics) reference."""

    label: str
    build: Callable[[], Any]
    inputs: Mapping[str, Arg]
    params: Mapping[str, ParamSpec]
    reference: BlockReference
    gradient: bool = True
    #: also check inference mode (running statistics): static_inference and evaluate(training=False)
    inference: bool = False
    #: also check randomize_params (torch.nn initialisation) on this block
    randomize: bool = False
    xfail: str | None = None
    xfail_raises: type[BaseException] | None = None

    @property
    def id(self) -> str:
        return f"block-{self.label}"

    @property
    def seed(self) -> int:
        return zlib.crc32(self.id.encode())

    @property
    def state_keys(self) -> tuple[str, ...]:
        return tuple(k for k, p in self.params.items() if p.state)

    @property
    def param_keys(self) -> tuple[str, ...]:
        return tuple(k for k, p in self.params.items() if not p.state)

    def values(self) -> tuple[Arrays, Arrays]:
        """(params and state, inputs) as float64 NumPy arrays, the same on every call."""
        rng = np.random.default_rng(self.seed)
        params = {k: np.asarray(p.gen(rng, p.shape), dtype=np.float64) for k, p in self.params.items()}
        inputs = {k: np.asarray(a.gen(rng, a.shape), dtype=np.float64) for k, a in self.inputs.items()}
        return params, inputs

    def cotangent(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.random.default_rng(self.seed + 1 + zlib.crc32(name.encode())).standard_normal(shape)

    def __repr__(self) -> str:
        return f"BlockCase({self.id})"


def _scaled(gen: Gen, scale: float, offset: float = 0.0) -> Gen:
    def g(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return offset + scale * gen(rng, shape)

    g.__name__ = f"{getattr(gen, '__name__', 'gen')}*{scale}+{offset}"
    return g


def linear_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """torch.nn.Linear: x @ w.T + b."""
    y = ref.matmul(x, w.T) if x.ndim >= 2 else x @ w.T
    return y if b is None else y + b


def conv_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, **attrs: Any) -> np.ndarray:
    """torch.nn.Conv2d."""
    y = ref.conv2d(x, w, **attrs)
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def batchnorm_ref(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    rm: np.ndarray,
    rv: np.ndarray,
    training: bool,
    eps: float = 1e-5,
    momentum: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch.nn.BatchNorm2d: (output, new running_mean, new running_var)."""
    if training:
        n = x.shape[0] * x.shape[2] * x.shape[3]
        mean = x.mean(axis=(0, 2, 3))
        var = ((x - mean.reshape(1, -1, 1, 1)) ** 2).mean(axis=(0, 2, 3))
        new_rm = (1 - momentum) * rm + momentum * mean
        new_rv = (1 - momentum) * rv + momentum * var * n / (n - 1)
    else:
        mean, var, new_rm, new_rv = rm, rv, rm, rv
    xhat = (x - mean.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + eps)
    return xhat * w.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1), new_rm, new_rv


def _build_block_cases() -> list[BlockCase]:
    from ..models import (
        AvgPool2d,
        BatchNorm2d,
        Conv2d,
        Flatten,
        IOKey,
        Linear,
        LogSoftmax,
        MaxPool2d,
        Model,
        Relu,
        Tanh,
    )

    P = ParamSpec
    small = _scaled(normal, 0.5)
    cases: list[BlockCase] = []

    def single(block_factory: Callable[[], Any]) -> Callable[[], Any]:
        def build() -> Any:
            m = Model()
            m |= block_factory()(input="input", output=IOKey("output"))
            return m

        return build

    cases.append(
        BlockCase(
            "linear",
            single(lambda: Linear(4, name="fc")),
            inputs={"input": Arg((3, 5))},
            params={"fc.weight": P((4, 5), small), "fc.bias": P((4,), small)},
            reference=lambda p, i, t: ({"output": linear_ref(i["input"], p["fc.weight"], p["fc.bias"])}, {}),
        )
    )
    cases.append(
        BlockCase(
            "linear-no-bias-batched",
            single(lambda: Linear(3, use_bias=False, name="fc")),
            inputs={"input": Arg((2, 4, 5))},
            params={"fc.weight": P((3, 5), small)},
            reference=lambda p, i, t: ({"output": linear_ref(i["input"], p["fc.weight"], None)}, {}),
        )
    )
    cases.append(
        BlockCase(
            "conv2d",
            single(lambda: Conv2d(3, 4, kernel_size=3, padding=1, name="conv")),
            inputs={"input": Arg((2, 3, 5, 5))},
            params={"conv.weight": P((4, 3, 3, 3), small), "conv.bias": P((4,), small)},
            reference=lambda p, i, t: (
                {"output": conv_ref(i["input"], p["conv.weight"], p["conv.bias"], padding=(1, 1))},
                {},
            ),
        )
    )
    cases.append(
        BlockCase(
            "conv2d-groups-no-bias",
            single(lambda: Conv2d(4, 6, kernel_size=3, stride=2, padding=1, groups=2, bias=False, name="conv")),
            inputs={"input": Arg((2, 4, 7, 6))},
            params={"conv.weight": P((6, 2, 3, 3), small)},
            randomize=True,
            reference=lambda p, i, t: (
                {"output": conv_ref(i["input"], p["conv.weight"], None, stride=(2, 2), padding=(1, 1), groups=2)},
                {},
            ),
        )
    )

    def bn_ref(p: Arrays, i: Arrays, training: bool) -> tuple[Arrays, Arrays]:
        y, rm, rv = batchnorm_ref(
            i["input"], p["bn.weight"], p["bn.bias"], p["bn.running_mean"], p["bn.running_var"], training
        )
        return {"output": y}, ({"bn.running_mean": rm, "bn.running_var": rv} if training else {})

    bn_params = {
        "bn.weight": P((3,), _scaled(normal, 0.3, 1.0)),
        "bn.bias": P((3,), small),
        "bn.running_mean": P((3,), small, state=True),
        "bn.running_var": P((3,), positive, state=True),
    }
    cases.append(
        BlockCase(
            "batchnorm2d",
            single(lambda: BatchNorm2d(3, name="bn")),
            inputs={"input": Arg((4, 3, 3, 2), _scaled(normal, 2.0, 0.5))},
            params=bn_params,
            reference=bn_ref,
            inference=True,
            randomize=True,
        )
    )
    cases.append(
        BlockCase(
            "maxpool2d",
            single(lambda: MaxPool2d(3, stride=2, padding=1)),
            inputs={"input": Arg((2, 3, 7, 6), distinct)},
            params={},
            gradient=False,
            reference=lambda p, i, t: (
                {"output": ref.max_pool2d(i["input"], kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))},
                {},
            ),
        )
    )
    cases.append(
        BlockCase(
            "avgpool2d",
            single(lambda: AvgPool2d(2)),
            inputs={"input": Arg((2, 3, 5, 6))},
            params={},
            gradient=False,
            reference=lambda p, i, t: ({"output": ref.avg_pool2d(i["input"], kernel_size=(2, 2), stride=(2, 2))}, {}),
        )
    )
    cases.append(
        BlockCase(
            "flatten",
            single(lambda: Flatten()),
            inputs={"input": Arg((2, 3, 2, 2))},
            params={},
            gradient=False,
            reference=lambda p, i, t: ({"output": i["input"].reshape(2, -1)}, {}),
        )
    )
    cases.append(
        BlockCase(
            "relu",
            single(lambda: Relu()),
            inputs={"input": Arg((3, 4), with_zeros)},
            params={},
            gradient=False,
            reference=lambda p, i, t: ({"output": np.maximum(i["input"], 0.0)}, {}),
        )
    )

    def mlp() -> Any:
        m = Model()
        m |= Linear(6, name="fc1")
        m += Tanh()
        m += Linear(3, name="fc2")
        m += LogSoftmax(axis=-1)
        return m

    def mlp_ref(p: Arrays, i: Arrays, training: bool) -> tuple[Arrays, Arrays]:
        h = np.tanh(linear_ref(i["input"], p["fc1.weight"], p["fc1.bias"]))
        return {"output": ref.log_softmax(linear_ref(h, p["fc2.weight"], p["fc2.bias"]), axis=-1)}, {}

    cases.append(
        BlockCase(
            "mlp",
            mlp,
            inputs={"input": Arg((4, 5))},
            randomize=True,
            params={
                "fc1.weight": P((6, 5), small),
                "fc1.bias": P((6,), small),
                "fc2.weight": P((3, 6), small),
                "fc2.bias": P((3,), small),
            },
            reference=mlp_ref,
        )
    )

    def cnn() -> Any:
        m = Model()
        m |= Conv2d(2, 3, kernel_size=3, padding=1, name="conv")
        m += BatchNorm2d(3, name="bn")
        m += Relu()
        m += MaxPool2d(2)
        m += Flatten()
        m += Linear(4, name="fc")
        return m

    def cnn_ref(p: Arrays, i: Arrays, training: bool) -> tuple[Arrays, Arrays]:
        h = conv_ref(i["input"], p["conv.weight"], p["conv.bias"], padding=(1, 1))
        h, rm, rv = batchnorm_ref(h, p["bn.weight"], p["bn.bias"], p["bn.running_mean"], p["bn.running_var"], training)
        h = ref.max_pool2d(np.maximum(h, 0.0), kernel_size=(2, 2), stride=(2, 2))
        y = linear_ref(h.reshape(h.shape[0], -1), p["fc.weight"], p["fc.bias"])
        return {"output": y}, ({"bn.running_mean": rm, "bn.running_var": rv} if training else {})

    cases.append(
        BlockCase(
            "cnn",
            cnn,
            inputs={"input": Arg((3, 2, 4, 4))},
            params={
                "conv.weight": P((3, 2, 3, 3), small),
                "conv.bias": P((3,), small),
                **bn_params,
                "fc.weight": P((4, 12), small),
                "fc.bias": P((4,), small),
            },
            reference=cnn_ref,
            inference=True,
        )
    )
    cases.extend(_control_flow_cases(P, small))
    return cases


def _control_flow_cases(P: type[ParamSpec], small: Gen) -> list[BlockCase]:
    """The control-flow primitives: Scan (a tanh RNN, both directions), Cond (a branch on the sign of a sum,
    both branches taken) and Switch (3 branches, an index below, inside and above them: clamped)."""
    from ..models import Cond, IOKey, Linear, Model, Relu, Scan, Switch, Tanh

    def rnn(reverse: bool) -> Callable[[], Any]:
        def build() -> Any:
            cell = Model()
            cell |= Linear(4, name="fc")(input="h", output="hw")
            cell.call("add", "hw", "x", output="pre")
            cell |= Tanh()(input="pre", output=IOKey("h_next", expose=True))
            loop = Scan(cell, carry={"h": "h_next"}, xs="x", ys={"h_next": "hs"}, reverse=reverse, name="rnn")
            m = Model()
            m |= loop(h="h", x="x", h_next=IOKey("h_T"), hs=IOKey("hs"))
            return m

        return build

    def rnn_ref(reverse: bool) -> BlockReference:
        def ref(p: Arrays, i: Arrays, training: bool) -> tuple[Arrays, Arrays]:
            h, steps = i["h"], i["x"].shape[0]
            hs: list[Any] = [None] * steps
            for t in reversed(range(steps)) if reverse else range(steps):
                h = np.tanh(h @ p["rnn.fc.weight"].T + p["rnn.fc.bias"] + i["x"][t])
                hs[t] = h
            return {"h_T": h, "hs": np.stack(hs)}, {}

        return ref

    def branch(act: type | None) -> Any:
        m = Model()
        m |= Linear(3, name="fc")(input="x", output="h" if act else IOKey("y"))
        if act is not None:
            m |= act()(input="h", output=IOKey("y"))
        return m

    def cond() -> Any:
        # two Conds, on x and on -x: whatever the sign of sum(x), one takes each branch
        m = Model()
        m.call("mul", "x", -1.0, output="x_neg")
        for name, x, y in (("cond", "x", "y"), ("cond_neg", "x_neg", "y_neg")):
            m.call("sum", x, output=f"{name}_total")
            m.call("greater", f"{name}_total", 0.0, output=f"{name}_positive")
            m |= Cond(branch(Tanh), branch(Relu), name=name)(x=x, pred=f"{name}_positive", y=IOKey(y))
        return m

    def cond_ref(p: Arrays, i: Arrays, training: bool) -> tuple[Arrays, Arrays]:
        out = {}
        for name, x, y in (("cond", i["x"], "y"), ("cond_neg", -i["x"], "y_neg")):
            taken = "true_branch" if x.sum() > 0 else "false_branch"
            h = x @ p[f"{name}.{taken}.fc.weight"].T + p[f"{name}.{taken}.fc.bias"]
            out[y] = np.tanh(h) if taken == "true_branch" else np.maximum(h, 0.0)
        return out, {}

    #: Switch selectors (float inputs cast to int in the model): below, inside and above the 3 branches
    selectors = {"switch_low": -2.0, "switch_mid": 1.0, "switch_high": 7.0}

    def switch() -> Any:
        m = Model()
        for name in selectors:
            m.call("cast", f"{name}_k", kind="int", output=f"{name}_index")
            block = Switch([branch(Tanh), branch(Relu), branch(None)], name=name)
            m |= block(x="x", index=f"{name}_index", y=IOKey(f"{name}_y"))
        return m

    def switch_ref(p: Arrays, i: Arrays, training: bool) -> tuple[Arrays, Arrays]:
        out = {}
        for name in selectors:
            k = min(max(int(i[f"{name}_k"]), 0), 2)  # clamped to the branches, as jax.lax.switch
            h = i["x"] @ p[f"{name}.branch_{k}.fc.weight"].T + p[f"{name}.branch_{k}.fc.bias"]
            out[f"{name}_y"] = (np.tanh, lambda v: np.maximum(v, 0.0), lambda v: v)[k](h)
        return out, {}

    def constant(value: float) -> Gen:
        return lambda rng, shape: np.full(shape, value)

    rnn_params = {"rnn.fc.weight": P((4, 4), small), "rnn.fc.bias": P((4,), small)}
    branch_params = (("weight", (3, 5)), ("bias", (3,)))
    cond_params = {
        f"{c}.{b}.fc.{w}": P(s, small)
        for c in ("cond", "cond_neg")
        for b in ("true_branch", "false_branch")
        for w, s in branch_params
    }
    switch_params = {
        f"{c}.branch_{b}.fc.{w}": P(s, small) for c in selectors for b in range(3) for w, s in branch_params
    }
    switch_inputs = {"x": Arg((2, 5)), **{f"{c}_k": Arg((), constant(k), diff=False) for c, k in selectors.items()}}
    return [
        BlockCase(
            f"scan-rnn{'-reverse' if r else ''}",
            rnn(r),
            inputs={"h": Arg((2, 4)), "x": Arg((5, 2, 4))},
            params=rnn_params,
            reference=rnn_ref(r),
        )
        for r in (False, True)
    ] + [
        BlockCase("cond", cond, inputs={"x": Arg((2, 5))}, params=cond_params, reference=cond_ref),
        BlockCase("switch", switch, inputs=switch_inputs, params=switch_params, reference=switch_ref),
    ]


BLOCK_CASES: tuple[BlockCase, ...] = tuple(_build_block_cases())


def block_case(label: str) -> BlockCase:
    for c in BLOCK_CASES:
        if c.label == label or c.id == label:
            return c
    raise KeyError(label)


__all__ = [
    "BLOCK_CASES",
    "PRIMITIVE_CASES",
    "Arg",
    "BlockCase",
    "ParamSpec",
    "PrimitiveCase",
    "block_case",
    "bools",
    "cases_for",
    "distinct",
    "fractional",
    "indices",
    "ints",
    "nonzero",
    "normal",
    "positive",
    "small_ints",
    "wide",
    "with_zeros",
]
