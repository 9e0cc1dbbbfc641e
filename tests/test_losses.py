"""The zoo's losses against torch.nn.functional: every loss, reduction and option, forward and the gradient
with respect to ``input``, on every installed backend variant, in float64; then the shape checks (no
silent broadcasting) and the constructor's argument checks.

The loss block is wrapped in a model where ``input`` is a parameter, so that ``evaluate(params, inputs,
output_gradients)`` returns its gradient; the reference is torch autograd on the same values.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.errors import ModelBuildError, ShapeMismatchError
from mithril.models import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    IOKey,
    KLDivLoss,
    L1Loss,
    Linear,
    Model,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from mithril.testing.variants import variant_backend, variants

torch = pytest.importorskip("torch")
F = torch.nn.functional

VARIANTS = variants()
REDUCTIONS = ("mean", "sum", "none")
TOL = 1e-10


@dataclass
class Case:
    block: Callable[[], Any]  # the zoo block, made fresh (a block is used once)
    ref: Callable[[Any, Any], Any]  # torch: (input, target) -> loss
    data: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]  # input, target


def _same(shape: tuple[int, ...], scale: float = 1.0) -> Callable[[np.random.Generator], tuple[Any, Any]]:
    return lambda rng: (scale * rng.standard_normal(shape), rng.standard_normal(shape))


def _binary(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    target = rng.uniform(0, 1, (4, 3))
    target[0] = [0.0, 1.0, 1.0]
    return 3 * rng.standard_normal((4, 3)), target


def _indices(shape: tuple[int, ...], c: int, ignore: int | None = None) -> Callable[[np.random.Generator], Any]:
    def data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        target = rng.integers(0, c, (shape[0], *shape[1:]))
        if ignore is not None:
            target.flat[0] = target.flat[-1] = ignore
        return rng.standard_normal((shape[0], c, *shape[1:])), target

    return data


def _distribution(shape: tuple[int, ...], zeros: bool = True) -> Callable[[np.random.Generator], Any]:
    def data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = rng.uniform(0, 1, shape)
        if zeros:
            p.flat[::5] = 0.0
        return rng.standard_normal(shape), p / p.sum(axis=1, keepdims=True)

    return data


def _log_probabilities(shape: tuple[int, ...], log_target: bool) -> Callable[[np.random.Generator], Any]:
    def data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = torch.log_softmax(torch.tensor(rng.standard_normal(shape)), 1).numpy()
        p = rng.uniform(0, 1, shape)
        p.flat[::5] = 0.0  # KL's 0 log 0 = 0
        p = p / p.sum(axis=1, keepdims=True)
        if log_target:
            p = torch.log_softmax(torch.tensor(rng.standard_normal(shape)), 1).numpy()
        return x, p

    return data


def _t(v: Any) -> Any:
    return torch.tensor(v)


def cases() -> dict[str, Case]:
    out: dict[str, Case] = {}
    for r in REDUCTIONS:
        out[f"mse-{r}"] = Case(lambda r=r: MSELoss(r), lambda x, t, r=r: F.mse_loss(x, t, reduction=r), _same((3, 4)))
        out[f"l1-{r}"] = Case(lambda r=r: L1Loss(r), lambda x, t, r=r: F.l1_loss(x, t, reduction=r), _same((2, 3, 2)))
        out[f"huber-{r}"] = Case(
            lambda r=r: HuberLoss(r, delta=0.7),
            lambda x, t, r=r: F.huber_loss(x, t, reduction=r, delta=0.7),
            _same((4, 3), 2.0),
        )
        out[f"smooth_l1-{r}"] = Case(
            lambda r=r: SmoothL1Loss(r, beta=0.6),
            lambda x, t, r=r: F.smooth_l1_loss(x, t, reduction=r, beta=0.6),
            _same((4, 3), 2.0),
        )
        out[f"bce_logits-{r}"] = Case(
            lambda r=r: BCEWithLogitsLoss(r),
            lambda x, t, r=r: F.binary_cross_entropy_with_logits(x, t, reduction=r),
            _binary,
        )
        out[f"cross_entropy-{r}"] = Case(
            lambda r=r: CrossEntropyLoss(r), lambda x, t, r=r: F.cross_entropy(x, t, reduction=r), _indices((5,), 4)
        )
        out[f"cross_entropy_probabilities-{r}"] = Case(
            lambda r=r: CrossEntropyLoss(r, target="probabilities"),
            lambda x, t, r=r: F.cross_entropy(x, t, reduction=r),
            _distribution((5, 4)),
        )
        out[f"nll-{r}"] = Case(
            lambda r=r: NLLLoss(r), lambda x, t, r=r: F.nll_loss(x, t, reduction=r), _indices((5,), 3)
        )
    for r in (*REDUCTIONS, "batchmean"):
        out[f"kl_div-{r}"] = Case(
            lambda r=r: KLDivLoss(r), lambda x, t, r=r: F.kl_div(x, t, reduction=r), _log_probabilities((3, 4), False)
        )
        out[f"kl_div_log_target-{r}"] = Case(
            lambda r=r: KLDivLoss(r, log_target=True),
            lambda x, t, r=r: F.kl_div(x, t, reduction=r, log_target=True),
            _log_probabilities((3, 4), True),
        )
    # options
    out["huber_default_delta"] = Case(HuberLoss, F.huber_loss, _same((6,), 2.0))
    out["smooth_l1_default_beta"] = Case(SmoothL1Loss, F.smooth_l1_loss, _same((6,), 2.0))
    for r in ("mean", "none"):
        out[f"smooth_l1_beta0-{r}"] = Case(
            lambda r=r: SmoothL1Loss(r, beta=0.0),
            lambda x, t, r=r: F.smooth_l1_loss(x, t, reduction=r, beta=0.0),
            _same((4, 3)),
        )
    weights = [0.5, 2.0, 3.0]
    out["bce_logits_pos_weight"] = Case(
        lambda: BCEWithLogitsLoss(pos_weight=2.5),
        lambda x, t: F.binary_cross_entropy_with_logits(x, t, pos_weight=_t(2.5)),
        _binary,
    )
    out["bce_logits_pos_weight_per_class-none"] = Case(
        lambda: BCEWithLogitsLoss("none", pos_weight=weights),
        lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="none", pos_weight=_t(weights)),
        _binary,
    )
    out["cross_entropy_label_smoothing"] = Case(
        lambda: CrossEntropyLoss(label_smoothing=0.2),
        lambda x, t: F.cross_entropy(x, t, label_smoothing=0.2),
        _indices((5,), 4),
    )
    for r in REDUCTIONS:
        out[f"cross_entropy_4d_ignore_smoothing-{r}"] = Case(
            lambda r=r: CrossEntropyLoss(r, label_smoothing=0.1),
            lambda x, t, r=r: F.cross_entropy(x, t, reduction=r, label_smoothing=0.1),
            _indices((2, 3, 2), 3, ignore=-100),
        )
        out[f"cross_entropy_probabilities_3d_smoothing-{r}"] = Case(
            lambda r=r: CrossEntropyLoss(r, label_smoothing=0.3, target="probabilities"),
            lambda x, t, r=r: F.cross_entropy(x, t, reduction=r, label_smoothing=0.3),
            _distribution((2, 3, 4)),
        )
        out[f"nll_3d_ignore_index-{r}"] = Case(
            lambda r=r: NLLLoss(r, ignore_index=1),
            lambda x, t, r=r: F.nll_loss(x, t, reduction=r, ignore_index=1),
            _indices((3, 4), 3, ignore=1),
        )
    out["cross_entropy_ignore_index_none"] = Case(
        lambda: CrossEntropyLoss(ignore_index=None), F.cross_entropy, _indices((6,), 3)
    )
    return out


CASES = cases()


def compiled(case: str, backend_name: str, shapes: dict[str, list[int]]) -> Any:
    """The case's block with ``input`` as a parameter (evaluate returns its gradient), compiled."""
    model = Model()
    model |= CASES[case].block()(input=IOKey("input", role="param"), target="target", output=IOKey("output"))
    return ml.compile(model, variant_backend(backend_name, "float64"), shapes=shapes)


