"""swish(x; beta) = x * sigmoid(beta * x): definition, NumPy and torch kernels, gradient rule."""

from __future__ import annotations

import numpy as np

from mithril import Primitive
from mithril.plugins import hookimpl
from mithril.shapes.kinds import bind_kind, unify_kinds
from mithril.shapes.symbolic import unify

MITHRIL_PLUGIN_API = 1


def _rule(ins, out, attrs):
    bind_kind(ins[0].kind, "float")
    unify_kinds(ins[0].kind, out.kind)
    unify(ins[0].shape, out.shape)
    return True


def _vjp(b, node, g):
    # d/dx x*s(bx) = s(bx) + b*x*s(bx)*(1 - s(bx)), written with core primitives
    x = node.inputs[0]
    beta = b.const(node.attrs["beta"])
    s = b.emit("sigmoid", b.emit("mul", beta, x))
    one_minus = b.emit("sub", b.const(1.0), s)
    d = b.emit("add", s, b.emit("mul", b.emit("mul", beta, x), b.emit("mul", s, one_minus)))
    return [b.emit("mul", g, d)]


SWISH = Primitive("swish", ("input",), _rule, attrs={"beta": 1.0}, vjp=_vjp, doc="x * sigmoid(beta * x)")


def _numpy_swish(x, *, beta):
    return x / (1.0 + np.exp(-beta * x))


@hookimpl
def mithril_register_primitives(register):
    register(SWISH)


@hookimpl
def mithril_register_kernels(backend_name, register):
    if backend_name == "numpy":
        register("swish", _numpy_swish)
    elif backend_name == "torch":
        import torch

        register("swish", lambda x, *, beta: x * torch.sigmoid(beta * x))
    elif backend_name == "jax":
        import jax

        register("swish", lambda x, *, beta: x * jax.nn.sigmoid(beta * x))
