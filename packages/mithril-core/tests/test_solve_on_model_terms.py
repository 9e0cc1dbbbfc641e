"""Compile-time shapes read from the model's own symbolic terms (a speed-up of ``concretize``).

The oracle is the fresh solve over the flat graph (:func:`shape_inference.solve`), the path every
graph that is not exactly the model's takes: both must give the same concrete graph, value by value,
and the model must be left exactly as it was (every object reachable from it, union-find parents,
watchers and constraint flags included).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.errors import ShapeMismatchError, ShapeUnknownError
from mithril.ir.flat import FlatModel
from mithril.ir.graph import Graph
from mithril.ir.passes import shape_inference
from mithril.models import (
    BatchNorm2d,
    Conv2d,
    Embedding,
    Flatten,
    IOKey,
    LayerNorm,
    Linear,
    MaxPool2d,
    Model,
    MultiHeadAttention,
    Relu,
    Softmax,
)
from mithril.models.flatten import flatten
from mithril.models.zoo.gpt2 import gpt2
from mithril.models.zoo.recurrent import LSTM
from mithril.models.zoo.resnet import resnet18
from mithril.shapes.symbolic import SymShape, unify


def _mlp() -> Model:
    m = Model()
    m |= Linear(dimension=32)
    for _ in range(3):
        m += Relu()
        m += Linear(dimension=16)
    m += Softmax()
    return m


def _cnn() -> Model:
    m = Model()
    m |= Conv2d(in_channels=3, out_channels=8, kernel_size=3, padding=1)
    m += BatchNorm2d(num_features=8)
    m += Relu()
    m += MaxPool2d(kernel_size=2)
    m += Flatten()
    m += Linear(dimension=10)
    return m


def _declared() -> Model:
    m = Model()
    m |= Linear(dimension=4)(input=IOKey("x", shape=[None, 6]), output="h")
    m |= Relu()(input="h", output=IOKey("y", expose=True))
    return m


def _constants() -> Model:
    m = Model()
    lin = Linear(dimension=4)
    m |= lin(input="x")
    m |= Relu()(input=lin.output * 2.0 + np.ones(4, dtype=np.float32), output=IOKey("y", expose=True))
    return m


def _attention() -> Model:
    m = Model()
    m |= Embedding(20, 16)(input="tokens", output="e")
    m |= MultiHeadAttention(16, 4)(query="e", key="e", value="e", output="a")
    m |= LayerNorm(16)(input="a", output=IOKey("y", expose=True))
    return m


CASES: list[tuple[str, Callable[[], Model], dict[str, list[int]]]] = [
    ("mlp", _mlp, {"input": [5, 7]}),
    ("cnn", _cnn, {"input": [2, 3, 8, 8]}),
    ("declared", _declared, {"x": [3, 6]}),
    ("constants", _constants, {"x": [3, 6]}),
    ("attention", _attention, {"tokens": [2, 5]}),
    ("gpt2", lambda: gpt2(n_layer=2, n_embd=32, n_head=4, vocab_size=50, n_positions=16), {"input": [2, 8]}),
    ("resnet18", lambda: resnet18(num_classes=5), {"input": [1, 3, 32, 32]}),
    ("lstm", lambda: LSTM(input_size=3, hidden_size=4), {"input": [5, 2, 3]}),
]
IDS = [c[0] for c in CASES]
#: models with a mode switch (BatchNorm, Dropout): the graph has one branch, the model's terms both
SWITCHED = {"cnn", "resnet18"}


def _flat(model: Model, *, fast: bool) -> FlatModel:
    flat = flatten(model, training=False)
    if not fast:
        flat.model_terms_current = None  # the fresh solve, as for a training graph
    return flat


def _described(g: Graph) -> list[Any]:
    """A graph as plain data: every node's primitive, attributes and values (name, role, kind, shape)."""

    def value(v: Any) -> tuple[Any, ...]:
        return (v.name, v.role, v.kind, v.shape)

    named = [
        (attr, k, value(v)) for attr in ("inputs", "params", "state", "outputs") for k, v in getattr(g, attr).items()
    ]
    nodes = [(n.primitive.name, repr(n.attrs), [value(v) for v in n.inputs], value(n.output)) for n in g.nodes]
    return [named, nodes]


def _snapshot(root: Any) -> list[Any]:
    """Every object reachable from ``root`` as a token list (objects numbered in the order met)."""
    ids: dict[int, int] = {}
    keep: list[Any] = []
    out: list[Any] = []
    stack = [root]
    while stack:
        x = stack.pop()
        if x is None or isinstance(x, (bool, int, float, str, bytes, type)):
            out.append(x)
            continue
        if id(x) in ids:
            out.append(("ref", ids[id(x)]))
            continue
        ids[id(x)] = len(ids)
        keep.append(x)
        out.append(type(x).__name__)
        if isinstance(x, (list, tuple)):
            out.append(len(x))
            stack += reversed(x)
        elif isinstance(x, dict):
            out.append(len(x))
            for k, v in x.items():
                if not isinstance(k, (int, str)):
                    stack.append(k)
                stack.append(v)
                out.append(k if isinstance(k, str) else "key")  # int keys are ids of watched constraints
        elif isinstance(x, (set, frozenset)):
            out.append(sorted(map(repr, x)))
        elif isinstance(x, np.ndarray):
            out.append(x.tobytes())
        elif isinstance(x, ml.primitives.Primitive) or type(x).__module__.startswith(("numpy", "builtins")):
            out.append(repr(x))  # registry entries, dtypes, functions (the constraints' rules)
        else:
            fields: dict[str, Any] = dict(getattr(x, "__dict__", {}))
            for cls in type(x).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if hasattr(x, name):
                        fields[name] = getattr(x, name)
            for k in sorted(fields):
                out.append(k)
                stack.append(fields[k])
    return out


