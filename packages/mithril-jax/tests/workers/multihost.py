"""One of several JAX processes standing in for hosts: train on a mesh spanning all of them.

``python multihost.py PROCESS_ID N_PROCESSES PORT``; prints ``losses <repr of list>``.
Run with XLA_FLAGS=--xla_force_host_platform_device_count=2 (devices per "host").
"""

import sys

import jax

process_id, n_processes, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=n_processes, process_id=process_id)

# jax.distributed.initialize must run before anything touches a JAX backend: the imports below come after it
import numpy as np  # noqa: E402

import mithril as ml  # noqa: E402
from mithril.models import CrossEntropyLoss, Linear, Model, Relu  # noqa: E402

model = Model()
model |= Linear(dimension=16)
model += Relu()
model += Linear(dimension=4)
backend = ml.JaxBackend(dtype=ml.float64, device="cpu", device_mesh=(jax.device_count(),))
rng = np.random.default_rng(0)
batches = [(rng.standard_normal((8, 6)), rng.integers(0, 4, 8)) for _ in range(3)]
init = {k: np.asarray(v) for k, v in np.load(sys.argv[4], allow_pickle=False).items()}
step = ml.compile_step(
    model,
    backend,
    loss=CrossEntropyLoss(),
    optimizer=ml.optim.AdamW(lr=1e-2),
    shapes={"input": [8, 6]},
    jit=True,
    sharding=ml.parallel.Layout(fsdp=True),
)
state = step.init({k: backend.array(v) for k, v in init.items()})
losses = []
for x, y in batches:
    result = step(state, {"input": backend.array(x), "target": backend.array(y)})
    state = result.state
    losses.append(float(backend.to_numpy(result.loss)))
weight = backend.to_numpy(state.params["linear_0.weight"])
print(f"process {process_id} of {jax.process_count()}, {jax.device_count()} devices")
print("losses", repr(losses), "weight_sum", repr(float(weight.sum())))
