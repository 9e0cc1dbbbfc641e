"""Sub-graphs of control-flow nodes: ``scan`` (a loop) and ``cond`` (a branch).

A control-flow primitive names the attributes that hold sub-graphs
(:attr:`mithril.primitives.Primitive.subgraphs`). Each is a :class:`SubGraph`: a
:class:`~mithril.ir.graph.Graph` with concrete shapes whose ``inputs`` are, in call
order, what the node passes in, and whose ``outputs`` are, in order, what it gives back;
it has no params, state or random nodes (closed-over parameters are inputs of the node).

One call gives several outputs: one node per output, with an int ``result`` attribute;
nodes that differ only in ``result`` are one call (:func:`call_key`), and the kernel
returns the tuple of all outputs (:func:`n_outputs` of them).

``scan`` inputs are ``[*carry_init, *xs, *consts]``; the body maps
``(*carry, *x_t, *consts) -> (*carry', *y_t)``; the outputs are the final carries and
the ``ys`` stacked along a new leading axis of size ``length``.
``cond`` inputs are ``[selector, *operands]``; branch ``int(selector)`` (clamped to the
branches, as ``jax.lax.switch``; a bool selects branch 1 when true) maps the operands to
the outputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .graph import Node, SubGraph

__all__ = ["SubGraph", "call_key", "n_outputs", "stacked_ys_bytes", "subgraphs"]


def subgraphs(node: Node) -> Iterator[SubGraph]:
    """The sub-graphs of a control-flow node."""
    for name in node.primitive.subgraphs:
        v = node.attrs[name]
        yield from (v if isinstance(v, tuple) else (v,))


def n_outputs(node: Node) -> int:
    """How many outputs the call of a control-flow node gives (its kernel's tuple)."""
    return len(next(subgraphs(node)).graph.outputs)


def call_key(node: Node) -> tuple[Any, ...]:
    """Nodes of one control-flow call share this key (they differ only in ``result``)."""
    others = {k: v for k, v in node.attrs.items() if k != "result"}
    return node.primitive.name, tuple(v.uid for v in node.inputs), _freeze(others)


def _freeze(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(e) for e in x)
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    return x


def stacked_ys_bytes(attrs: Mapping[str, Any], float_bytes: int, results: Sequence[Any] = ()) -> int:
    """Bytes a ``scan`` kernel that lists every step's ys and stacks them at the end holds beyond its
    outputs: the listed per-step ys until the stack copies them, and stacked ys no node reads (made,
    then dropped; ``results``: the results the graph reads, empty for all)."""
    body = attrs.get("body")
    n_carry, length = int(attrs.get("n_carry", 0)), int(attrs.get("length", 0))
    outs = list(getattr(getattr(body, "graph", None), "outputs", {}).values())
    ys = [math.prod(v.shape) * float_bytes if v.shape is not None else 0 for v in outs[n_carry:]]
    unread = sum(b for r, b in enumerate(ys, start=n_carry) if results and r not in results)
    return length * (sum(ys) + unread)
