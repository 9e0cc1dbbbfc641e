"""Time ``TrainingStep.init`` (parameter initialisation) and the first step in a fresh process.

``python benchmarks/profile_init.py --backend jax`` builds the 8x8-digits CNN of issue 21 (two Conv2d,
BatchNorm, MaxPool, two Linear; batch 64), then times ``compile_step``, ``init(seed=0)`` and the
first ``jit=True`` step, each once, cold (run it a few times: the machine is shared).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def digits_cnn():  # type: ignore[no-untyped-def]
    from mithril.models import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Model, Relu

    m = Model()
    m |= Conv2d(in_channels=1, out_channels=16, kernel_size=3, padding=1)(input="input", output="c1")
    m += BatchNorm2d(num_features=16)(input="c1", output="b1")
    m += Relu()(input="b1", output="r1")
    m += MaxPool2d(kernel_size=2)(input="r1", output="p1")
    m += Conv2d(in_channels=16, out_channels=32, kernel_size=3, padding=1)(input="p1", output="c2")
    m += Relu()(input="c2", output="r2")
    m += MaxPool2d(kernel_size=2)(input="r2", output="p2")
    m += Flatten()(input="p2", output="f")
    m += Linear(dimension=64)(input="f", output="h")
    m += Relu()(input="h", output="r3")
    m += Linear(dimension=10)(input="r3", output="output")
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backend", default="jax", help="jax, torch or numpy")
    args = ap.parse_args()
    import mithril as ml
    from mithril.models import CrossEntropyLoss

    backend = getattr(ml, {"jax": "JaxBackend", "torch": "TorchBackend", "numpy": "NumpyBackend"}[args.backend])()
    t0 = time.perf_counter()
    step = ml.compile_step(
        digits_cnn(),
        backend,
        loss=CrossEntropyLoss(),
        optimizer=ml.optim.Adam(1e-3),
        shapes={"input": [None, 1, 8, 8], "target": [None]},
        jit=args.backend != "numpy",
    )
    t1 = time.perf_counter()
    state = step.init(seed=0)
    t2 = time.perf_counter()
    rng = np.random.default_rng(0)
    batch = {
        "input": backend.array(rng.standard_normal((64, 1, 8, 8))),
        "target": backend.array(rng.integers(0, 10, 64)),
    }
    r = step(state, batch)
    float(backend.to_numpy(r.loss))
    t3 = time.perf_counter()
    print(f"{args.backend}: compile_step {t1 - t0:.2f} s, init {t2 - t1:.2f} s, first step {t3 - t2:.2f} s")


if __name__ == "__main__":
    main()
