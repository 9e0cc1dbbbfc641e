"""The zoo's ResNets against a torch.nn ResNet with torchvision's layout, and torch state dicts in and out.

The oracle below is plain torch.nn written after torchvision's ResNet (same
attribute names: ``conv1``, ``bn1``, ``layer1.0.downsample.0``, ``fc``...), since
torchvision itself is not installed. Its random weights and randomised BatchNorm
statistics go into Mithril through :func:`mithril.io.load_state_dict`; outputs,
gradients and new running statistics are compared on every installed backend.
The reference always runs in float64 on the exact values the backend holds.
Tolerances (relative to the reference's magnitude): float64 1e-9, float32 1e-4.
"""

from __future__ import annotations

import copy
import functools
import zlib
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.errors import ModelBuildError, ParamsError
from mithril.io import load_state_dict, to_state_dict
from mithril.models import BasicBlock, ResNet, resnet18, resnet34, resnet50
from mithril.testing.variants import installed, variant_backend

torch = pytest.importorskip("torch")
nn = torch.nn

INSTALLED = installed()
TOL = {"float64": 1e-9, "float32": 1e-4}
NBT = "num_batches_tracked"


# ------------------------------------------------------------------ the oracle
class TorchBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = shortcut(inplanes, planes, stride)

    def forward(self, x: Any) -> Any:
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = shortcut(inplanes, planes * 4, stride)

    def forward(self, x: Any) -> Any:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


def shortcut(inplanes: int, outplanes: int, stride: int) -> Any:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm2d(outplanes))


class TorchResNet(nn.Module):
    def __init__(self, block: Any, layers: list[int], num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(inplanes, planes, 2 if i > 0 and j == 0 else 1))
                inplanes = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: Any) -> Any:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


ARCHS = {
    "resnet18": (resnet18, TorchBasicBlock, [2, 2, 2, 2]),
    "resnet34": (resnet34, TorchBasicBlock, [3, 4, 6, 3]),
    "resnet50": (resnet50, TorchBottleneck, [3, 4, 6, 3]),
}
NUM_CLASSES = 10


def make_oracle(arch: str, seed: int, num_classes: int = NUM_CLASSES) -> Any:
    """A float64 torch ResNet with random weights and non-trivial BatchNorm statistics and affine params.

    Values are rounded to float32 so that float32 backends hold them exactly.
    """
    torch.manual_seed(seed)
    _, block, layers = ARCHS[arch]
    module = TorchResNet(block, layers, num_classes).double()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, c)))
                m.bias.copy_(torch.tensor(0.1 * rng.standard_normal(c)))
                m.running_mean.copy_(torch.tensor(0.1 * rng.standard_normal(c)))
                m.running_var.copy_(torch.tensor(rng.uniform(0.5, 2.0, c)))
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.float().double())
    return module


@functools.cache
def oracle(arch: str) -> Any:
    """One shared oracle per architecture (in inference mode); tests that change it take a deepcopy."""
    return make_oracle(arch, seed=zlib.crc32(arch.encode())).eval()


def torch_state(module: Any) -> dict[str, Any]:
    return {k: v for k, v in module.state_dict().items() if not k.endswith(NBT)}


#: one shared backend per (variant, dtype)
backend = variant_backend


@functools.cache
def compiled(arch: str, backend_name: str, dtype: str, shape: tuple[int, ...], training: bool = False) -> Any:
    """The zoo's ResNet compiled (cached): inference-only unless ``training``."""
    # jax runs jitted: op-by-op dispatch of a whole ResNet would dominate the runtime
    return ml.compile(
        ARCHS[arch][0](num_classes=NUM_CLASSES),
        backend(backend_name, dtype),
        shapes={"input": shape},
        jit=backend_name == "jax",
        static_inference=not training,
    )


@functools.cache
def image(shape: tuple[int, ...]) -> np.ndarray:
    """A fixed random image batch, float32-representable."""
    return np.random.default_rng(len(shape) + sum(shape)).standard_normal(shape).astype(np.float32).astype(np.float64)


@functools.cache
def inference_reference(arch: str, shape: tuple[int, ...]) -> np.ndarray:
    with torch.no_grad():
        return oracle(arch)(torch.tensor(image(shape))).numpy()


