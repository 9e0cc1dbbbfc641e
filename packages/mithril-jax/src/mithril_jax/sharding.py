"""A device mesh on JAX: ``jax.sharding.Mesh`` + ``NamedSharding`` under one ``jax.jit`` (GSPMD).

The core resolves every param, state and input of a graph to a spec
(``graph.shardings``, :mod:`mithril.parallel.layout`); here each spec becomes a
``NamedSharding``. The executable places its arguments with those shardings, pins the
results that replace arguments (new params and optimizer state, and gradients) to the
same shardings, and lets XLA insert the collectives. A training step donates its params.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mithril.errors import UnsupportedError
from mithril.parallel import DeviceMesh


def make_mesh(mesh: DeviceMesh, platform: str) -> Mesh:
    """A ``jax.sharding.Mesh`` of the first ``mesh.size`` devices of ``platform``."""
    devices = jax.devices(platform)
    if mesh.size > len(devices):
        hint = (
            " (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts gives N devices)"
            if platform == "cpu"
            else ""
        )
        raise UnsupportedError(
            f"JaxBackend: device_mesh {mesh} needs {mesh.size} devices, but JAX sees "
            f"{len(devices)} {platform} device(s){hint}"
        )
    return Mesh(np.array(devices[: mesh.size]).reshape(mesh.shape), mesh.names)


class ShardedExecutable:
    """A generated function jitted over a mesh; ``run`` as every executable."""

    def __init__(
        self,
        source: str,
        raw: Callable[..., Any],
        graph: Any,
        mesh: Mesh,
        wrap: Callable[[Callable[..., Any]], Callable[..., Any]],
    ) -> None:
        self.source = source
        self.raw = raw

        def named(spec: tuple[Any, ...]) -> NamedSharding:
            return NamedSharding(mesh, PartitionSpec(*spec))

        self.shardings: dict[str, NamedSharding] = {k: named(v) for k, v in graph.shardings.items()}
        replicated = named(())
        pinned = {k: self.shardings.get(k, replicated) for k in graph.state_updates}
        grads = {k: self.shardings.get(k, replicated) for k in graph.gradients}

        def sharded(params: Mapping[str, Any], inputs: Mapping[str, Any], cotangents: Mapping[str, Any]) -> Any:
            outputs, gradients, updates = raw(params, inputs, cotangents)
            gradients = {k: jax.lax.with_sharding_constraint(v, grads[k]) for k, v in gradients.items()}
            updates = {k: jax.lax.with_sharding_constraint(v, pinned[k]) for k, v in updates.items()}
            return outputs, gradients, updates

        donate = (0,) if graph.donates_params else ()
        self._fn = wrap(jax.jit(sharded, donate_argnums=donate))
        self._replicated = replicated
        #: per argument, a sharding object already found equivalent to its target (a cheap identity check)
        self._seen: dict[str, Any] = {}

    def place(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        """The arrays laid out as the mesh wants them (no copy where they already are). Over several
        processes each one holds the same global array and contributes its devices' shards."""
        out = {}
        seen = self._seen
        for k, v in arrays.items():
            current = getattr(v, "sharding", None)
            if current is not None and seen.get(k) is current:  # the layout this call's result had
                out[k] = v
                continue
            target = self.shardings.get(k, self._replicated)
            if current is not None and current.is_equivalent_to(target, v.ndim):
                seen[k] = current
                out[k] = v
            elif target.is_fully_addressable or not getattr(v, "is_fully_addressable", True):
                out[k] = jax.device_put(v, target)
            else:
                host = np.asarray(v)

                def piece(index: Any, host: np.ndarray = host) -> np.ndarray:
                    return host[index]

                out[k] = jax.make_array_from_callback(host.shape, target, piece)
        return out

    def run(self, params: Any, inputs: Any, cotangents: Any) -> Any:
        return self._fn(self.place(params), self.place(inputs), self.place(cotangents))


def gather(x: jax.Array) -> np.ndarray:
    """The global value of an array whose shards live in several processes (every process gets it)."""
    if x.is_fully_replicated:
        return np.array(x.addressable_data(0), copy=True)
    from jax.experimental import multihost_utils

    return np.array(multihost_utils.process_allgather(x, tiled=True), copy=True)


__all__ = ["ShardedExecutable", "gather", "make_mesh"]
