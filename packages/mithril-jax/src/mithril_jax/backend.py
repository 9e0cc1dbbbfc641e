"""``JaxBackend``: Mithril's backend over JAX arrays, kernels and ``jax.jit``.

Decisions (see the package README for the reasoning):

* **float64** never flips ``jax_enable_x64`` for the process. A float64 backend
  runs its array creation, every kernel and every jit-compiled function inside
  ``jax.enable_x64(True)`` (a thread-local scope, see :mod:`mithril_jax.x64`).
  Arithmetic that *user code* does on float64 arrays outside that scope is
  truncated to float32 by JAX; wrap it in ``with backend.scope():`` (or enable
  x64 globally yourself).
* kind 'int' is int64 while 64-bit types are on (a float64 backend, or x64
  enabled globally), else int32.
* Arrays the backend creates are committed to its device; :meth:`accept`
  rejects, naming the key, arrays of another library, another device or another
  float dtype. Nothing is converted silently.
* The PRNG key lives in the backend: :meth:`seed` resets it, each graph call splits it.
  ``randn``/``rand``/``uniform`` (parameter initialisation) draw on the host with NumPy from
  the same seed, so that no XLA sampler is compiled per parameter size.
"""

from __future__ import annotations

import contextlib
import functools
import math
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mithril.backend import Backend, Kernel
from mithril.codegen.python_source import PythonExecutable
from mithril.dtypes import DType
from mithril.errors import EvaluationError, MithrilError, UnsupportedError
from mithril.parallel import DeviceMesh

from . import kernels as _kernels
from . import rng
from .devices import resolve_device
from .dtypes import from_jax_dtype, to_jax_dtype
from .fast_call import GuardedExecutable, TraceGuard
from .sharding import ShardedExecutable, gather, make_mesh
from .x64 import x64_context, x64_enabled

if TYPE_CHECKING:  # pragma: no cover
    from mithril.physical.executable import Executable