@pytest.mark.parametrize("backend_name", VARIANTS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_matches_torch(case: str, backend_name: str) -> None:
    c = CASES[case]
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    x, target = c.data(rng)
    be = variant_backend(backend_name, "float64")
    pm = compiled(case, backend_name, {"input": list(x.shape), "target": list(target.shape)})

    tx = torch.tensor(x, requires_grad=True)
    ref = c.ref(tx, torch.tensor(target))
    cot = rng.standard_normal(tuple(ref.shape))
    (ref * torch.tensor(cot)).sum().backward()

    out, grads = pm.evaluate({"input": be.array(x)}, {"target": be.array(target)}, {"output": be.array(cot)})
    got, want = np.asarray(be.to_numpy(out["output"])), ref.detach().numpy()
    assert got.shape == want.shape, f"output shape {got.shape}, torch {want.shape}"
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL, err_msg="loss")
    np.testing.assert_allclose(
        be.to_numpy(grads["input"]), tx.grad.numpy(), rtol=TOL, atol=TOL, err_msg="d loss / d input"
    )


def test_every_loss_is_exported() -> None:
    import mithril.models as models

    names = {
        "MSELoss",
        "L1Loss",
        "HuberLoss",
        "SmoothL1Loss",
        "BCEWithLogitsLoss",
        "CrossEntropyLoss",
        "NLLLoss",
        "KLDivLoss",
    }
    assert names <= set(models.__all__)
    assert names <= set(models.zoo.losses.__all__)


