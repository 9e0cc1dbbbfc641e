"""The flattened form of a logical model: its graph and, beside it, what the connections declared.

:func:`mithril.models.flatten.flatten` makes one; shape inference (:mod:`mithril.ir.passes.shape_inference`),
the physical model and training read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .graph import Graph, Value

if TYPE_CHECKING:  # pragma: no cover
    from ..models.connections import Connection, Initializer


@dataclass(slots=True)
class ValueInfo:
    """What the connections meeting in one value declare."""

    declared_shapes: list[list[Any]] = field(default_factory=list)
    declared_kind: str | None = None
    role: str = "input"
    init: Initializer | None = None
    init_ref: Value | None = None
    differentiable: bool = True
    conns: list[Connection] = field(default_factory=list)


@dataclass
class FlatModel:
    """The flattened model: a graph with symbolic facts kept beside it."""

    graph: Graph
    info: dict[int, ValueInfo]  # by value uid
    state_updates: dict[str, Value]
    output_names: list[str]
    #: id(connection) -> value, for every connection at every depth
    conn_values: dict[int, Value] = field(default_factory=dict)
    #: set by flatten where the graph has exactly the model's nodes (no mode switch resolved, nothing
    #: dropped): True while the model's own symbolic terms still describe exactly this graph (the
    #: model is in no other model), so that shape inference may solve on them
    #: (:func:`mithril.ir.passes.shape_inference.solve_on_model_terms`); None where not
    model_terms_current: Callable[[], bool] | None = None
    #: the number of nodes when flatten made it (a graph changed since no longer matches the model)
    n_model_nodes: int = -1