@functools.cache
def training_reference(
    shape: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """resnet18 in training mode: output cotangent, output, parameter gradients and new state."""
    module = copy.deepcopy(oracle("resnet18")).train()
    out = module(torch.tensor(image(shape)))
    cot = np.random.default_rng(4).standard_normal(tuple(out.shape))
    (out * torch.tensor(cot)).sum().backward()
    grads = {k: p.grad.numpy() for k, p in module.named_parameters()}
    state = {k: v.numpy() for k, v in module.named_buffers() if not k.endswith(NBT)}
    return cot, out.detach().numpy(), grads, state


def close(got: Any, want: Any, dtype: str, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    tol = TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


# ------------------------------------------------------------------- structure
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_names_and_shapes_are_torchvisions(arch: str) -> None:
    # the dtype of a compiled model that a later test reuses
    pm = compiled(arch, "numpy", "float64" if arch == "resnet18" else "float32", (1, 3, 32, 32))
    module = oracle(arch)
    assert set(pm.param_keys) == {k for k, _ in module.named_parameters()}
    assert set(pm.state_keys) == {k for k, _ in module.named_buffers() if not k.endswith(NBT)}
    assert pm.param_shapes == {k: tuple(v.shape) for k, v in torch_state(module).items()}
    assert pm.input_keys == ("input",) and pm.output_keys == ("output",)


def test_resnet_rejects_bad_configurations() -> None:
    with pytest.raises(ModelBuildError, match="layers"):
        ResNet(BasicBlock, (2, 2, 2))
    with pytest.raises(ModelBuildError, match="block"):
        ResNet(nn.Conv2d, (2, 2, 2, 2))  # type: ignore[arg-type]
    with pytest.raises(ModelBuildError, match="num_classes"):
        resnet18(num_classes=0)


def test_in_channels_changes_the_stem() -> None:
    pm = ml.compile(
        resnet18(num_classes=4, in_channels=1), backend("numpy", "float64"), shapes={"input": [1, 1, 32, 32]}
    )
    assert pm.param_shapes["conv1.weight"] == (64, 1, 7, 7)
    assert pm.param_shapes["fc.weight"] == (4, 512)


# ------------------------------------------------------------------- inference
#: resnet18 on every backend in both dtypes; the deeper ones on fewer (their XLA compile is slow)
INFERENCE = [("resnet18", b, d, (2, 3, 40, 40)) for b in INSTALLED for d in ("float64", "float32")]
INFERENCE += [
    ("resnet34", b, d, (1, 3, 32, 32)) for b, d in (("numpy", "float32"), ("torch", "float64")) if b in INSTALLED
]
INFERENCE += [("resnet50", b, "float32", (1, 3, 32, 32)) for b in ("numpy", "torch") if b in INSTALLED]


@pytest.mark.parametrize("arch,backend_name,dtype,shape", INFERENCE, ids=[f"{a}-{b}-{d}" for a, b, d, _ in INFERENCE])
def test_inference_matches_torch(arch: str, backend_name: str, dtype: str, shape: tuple[int, ...]) -> None:
    be = backend(backend_name, dtype)
    pm = compiled(arch, backend_name, dtype, shape)
    params = load_state_dict(oracle(arch).state_dict(), pm)
    assert set(params) == {*pm.param_keys, *pm.state_keys}
    assert all(be.dtype_of(v) == be.dtype for v in params.values())
    out = pm.evaluate(params, {"input": be.array(image(shape))})["output"]
    close(be.to_numpy(out), inference_reference(arch, shape), dtype, f"{arch} output")


# -------------------------------------------------------------------- training
@pytest.mark.parametrize("backend_name", INSTALLED)
def test_training_step_matches_torch_autograd(backend_name: str) -> None:
    """Batch statistics: output, every parameter's gradient and the new running statistics (float64)."""
    be = backend(backend_name, "float64")
    shape = (2, 3, 40, 40)
    pm = compiled("resnet18", backend_name, "float64", shape, training=True)
    params = load_state_dict(oracle("resnet18").state_dict(), pm)
    cot, want, want_grads, want_state = training_reference(shape)
    out, grads, state = pm.evaluate(
        params, {"input": be.array(image(shape))}, {"output": be.array(cot)}, return_state=True
    )
    close(be.to_numpy(out["output"]), want, "float64", "output")
    assert set(grads) == set(want_grads)
    for k, g in want_grads.items():
        close(be.to_numpy(grads[k]), g, "float64", f"d/d {k}")
    assert set(state) == set(want_state)
    for k, v in want_state.items():
        close(be.to_numpy(state[k]), v, "float64", f"state {k}")


# ------------------------------------------------------------ state dicts out
@pytest.mark.parametrize("backend_name", INSTALLED)
def test_to_state_dict_round_trip_is_lossless(backend_name: str) -> None:
    """Mithril -> NumPy / torch -> Mithril keeps every bit, and torch loads it strictly."""
    be = backend(backend_name, "float32")
    pm = ml.compile(resnet18(num_classes=NUM_CLASSES), be, shapes={"input": [1, 3, 32, 32]})
    rng = np.random.default_rng(5)
    params = {k: be.array(rng.uniform(0.5, 2.0, s)) for k, s in pm.param_shapes.items()}

    exported = to_state_dict(params, be)
    assert set(exported) == set(params)
    for k, v in exported.items():
        assert isinstance(v, np.ndarray) and v.dtype == np.float32
        np.testing.assert_array_equal(v, be.to_numpy(params[k]), err_msg=k)
    reloaded = load_state_dict(exported, pm)
    for k in params:
        np.testing.assert_array_equal(be.to_numpy(reloaded[k]), be.to_numpy(params[k]), err_msg=k)

    module = TorchResNet(TorchBasicBlock, [2, 2, 2, 2], NUM_CLASSES)
    tensors = to_state_dict(params, be, as_torch=True)
    assert all(isinstance(t, torch.Tensor) and t.dtype == torch.float32 for t in tensors.values())
    module.load_state_dict(tensors, strict=True)  # torch keeps its own num_batches_tracked
    for k, v in torch_state(module).items():
        np.testing.assert_array_equal(v.numpy(), be.to_numpy(params[k]), err_msg=k)


def test_to_state_dict_copies() -> None:
    be = backend("numpy", "float64")
    params = {"w": np.arange(6.0).reshape(2, 3)}
    out = to_state_dict(params, be)
    out["w"][0, 0] = -1.0
    assert params["w"][0, 0] == 0.0


# ------------------------------------------------------------- state dicts in
@pytest.fixture(scope="module")
def small_pm() -> Any:
    return compiled("resnet18", "numpy", "float64", (1, 3, 32, 32))


def test_parameters_requiring_grad_load(small_pm: Any) -> None:
    """nn.Parameters (requires_grad) and float32 tensors load; floats become the backend's dtype."""
    module = oracle("resnet18")
    raw = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    assert any(t.requires_grad for t in raw.values())
    params = load_state_dict({k: t.float() if t.is_floating_point() else t for k, t in raw.items()}, small_pm)
    assert set(params) == {*small_pm.param_keys, *small_pm.state_keys}
    for k, v in params.items():
        assert v.dtype == np.float64
        np.testing.assert_array_equal(v, raw[k].detach().numpy(), err_msg=k)


def test_num_batches_tracked_is_ignored(small_pm: Any) -> None:
    sd = oracle("resnet18").state_dict()
    assert any(k.endswith(NBT) for k in sd)
    assert set(load_state_dict(sd, small_pm)) == {*small_pm.param_keys, *small_pm.state_keys}


def test_missing_key_is_named(small_pm: Any) -> None:
    sd = oracle("resnet18").state_dict()
    del sd["layer2.0.downsample.1.running_var"]
    with pytest.raises(ParamsError, match=r"missing keys.*'layer2\.0\.downsample\.1\.running_var'"):
        load_state_dict(sd, small_pm)


def test_unexpected_key_is_named_unless_not_strict(small_pm: Any) -> None:
    sd = oracle("resnet18").state_dict()
    sd["fc.scale"] = torch.ones(3)
    with pytest.raises(ParamsError, match=r"unexpected keys.*'fc\.scale'"):
        load_state_dict(sd, small_pm)
    del sd["fc.bias"]
    loaded = load_state_dict(sd, small_pm, strict=False)
    assert set(loaded) == {*small_pm.param_keys, *small_pm.state_keys} - {"fc.bias"}


def test_wrong_shape_names_key_and_both_shapes(small_pm: Any) -> None:
    sd = TorchResNet(TorchBasicBlock, [2, 2, 2, 2], num_classes=7).state_dict()
    for strict in (True, False):
        with pytest.raises(ParamsError, match=r"'fc\.weight': state dict \[7, 512\], model \[10, 512\]") as info:
            load_state_dict(sd, small_pm, strict=strict)
        assert "'fc.bias': state dict [7], model [10]" in str(info.value)


def test_rename_maps_names(small_pm: Any) -> None:
    """A DataParallel checkpoint (``module.`` prefix) loads with ``rename``."""
    module = oracle("resnet18")
    sd = {f"module.{k}": v for k, v in module.state_dict().items()}
    with pytest.raises(ParamsError, match="missing keys"):
        load_state_dict(sd, small_pm)
    params = load_state_dict(sd, small_pm, rename=lambda k: k.removeprefix("module."))
    np.testing.assert_array_equal(params["fc.weight"], module.fc.weight.detach().numpy())


@pytest.mark.parametrize("backend_name", INSTALLED)
def test_loaded_params_do_not_alias_the_source(backend_name: str) -> None:
    """Changing the torch module after loading leaves the loaded params as they were."""
    be = backend(backend_name, "float64")
    pm = ml.compile(BasicBlock(64, 64), be, shapes={"input": [1, 64, 4, 4]})
    module = TorchBasicBlock(64, 64).double()
    params = load_state_dict(module.state_dict(), pm)
    before = {k: be.to_numpy(v) for k, v in params.items()}
    with torch.no_grad():
        for t in module.state_dict().values():
            t.add_(1)
    for k, v in params.items():
        np.testing.assert_array_equal(be.to_numpy(v), before[k], err_msg=k)
