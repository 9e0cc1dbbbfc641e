"""The PyTorch backend: kernels, a device, a random generator, torch.compile."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from mithril.backend import Backend, Kernel
from mithril.dtypes import DType
from mithril.errors import EvaluationError, UnsupportedError

from . import dtypes as _dt
from . import inplace, rng
from .devices import resolve_device
from .grads import grad_kernels
from .host_memory import retain_freed_memory
from .jit import compile_with_fallback
from .kernels import make_kernels
from .optim import mark_donated_updates, optim_kernels
from .workspace import kernel_memory as _kernel_memory


def _shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """Accept ``randn(2, 3)`` as well as ``randn((2, 3))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        return tuple(shape[0])
    return tuple(shape)


#: primitives whose kernels are torch element-wise operators (TensorIterator), which take a
#: host 0-d tensor beside device tensors
_HOST_SCALAR_PRIMITIVES = frozenset(
    {
        *("add", "sub", "mul", "div", "pow", "maximum", "minimum", "where"),
        *("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"),
    }
)


class TorchBackend(Backend):
    """Runs compiled models with PyTorch on one device.

    ``TorchBackend(dtype=ml.float32, device="cpu")``; ``device`` is 'cpu', 'cuda',
    'cuda:N' or 'mps', checked when the backend is made ('cuda' is stored as
    'cuda:<index>'). Every array this backend makes or accepts lives on that device;
    ``to_numpy`` is the way back to the host. Randomness comes from a
    :class:`torch.Generator` on the device that this backend owns (see :meth:`seed`),
    never from torch's global generator.

    ``compile_options`` are passed to ``torch.compile`` by :meth:`jit`
    (for example ``{"mode": "reduce-overhead"}``), over a default of ``dynamic=False``:
    Mithril compiles one function per shape set, so torch never needs symbolic shapes.

    On the CPU the first backend sets glibc's malloc thresholds so that memory a step
    frees is reused by the next step instead of being faulted in again
    (:mod:`mithril_torch.host_memory`; what happened is in ``host_memory``).
    ``retain_host_memory=False`` leaves malloc alone.

    ``device_mesh=(N,)`` (or ``{"data": 2, "model": 2}``...) runs on N devices over
    torch.distributed, one process per device launched by ``torchrun``: gloo on 'cpu',
    NCCL on 'cuda' (each process on ``cuda:<LOCAL_RANK>``). Every process passes the same
    global arrays and gets global results (:mod:`mithril_torch.distributed`).
    """

    name: ClassVar[str] = "torch"
    distribution: ClassVar[str] = "mithril-torch"
    supported_dtypes: ClassVar[tuple[DType, ...]] = (DType.float16, DType.bfloat16, DType.float32, DType.float64)
    supports_jit: ClassVar[bool] = True
    jit_fuses_elementwise: ClassVar[bool] = True
    #: what the kernels allocate beyond their outputs, for memory_report() (mithril_torch.workspace)
    kernel_memory = staticmethod(_kernel_memory)

    def __init__(
        self,
        dtype: DType = DType.float32,
        device: str | torch.device = "cpu",
        *,
        autodiff: str = "mithril",
        compile_options: Mapping[str, Any] | None = None,
        retain_host_memory: bool = True,
        device_mesh: Any = None,
    ) -> None:
        super().__init__(dtype=dtype, device=str(device))
        if autodiff not in ("torch", "mithril"):
            raise UnsupportedError(f"TorchBackend autodiff must be 'torch' or 'mithril', got {autodiff!r}")
        #: 'torch': gradients by torch.autograd; 'mithril': the core's autodiff pass
        self.autodiff = autodiff
        self.differentiates_natively = autodiff == "torch"
        #: with ``device_mesh``: the torch ``DeviceMesh`` (torch.distributed, see :mod:`mithril_torch.distributed`)
        self.torch_mesh: Any = None
        if device_mesh is not None:
            from mithril.errors import MithrilError
            from mithril.parallel import DeviceMesh

            from .distributed import init_mesh

            try:
                self.mesh = DeviceMesh.of(device_mesh)
            except MithrilError as e:
                raise UnsupportedError(f"TorchBackend: {e}") from None
            self.torch_mesh, device = init_mesh(self.mesh, str(device))
        self.torch_device: torch.device = resolve_device(device, dtype)
        self.device = str(self.torch_device)
        self.torch_dtype: torch.dtype = _dt.to_torch(dtype)
        self.compile_options: dict[str, Any] = dict(compile_options or {})
        self.generator = torch.Generator(device=self.torch_device)
        self.generator.seed()
        if self.torch_mesh is not None:  # every rank draws the same parameters and random numbers
            from .distributed import shared_seed

            self.generator.manual_seed(shared_seed(self.torch_device))
        #: "set", "skipped: <reason>" or "off" (see :mod:`mithril_torch.host_memory`)
        self.host_memory = "off"
        if retain_host_memory and self.torch_device.type == "cpu":
            self.host_memory = retain_freed_memory()

    # ------------------------------------------------------------- kernels
    def core_kernels(self) -> Mapping[str, Kernel]:
        table = make_kernels(self.torch_dtype)
        table.update(optim_kernels())
        table.update(grad_kernels())
        if self.torch_mesh is not None:
            from .distributed import dtensor_kernels

            table.update(dtensor_kernels(table))
        return table

    fresh_primitives: ClassVar[frozenset[str]] = inplace.FRESH

    def inplace_kernels(self, *, jit: bool) -> Mapping[str, Kernel]:
        """In-place element-wise kernels (:mod:`mithril_torch.inplace`), eagerly with the core's autodiff
        on one device only: none under torch.compile, torch.autograd or a device mesh."""
        if jit or self.differentiates_natively or self.torch_mesh is not None:
            return {}
        return inplace.inplace_kernels()

    def scalar_operand_primitives(self, *, jit: bool) -> frozenset[str]:
        """Eagerly on an accelerator: the element-wise primitives, whose kernels take a float
        scalar constant in host memory (:meth:`scalar_constant`). torch passes a host 0-d tensor
        to a device kernel as an argument, the vectorised path a Python number takes, where a device
        0-d tensor is read through a broadcast (a GPT-2-small step's attention scale: 7.7 against 4.5
        ms per step on an H200). None under torch.compile (inductor fuses the scalar into its kernel),
        on the CPU (every 0-d tensor is such a scalar there) or over a device mesh."""
        if jit or self.torch_device.type == "cpu" or self.torch_mesh is not None:
            return frozenset()
        return _HOST_SCALAR_PRIMITIVES

    def scalar_constant(self, value: np.ndarray) -> Any:
        """A float scalar constant in host memory (see :meth:`scalar_operand_primitives`)."""
        return self.array(value).cpu()

    # --------------------------------------------------------------- dtypes
    def _native_dtype(self, dtype: DType) -> torch.dtype:
        return _dt.to_torch(dtype)

    def dtype_of(self, x: Any) -> DType:
        return _dt.to_ml(x.dtype)

    def shape_of(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def is_array(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor) and x.device == self.torch_device

    # -------------------------------------------------------------- helpers
    def array(self, data: Any, dtype: DType | None = None) -> torch.Tensor:
        """A new tensor on this device from a tensor, NumPy array, nested list or scalar.

        Floats get the backend dtype unless ``dtype`` is given; ints and bools keep theirs.
        The result never shares memory with ``data``.
        """
        if isinstance(data, torch.Tensor):
            src, copied = data.detach(), False
        else:
            arr = np.asarray(data)
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"TorchBackend.array: cannot make a tensor from data of dtype {arr.dtype}")
            src, copied = torch.tensor(arr), True
        if dtype is not None:
            target = _dt.to_torch(dtype)
        else:
            target = self.torch_dtype if src.dtype.is_floating_point else src.dtype
        return src.to(device=self.torch_device, dtype=target, copy=not copied)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Detach, move to the CPU and copy to NumPy (bfloat16 becomes float32)."""
        if not isinstance(x, torch.Tensor):
            return np.asarray(x)
        if self.torch_mesh is not None:
            from .distributed import full

            x = full(x)  # a DTensor (a param laid out over the mesh): the global array
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.float()
        if x.device.type == "cpu":
            return x.numpy().copy()  # never a view of the tensor's memory
        return x.cpu().numpy()

    def seed(self, seed: int) -> None:
        """Reseed this backend's generator (``randn``, ``rand``, ``randomize_params``)."""
        self.generator.manual_seed(seed)

    def _random(self, sample: Callable[..., torch.Tensor], shape: tuple[Any, ...]) -> torch.Tensor:
        # half types are drawn in float32 and rounded, so every dtype sees the same stream
        dtype = self.torch_dtype if self.torch_dtype in (torch.float32, torch.float64) else torch.float32
        out = sample(_shape(shape), generator=self.generator, dtype=dtype, device=self.torch_device)
        return out if out.dtype == self.torch_dtype else out.to(self.torch_dtype)

    def randn(self, *shape: int) -> torch.Tensor:
        return self._random(torch.randn, shape)

    def rand(self, *shape: int) -> torch.Tensor:
        return self._random(torch.rand, shape)

    def next_seed(self) -> torch.Tensor:
        """The seed of one call of a graph with random primitives, from this backend's generator.

        A 0-d int64 CPU tensor: ``torch.compile`` takes it as data, so a new seed never recompiles.
        """
        return torch.randint(2**62, (), generator=self.generator, device=self.torch_device).cpu()

    def random_key(self, seed: torch.Tensor, stream: int) -> torch.Tensor:
        """The seed of one random node's generator (see :mod:`mithril_torch.rng`)."""
        return rng.random_key(seed, stream)

    def _make(self, fill: Callable[..., torch.Tensor], shape: tuple[Any, ...], dtype: DType | None) -> torch.Tensor:
        target = self.torch_dtype if dtype is None else _dt.to_torch(dtype)
        return fill(_shape(shape), dtype=target, device=self.torch_device)

    def zeros(self, *shape: int, dtype: DType | None = None) -> torch.Tensor:
        return self._make(torch.zeros, shape, dtype)

    def ones(self, *shape: int, dtype: DType | None = None) -> torch.Tensor:
        return self._make(torch.ones, shape, dtype)

    def full(self, shape: Sequence[int], value: float, dtype: DType | None = None) -> torch.Tensor:
        target = self.torch_dtype if dtype is None else _dt.to_torch(dtype)
        return torch.full(tuple(shape), value, dtype=target, device=self.torch_device)

    # ------------------------------------------------------------ execution
    def lower(self, graph: Any, *, jit: bool, wrt: tuple[str, ...] = (), source_path: str | None = None) -> Any:
        """Python source over the kernels; gradients by torch.autograd when ``autodiff='torch'``."""
        from mithril.codegen.python_source import lower_to_python

        from .autograd import lower_with_autograd, no_grad

        if self.torch_mesh is not None:
            from .distributed import lower_distributed

            return lower_distributed(graph, self, jit=jit, wrt=wrt, source_path=source_path)
        if graph.cotangents and self.differentiates_natively:
            return lower_with_autograd(graph, self, jit=jit, wrt=wrt, source_path=source_path)
        if not jit:  # a training step's optimizer updates its donated params in place
            mark_donated_updates(graph)
        ex = lower_to_python(graph, self, jit=jit, source_path=source_path)
        if not jit:
            ex._fn = no_grad(ex._fn)
        return ex

    def jit(self, fn: Callable[..., Any], *, what: str) -> Callable[..., Any]:
        """``torch.compile(fn)``; warns (``RuntimeWarning``) and runs eagerly if that fails."""
        from .pooling import probe_before_compiling

        probe_before_compiling()
        # one generated function per shape set: static shapes (automatic dynamic shapes made inductor
        # lower a CNN's pooling gradient with symbolic sizes, and fail, on CUDA with torch 2.11)
        return compile_with_fallback(fn, what=what, options={"dynamic": False, **self.compile_options})

    def accept(self, x: Any, what: str) -> Any:
        """Check an array handed to ``evaluate``; never converts it.

        The rule: a :class:`torch.Tensor` on this backend's device is accepted as is
        when it is a float tensor of the backend's dtype, or an int/bool tensor (the
        core checks kinds and shapes). Everything else raises
        :class:`~mithril.errors.EvaluationError` naming ``what``:

        * a tensor on another device (both devices named; move it with ``.to(...)``),
        * a float tensor of another dtype (both dtypes named; no silent cast),
        * a tensor of a dtype Mithril has no name for (complex, uint8...),
        * anything that is not a tensor (NumPy arrays included: use ``backend.array``).
        """
        if not isinstance(x, torch.Tensor):
            raise EvaluationError(
                f"{what}: expected a torch.Tensor on {self.device!r}, got {type(x).__name__}; "
                f"convert it with backend.array(...)"
            )
        if self.torch_mesh is not None:
            from .distributed import check_dtensor

            check_dtensor(x, self.torch_mesh, what)
        if x.device != self.torch_device:
            raise EvaluationError(
                f"{what}: tensor is on device {str(x.device)!r} but this TorchBackend runs on "
                f"{self.device!r}; move it with .to({self.device!r}) or backend.array(...)"
            )
        if x.dtype.is_floating_point:
            if x.dtype != self.torch_dtype:
                raise EvaluationError(
                    f"{what}: tensor has dtype {x.dtype} but this TorchBackend computes in "
                    f"{self.torch_dtype}; cast it with .to({self.torch_dtype}) or backend.array(...)"
                )
        elif x.dtype not in _dt.ML_DTYPES:
            raise EvaluationError(f"{what}: tensor dtype {x.dtype} is not supported by Mithril")
        return x
