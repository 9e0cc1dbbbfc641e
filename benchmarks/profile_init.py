"""Time ``TrainingStep.init`` (parameter initialisation) and the first step in a fresh process.

``python benchmarks/profile_init.py --backend jax`` builds an 8x8-digits CNN as in issue 21 (two Conv2d,
BatchNorm, MaxPool, two Linear; batch 64), then times ``compile_step``, ``init(seed=0)`` and the
first ``jit=True`` step, each once, cold (run it a few times: the machine is shared).
``--fit`` times ``Trainer.fit`` instead, as a new user trains: 1797 examples (the digits data set's
size, random here) in batches of 64 (the last of 5), validation on 360 (the last of 40), two
epochs; it prints each epoch's time and ``step.compile_count``. ``--no-bn`` drops the BatchNorm.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def digits_cnn(bn: bool = True):  # type: ignore[no-untyped-def]
    from mithril.models import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Model, Relu

    m = Model()
    m |= Conv2d(in_channels=1, out_channels=16, kernel_size=3, padding=1)(input="input", output="c1")
    if bn:
        m += BatchNorm2d(num_features=16)(input="c1", output="b1")
    m += Relu()(input="b1" if bn else "c1", output="r1")
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
    ap.add_argument("--fit", action="store_true", help="time Trainer.fit's epochs instead")
    ap.add_argument("--no-bn", action="store_true", help="the CNN without BatchNorm")
    args = ap.parse_args()
    import mithril as ml
    from mithril.models import CrossEntropyLoss

    backend = getattr(ml, {"jax": "JaxBackend", "torch": "TorchBackend", "numpy": "NumpyBackend"}[args.backend])()
    if args.fit:
        return fit(ml, backend, digits_cnn(not args.no_bn), args.backend)
    t0 = time.perf_counter()
    step = ml.compile_step(
        digits_cnn(not args.no_bn),
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


def fit(ml, backend, model, name):  # type: ignore[no-untyped-def]
    from mithril.models import CrossEntropyLoss
    from mithril.training.callbacks import Callback

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((1797, 1, 8, 8)), rng.integers(0, 10, 1797)
    vx, vy = rng.standard_normal((360, 1, 8, 8)), rng.integers(0, 10, 360)
    marks = [time.perf_counter()]

    class Clock(Callback):
        def on_epoch_end(self, epoch, logs):  # type: ignore[no-untyped-def]
            marks.append(time.perf_counter())

    trainer = ml.Trainer(
        model,
        backend,
        loss=CrossEntropyLoss(),
        optimizer=ml.optim.Adam(1e-3),
        metrics=["accuracy"],
        jit=name != "numpy",
    )
    trainer.fit(x, y, epochs=2, batch_size=64, validation_data=(vx, vy), callbacks=[Clock()], verbose=False)
    e1, e2 = marks[1] - marks[0], marks[2] - marks[1]
    print(f"{name}: fit epoch 1 {e1:.2f} s, epoch 2 {e2:.2f} s, compile_count {trainer.step.compile_count}")


if __name__ == "__main__":
    main()
