"""Control-flow blocks: :class:`Scan` (a loop that compiles once), :class:`Cond` and :class:`Switch` (branches).

Their bodies and branches are logical models. While the outer model is built and compiled,
each body's own shape rules run on fresh symbols linked to the block's terminals, so shapes
flow both ways (a body's ``Linear`` learns its input size from the outer model, the outer
model learns the parameter's shape from the body). Once shapes are concrete the body is
compiled to a sub-graph (:class:`mithril.ir.graph.SubGraph`) and the block becomes one
``scan`` / ``cond`` call (:mod:`mithril.primitives.control_flow`).

A body runs in training mode (its mode switches resolve so) and may hold neither state
(BatchNorm's running statistics) nor random primitives (Dropout): both are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import DTypeMismatchError, ModelBuildError, ShapeMismatchError, UnsupportedError
from ..ir.flat import FlatModel
from ..ir.graph import Graph, GraphBuilder, Node, SubGraph, Value, ValueRole
from ..ir.passes import simplify
from ..ir.passes.expand import expand
from ..ir.passes.shape_inference import concretize, solve
from ..primitives.base import Term
from ..shapes.control_flow import link_branch, link_scan
from ..shapes.kinds import KindVar, unify_kinds
from ..shapes.symbolic import Dim, SymShape, transaction, unify
from .connections import Initializer, IOKey
from .flatten import flatten
from .model import Model


class LogicalBody:
    """A logical model used as a body or branch: its interface in call order, linked and compiled on demand.

    ``inputs`` are the body's terminal names in the order the call passes them (names the body
    does not have are accepted and ignored: a branch's view of the other branches' parameters);
    ``outputs`` the names it returns, in order.
    """

    def __init__(self, model: Model, inputs: Sequence[str], outputs: Sequence[str], label: str) -> None:
        self.label = label
        self.flat: FlatModel = flatten(model, training=True)
        g = self.flat.graph
        if g.state or self.flat.state_updates:
            raise UnsupportedError(f"{label}: a body cannot hold state ({sorted(g.state)}); control flow has no state")
        if any(n.primitive.random for n in g.nodes):
            where = next(n.where for n in g.nodes if n.primitive.random)
            raise UnsupportedError(f"{label}: random primitives (Dropout at {where!r}) inside control flow")
        self.inputs, self.outputs = list(inputs), list(outputs)
        missing = [n for n in self.outputs if n not in g.outputs]
        if missing:
            raise ModelBuildError(f"{label}: no output(s) {missing}; its outputs are {list(g.outputs)}")
        self._named = {**g.inputs, **g.params}
        self._compiled: dict[Any, SubGraph] = {}

    def __repr__(self) -> str:
        return f"<{self.label}: {self.inputs} -> {self.outputs}>"

    # ------------------------------------------------------------ shape rules
    def _terms(self) -> tuple[list[Any], list[Any]]:
        """Fresh symbolic terms of the interface (the body's rules run on them)."""
        terms = solve(self.flat, {})
        ins = [
            terms[self._named[n].uid] if n in self._named else Term(SymShape.unknown(), KindVar()) for n in self.inputs
        ]
        outs = [terms[self.flat.graph.outputs[n].uid] for n in self.outputs]
        return ins, outs

    def link_scan(self, ins: Sequence[Any], out: Any, attrs: Mapping[str, Any]) -> bool:
        body_in, body_out = self._terms()
        length = Dim(attrs["length"]) if attrs["length"] is not None else Dim()
        link_scan(body_in, body_out, self.inputs, self.outputs, ins, out, attrs, length)
        return True

    def link_branch(self, index: int, ins: Sequence[Any], out: Any, result: int) -> bool:
        body_in, body_out = self._terms()
        link_branch(self.label, body_in, body_out, self.outputs, ins, out, result)
        return True

    # ------------------------------------------------------------ compilation
    def compiled(self, args: Sequence[tuple[tuple[int, ...], str | None]]) -> SubGraph:
        """The body for concrete argument shapes and kinds (one per distinct set, so calls share it)."""
        key = tuple(args)
        sub = self._compiled.get(key)
        if sub is None:
            sub = self._compiled[key] = self._compile(args)
        return sub

    def _compile(self, args: Sequence[tuple[tuple[int, ...], str | None]]) -> SubGraph:
        named = dict(zip(self.inputs, args))
        shapes = {n: list(s) for n, (s, _) in named.items() if n in self._named}
        kinds = {n: k for n, (_, k) in named.items() if n in self._named and k is not None}
        g = concretize(self.flat, shapes, kinds)
        expand(g)
        simplify.remove_identities(g)
        simplify.fold_shape_constants(g)
        simplify.prune(g)
        simplify.cse(g)
        table = {**g.inputs, **g.params}
        body = Graph()
        for n, (shape, kind) in named.items():
            v = table.get(n) or Value(ValueRole.INPUT, name=n, kind=kind, shape=shape)  # not read by this body
            v.role = ValueRole.INPUT
            body.inputs[n] = v
        body.nodes = g.nodes
        for i, n in enumerate(self.outputs):  # an output returned twice (a carry also stacked) gets two names
            body.outputs[n if n not in body.outputs else f"{n}_{i}"] = g.outputs[n]
        return SubGraph(body, label=self.label.replace(" ", "_"))

    def expand(self, b: GraphBuilder, node: Node) -> Value:
        """Expand rule of ``scan_model`` / ``cond_model``: the IR call for the node's concrete shapes."""
        attrs = node.attrs
        if "body" in attrs:
            nc, nx = attrs["n_carry"], attrs["n_xs"]
            args = [
                (v.known_shape[1:] if nc <= i < nc + nx else v.known_shape, v.kind) for i, v in enumerate(node.inputs)
            ]
            length = node.inputs[nc].known_shape[0] if nx else attrs["length"]
            ir_attrs = {k: v for k, v in attrs.items() if k != "body"}
            return b.emit("scan", *node.inputs, body=self.compiled(args), **{**ir_attrs, "length": length})
        args = [(v.known_shape, v.kind) for v in node.inputs[1:]]
        branches = tuple(br.compiled(args) for br in attrs["branches"])
        return b.emit("cond", *node.inputs, branches=branches, result=attrs["result"])

    # ------------------------------------------------------------ interface helpers
    def param_key(self, name: str, outer: str) -> IOKey | None:
        """The IOKey declaring the body's parameter ``name`` as the outer parameter ``outer``."""
        g = self.flat.graph
        v = g.params.get(name)
        if v is None:
            return None
        init = g.initializers.get(name)
        ref = self.flat.info[v.uid].init_ref
        if init is not None and init.fan_in_of is not None and ref is not None and ref.name is not None:
            init = Initializer(init.fn, fan_in_of=outer.replace(name, ref.name), label=init.label)
        return IOKey(outer, role="param", init=init)

    def interface(self) -> tuple[list[str], list[str], list[str]]:
        """The body's data inputs, params and outputs, by name."""
        g = self.flat.graph
        return list(g.inputs), list(g.params), list(g.outputs)


def _names(value: Sequence[str] | str, what: str, at: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(n, str) and n for n in items):
        raise ModelBuildError(f"{at}: {what} must be terminal names, got {value!r}")
    return items


def _check_model(model: Any, what: str, at: str) -> Model:
    if not isinstance(model, Model):
        raise ModelBuildError(f"{at}: {what} must be a logical Model, got {type(model).__name__}")
    if model._parent is not None:
        raise ModelBuildError(f"{at}: {what} is already part of {model._parent.display_name}")
    return model


class Scan(Model):
    """A loop over axis 0 of sequence inputs, compiled once whatever the number of steps.

    ``body`` is a logical model run once per step. ``carry`` maps each carried input of the
    body to the body output that is its next value (``{"h": "h_next"}``); ``xs`` names
    the body inputs that are read one step at a time; ``ys`` the body outputs stacked over
    the steps (a mapping ``{"h_next": "hs"}`` names them apart from the final carries). Every other input of the body (its parameters, data it reads whole) is an
    input of the block with the same name, the same at every step.

    Terminals: the carries' initial values (named as the body's carry inputs), the ``xs``
    ``[T, ...]``, the other inputs; outputs: the final carries (named as the body outputs)
    and the ``ys`` ``[T, ...]`` (named as in ``ys``). ``reverse`` runs the steps from last to first (``ys`` keep
    their step's position); ``length`` fixes ``T`` when there are no ``xs``. Gradients are a
    reverse loop (O(T)).
    """

    def __init__(
        self,
        body: Model,
        carry: Mapping[str, str],
        xs: Sequence[str] | str = (),
        ys: Sequence[str] | str | Mapping[str, str] = (),
        *,
        reverse: bool = False,
        length: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        at = f"Scan({name})" if name else "Scan"
        body = _check_model(body, "body", at)
        if not isinstance(carry, Mapping):
            raise ModelBuildError(f"{at}: carry must map body inputs to body outputs, got {carry!r}")
        xs_n = _names(xs, "xs", at)
        ys_map = dict(ys) if isinstance(ys, Mapping) else {n: n for n in _names(ys, "ys", at)}
        ys_n = list(ys_map)
        if not carry and not ys_n:
            raise ModelBuildError(f"{at}: the loop has neither carries nor ys; it would compute nothing")
        if not xs_n and length is None:
            raise ModelBuildError(f"{at}: without xs, give the number of steps as length=")
        data, params, outs = LogicalBody(body, [], [], f"{at} body").interface()
        sources = data + params
        for n in [*carry, *xs_n]:
            if n not in sources:
                raise ModelBuildError(f"{at}: the body has no input {n!r}; its inputs are {sources}")
        for n in [*carry.values(), *ys_n]:
            if n not in outs:
                raise ModelBuildError(
                    f"{at}: the body has no output {n!r}; its outputs are {outs} (a connection the body also "
                    f"reads is an output only when exposed: IOKey({n!r}, expose=True))"
                )
        clash = sorted(set(carry.values()) & set(ys_map.values()))
        if clash:
            raise ModelBuildError(
                f"{at}: {clash} would name both a final carry and stacked ys; name the ys apart, "
                f"e.g. ys={{{clash[0]!r}: {clash[0] + 's'!r}}}"
            )
        rest = [n for n in sources if n not in carry and n not in xs_n]
        order = [*carry, *xs_n, *rest]
        lb = LogicalBody(body, order, [*carry.values(), *ys_n], f"{at} body")
        keys: list[Any] = [lb.param_key(n, n) or IOKey(n) for n in order]
        attrs = dict(n_carry=len(carry), n_xs=len(xs_n), length=length, reverse=bool(reverse))
        outer = [*carry.values(), *ys_map.values()]
        for r, out in enumerate(outer):
            self.call("scan_model", *(keys if r == 0 else order), body=lb, result=r, output=IOKey(out), **attrs)
        self.set_canonical(input=order[len(carry)] if xs_n else order[0], output=outer[-1])


def _check_outputs_agree(bodies: Sequence[LogicalBody], labels: Sequence[str], outs: Sequence[str], at: str) -> None:
    """Branches whose outputs disagree on what they know alone (a ``Linear(3)`` against a ``Linear(5)``)."""
    first = bodies[0]._terms()[1]
    for lb, label in zip(bodies[1:], labels[1:]):
        for name, a, b in zip(outs, first, lb._terms()[1]):
            try:
                with transaction():
                    unify(a.shape, b.shape)
                    unify_kinds(a.kind, b.kind)
            except (ShapeMismatchError, DTypeMismatchError) as e:
                raise type(e)(
                    f"{at}: {label}: output {name!r} is {b.shape} ({b.kind.known or 'any kind'}) but {labels[0]} gives "
                    f"{a.shape} ({a.kind.known or 'any kind'}): "
                    f"branches must agree"
                ) from None


class Switch(Model):
    """``branches[index]`` applied to the inputs: the branch an int ``index`` computed in the model picks.

    The branches are logical models with the same data inputs and outputs (by name); each
    branch's parameters are parameters of the block named ``branch_{k}.<name>``. An index
    outside the branches is clamped to the first or last (as ``jax.lax.switch``). ``names`` label the
    branches (default ``branch_0``...); ``selector`` is the selector's kind (``"int"``; :class:`Cond`: ``"bool"``). Only the
    branch taken runs, and gradients flow through it.
    """

    def __init__(
        self,
        branches: Sequence[Model],
        *,
        index: str = "index",
        names: Sequence[str] | None = None,
        selector: str = "int",
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        at = f"{type(self).__name__}({name})" if name else type(self).__name__
        models = [_check_model(m, f"branch {k}", at) for k, m in enumerate(branches)]
        if not models:
            raise ModelBuildError(f"{at}: needs at least one branch")
        labels = list(names) if names is not None else [f"branch_{k}" for k in range(len(models))]
        views = [LogicalBody(m, [], [], f"{at} {lab}").interface() for m, lab in zip(models, labels)]
        data, _, outs = views[0]
        for lab, (d, _, o) in zip(labels[1:], views[1:]):
            if sorted(d) != sorted(data) or sorted(o) != sorted(outs):
                raise ModelBuildError(
                    f"{at}: {lab} has inputs {d} and outputs {o}; {labels[0]} has inputs {data} and outputs {outs} "
                    f"(branches need the same interface)"
                )
        if index in data:
            raise ModelBuildError(f"{at}: the selector name {index!r} is also a branch input; pick another")
        outer = {(lab, p): f"{lab}.{p}" for lab, (_, ps, _) in zip(labels, views) for p in ps}
        operands = [*data, *outer.values()]
        bodies = []
        for lab, m, (_, ps, _) in zip(labels, models, views):
            own = {f"{lab}.{p}": p for p in ps}
            # every branch takes every operand; another branch's parameters are placeholders it never reads
            view = [n if n in data else own.get(n, f"<{n}>") for n in operands]
            bodies.append((LogicalBody(m, view, outs, f"{at} {lab}"), own))
        _check_outputs_agree([lb for lb, _ in bodies], labels, outs, at)
        keys: list[Any] = [IOKey(index, dtype=selector)] + [IOKey(n) for n in data]
        for lb, own in bodies:
            keys += [lb.param_key(p, o) for o, p in own.items()]
        branches_t = tuple(lb for lb, _ in bodies)
        for r, out in enumerate(outs):
            ins = keys if r == 0 else [index, *operands]
            self.call("cond_model", *ins, branches=branches_t, result=r, output=IOKey(out))
        self.set_canonical(input=data[0] if data else index, output=outs[0])


class Cond(Switch):
    """``true_branch`` when the bool ``pred`` (computed in the model) is true, else ``false_branch``.

    Parameters are named ``true_branch.<name>`` and ``false_branch.<name>``; see :class:`Switch`.
    """

    def __init__(self, true_branch: Model, false_branch: Model, *, pred: str = "pred", name: str | None = None) -> None:
        super().__init__(
            [false_branch, true_branch], index=pred, names=["false_branch", "true_branch"], selector="bool", name=name
        )


__all__ = ["Cond", "LogicalBody", "Scan", "Switch"]