# ------------------------------------------------------------------ shapes
NUMPY = "numpy"

ELEMENTWISE = {
    "MSELoss": MSELoss,
    "L1Loss": L1Loss,
    "HuberLoss": HuberLoss,
    "SmoothL1Loss": SmoothL1Loss,
    "BCEWithLogitsLoss": BCEWithLogitsLoss,
    "KLDivLoss": KLDivLoss,
    "CrossEntropyLoss": lambda: CrossEntropyLoss(target="probabilities"),
}


def _be() -> Any:
    return variant_backend(NUMPY, "float64")


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("input_shape,target_shape", [([8, 1], [8]), ([8], [8, 1]), ([2, 3], [3, 2]), ([4, 3], [3])])
def test_elementwise_loss_rejects_other_shapes(name: str, input_shape: list[int], target_shape: list[int]) -> None:
    """No broadcasting: MSELoss of [8, 1] and [8] was the mean of an 8x8 matrix."""
    with pytest.raises(ShapeMismatchError) as e:
        ml.compile(ELEMENTWISE[name](), _be(), shapes={"input": input_shape, "target": target_shape})
    msg = str(e.value)
    assert name in msg and f"input {input_shape}" in msg and f"target {target_shape}" in msg, msg


@pytest.mark.parametrize("block", [CrossEntropyLoss, NLLLoss])
@pytest.mark.parametrize(
    "input_shape,target_shape",
    [
        ([8, 3], [8, 3]),
        ([8, 3], [4]),
        ([8, 3], [3]),
        ([2, 3, 4], [2, 3]),
        ([2, 3, 4], [2]),
        ([8, 3], [8, 1]),
    ],
)
def test_class_index_loss_needs_target_without_the_class_axis(
    block: Any, input_shape: list[int], target_shape: list[int]
) -> None:
    with pytest.raises(ShapeMismatchError) as e:
        ml.compile(block(), _be(), shapes={"input": input_shape, "target": target_shape})
    msg = str(e.value)
    expected = input_shape[:1] + input_shape[2:]
    assert block.__name__ in msg and f"input {input_shape}" in msg and f"target {target_shape}" in msg, msg
    assert f"expected target {expected}" in msg, msg


