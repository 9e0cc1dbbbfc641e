"""The backend protocol: what a backend package implements.

A backend is a :class:`Backend` subclass registered through the
``mithril_register_backends`` hook. It provides

* a kernel per primitive (:meth:`Backend.core_kernels`; plugins add more via
  ``mithril_register_kernels``), each ``kernel(*inputs, **attrs) -> array``;
* array helpers used by user code (``array``, ``randn``, ``to_numpy``...);
* optionally :meth:`Backend.jit` and :meth:`Backend.lower` (the default lowers
  the graph IR to generated Python source over the kernels).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .codegen.python_source import lower_to_python
from .dtypes import DType
from .errors import EvaluationError, PluginError, UnsupportedError
from .plugins.manager import plugin_manager
from .primitives.base import registry

if TYPE_CHECKING:  # pragma: no cover
    from .ir.graph import Graph
    from .physical.executable import Executable

Kernel = Callable[..., Any]


@dataclass(frozen=True)
class KernelMemory:
    """What one kernel call holds beyond a fresh output of its shape (:meth:`Backend.kernel_memory`).

    ``workspace``: scratch bytes alive while the kernel runs (im2col columns, padded copies...);
    ``output_bytes``: bytes the output keeps alive when not those of its shape (a cropped view of a
    padded buffer), None for its shape's; ``view``: the output shares its first input's buffer (no new
    bytes, and that buffer lives as long as the view); ``contiguous``: the output is dense row-major.
    """

    workspace: int = 0
    output_bytes: int | None = None
    view: bool = False
    contiguous: bool = True


def view_memory(
    primitive: str,
    shape: tuple[int, ...] | None,
    attrs: Mapping[str, Any],
    dense: bool,
    *,
    negative_steps_copy: bool = False,
) -> KernelMemory | None:
    """The :class:`KernelMemory` of a structure kernel that returns a view of its first input (shape
    ``shape``, ``dense``: row-major contiguous), as NumPy's and torch's do; None where the kernel copies:
    a reshape or flatten of a strided input, and with ``negative_steps_copy`` a slice with a negative
    step (torch has no negative strides)."""
    if primitive in ("reshape", "flatten"):
        return KernelMemory(view=True) if dense else None
    if primitive == "transpose":
        if shape is None:
            return KernelMemory(view=True, contiguous=False)
        axes = attrs.get("axes")
        order = list(axes) if axes is not None else list(range(len(shape)))[::-1]
        moved = [a for a in order if shape[a] != 1]
        return KernelMemory(view=True, contiguous=dense and moved == sorted(moved))
    if primitive == "broadcast_to":
        return KernelMemory(view=True, contiguous=dense and shape == tuple(attrs.get("shape", ())))
    if primitive == "slice":
        steps = attrs.get("steps") or ()
        if negative_steps_copy and any(s is not None and s < 0 for s in steps):
            return None
        return KernelMemory(view=True, contiguous=False)
    return None


class Backend(abc.ABC):
    """Base class of every backend."""

    #: registry name ("numpy", "torch", ...), also the key for plugin kernels
    name: ClassVar[str] = ""
    #: distribution that provides it, for error messages
    distribution: ClassVar[str] = ""
    #: float dtypes this backend supports
    supported_dtypes: ClassVar[tuple[DType, ...]] = (DType.float32, DType.float64)
    #: whether ``compile(..., jit=True)`` can do anything
    supports_jit: ClassVar[bool] = False
    #: whether the JIT fuses element-wise chains into the kernels that read them (torch.compile, XLA);
    #: the compiler then recomputes cheap values in the backward pass instead of keeping them
    #: (mithril.ir.passes.remat)
    jit_fuses_elementwise: ClassVar[bool] = False
    #: whether the backend runs training steps (:mod:`mithril.training`): the core's autodiff and
    #: optimizer graphs over its kernels; an inference-only backend says False
    supports_training: ClassVar[bool] = True
    #: True when :meth:`lower` computes gradients itself (native autodiff); the core's
    #: autodiff pass is then skipped and ``lower`` gets ``wrt`` to differentiate
    differentiates_natively: bool = False
    #: the backend's choice of autodiff (``'mithril'`` or its own), where it offers one; None where not
    autodiff: str | None = None
    #: primitives whose kernels always return a new buffer (never an input, a view of one or a constant);
    #: the in-place planner (mithril.codegen.inplace) may reuse those buffers
    fresh_primitives: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, dtype: DType = DType.float32, device: str = "cpu") -> None:
        if not isinstance(dtype, DType) or not dtype.is_float:
            raise UnsupportedError(f"{type(self).__name__}: dtype must be a float ml dtype, got {dtype!r}")
        if dtype not in self.supported_dtypes:
            raise UnsupportedError(
                f"{type(self).__name__} supports {[d.value for d in self.supported_dtypes]}, not {dtype.value}"
            )
        self.dtype = dtype
        self.device = device
        #: the device mesh a multi-device backend runs on (mithril.parallel.DeviceMesh), else None;
        #: ``lower`` then finds every array's layout in ``graph.shardings``
        self.mesh: Any = None
        self._kernels: dict[str, Kernel] | None = None
        self._kernels_generation = -1

    # ------------------------------------------------------------- kernels
    @abc.abstractmethod
    def core_kernels(self) -> Mapping[str, Kernel]:
        """Kernels for the core primitives, by primitive name."""

    @property
    def kernels(self) -> Mapping[str, Kernel]:
        """Core kernels plus those plugins registered for this backend's name."""
        pm = plugin_manager()
        if self._kernels is None or self._kernels_generation != pm.generation:
            table = dict(self.core_kernels())
            check_core_kernels(type(self), table)
            table.update(pm.kernels_for(self.name))
            self._kernels = table
            self._kernels_generation = pm.generation
        return self._kernels

    def inplace_kernels(self, *, jit: bool) -> Mapping[str, Kernel]:
        """In-place kernels for one compile (``jit`` as given to it), by primitive; none by default.

        ``kernel(*inputs, out=<one of the inputs>, **attrs)`` computes what the primitive's kernel
        computes, writes it into ``out`` and returns ``out``, or returns a new array where it cannot
        (another dtype...). Its primitive's kernel must always return a new buffer. The core calls
        one only where ``out`` is an intermediate of the output's shape and kind that nothing reads
        afterwards (:mod:`mithril.codegen.inplace`).
        """
        return {}

    def scalar_operand_primitives(self, *, jit: bool) -> frozenset[str]:
        """Primitives whose kernels take a float scalar constant as :meth:`scalar_constant` makes it.

        The core hands such a constant (0-d) to a node only where every node reading it is one of
        these and has an operand that is not a constant, so the result is an ordinary array of the
        backend. None by default.
        """
        return frozenset()

    def scalar_constant(self, value: np.ndarray) -> Any:
        """A float scalar (0-d) constant for the kernels of :meth:`scalar_operand_primitives`."""
        return self.constant(value)

    def kernel(self, primitive: str) -> Kernel:
        try:
            return self.kernels[primitive]
        except KeyError:
            raise UnsupportedError(f"{type(self).__name__} has no kernel for primitive {primitive!r}") from None

    # --------------------------------------------------------- dtype mapping
    def native_dtype(self, kind_or_dtype: str | DType) -> Any:
        """The backend's dtype object for a kind ('float', 'int', 'bool') or an ml dtype."""
        if isinstance(kind_or_dtype, str):
            kind_or_dtype = {"float": self.dtype, "int": DType.int64, "bool": DType.bool}[kind_or_dtype]
        return self._native_dtype(kind_or_dtype)

    @abc.abstractmethod
    def _native_dtype(self, dtype: DType) -> Any:
        """Map an ml dtype to the library's dtype."""

    @abc.abstractmethod
    def dtype_of(self, x: Any) -> DType:
        """The ml dtype of a backend array."""

    def native_dtype_of(self, x: Any) -> Any:
        """The library dtype of an array (compared with :meth:`native_dtype` on the hot path)."""
        return x.dtype

    def kind_of(self, x: Any) -> str:
        return self.dtype_of(x).kind

    @abc.abstractmethod
    def shape_of(self, x: Any) -> tuple[int, ...]:
        """The shape of a backend array."""

    @abc.abstractmethod
    def is_array(self, x: Any) -> bool:
        """Whether ``x`` is an array of this backend (on its device)."""

    # ------------------------------------------------------------- helpers
    @abc.abstractmethod
    def array(self, data: Any, dtype: DType | None = None) -> Any:
        """A backend array from nested lists / NumPy / scalars; floats get the backend dtype."""

    @abc.abstractmethod
    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy a backend array to NumPy."""

    @abc.abstractmethod
    def seed(self, seed: int) -> None:
        """Make ``randn``/``rand`` and ``randomize_params`` reproducible."""

    @abc.abstractmethod
    def randn(self, *shape: int) -> Any:
        """Standard normal samples of the backend dtype."""

    @abc.abstractmethod
    def rand(self, *shape: int) -> Any:
        """Uniform [0, 1) samples of the backend dtype."""

    def uniform(self, low: float, high: float, shape: Sequence[int]) -> Any:
        return self.rand(*shape) * (high - low) + low

    # ------------------------------------------------ random primitives
    def next_seed(self) -> Any:
        """The seed of one call of a graph with random primitives (see mithril.ir.randomness).

        Drawn from this backend's generator, so :meth:`seed` makes calls reproducible and
        successive calls differ; an array (or PRNG key) so a jit-compiled function takes it
        as an argument without retracing.
        """
        raise UnsupportedError(
            f"{type(self).__name__} has no random primitives (such as Dropout's "
            f"'bernoulli'); compile the model for inference"
        )

    def random_key(self, seed: Any, stream: int) -> Any:
        """The key a random kernel draws from: ``seed`` (from :meth:`next_seed`) and a node's 31-bit ``stream``."""
        raise UnsupportedError(f"{type(self).__name__} has no random primitives")

    @abc.abstractmethod
    def zeros(self, *shape: int, dtype: DType | None = None) -> Any: ...

    @abc.abstractmethod
    def ones(self, *shape: int, dtype: DType | None = None) -> Any: ...

    def full(self, shape: Sequence[int], value: float, dtype: DType | None = None) -> Any:
        return self.ones(*shape, dtype=dtype) * value

    def matmul(self, a: Any, b: Any) -> Any:
        return self.kernel("matmul")(a, b)

    def mean(self, x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
        return self.kernel("mean")(x, axis=_axes(axis), keepdims=keepdims)

    def sum(self, x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
        return self.kernel("sum")(x, axis=_axes(axis), keepdims=keepdims)

    def max(self, x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
        return self.kernel("max")(x, axis=_axes(axis), keepdims=keepdims)

    def argmax(self, x: Any, axis: int = -1) -> Any:
        return self.kernel("argmax")(x, axis=(axis,), keepdims=False)

    def exp(self, x: Any) -> Any:
        return self.kernel("exp")(x)

    def log(self, x: Any) -> Any:
        return self.kernel("log")(x)

    def sqrt(self, x: Any) -> Any:
        return self.kernel("sqrt")(x)

    def relu(self, x: Any) -> Any:
        return self.kernel("relu")(x)

    def softmax(self, x: Any, axis: int = -1) -> Any:
        return self.kernel("softmax")(x, axis=axis)

    def transpose(self, x: Any, axes: Sequence[int] | None = None) -> Any:
        return self.kernel("transpose")(x, axes=None if axes is None else tuple(axes))

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        return self.kernel("reshape")(x, shape=tuple(shape))

    def concat(self, xs: Sequence[Any], axis: int = 0) -> Any:
        return self.kernel("concat")(*xs, axis=axis)

    # ----------------------------------------------------------- execution
    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Context entered around evaluate and randomize_params (e.g. JAX's scoped x64)."""
        return contextlib.nullcontext()

    def constant(self, value: np.ndarray) -> Any:
        """A constant for generated code (floats get the backend dtype)."""
        return self.array(value)

    def jit(self, fn: Callable[..., Any], *, what: str) -> Callable[..., Any]:
        """Compile a generated function.

        ``what`` is 'evaluate', 'gradients' or 'train_step'; a training step's first
        argument (the params dict) is handed over, so its buffers may be donated.
        """
        raise UnsupportedError(f"{type(self).__name__} cannot jit-compile; use jit=False")

    def lower(
        self,
        graph: Graph,
        *,
        jit: bool,
        wrt: tuple[str, ...] = (),
        source_path: str | None = None,
    ) -> Executable:
        """Turn a concrete, optimised graph into something that runs.

        The default generates Python source over :attr:`kernels`. With the core's
        autodiff, ``graph.gradients``/``graph.cotangents`` already hold the backward
        pass; a backend with ``differentiates_natively`` instead receives the forward
        graph, the cotangent names in ``graph.cotangents`` and the params to
        differentiate in ``wrt``.
        """
        return lower_to_python(graph, self, jit=jit, source_path=source_path)

    def accept(self, x: Any, what: str) -> Any:
        """Check (or convert, by a documented rule) an array handed to ``evaluate``.

        The default accepts only arrays of this backend; ``what`` names the key for
        the error message. Shapes and dtypes are checked by the core.
        """
        if not self.is_array(x):
            raise EvaluationError(
                f"{what}: expected an array of {type(self).__name__} (device {self.device!r}), "
                f"got {type(x).__name__}; convert it with backend.array(...)"
            )
        return x

    def kernel_memory(
        self,
        primitive: str,
        input_shapes: Sequence[tuple[int, ...] | None],
        attrs: Mapping[str, Any],
        float_bytes: int,
        contiguous: Sequence[bool],
        results: Sequence[Any] = (),
    ) -> KernelMemory:
        """What the kernel of ``primitive`` allocates beyond its output, for memory estimates
        (:mod:`mithril.physical.memory`); ``contiguous``: whether each input is dense; ``results``:
        of a multi-result kernel, the results the graph reads (the others are made and dropped at
        once: their bytes are workspace). The default: a fresh output and no workspace. A backend
        declares only what it knows its kernels do."""
        return KernelMemory()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={self.dtype!r}, device={self.device!r})"


_CHECKED: set[Any] = set()


def check_core_kernels(cls: type, table: Mapping[str, Kernel]) -> None:
    """Every kernel a backend class provides takes the call Mithril makes (checked once per function code)."""
    for name, fn in table.items():
        code = getattr(fn, "__code__", None)
        key = (
            name,
            code,
            len(getattr(fn, "__defaults__", None) or ()),
            tuple(getattr(fn, "__kwdefaults__", None) or ()),
        )
        if code is None or key in _CHECKED or name not in registry:
            continue
        problem = registry.get(name).kernel_signature_problem(fn)
        if problem is not None:
            dist = getattr(cls, "distribution", "") or "?"
            raise PluginError(
                f"{cls.__name__} (backend {getattr(cls, 'name', '?')!r}, distribution {dist}): its "
                f"kernel for primitive {name!r} cannot be called: {problem}. Fix: write it as "
                f"{registry.get(name).kernel_call()} (inputs positional in that order, every "
                f"attribute as a keyword)"
            )
        _CHECKED.add(key)


def _axes(axis: int | Sequence[int] | None) -> tuple[int, ...] | None:
    if axis is None:
        return None
    if isinstance(axis, int):
        return (axis,)
    return tuple(axis)
