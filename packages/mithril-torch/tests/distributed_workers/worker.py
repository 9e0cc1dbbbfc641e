"""One process of a torchrun launch (tests/test_distributed.py): runs checks on a device mesh.

``python -m torch.distributed.run --nproc_per_node=N worker.py CHECK [CHECK...]``. Every rank
runs the same checks on the same global arrays; each compares what the mesh computes with
what it computes itself on one device (float64, 1e-10 relative to the largest entry) and
the process exits with status 1 if any check failed, printing which and why.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import mithril as ml
from mithril.models import (
    BatchNorm2d,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    Model,
    Relu,
)
from mithril.models.zoo.gpt2 import gpt2

# torch.compile falling back to eager would pass the numbers but not the check of jit=True
warnings.filterwarnings("error", message=".*torch.compile is not usable.*")
warnings.filterwarnings("ignore", message=".*plugin.*was not loaded.*")

TOL = 1e-10
#: 'cpu' (gloo) or 'cuda' (NCCL, one GPU a process)
DEVICE = os.environ.get("MITHRIL_DISTRIBUTED_TEST_DEVICE", "cpu")
RANK = int(os.environ.get("RANK", "0"))
failures: list[str] = []
worst = [0.0]


def close(what: str, got: Any, want: Any) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        failures.append(f"{what}: shape {got.shape}, single device {want.shape}")
        return
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    err = float(np.max(np.abs(got - want))) / (scale or 1.0) if want.size else 0.0
    worst[0] = max(worst[0], err)
    if not err <= TOL:
        failures.append(f"{what}: max error {err:.3g} relative to the largest entry {scale:.3g}")


def expect_error(what: str, fn: Callable[[], Any], kind: type, *words: str) -> None:
    try:
        fn()
    except kind as e:
        text = str(e)
        missing = [w for w in words if w not in text]
        if missing:
            failures.append(f"{what}: {kind.__name__} without {missing}: {text}")
    except Exception as e:
        failures.append(f"{what}: expected {kind.__name__}, got {type(e).__name__}: {e}")
    else:
        failures.append(f"{what}: no error")


# ------------------------------------------------------------------ models
def mlp() -> Model:
    m = Model()
    m |= Linear(dimension=16)
    m += Relu()
    m += Linear(dimension=10)
    return m


def mlp_dropout() -> Model:
    m = Model()
    m |= Linear(dimension=16)
    m += Relu()
    m += Dropout(p=0.25)
    m += Linear(dimension=10)
    return m


def cnn() -> Model:
    """Conv2d + BatchNorm2d (global batch statistics) + MaxPool2d, twice, then Linear."""
    m = Model()
    m |= Conv2d(in_channels=3, out_channels=4, kernel_size=3, padding=1, bias=False)
    m += BatchNorm2d(num_features=4)
    m += Relu()
    m += MaxPool2d(kernel_size=2)
    m += Conv2d(in_channels=4, out_channels=4, kernel_size=3, padding=1, bias=False)
    m += BatchNorm2d(num_features=4)
    m += Relu()
    m += Flatten()
    m += Linear(dimension=10)
    return m


def gpt() -> Model:
    """A tiny GPT-2 (zoo), logits flattened to [B*T, vocab] for CrossEntropyLoss."""
    m = Model()
    m |= gpt2(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    m += Flatten(start_axis=0, end_axis=1)
    return m


rng = np.random.default_rng(0)
CASES: dict[str, tuple[Callable[[], Model], dict[str, list[int]], dict[str, np.ndarray], int, int]] = {
    # name: (model, shapes, inputs, targets, classes)
    "mlp": (mlp, {"input": [8, 12]}, {"input": rng.standard_normal((8, 12))}, 8, 10),
    "dropout": (mlp_dropout, {"input": [8, 12]}, {"input": rng.standard_normal((8, 12))}, 8, 10),
    "cnn": (cnn, {"input": [8, 3, 8, 8]}, {"input": rng.standard_normal((8, 3, 8, 8))}, 8, 10),
    "gpt": (gpt, {"input": [4, 6]}, {"input": rng.integers(0, 32, (4, 6))}, 24, 32),
}


# ------------------------------------------------------------------ checks
class Checker:
    def __init__(self) -> None:
        self.ref = ml.TorchBackend(dtype=ml.float64, device=DEVICE)
        self.meshes: dict[Any, Any] = {}

    def mesh(self, spec: Any, **kw: Any) -> Any:
        key = (repr(spec), tuple(sorted(kw.items())))
        if key not in self.meshes:
            self.meshes[key] = ml.TorchBackend(dtype=ml.float64, device=DEVICE, device_mesh=spec, **kw)
        return self.meshes[key]

    def compare(
        self,
        label: str,
        case: str,
        be: Any,
        sharding: Any = None,
        *,
        jit: bool = False,
        steps: int = 3,
        evaluate: bool = True,
    ) -> None:
        """Forward outputs, gradients and ``steps`` AdamW training steps on ``be`` (a mesh) against one device."""
        build, shapes, inputs_np, n_targets, classes = CASES[case]
        ref = self.ref
        model = build()
        single = ml.compile(model, ref, shapes=shapes)
        params_np = {k: ref.to_numpy(v) for k, v in single.randomize_params(seed=1).items()}

        def arrays(b: Any, table: dict[str, np.ndarray]) -> dict[str, Any]:
            return {k: b.array(v) for k, v in table.items()}

        random = case == "dropout"
        if evaluate and not random:
            sharded = ml.compile(model, be, shapes=shapes, sharding=sharding, jit=jit)
            out = single.evaluate(arrays(ref, params_np), arrays(ref, inputs_np), training=False)["output"]
            cot = {"output": np.random.default_rng(2).standard_normal(tuple(out.shape))}
            for training in (False, True):
                want = single.evaluate(
                    arrays(ref, params_np),
                    arrays(ref, inputs_np),
                    arrays(ref, cot),
                    training=training,
                    return_state=True,
                )
                got = sharded.evaluate(
                    arrays(be, params_np), arrays(be, inputs_np), arrays(be, cot), training=training, return_state=True
                )
                for part, w, g in zip(("output", "gradient", "state"), want, got):
                    if w.keys() != g.keys():
                        failures.append(f"{label}: {part} keys {sorted(g)} != {sorted(w)}")
                    for k in w:
                        close(
                            f"{label} {'training' if training else 'inference'} {part} {k}",
                            be.to_numpy(g[k]),
                            ref.to_numpy(w[k]),
                        )
        targets = np.random.default_rng(3).integers(0, classes, n_targets)
        results = {}
        for b in (ref, be):
            step = ml.compile_step(
                model,
                b,
                loss=CrossEntropyLoss(),
                optimizer=ml.optim.AdamW(lr=1e-2),
                shapes=shapes,
                sharding=sharding if b is be else None,
                jit=jit and b is be,
            )
            state = step.init(arrays(b, params_np), seed=4)
            batch = {**arrays(b, inputs_np), "target": b.array(targets)}
            losses = []
            for _ in range(steps):
                result = step(state, batch)
                state = result.state
                losses.append(b.to_numpy(result.loss))
            ev = step.evaluate(state, batch)
            pred = step.predict(state, arrays(b, inputs_np))["output"]
            results[b is be] = (
                losses,
                {k: b.to_numpy(v) for k, v in {**state.params, **state.optimizer}.items()},
                b.to_numpy(ev["loss"]),
                b.to_numpy(pred),
            )
        (l1, s1, e1, p1), (l0, s0, e0, p0) = results[True], results[False]
        close(f"{label} training losses", np.array(l1), np.array(l0))
        close(f"{label} evaluate after training", e1, e0)
        close(f"{label} predict after training", p1, p0)
        for k in s0:
            close(f"{label} state after {steps} steps {k}", s1[k], s0[k])

    def layout_of(self, label: str, be: Any, sharding: Any, case: str, want: dict[str, tuple[int, ...]]) -> None:
        """After a step, the named arrays stay DTensors with these local shapes (sharded, not gathered)."""
        build, shapes, inputs_np, n_targets, classes = CASES[case]
        step = ml.compile_step(
            build(), be, loss=CrossEntropyLoss(), optimizer=ml.optim.AdamW(lr=1e-2), shapes=shapes, sharding=sharding
        )
        state = step.init(seed=0)
        batch = {
            **{k: be.array(v) for k, v in inputs_np.items()},
            "target": be.array(np.random.default_rng(3).integers(0, classes, n_targets)),
        }
        state = step(state, batch).state
        arrays = {**state.params, **state.optimizer}
        from torch.distributed.tensor import DTensor

        for k, local in want.items():
            x = arrays[k]
            if not isinstance(x, DTensor):
                failures.append(f"{label}: {k} came back as {type(x).__name__}, not a DTensor")
            elif tuple(x.to_local().shape) != local:
                failures.append(
                    f"{label}: {k} has local shape {tuple(x.to_local().shape)} ({x.placements}), expected {local}"
                )


def run(checks: list[str]) -> None:
    c = Checker()
    world = int(os.environ["WORLD_SIZE"])
    tp = ml.parallel.Layout(ml.parallel.column_parallel("linear_0") + ml.parallel.row_parallel("linear_1"))
    fsdp = ml.parallel.Layout(fsdp=True)
    for check in checks:
        start = time.time()
        try:
            name, _, only = check.partition(":")
            cases = only.split(",") if only else list(CASES)
            if name == "dp":  # data parallel on a (world,) mesh (dp:mlp,cnn: those cases only)
                be = c.mesh((world,))
                for case in cases:
                    c.compare(f"dp {case}", case, be)
            elif name == "tp":  # column-then-row parallel MLP, data axis world // 2
                be = c.mesh({"data": world // 2, "model": 2})
                c.compare("tp mlp", "mlp", be, tp)
                c.layout_of(
                    "tp layout",
                    be,
                    tp,
                    "mlp",
                    {
                        "linear_0.weight": (8, 12),
                        "linear_0.bias": (8,),
                        "linear_1.weight": (10, 8),
                        "linear_1.bias": (10,),
                        "adamw.m.linear_0.weight": (8, 12),
                    },
                )
            elif name == "fsdp":  # params and optimizer state split along the data axis
                be = c.mesh((world,))
                for case in cases if only else ("mlp", "cnn", "gpt"):
                    c.compare(f"fsdp {case}", case, be, fsdp)
                n = 16 // world
                c.layout_of(
                    "fsdp layout",
                    be,
                    fsdp,
                    "mlp",
                    {"linear_0.weight": (n, 12), "linear_0.bias": (n,), "adamw.v.linear_0.weight": (n, 12)},
                )
            elif name == "autograd":  # gradients by torch.autograd over DTensors
                c.compare("autograd mlp", "mlp", c.mesh((world,), autodiff="torch"), steps=1)
                c.compare("autograd cnn", "cnn", c.mesh((world,), autodiff="torch"), steps=1)
            elif name == "jit":  # torch.compile of the DTensor program
                for case in cases if only else ("mlp",):
                    c.compare(f"jit {case}", case, c.mesh((world,)), jit=True, steps=2)
            elif name == "checkpoint":  # an fsdp state saved (gathered) and resumed data parallel
                checkpoint(c, world, fsdp)
            elif name == "errors":
                errors(c, world)
            else:
                failures.append(f"unknown check {check!r}")
        except Exception:
            failures.append(f"{check} raised:\n{traceback.format_exc()}")
        if RANK == 0:
            print(f"{check}: {time.time() - start:.1f}s", flush=True)


def checkpoint(c: Checker, world: int, fsdp: Any) -> None:
    import tempfile

    build, shapes, inputs_np, n_targets, classes = CASES["mlp"]
    path = os.path.join(tempfile.gettempdir(), f"mithril-dist-{os.environ['MASTER_PORT']}.safetensors")
    targets = np.random.default_rng(3).integers(0, classes, n_targets)
    steps = {}
    for key, b, layout in (("fsdp", c.mesh((world,)), fsdp), ("dp", c.mesh((world,)), None), ("one", c.ref, None)):
        steps[key] = (
            b,
            ml.compile_step(
                build(), b, loss=CrossEntropyLoss(), optimizer=ml.optim.AdamW(lr=1e-2), shapes=shapes, sharding=layout
            ),
        )
    b, step = steps["fsdp"]
    state = step(step.init(seed=0), {"input": b.array(inputs_np["input"]), "target": b.array(targets)}).state
    ml.training.save_checkpoint(path, state, step)
    losses = {}
    for key in ("dp", "one"):
        b, step = steps[key]
        restored = ml.training.load_checkpoint(path, step)
        losses[key] = b.to_numpy(
            step(restored, {"input": b.array(inputs_np["input"]), "target": b.array(targets)}).loss
        )
    close("checkpoint fsdp -> dp, loss of the next step", losses["dp"], losses["one"])
    torch.distributed.barrier()
    if RANK == 0:
        os.remove(path)


def errors(c: Checker, world: int) -> None:
    from mithril.errors import ShapeMismatchError, UnknownKeyError, UnsupportedError

    expect_error(
        "mesh larger than the world",
        lambda: ml.TorchBackend(device_mesh=(world * 2,)),
        UnsupportedError,
        f"has {world * 2} devices",
        f"runs {world} process",
        "--nproc_per_node",
    )
    expect_error("mesh on mps", lambda: ml.TorchBackend(device="mps", device_mesh=(world,)), UnsupportedError, "gloo")
    be = c.mesh((world,))
    if world > 1:
        expect_error(
            "batch not divisible",
            lambda: ml.compile(mlp(), be, shapes={"input": [world + 1, 12]}),
            ShapeMismatchError,
            f"batch size {world + 1}",
            f"{world} devices",
            "'data'",
        )
    expect_error(
        "rule for a missing axis",
        lambda: ml.compile(mlp(), be, shapes={"input": [8, 12]}, sharding={"linear_0.weight": ("model", None)}),
        UnknownKeyError,
        "no axis 'model'",
    )
    other = ml.TorchBackend(dtype=ml.float64, device=DEVICE, device_mesh={"data": 1, "model": world})
    pm = ml.compile(mlp(), other, shapes={"input": [8, 12]}, sharding={"linear_0.weight": ("model", None)})
    state = ml.compile_step(
        mlp(),
        other,
        loss=CrossEntropyLoss(),
        optimizer=ml.optim.SGD(lr=0.1),
        shapes={"input": [8, 12]},
        sharding={"linear_0.weight": ("model", None)},
    )
    st = state.init(seed=0)
    st = state(st, {"input": other.array(np.ones((8, 12))), "target": other.array(np.zeros(8, np.int64))}).state
    pm_be = ml.compile(mlp(), be, shapes={"input": [8, 12]})
    from mithril.errors import EvaluationError

    expect_error(
        "DTensor of another mesh",
        lambda: pm_be.evaluate(dict(st.params), {"input": be.array(np.ones((8, 12)))}),
        EvaluationError,
        "a DTensor on the device mesh",
    )
    out = pm.evaluate(dict(st.params), {"input": other.array(np.ones((8, 12)))})["output"]
    if type(out) is not torch.Tensor:
        failures.append(f"outputs are {type(out).__name__}, not plain tensors")


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(sys.argv[1:])
    if failures:
        print(f"rank {RANK}: {len(failures)} failure(s):\n" + "\n".join(failures), flush=True)
        sys.exit(1)
    if RANK == 0:
        print(f"rank 0: all checks passed (largest relative error {worst[0]:.2g})", flush=True)