def test_shape_error_names_the_block_inside_a_model_and_at_evaluate() -> None:
    model = Model()
    model |= Linear(1)(input="x")
    model += MSELoss(name="regression")(target="y", output=IOKey("loss"))
    with pytest.raises(ShapeMismatchError, match=r"regression.*input \[8, 1\] and target \[8\]"):
        ml.compile(model, _be(), shapes={"x": [8, 4], "y": [8]})
    pm = ml.compile(model, _be(), shapes={"x": [8, 4], "y": [8, 1]})
    assert pm.evaluate(pm.randomize_params(seed=0), {"x": np.ones((8, 4)), "y": np.ones((8, 1))})["loss"].shape == ()
    lazy = ml.compile(MSELoss(), _be())  # shapes seen at the first evaluate
    with pytest.raises(ShapeMismatchError, match=r"MSELoss: input and target must have the same shape"):
        lazy.evaluate({}, {"input": np.ones((8, 1)), "target": np.ones(8)})


def test_shape_error_at_build_time_when_shapes_are_known() -> None:
    model = Model()
    model |= Linear(1)(input=IOKey("x", shape=[8, 4]))
    with pytest.raises(ShapeMismatchError, match=r"MSELoss.*input \[8, 1\] and target \[8\]"):
        model += MSELoss()(target=IOKey("y", shape=[8]), output=IOKey("loss"))


def test_matching_shapes_still_compose_symbolically() -> None:
    """The check waits for concrete shapes: blocks whose shapes are symbolic at build time compose."""
    model = Model()
    model |= Linear(3)(input="x")
    model += CrossEntropyLoss(label_smoothing=0.1)(target="labels", output=IOKey("ce"))
    model |= NLLLoss(reduction="none")(
        input=model.call("log_softmax", "x", axis=1), target="labels", output=IOKey("nll")
    )
    pm = ml.compile(model, _be(), shapes={"x": [4, 3], "labels": [4]})
    out = pm.evaluate(pm.randomize_params(seed=0), {"x": np.ones((4, 3)), "labels": np.array([0, 1, 2, 0])})
    assert out["ce"].shape == () and out["nll"].shape == (4,)


# -------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "make,value",
    [
        (lambda: MSELoss("avg"), "'avg'"),
        (lambda: L1Loss(reduction="batchmean"), "'batchmean'"),
        (lambda: CrossEntropyLoss("elementwise"), "'elementwise'"),
        (lambda: KLDivLoss("mean_batch"), "'mean_batch'"),
        (lambda: HuberLoss(delta=-1.0), "-1.0"),
        (lambda: HuberLoss(delta=0.0), "0.0"),
        (lambda: SmoothL1Loss(beta=-0.5), "-0.5"),
        (lambda: SmoothL1Loss(beta="big"), "'big'"),
        (lambda: CrossEntropyLoss(label_smoothing=1.5), "1.5"),
        (lambda: CrossEntropyLoss(label_smoothing=-0.1, target="probabilities"), "-0.1"),
        (lambda: CrossEntropyLoss(target="logits"), "'logits'"),
        (lambda: CrossEntropyLoss(ignore_index=1.5), "1.5"),
        (lambda: NLLLoss(ignore_index="none"), "'none'"),
        (lambda: BCEWithLogitsLoss(pos_weight="heavy"), "'heavy'"),
        (lambda: BCEWithLogitsLoss(pos_weight=[[1.0]]), "[[1.0]]"),
        (lambda: KLDivLoss(log_target="yes"), "'yes'"),
    ],
)
def test_bad_arguments_name_the_block_and_the_value(make: Callable[[], Any], value: str) -> None:
    with pytest.raises(ModelBuildError) as e:
        make()
    msg = str(e.value)
    assert "Loss" in msg.split(":")[0] and value in msg, msg


def test_bad_argument_names_the_named_block() -> None:
    with pytest.raises(ModelBuildError, match=r"HuberLoss 'robust': delta must be positive, got -2.0"):
        HuberLoss(delta=-2.0, name="robust")


def test_terminals_stay_reachable_as_attributes() -> None:
    model = Model()
    loss = CrossEntropyLoss(target="probabilities")
    model |= loss(input="logits", target="soft", output=IOKey("loss"))
    assert repr(loss.target).endswith(".target") and loss.target_kind == "probabilities"
