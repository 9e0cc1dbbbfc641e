"""Logical models: composition, naming, symbolic shapes and build-time errors."""

import pytest

import mithril as ml
from mithril.errors import (
    CycleError,
    DTypeMismatchError,
    DuplicateNameError,
    ModelBuildError,
    ShapeMismatchError,
    UnknownKeyError,
)
from mithril.models import (
    Add,
    BatchNorm2d,
    Conv2d,
    Flatten,
    IOKey,
    Linear,
    MaxPool2d,
    Model,
    Relu,
    Softmax,
)


def quickstart_model() -> Model:
    model = Model()
    model |= Linear(dimension=64)
    model += Relu()
    model += Linear(dimension=10)
    return model


def test_quickstart_exposes_input_output_and_torch_named_params():
    model = quickstart_model()
    assert model.input_terminals() == ["input", "linear_0.weight", "linear_0.bias", "linear_1.weight", "linear_1.bias"]
    assert model.output_terminals() == ["output"]
    shapes = model.shapes()
    assert shapes["linear_0.weight"][0] == 64 and shapes["output"][-1] == 10
    assert shapes["linear_1.weight"] == [10, 64]  # inferred while building


def test_shape_mismatch_names_block_terminal_and_both_shapes():
    model = Model()
    model |= Linear(dimension=8)(input=IOKey("x", shape=[4, 3]))
    with pytest.raises(ShapeMismatchError) as e:
        model += Linear(dimension=5)(weight=IOKey("w", shape=[5, 7]))
    msg = str(e.value)
    assert "linear_1.weight" in msg and "[5, 8]" in msg and "[5, 7]" in msg
    # the failed connection left the model usable
    model += Linear(dimension=5)
    assert model.shapes()["output"] == [4, 5]


def test_conv_mismatch_reported_at_the_connection():
    cnn = Model()
    cnn |= Conv2d(in_channels=3, out_channels=16, kernel_size=3, padding=1)(input=IOKey("input", shape=[2, 3, 8, 8]))
    with pytest.raises(ShapeMismatchError, match="conv2d"):
        cnn += Conv2d(in_channels=8, out_channels=4, kernel_size=3)


def test_call_style_names_connections_and_dotted_params():
    cnn = Model()
    cnn |= Conv2d(in_channels=3, out_channels=4, kernel_size=3, padding=1)(input="input", output="conv1")
    cnn += BatchNorm2d(num_features=4)(input="conv1", output="bn1")
    cnn += Relu()(input="bn1", output="relu1")
    cnn += MaxPool2d(kernel_size=2)(input="relu1", output="pool1")
    cnn += Flatten()(input="pool1", output="flat")
    cnn += Linear(dimension=3)(input="flat", output="output")
    terms = cnn.input_terminals()
    assert "batchnorm2d_0.running_mean" in terms and "conv2d_0.weight" in terms
    assert cnn.output_terminals() == ["output"]


def test_unknown_terminal_lists_the_real_ones():
    with pytest.raises(UnknownKeyError, match="input"):
        Relu()(inp="x")


def test_block_instance_can_be_added_once():
    lin = Linear(dimension=3)
    m = Model()
    m |= lin
    with pytest.raises(ModelBuildError, match="new instance"):
        Model().__ior__(lin)


def test_duplicate_block_names_and_outputs():
    m = Model()
    m |= Relu(name="act")
    with pytest.raises(DuplicateNameError):
        m |= Relu(name="act")
    m2 = Model()
    m2 |= Relu()(input="a", output="b")
    with pytest.raises(ModelBuildError, match="already the output"):
        m2 |= Relu()(input="c", output="b")


def test_cycle_is_rejected():
    m = Model()
    m |= Relu()(input="a", output="b")
    with pytest.raises(CycleError):
        m |= Relu()(input="b", output="a")


def test_models_nest_at_any_depth_and_names_are_hierarchical():
    inner = quickstart_model()
    mid = Model()
    mid |= inner
    mid += Softmax()
    outer = Model()
    outer |= mid
    assert "model_0.model_0.linear_1.weight" in outer.input_terminals()
    deep = Model()
    deep |= Relu()
    for _ in range(300):  # no recursion limit
        wrapper = Model()
        wrapper |= deep
        deep = wrapper
    assert deep.input_terminals() == ["input"]


def test_terminal_arithmetic_builds_skip_connections():
    m = Model()
    lin = Linear(dimension=4)
    m |= lin(input=IOKey("x", shape=[2, 4]))
    act = Relu()
    m += act
    m |= Add()(left=act.output, right="x", output=IOKey("y"))
    assert m.shapes()["y"] == [2, 4]
    s = lin.output + act.output
    assert s.shape == [2, 4]


def test_frozen_model_cannot_change():
    inner = quickstart_model()
    outer = Model()
    outer |= inner
    with pytest.raises(ModelBuildError, match="frozen"):
        inner += Relu()


def test_int_input_into_a_float_only_block_is_rejected():
    m = Model()
    with pytest.raises(DTypeMismatchError, match=r"relu_0.input"):
        m |= Relu()(input=IOKey("x", dtype=ml.int64))
