"""Shape and dtype inference pass: concrete shapes and kinds for every value of the flat graph.

:func:`solve` runs the same primitive rules that checked the model while it was
built again, on fresh symbols, together with the declared shapes and the shapes
given to ``compile`` (or seen at the first ``evaluate``). :func:`concretize`
returns a copy of the graph in which every value has a concrete shape and kind.

Where the flat graph is exactly the model's (flatten says so: no mode switch
resolved, nothing dropped, no loss attached) and the model is in no other model,
the model's own symbolic terms already hold every rule's result, so
:func:`concretize` first tries them: the given shapes are unified into them inside
a :class:`~mithril.shapes.symbolic.trial` (always undone, the model is left as it
was), only the constraints those shapes wake run, and the concrete shapes are
read. Anything short of a complete concrete answer (a conflict, a shape left
unknown, a value without a term) falls back to the fresh solve, whose errors name
the given shape against what the model needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ...errors import DTypeMismatchError, MithrilError, ShapeMismatchError, ShapeUnknownError
from ...primitives.base import Term
from ...shapes.kinds import KindVar, bind_kind
from ...shapes.symbolic import Constraint, SymShape, add_constraint, transaction, trial, unify
from ..flat import FlatModel
from ..graph import Graph, Node, Value, ValueRole


def solve(
    flat: FlatModel, shapes: Mapping[str, Sequence[int | None] | None], kinds: Mapping[str, str] | None = None
) -> dict[int, Term]:
    """Symbolic terms for every value, with ``shapes`` (by source/output name) applied.

    The given shapes are unified first, so that each node's rule runs once on known input shapes
    (applied after the rules, every rule ran on unknown shapes, waited, and ran again when the
    shapes reached it: measured, 3x the time of a deep MLP's solve). Unification reaches the same
    shapes in either order; what the order changes is which conflict is met first, so when the
    fast order fails, the solve is redone in the original order, whose errors name the given
    shape against what the model needs.
    """
    if any(s is not None for s in shapes.values()):
        try:
            return _solve(flat, shapes, kinds, shapes_first=True)
        except MithrilError:
            pass  # redone below for the error message
    return _solve(flat, shapes, kinds, shapes_first=False)


def _solve(
    flat: FlatModel,
    shapes: Mapping[str, Sequence[int | None] | None],
    kinds: Mapping[str, str] | None,
    *,
    shapes_first: bool,
) -> dict[int, Term]:
    g = flat.graph
    terms: dict[int, Term] = {}

    def term(v: Value) -> Term:
        t = terms.get(v.uid)
        if t is None:
            t = terms[v.uid] = Term(SymShape.unknown(), KindVar())
        return t

    named = {**g.inputs, **g.params, **g.state, **g.outputs}

    def given_shapes() -> None:
        for key, shape in shapes.items():
            if shape is None:
                continue
            given = named.get(key)
            if given is None:  # an input this mode does not use
                continue
            t = term(given)
            need = repr(t.shape)
            try:
                unify(t.shape, SymShape.of(list(shape)))
            except ShapeMismatchError as e:
                raise ShapeMismatchError(
                    f"shape given for {key!r} is {list(shape)} but the model needs {need}: {e}"
                ) from None

    with transaction():
        for n in g.nodes:
            for v in n.inputs:
                if v.uid not in terms:
                    terms[v.uid] = Term(SymShape.unknown(), KindVar())
            if n.output.uid not in terms:
                terms[n.output.uid] = Term(SymShape.unknown(), KindVar())
        for v in (*g.sources(), *g.outputs.values()):
            term(v)
        for uid, t in terms.items():
            vi = flat.info.get(uid)
            if vi is None:
                continue
            for spec in vi.declared_shapes:
                unify(t.shape, SymShape.of(spec))
            if vi.declared_kind is not None:
                bind_kind(t.kind, vi.declared_kind)
        for n in g.nodes:
            for v in n.inputs:
                if v.role is ValueRole.CONST:
                    _const_term(v, term(v))
        if shapes_first:
            given_shapes()
        for n in g.nodes:  # every node's terms exist (made above)
            ins = [terms[v.uid] for v in n.inputs]
            out = terms[n.output.uid]
            add_constraint(Constraint(_rule_call(n, ins, out), [t.shape for t in ins] + [out.shape], n.where))
        if not shapes_first:
            given_shapes()
        for key, kind in (kinds or {}).items():
            if key not in named:
                continue
            try:
                bind_kind(term(named[key]).kind, kind)
            except DTypeMismatchError as e:
                raise DTypeMismatchError(
                    f"{key!r}: given dtype kind {kind}, the model needs {term(named[key]).kind}: {e}"
                ) from None
    return terms


def _rule_call(n: Node, ins: list[Term], out: Term) -> Callable[[], bool]:
    return lambda: n.primitive.rule(ins, out, n.attrs)


def _const_term(v: Value, t: Term) -> None:
    arr = np.asarray(v.data)
    unify(t.shape, SymShape.of(list(arr.shape)))
    if not isinstance(v.data, (int, float)) or isinstance(v.data, bool):
        kind = "bool" if arr.dtype == np.bool_ else "int" if arr.dtype.kind in "iu" else "float"
        bind_kind(t.kind, kind)


def concretize(
    flat: FlatModel, shapes: Mapping[str, Sequence[int | None] | None], kinds: Mapping[str, str] | None = None
) -> Graph:
    """A copy of ``flat.graph`` with concrete shapes and kinds, or a clear error."""
    solved = _solve_on_model_terms(flat, shapes, kinds)
    if solved is not None:
        return _copy(flat.graph, solved)
    terms = solve(flat, shapes, kinds)
    _default_kinds(flat.graph, terms)
    return _copy(flat.graph, {uid: (t.shape.concrete(), t.kind.known) for uid, t in terms.items()}, terms)


def _default_kinds(g: Graph, terms: Mapping[int, Term]) -> None:
    """Kinds nothing decided are float: the sources' first (their readers follow), then the rest."""
    for v in g.sources():
        k = terms[v.uid].kind
        if k.known is None:
            bind_kind(k, "float")
    for t in terms.values():
        if t.kind.known is None:
            bind_kind(t.kind, "float")


def _solve_on_model_terms(
    flat: FlatModel, shapes: Mapping[str, Sequence[int | None] | None], kinds: Mapping[str, str] | None
) -> dict[int, tuple[tuple[int, ...] | None, str | None]] | None:
    """Every value's concrete shape and kind from the model's own terms, or None (see the module doc)."""
    current = flat.model_terms_current
    g = flat.graph
    if current is None or len(g.nodes) != flat.n_model_nodes or not current():
        return None
    named = {**g.inputs, **g.params, **g.state, **g.outputs}
    values = {v.uid: v for v in (*named.values(), *g.state_updates.values())}
    for n in g.nodes:
        for v in n.inputs:
            values[v.uid] = v
        values[n.output.uid] = n.output
    terms: dict[int, Term] = {}
    for uid in values:
        vi = flat.info.get(uid)
        if vi is None or not vi.conns:
            return None  # a value flatten made itself
        terms[uid] = vi.conns[0].term
    solved: dict[int, tuple[tuple[int, ...] | None, str | None]] = {}
    try:
        with trial():
            for uid, t in terms.items():  # already in the model's terms where it built them: kept cheap
                vi = flat.info[uid]
                for spec in vi.declared_shapes:
                    unify(t.shape, SymShape.of(spec))
                if vi.declared_kind is not None:
                    bind_kind(t.kind, vi.declared_kind)
            for uid, v in values.items():
                if v.role is ValueRole.CONST:
                    _const_term(v, terms[uid])
            for key, shape in shapes.items():
                given = named.get(key)
                if shape is not None and given is not None:
                    unify(terms[given.uid].shape, SymShape.of(list(shape)))
            for key, kind in (kinds or {}).items():
                if key in named:
                    bind_kind(terms[named[key].uid].kind, kind)
            _default_kinds(g, terms)
            for uid, t in terms.items():
                shape = t.shape.concrete()
                if shape is None:
                    return None
                solved[uid] = (shape, t.kind.known)
    except (MithrilError, ValueError):
        return None
    return solved


def _copy(
    g: Graph,
    solved: Mapping[int, tuple[tuple[int, ...] | None, str | None]],
    terms: Mapping[int, Term] | None = None,
) -> Graph:
    """``g`` with the solved shapes and kinds; ShapeUnknownError naming the values left unknown."""
    unknown: list[str] = []
    new: dict[int, Value] = {}

    def copy(v: Value) -> Value:
        c = new.get(v.uid)
        if c is None:
            shape, kind = solved[v.uid]
            if shape is None:
                where = v.name or (v.producer.where + " output" if v.producer else f"value {v.uid}")
                unknown.append(f"{where}: {terms[v.uid].shape if terms is not None else '?'}")
            c = Value(v.role, name=v.name, kind=kind, shape=shape, data=v.data)
            new[v.uid] = c
        return c

    out = Graph()
    for attr in ("inputs", "params", "state", "outputs", "state_updates"):
        setattr(out, attr, {k: copy(v) for k, v in getattr(g, attr).items()})
    out.initializers = dict(g.initializers)
    get = new.get  # a value already copied (most node inputs) without a call of copy
    for n in g.nodes:
        nn = Node(n.primitive, [get(v.uid) or copy(v) for v in n.inputs], dict(n.attrs), copy(n.output), n.where)
        nn.output.producer = nn
        out.nodes.append(nn)
    if unknown:
        raise ShapeUnknownError(
            "cannot determine every shape; give the missing ones in compile(shapes=...): "
            + "; ".join(unknown[:10])
            + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else "")
        )
    return out


def symbolic_shapes(flat: FlatModel, shapes: Mapping[str, Any]) -> dict[str, list[object]]:
    """Shapes of the named values (symbolic where unknown), for summaries."""
    terms = solve(flat, shapes)
    g = flat.graph
    named = {**g.inputs, **g.params, **g.state, **g.outputs}
    return {k: terms[v.uid].shape.to_list() for k, v in named.items()}