class JaxBackend(Backend):
    """Run Mithril models on JAX: ``JaxBackend(dtype=ml.float32, device="cpu" | "gpu" | "tpu" | "gpu:N")``."""

    name: ClassVar[str] = "jax"
    distribution: ClassVar[str] = "mithril-jax"
    supported_dtypes: ClassVar[tuple[DType, ...]] = (DType.float16, DType.bfloat16, DType.float32, DType.float64)
    supports_jit: ClassVar[bool] = True
    jit_fuses_elementwise: ClassVar[bool] = True

    def __init__(
        self, dtype: DType = DType.float32, device: str = "cpu", *, autodiff: str = "mithril", device_mesh: Any = None
    ) -> None:
        if autodiff not in ("mithril", "jax"):
            raise UnsupportedError(f"JaxBackend autodiff must be 'mithril' or 'jax', got {autodiff!r}")
        #: 'mithril': the core's autodiff pass; 'jax': jax.vjp of the forward function
        self.autodiff = autodiff
        self.differentiates_natively = autodiff == "jax"
        super().__init__(dtype, device)
        #: the ``jax.Device`` every array of this backend lives on (the mesh's first, with a mesh)
        self.jax_device: jax.Device = resolve_device(device)
        #: with ``device_mesh``: the core's mesh description and its ``jax.sharding.Mesh``
        self.jax_mesh: Any = None
        if device_mesh is not None:
            try:
                self.mesh = DeviceMesh.of(device_mesh)
            except MithrilError as e:
                raise UnsupportedError(f"JaxBackend: {e}") from None
            self.jax_mesh = make_mesh(self.mesh, self.jax_device.platform)
            # arrays this backend makes live on this process's first device of the mesh
            self.jax_device = next(d for d in self.jax_mesh.devices.flat if d.process_index == jax.process_index())
        #: the devices whose arrays this backend accepts
        self._devices = (
            frozenset(self.jax_mesh.devices.flat) if self.jax_mesh is not None else frozenset({self.jax_device})
        )
        #: whether this backend runs in a scoped 64-bit mode (float64)
        self.uses_x64: bool = dtype is DType.float64
        #: whether evaluation needs :meth:`scope` (float64, or a device other than JAX's default)
        self._needs_scope: bool = self.uses_x64 or self.jax_device != jax.devices()[0]
        self._float = to_jax_dtype(dtype)
        self._scoped_kernels: dict[str, Kernel] | None = None
        #: set while :meth:`lower` builds a guarded executable (see :meth:`jit`)
        self._lowering_guard: TraceGuard | None = None
        self._accepted: set[Any] | None = None
        self.seed(secrets.randbits(63))

    # ------------------------------------------------------------------ scope
    def scope(self) -> contextlib.AbstractContextManager[None]:
        """Run a block as the backend does: on its device, with 64-bit types if float64.

        Use it around your own arithmetic on a float64 backend's arrays when
        ``jax_enable_x64`` is off, or JAX truncates the results to float32. For a
        float32 backend on JAX's default device there is nothing to set up, and the
        scope is a no-op (``jax.default_device`` would slow every jit dispatch).
        """
        if not self._needs_scope:
            return contextlib.nullcontext()
        return self._scope()

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            if self.uses_x64:
                stack.enter_context(x64_context())
            stack.enter_context(jax.default_device(self.jax_device))
            yield

    def _x64_on(self) -> bool:
        return self.uses_x64 or x64_enabled()

    def _in_x64(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` called inside the 64-bit scope (identity for other dtypes)."""
        if not self.uses_x64:
            return fn

        @functools.wraps(fn)
        def scoped(*args: Any, **kwargs: Any) -> Any:
            with x64_context():
                return fn(*args, **kwargs)

        return scoped

    # ---------------------------------------------------------------- kernels
    def core_kernels(self) -> Mapping[str, Kernel]:
        return _kernels.core_kernels(self._float)

    @property
    def kernels(self) -> Mapping[str, Kernel]:
        """Core and plugin kernels; a float64 backend's run inside the 64-bit scope."""
        if self._scoped_kernels is None:
            self._scoped_kernels = {name: self._in_x64(fn) for name, fn in super().kernels.items()}
        return self._scoped_kernels

    # ------------------------------------------------------------------ dtypes
    def _native_dtype(self, dtype: DType) -> Any:
        if dtype is DType.int64:
            return jnp.int64 if self._x64_on() else jnp.int32
        if dtype is DType.float64 and not self._x64_on():
            raise UnsupportedError(
                f"{self!r} cannot make float64 arrays while jax_enable_x64 is off; use JaxBackend(dtype=ml.float64)"
            )
        return to_jax_dtype(dtype)

    def dtype_of(self, x: Any) -> DType:
        try:
            return from_jax_dtype(x.dtype)
        except TypeError as e:
            raise UnsupportedError(f"{type(self).__name__}: {e}") from None

    def shape_of(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def is_array(self, x: Any) -> bool:
        """A ``jax.Array`` on this backend's device (tracers inside jit count)."""
        return isinstance(x, jax.Array) and self._on_device(x)

    def _on_device(self, x: jax.Array) -> bool:
        if isinstance(x, jax.core.Tracer):
            return True
        return x.devices() <= self._devices

    def accept(self, x: Any, what: str) -> Any:
        """Accept only jax.Arrays on this device; floats must have the backend dtype.

        Ints and bools of any width pass (indices, masks). Anything else raises
        :class:`~mithril.errors.EvaluationError` naming ``what``; nothing is moved
        or cast silently.
        """
        ok = self._accepted
        if ok is None:
            ok = self._accepted = {np.dtype(self._float), np.dtype("int32"), np.dtype("int64"), np.dtype("bool")}
        if (
            isinstance(x, jax.Array)
            and x.dtype in ok
            and (isinstance(x, jax.core.Tracer) or x.devices() <= self._devices)
        ):
            return x  # the common case, checked cheaply
        if not isinstance(x, jax.Array):
            raise EvaluationError(
                f"{what}: expected a jax.Array for {self!r}, got {type(x).__module__}.{type(x).__name__}; "
                "convert it with backend.array(...)"
            )
        if not self._on_device(x):
            where = ", ".join(sorted(str(d) for d in x.devices()))
            raise EvaluationError(
                f"{what}: array is on {where} but {self!r} runs on {self.jax_device}; move it with backend.array(x)"
            )
        try:
            dtype = from_jax_dtype(x.dtype)
        except TypeError:
            raise EvaluationError(f"{what}: dtype {x.dtype} is not supported by {self!r}") from None
        if dtype.is_float and dtype is not self.dtype:
            raise EvaluationError(
                f"{what}: got a {dtype.value} array, but {self!r} computes in {self.dtype.value}; "
                "convert it with backend.array(x)"
            )
        return x

    # ----------------------------------------------------------------- arrays
    def _commit(self, x: jax.Array | np.ndarray) -> jax.Array:
        return jax.device_put(x, self.jax_device)

    def _target(self, dtype: DType | None) -> Any:
        return self._float if dtype is None else self._native_dtype(dtype)

    def array(self, data: Any, dtype: DType | None = None) -> jax.Array:
        """An array on the device; floats get the backend dtype, ints the 'int' dtype, unless ``dtype`` is given."""
        source = data if isinstance(data, jax.Array) else np.asarray(data)
        if dtype is not None:
            target = self._native_dtype(dtype)
        elif jnp.issubdtype(source.dtype, jnp.floating):
            target = self._float
        elif jnp.issubdtype(source.dtype, jnp.integer):
            target = self._native_dtype(DType.int64)
        elif source.dtype == np.bool_:
            target = jnp.bool_
        else:
            raise UnsupportedError(f"{self!r}: cannot make an array from data of dtype {source.dtype}")
        with self.scope():
            if not isinstance(source, jax.Array):
                # converted and copied by NumPy, then put on the device: jnp.array(..., dtype=) would compile
                # an XLA convert per new shape (~50 ms each on a CPU). The copy is ours: device_put may alias
                # an aligned host buffer, and a later write to the caller's array must not change this one
                return self._commit(np.array(source, dtype=np.dtype(target), copy=True))
            # jnp.array copies: jnp.asarray may alias an aligned NumPy buffer on the CPU, and a later
            # write to that buffer would change this (immutable) jax.Array
            return self._commit(jnp.array(source, dtype=target, copy=True))

    def constant(self, value: np.ndarray) -> jax.Array:
        return self.array(value)

    def to_numpy(self, x: Any) -> np.ndarray:
        """A NumPy copy (bfloat16 arrays come back as ``ml_dtypes.bfloat16``); an array spread over
        several processes' devices is gathered."""
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return gather(x)
        return np.array(x, copy=True)

    def zeros(self, *shape: int, dtype: DType | None = None) -> jax.Array:
        target = self._target(dtype)
        with self.scope():
            return self._commit(
                np.zeros(_shape(shape), np.dtype(target))
            )  # built on the host: no XLA compile per shape

    def ones(self, *shape: int, dtype: DType | None = None) -> jax.Array:
        target = self._target(dtype)
        with self.scope():
            return self._commit(np.ones(_shape(shape), np.dtype(target)))  # built on the host: no XLA compile per shape

    def full(self, shape: Sequence[int], value: float, dtype: DType | None = None) -> jax.Array:
        target = self._target(dtype)
        with self.scope():
            return self._commit(np.full(_shape(tuple(shape)), value, np.dtype(target)))

    # ----------------------------------------------------------------- random
    def _make_key(self, seed: int) -> jax.Array:
        seed = int(seed) % 2**64
        with self.scope():
            key = jax.random.key(seed & 0xFFFFFFFF)
            if seed >> 32:
                key = jax.random.fold_in(key, seed >> 32)
            return self._commit(key)

    def seed(self, seed: int) -> None:
        """Reset the PRNG key: draws after ``seed(n)`` repeat for the same ``n`` and dtype."""
        self._key = self._make_key(seed)
        self._host_seed, self._host_draws = int(seed) % 2**64, 0

    def _next_key(self) -> jax.Array:
        with self.scope():
            self._key, key = jax.random.split(self._key)
        return key

    def _draw(self, kind: str, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0) -> jax.Array:
        """``shape`` draws on the host: NumPy's PCG64 seeded from (the backend's seed, the draw's number).

        One XLA sampler per distinct size took seconds to compile on CPU (a model's ``init`` drew
        through a dozen); drawn with NumPy nothing compiles, and the same seed gives the same draws.
        The graphs' random primitives keep their own stream: JAX keys split from the backend's key.
        """
        gen = np.random.Generator(np.random.PCG64([self._host_seed, self._host_draws]))
        self._host_draws += 1
        n = math.prod(shape)
        native = np.dtype(self._float)
        wide = np.float64 if native == np.float64 else np.float32  # 16-bit floats: drawn in float32
        if kind == "normal":
            flat = gen.standard_normal(n, dtype=wide)
        else:
            flat = gen.random(n, dtype=wide) * wide(high - low) + wide(low)
        out = flat.astype(native).reshape(shape)
        if kind == "uniform" and out.size:  # rounding may reach ``high``: keep the interval half-open
            top = np.asarray(high, native)
            out = np.where(out >= top, np.nextafter(top, np.asarray(low, native)) if native.itemsize >= 4 else low, out)
            out = out.astype(native, copy=False)
        with self.scope():
            return self._commit(out)

    def next_seed(self) -> jax.Array:
        """The seed of one call of a graph with random primitives: a key split from this backend's key."""
        return self._next_key()

    def random_key(self, seed: jax.Array, stream: int) -> jax.Array:
        """One random node's key: ``jax.random.fold_in(seed, stream)``."""
        return rng.random_key(seed, stream)

    def randn(self, *shape: int) -> jax.Array:
        return self._draw("normal", _shape(shape))

    def rand(self, *shape: int) -> jax.Array:
        return self._draw("uniform", _shape(shape))

    def uniform(self, low: float, high: float, shape: Sequence[int]) -> jax.Array:
        return self._draw("uniform", _shape(tuple(shape)), low, high)

    # -------------------------------------------------------------- execution
    def jit(self, fn: Callable[..., Any], *, what: str) -> Callable[..., Any]:
        """``jax.jit(fn)``; a float64 backend traces and runs it inside the 64-bit scope.

        Within :meth:`lower` the function is traced only through the checked path
        (:mod:`mithril_jax.fast_call`), which lets ``evaluate`` skip its checks per call.
        A training step (``what="train_step"``) donates its params argument: the parameters
        and optimizer state are updated in place.
        """
        guard = self._lowering_guard
        donate = (0,) if what == "train_step" else ()
        compiled = jax.jit(guard.wrap(fn) if guard is not None else fn, donate_argnums=donate)
        return self._in_x64(compiled)

    def lower(self, graph: Any, **kwargs: Any) -> Any:
        """The core's lowering, done (and, for float64 or a non-default device, run) in :meth:`scope`."""
        with self.scope():
            if self.jax_mesh is not None:
                if self.differentiates_natively and graph.cotangents:
                    raise UnsupportedError("JaxBackend: a device mesh runs the core's autodiff; use autodiff='mithril'")
                inner = super().lower(graph, **{**kwargs, "jit": False})
                if not isinstance(inner, PythonExecutable):  # the core's lowering: generated Python over kernels
                    raise UnsupportedError(f"JaxBackend: a device mesh runs the core's Python lowering, got {inner!r}")
                executable: Executable = ShardedExecutable(inner.source, inner.raw, graph, self.jax_mesh, self._in_x64)
            elif self.differentiates_natively and getattr(graph, "cotangents", None):
                from .vjp import lower_with_vjp

                executable = lower_with_vjp(
                    graph, self, jit=kwargs["jit"], wrt=kwargs.get("wrt", ()), source_path=kwargs.get("source_path")
                )
            elif kwargs.get("jit") and not self._needs_scope:
                # float32 on the default device: offer evaluate a check-free fast path
                self._lowering_guard = guard = TraceGuard()
                try:
                    executable = GuardedExecutable(super().lower(graph, **kwargs), guard)
                finally:
                    self._lowering_guard = None
            else:
                executable = super().lower(graph, **kwargs)
        if self._needs_scope:
            return _ScopedExecutable(executable, self)
        return executable


class _ScopedExecutable:
    """An executable whose ``run`` happens inside its backend's :meth:`JaxBackend.scope`."""

    def __init__(self, inner: Any, backend: JaxBackend) -> None:
        self._inner = inner
        self._backend = backend

    @property
    def source(self) -> str | None:
        return getattr(self._inner, "source", None)

    def run(self, params: Any, inputs: Any, cotangents: Any) -> Any:
        with self._backend.scope():
            return self._inner.run(params, inputs, cotangents)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """``randn(2, 3)`` and ``randn((2, 3))`` alike."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(d) for d in shape)


__all__ = ["JaxBackend"]