@pytest.mark.parametrize(("name", "build", "given"), CASES, ids=IDS)
def test_the_model_terms_give_the_graph_of_the_fresh_solve(
    name: str, build: Callable[[], Model], given: dict[str, list[int]]
) -> None:
    model = build()
    fast, full = _flat(model, fast=True), _flat(model, fast=False)
    taken = shape_inference._solve_on_model_terms(fast, given, None) is not None
    assert taken == (name not in SWITCHED), "the fast path was taken" if not taken else "not taken"
    assert _described(shape_inference.concretize(fast, given)) == _described(shape_inference.concretize(full, given))


@pytest.mark.parametrize(("name", "build", "given"), CASES, ids=IDS)
def test_the_model_is_left_as_it_was(name: str, build: Callable[[], Model], given: dict[str, list[int]]) -> None:
    model = build()
    if name in SWITCHED:
        pytest.skip("solved afresh")
    model._freeze()
    before = _snapshot(model)
    flat = _flat(model, fast=True)
    bigger = {k: [2 * s[0], *s[1:]] for k, s in given.items()}
    for shapes in (given, bigger):
        g = shape_inference.concretize(flat, shapes)
    name, out = next(iter(g.outputs.items()))
    with pytest.raises(ShapeMismatchError):  # a conflict inside the trial is rolled back too
        shape_inference.concretize(flat, {**given, name: [*out.known_shape[:-1], out.known_shape[-1] + 1]})
    assert _snapshot(model) == before


def test_the_snapshot_sees_a_change_of_the_terms() -> None:
    """The check above can fail: binding a symbol of the model changes its snapshot."""
    model = _mlp()
    model._freeze()
    before = _snapshot(model)
    unify(model.terminal_term("input").shape, SymShape.of([5, 7]))
    assert _snapshot(model) != before


def test_other_batch_sizes_compile_each_their_own_shapes() -> None:
    backend = ml.backend("numpy", dtype=ml.float64)
    pm = ml.compile(_mlp(), backend, shapes={"input": [None, 7]})
    params = pm.randomize_params(seed=0)
    for batch in (3, 8, 1):
        x = np.random.default_rng(batch).normal(size=(batch, 7))
        assert pm.evaluate(params, {"input": x})["output"].shape == (batch, 16)


def test_a_model_put_into_another_solves_afresh() -> None:
    """Composed into a parent, the model's terms carry the parent's facts: they are not read."""
    child = _mlp()
    flat = _flat(child, fast=True)
    with pytest.raises(ShapeUnknownError):
        shape_inference.concretize(flat, {})
    parent = Model()
    parent |= child(input=IOKey("x", shape=[4, 7]))
    assert child.terminal_term("input").shape.concrete() == (4, 7)
    assert shape_inference._solve_on_model_terms(flat, {}, None) is None
    with pytest.raises(ShapeUnknownError):  # as before: the batch is not known to the child alone
        shape_inference.concretize(flat, {})
    assert shape_inference.concretize(flat, {"input": [9, 7]}).inputs["input"].shape == (9, 7)


def test_a_changed_graph_solves_afresh() -> None:
    flat = _flat(_mlp(), fast=True)
    flat.graph.nodes.pop()
    assert shape_inference._solve_on_model_terms(flat, {"input": [5, 7]}, None) is None


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ({"output": [5, 3]}, ShapeMismatchError),
        ({"input": [5, 7], "output": [6, 16]}, ShapeMismatchError),
        ({}, ShapeUnknownError),
    ],
)
def test_errors_are_those_of_the_fresh_solve(given: dict[str, list[int]], error: type[Exception]) -> None:
    model = _mlp()
    messages = []
    for fast in (True, False):
        with pytest.raises(error) as e:
            shape_inference.concretize(_flat(model, fast=fast), given)
        messages.append(re.sub(r"\b(d|\*v)\d+", r"\1", str(e.value)))  # symbols are numbered apart
    assert messages[0] == messages[1]


def test_a_training_graph_is_not_the_model() -> None:
    model = _mlp()
    backend = ml.backend("numpy", dtype=ml.float64)
    step = ml.compile_step(
        model, backend, loss=ml.models.MSELoss(), optimizer=ml.optim.SGD(lr=0.1), shapes={"input": [5, 7]}
    )
    assert all(f.model_terms_current is None for f in step.physical._flat.values())
