"""Every primitive the GGML backend lowers, against the core's independent float64 reference.

``mithril.testing.reference`` shares no code with this backend; tolerances are float32's.
"""

from __future__ import annotations

import numpy as np
import pytest
from graphs import inp, one_node

from mithril.ir.graph import Graph, GraphBuilder
from mithril_ggml import GGMLBackend
from mithril_ggml.lowering import RULES
from mithril_ggml.lowering.logic import COMPARISONS

reference = pytest.importorskip("mithril.testing.reference")

#: primitive -> list of (input shapes or scalar constants, attrs, (low, high) of the data)
CASES: dict[str, list[tuple[list, dict, tuple[float, float]]]] = {
    "add": [([(2, 3, 4), (3, 1)], {}, (-2, 2))],
    "sub": [([(4,), (3, 4)], {}, (-2, 2))],
    "mul": [([(3, 1), (1, 4)], {}, (-2, 2))],
    "div": [([(3, 4), (4,)], {}, (0.5, 2))],
    "pow": [([(3, 4), 2.0], {}, (0.5, 2)), ([(3, 4), -0.5], {}, (0.5, 2)), ([(3, 4), (4,)], {}, (0.5, 2))],
    **{p: [([(3, 4), (4,)], {}, (-2, 2))] for p in COMPARISONS},
    "where": [([(3, 4), (3, 4), (4,)], {}, (-2, 2))],  # the condition is a0 > 0
    "tril_mask": [([(2, 4, 5)], {"diagonal": 1}, (-1, 1))],
    "erf": [([(3, 5)], {}, (-4, 4))],
    "maximum": [([(3, 4), (4,)], {}, (-2, 2))],
    "minimum": [([(3, 1), (1, 4)], {}, (-2, 2))],
    "cast": [([(3, 4)], {"kind": "float"}, (-2, 2))],
    "identity": [],
    **{p: [([(3, 5)], {}, (-3, 3))] for p in ("neg", "abs", "sign", "exp", "sin", "cos", "tanh", "sigmoid", "relu")},
    "log": [([(3, 5)], {}, (0.1, 5))],
    "sqrt": [([(3, 5)], {}, (0.0, 5))],
    "leaky_relu": [([(3, 5)], {"slope": 0.05}, (-3, 3))],
    "gelu": [([(3, 5)], {"approximate": "none"}, (-4, 4)), ([(3, 5)], {"approximate": "tanh"}, (-4, 4))],
    "sum": [([(2, 3, 4)], {"axis": (0, 2), "keepdims": True}, (-2, 2))],
    "mean": [([(2, 3, 4)], {"axis": None, "keepdims": False}, (-2, 2))],
    "max": [([(2, 3, 4)], {"axis": (1,), "keepdims": False}, (-2, 2))],
    "min": [([(2, 3, 4)], {"axis": (0,), "keepdims": True}, (-2, 2))],
    "argmax": [([(3, 7)], {"axis": (0,), "keepdims": False}, (-2, 2))],
    "softmax": [([(2, 3, 4)], {"axis": 1}, (-3, 3))],
    "log_softmax": [([(2, 3, 4)], {"axis": -1}, (-3, 3))],
    "matmul": [([(2, 3, 5), (5, 4)], {}, (-1, 1)), ([(3, 5), (2, 5, 4)], {}, (-1, 1))],
    "transpose": [([(2, 3, 4)], {"axes": (1, 2, 0)}, (-1, 1))],
    "reshape": [([(2, 3, 4)], {"shape": (6, -1)}, (-1, 1))],
    "flatten": [([(2, 3, 4, 5)], {"start_axis": 1, "end_axis": 2}, (-1, 1))],
    "unflatten": [
        ([(2, 12, 5)], {"axis": 1, "sizes": (3, -1)}, (-1, 1)),
        ([(6, 4)], {"axis": -2, "sizes": (2, 3)}, (-1, 1)),
    ],
    "reshape_as": [([(2, 6), (3, 4)], {}, (-1, 1))],
    "broadcast_to": [([(1, 4)], {"shape": (3, 4)}, (-1, 1))],
    "concat": [([(2, 3), (2, 2), (2, 1)], {"axis": 1}, (-1, 1))],
    "slice": [([(5, 6)], {"starts": (1, None), "stops": (5, None), "steps": (2, 3)}, (-1, 1))],
    "conv2d": [
        ([(2, 4, 7, 6), (6, 2, 3, 3)], {"stride": (2, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 2}, (-1, 1))
    ],
    "conv_transpose2d": [
        (
            [(2, 4, 5, 4), (4, 3, 3, 2)],
            {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0), "dilation": (1, 2), "groups": 2},
            (-1, 1),
        )
    ],
    "max_pool2d": [
        ([(2, 3, 7, 6)], {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1), "dilation": (1, 1)}, (-1, 1))
    ],
    "avg_pool2d": [
        (
            [(2, 3, 7, 6)],
            {"kernel_size": (2, 3), "stride": (2, 1), "padding": (1, 1), "count_include_pad": True},
            (-1, 1),
        )
    ],
}


def test_every_lowered_primitive_has_a_case():
    assert set(RULES) == set(CASES)


@pytest.mark.parametrize(
    "prim,case", [(p, c) for p, cs in CASES.items() for c in cs], ids=lambda x: x if isinstance(x, str) else ""
)
def test_matches_core_reference(prim, case, rng):
    shapes, attrs, (lo, hi) = case
    arrays = [rng.uniform(lo, hi, s).astype(np.float32) for s in shapes if not isinstance(s, float)]
    it = iter(arrays)
    operands = [np.float64(s) if isinstance(s, float) else next(it) for s in shapes]
    if prim == "where":
        operands[0] = operands[0] > 0
    exe = GGMLBackend(n_threads=2).lower(_graph(prim, shapes, attrs), jit=False)
    names = [f"a{i}" for i, s in enumerate(shapes) if not isinstance(s, float)]
    got = exe.run({}, dict(zip(names, arrays)), {})[0]["out"]
    want = reference.reference(prim)(*operands, **attrs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _graph(prim: str, shapes: list, attrs: dict) -> Graph:
    """``one_node``; a bool result is cast to float (GGML refuses a bool model output), and
    ``where``'s condition is ``a0 > 0`` (GGML's inputs are float)."""
    if prim != "where":
        g = one_node(prim, shapes, **attrs)
        out = g.outputs["out"]
    else:
        g = Graph()
        c, x, y = (inp(g, f"a{i}", s) for i, s in enumerate(shapes))
        b = GraphBuilder(g, where="test.where")
        out = b.emit("where", b.emit("greater", c, b.const(0.0)), x, y)
    if out.kind == "bool":
        out = GraphBuilder(g, where=f"test.{prim}").emit("cast", out, kind="float")
    g.outputs["out"] = out
    return g
