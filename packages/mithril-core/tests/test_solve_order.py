"""Shape inference applies the shapes given to compile before the rules run (a speed-up): the
result must be the same as applying them after, and a conflict must be reported as before."""

from collections.abc import Callable

import pytest

import mithril as ml
from mithril.errors import ShapeMismatchError
from mithril.ir.flat import FlatModel
from mithril.ir.passes import shape_inference
from mithril.models import BatchNorm2d, Conv2d, Flatten, IOKey, Linear, MaxPool2d, Model, Relu, Softmax
from mithril.models.flatten import flatten
from mithril.models.zoo.gpt2 import gpt2
from mithril.models.zoo.recurrent import LSTM
from mithril.models.zoo.resnet import resnet18


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


CASES: list[tuple[str, Callable[[], Model], dict[str, list[int]]]] = [
    ("mlp", _mlp, {"input": [5, 7]}),
    ("cnn", _cnn, {"input": [2, 3, 8, 8]}),
    ("declared", _declared, {"x": [3, 6]}),
    ("gpt2", lambda: gpt2(n_layer=2, n_embd=32, n_head=4, vocab_size=50, n_positions=16), {"input": [2, 8]}),
    ("resnet18", lambda: resnet18(num_classes=5), {"input": [1, 3, 32, 32]}),
    ("lstm", lambda: LSTM(input_size=3, hidden_size=4), {"input": [5, 2, 3]}),
]


def _shapes(flat: FlatModel, given: dict[str, list[int]], shapes_first: bool) -> dict[int, tuple[object, object]]:
    terms = shape_inference._solve(flat, given, None, shapes_first=shapes_first)
    return {uid: (t.shape.concrete(), t.kind.known) for uid, t in terms.items()}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(("name", "build", "given"), CASES, ids=[c[0] for c in CASES])
def test_given_shapes_first_gives_the_same_shapes(
    name: str, build: Callable[[], Model], given: dict[str, list[int]], training: bool
) -> None:
    model = build()
    model._freeze()
    flat = flatten(model, training=training)
    first, last = _shapes(flat, given, True), _shapes(flat, given, False)
    assert first == last
    assert all(s is not None for s, _ in first.values())  # the check compares concrete shapes, not Nones


def test_a_conflicting_given_shape_is_reported_as_in_the_original_order() -> None:
    # the conflict is found by a rule when the given shape comes first: the error must still name
    # the given shape against what the model needs
    model = Model()
    model |= Linear(dimension=4)
    with pytest.raises(ShapeMismatchError, match=r"shape given for 'output' is \[3, 5\] but the model needs"):
        ml.compile(model, ml.backend("numpy"), shapes={"input": [3, 6], "output": [3, 5]})
