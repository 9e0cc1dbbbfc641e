"""Block templates (mithril.models.templates): a copy is the block its constructor would build.

The oracle is the constructor itself, with templates off: every object a copied block reaches is
compared with the constructed block's, attribute by attribute, with the same sharing (an object
reached twice in one is reached twice in the other), symbol ids aside.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.errors import ShapeMismatchError
from mithril.models import templates
from mithril.models.block import Block, PrimitiveBlock
from mithril.models.clone_plan import Unclonable, plan
from mithril.models.flatten import flatten
from mithril.shapes.symbolic import Dim, Variadic

M = ml.models

#: constructors and their arguments: every templated class of the core, some twice
CASES: list[tuple[str, Callable[[], Block]]] = [
    ("Linear(8)", lambda: M.Linear(8)),
    ("Linear()", lambda: M.Linear()),
    ("Linear(8, use_bias=False)", lambda: M.Linear(8, use_bias=False)),
    ("Linear(8, name='fc')", lambda: M.Linear(8, name="fc")),
    ("Conv2d(3, 4, 3, padding=1)", lambda: M.Conv2d(3, 4, 3, padding=1)),
    (
        "Conv2d(out_channels=4, kernel_size=(3, 1), stride=2)",
        lambda: M.Conv2d(out_channels=4, kernel_size=(3, 1), stride=2),
    ),
    ("BatchNorm2d(4)", lambda: M.BatchNorm2d(4)),
    ("Relu()", lambda: M.Relu()),
    ("Add()", lambda: M.Add()),
    ("Gelu('tanh')", lambda: M.Gelu("tanh")),
    ("LeakyRelu(0.2)", lambda: M.LeakyRelu(0.2)),
    ("Softmax(axis=1)", lambda: M.Softmax(axis=1)),
    ("Transpose((1, 0))", lambda: M.Transpose((1, 0))),
    ("Reshape((2, -1))", lambda: M.Reshape((2, -1))),
    ("Flatten()", lambda: M.Flatten()),
    ("Cast('int')", lambda: M.Cast("int")),
    ("Sum(axis=1)", lambda: M.Sum(axis=1)),
    ("Mean()", lambda: M.Mean()),
    ("MaxPool2d(2)", lambda: M.MaxPool2d(2)),
    ("AvgPool2d(2)", lambda: M.AvgPool2d(2)),
    ("ArgMax()", lambda: M.ArgMax()),
    ("PrimitiveBlock('matmul')", lambda: PrimitiveBlock("matmul")),
    ("Silu()", lambda: M.Silu()),
    ("MultiHeadAttention(16, 4)", lambda: M.MultiHeadAttention(16, 4)),
    ("TransformerBlock(16, 4)", lambda: M.TransformerBlock(16, 4)),
    ("Dropout(0.1)", lambda: M.Dropout(0.1)),
    ("Conv1d(2, 3, 3)", lambda: M.Conv1d(2, 3, 3)),
    ("ConvTranspose2d(2, 3, 3)", lambda: M.ConvTranspose2d(2, 3, 3)),
    ("MaxPool1d(2)", lambda: M.MaxPool1d(2)),
    ("AdaptiveAvgPool2d(1)", lambda: M.AdaptiveAvgPool2d(1)),
    ("Embedding(10, 4)", lambda: M.Embedding(10, 4)),
    ("MSELoss()", lambda: M.MSELoss()),
    ("CrossEntropyLoss(label_smoothing=0.1)", lambda: M.CrossEntropyLoss(label_smoothing=0.1)),
    ("LayerNorm(8)", lambda: M.LayerNorm(8)),
    ("GroupNorm(2, 4)", lambda: M.GroupNorm(2, 4)),
    ("BasicBlock(4, 4)", lambda: M.BasicBlock(4, 4)),
]


def _constructed(make: Callable[[], Block], monkeypatch: pytest.MonkeyPatch) -> Block:
    monkeypatch.setenv("MITHRIL_BLOCK_TEMPLATES", "0")
    block = make()
    monkeypatch.setenv("MITHRIL_BLOCK_TEMPLATES", "1")
    return block


def _copied(make: Callable[[], Block]) -> Block:
    """The third instance: the first two are constructed, the second makes the plan."""
    templates.clear()
    make()
    make()
    return make()


def _fields(obj: Any) -> Iterator[tuple[str, Any]]:
    if hasattr(obj, "__dict__"):
        yield from obj.__dict__.items()
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name) and name != "uid":
                yield name, getattr(obj, name)


def assert_same_structure(a: Any, b: Any) -> None:
    """``a`` and ``b`` are equal object graphs with the same sharing (ids of symbols aside)."""
    pairs: dict[int, int] = {}
    keep: list[Any] = []
    stack = [(a, b, "block")]
    while stack:
        x, y, path = stack.pop()
        assert type(x) is type(y), f"{path}: {type(x).__name__} vs {type(y).__name__}"
        if x is None or isinstance(x, (bool, int, str, bytes, type)):
            assert x == y, f"{path}: {x!r} vs {y!r}"
            continue
        if isinstance(x, float):
            assert x == y or (math.isnan(x) and math.isnan(y)), f"{path}: {x!r} vs {y!r}"
            continue
        if isinstance(x, tuple):  # a value: sharing is not observable
            assert len(x) == len(y), f"{path}: length {len(x)} vs {len(y)}"
            stack += [(u, v, f"{path}[{i}]") for i, (u, v) in enumerate(zip(x, y))]
            continue
        seen = pairs.get(id(x))
        if seen is not None:
            assert seen == id(y), f"{path}: shared in one block, not in the other"
            continue
        if isinstance(x, (ml.DType, ml.primitives.Primitive, types.CodeType)):
            assert x is y, f"{path}: {x!r} vs {y!r}"
            continue
        if isinstance(x, ml.models.Initializer):  # immutable: a copy shares its prototype's
            assert x == y, f"{path}: {x!r} vs {y!r}"
            continue
        pairs[id(x)] = id(y)
        keep += [x, y]
        if isinstance(x, (list, tuple)):
            assert len(x) == len(y), f"{path}: length {len(x)} vs {len(y)}"
            stack += [(u, v, f"{path}[{i}]") for i, (u, v) in enumerate(zip(x, y))]
        elif isinstance(x, dict):
            if path.endswith(".watchers"):  # keyed by id(constraint)
                assert [k == id(c) for k, c in x.items()] == [k == id(c) for k, c in y.items()]
                x, y = list(x.values()), list(y.values())
                stack += [(u, v, f"{path}[{i}]") for i, (u, v) in enumerate(zip(x, y))]
                assert len(x) == len(y)
                continue
            assert list(x) == list(y), f"{path}: keys {list(x)} vs {list(y)}"
            stack += [(x[k], y[k], f"{path}[{k!r}]") for k in x]
        elif isinstance(x, (set, frozenset)):
            assert x == y, f"{path}: {x} vs {y}"
        elif isinstance(x, np.ndarray):
            assert x is not y and np.array_equal(x, y) and x.dtype == y.dtype, path
        elif isinstance(x, types.FunctionType):
            assert x.__code__ is y.__code__, path
            cx, cy = x.__closure__ or (), y.__closure__ or ()
            assert len(cx) == len(cy), path
            stack += [(u.cell_contents, v.cell_contents, f"{path}.<cell {i}>") for i, (u, v) in enumerate(zip(cx, cy))]
        else:
            assert x is not y, f"{path}: the copy shares a {type(x).__name__} with the prototype"
            fx, fy = dict(_fields(x)), dict(_fields(y))
            assert list(fx) == list(fy), f"{path}: attributes {list(fx)} vs {list(fy)}"
            stack += [(fx[k], fy[k], f"{path}.{k}") for k in fx]


@pytest.mark.parametrize("label, make", CASES, ids=[c[0] for c in CASES])
def test_a_copy_is_the_constructed_block(
    label: str, make: Callable[[], Block], monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = _copied(make)
    assert any(k[0] is type(copy) for k in templates._prototypes), f"{label} made no plan"
    assert_same_structure(_constructed(make, monkeypatch), copy)


def test_copies_share_nothing_mutable_and_have_fresh_symbols() -> None:
    templates.clear()
    blocks = [M.Linear(8) for _ in range(4)]
    dims = [
        {id(d) for d in [*t.shape.prefix, *t.shape.suffix]} | {id(t.shape.variadic)}
        for t in (b.terminal_term("input") for b in blocks[1:])
    ]
    assert not (dims[0] & dims[1]) and not (dims[1] & dims[2])
    names = [repr(b.terminal_term("input").shape) for b in blocks]
    assert len(set(names)) == len(names)  # symbols named apart
    a, b = blocks[2], blocks[3]
    assert a._conns[0] is not b._conns[0] and a._blocks[0] is not b._blocks[0]
    assert a._blocks[0]._parent is a and b._blocks[0]._parent is b


def test_models_built_from_copies_compile_to_the_same_program(monkeypatch: pytest.MonkeyPatch) -> None:
    def build() -> ml.models.Model:
        model = M.Model()
        model |= M.Linear(16)(input="input")
        for _ in range(6):
            model += M.Linear(16)
            model += M.Relu()
        model += M.LayerNorm(16)
        model += M.Dropout(0.2)
        return model

    backend = ml.backend("numpy", dtype=ml.float64)
    monkeypatch.setenv("MITHRIL_BLOCK_TEMPLATES", "0")
    fresh = ml.compile(build(), backend, shapes={"input": [3, 5]})
    monkeypatch.setenv("MITHRIL_BLOCK_TEMPLATES", "1")
    templates.clear()
    build()
    copied = ml.compile(build(), backend, shapes={"input": [3, 5]})
    assert copied.source == fresh.source
    params = fresh.randomize_params(seed=1)
    x = {"input": np.random.default_rng(0).normal(size=(3, 5))}
    outs = []
    for pm in (fresh, copied):
        backend.seed(3)  # the same dropout mask
        outs.append(pm.evaluate(params, x)["output"])
    np.testing.assert_array_equal(outs[1], outs[0])
    assert copied.shapes == fresh.shapes


def test_connection_errors_of_copies_are_those_of_constructed_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    def misconnect() -> str:
        model = M.Model()
        model |= M.Linear(4)(input=ml.IOKey("x", shape=[2, 3]))
        with pytest.raises(ShapeMismatchError) as e:
            model += M.Linear(5)(input="x", output=ml.IOKey("y", shape=[2, 7]))
        return str(e.value)

    monkeypatch.setenv("MITHRIL_BLOCK_TEMPLATES", "0")
    want = misconnect()
    monkeypatch.setenv("MITHRIL_BLOCK_TEMPLATES", "1")
    templates.clear()
    misconnect()
    misconnect()
    assert misconnect() == want


def test_a_copy_after_a_rolled_back_connection_is_intact() -> None:
    templates.clear()
    M.Linear(4), M.Linear(4)
    model = M.Model()
    model |= M.Linear(4)(input=ml.IOKey("x", shape=[2, 3]))
    bad = M.Linear(4)
    with pytest.raises(ShapeMismatchError):
        model += bad(input=ml.IOKey("z", shape=[2, 9]), output="x")
    assert [len(s) for s in M.Linear(4).shapes().values()] == [len(s) for s in M.Linear(4).shapes().values()]
    model += M.Linear(4)
    assert model.shapes()["output"] == [2, 4]


def test_arguments_that_are_not_values_run_the_constructor() -> None:
    templates.clear()
    for _ in range(3):
        M.Reshape([2, -1])  # a list
        M.Linear(np.int64(4))  # not an int
    assert not any(k[0] in (M.Reshape, M.Linear) for k in templates._prototypes)


def test_a_subclass_that_does_not_declare_a_template_runs_its_constructor() -> None:
    class Scaled(M.Linear):
        def __init__(self, dimension: int) -> None:
            super().__init__(dimension)
            self.scale = 2.0

    templates.clear()
    blocks = [Scaled(3) for _ in range(3)]
    assert all(b.scale == 2.0 for b in blocks)
    assert not any(k[0] is Scaled for k in templates._prototypes)


def test_a_reregistered_primitive_drops_the_plan() -> None:
    templates.clear()
    for _ in range(3):
        M.Relu()
    (key,) = [k for k in templates._prototypes if k[0] is M.Relu]
    old = ml.primitives.registry._table["relu"]
    new = ml.primitives.Primitive("relu", old.inputs, old.rule)
    ml.primitives.registry._table["relu"] = new
    try:
        assert M.Relu().primitive is new  # constructed: the plan named the old primitive
        assert templates._prototypes[key][1] == (new,)  # and a new plan is made
        assert M.Relu().primitive is new
    finally:
        ml.primitives.registry._table["relu"] = old
        templates.clear()


def test_unknown_objects_are_not_copied() -> None:
    block = M.Relu()
    block.extra = object()  # type: ignore[attr-defined]
    with pytest.raises(Unclonable):
        plan(block)


def test_symbols_of_a_copy_are_new() -> None:
    templates.clear()
    blocks = [M.Linear() for _ in range(3)]
    flat = [flatten(b) for b in blocks]
    assert all(len(f.graph.nodes) == len(flat[0].graph.nodes) for f in flat)
    v = blocks[2].terminal_term("input").shape.variadic
    assert isinstance(v, Variadic) and v.find().uid not in {
        b.terminal_term("input").shape.variadic.find().uid for b in blocks[:2]
    }
    assert all(isinstance(d, Dim) for d in blocks[2].terminal_term("weight").shape.prefix)
