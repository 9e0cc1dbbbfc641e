"""Mithril: write a model once, compile it for PyTorch, JAX, NumPy and GGML."""

from __future__ import annotations

from typing import Any

from . import parallel, plugins
from ._version import __version__
from .backend import Backend
from .dtypes import DType, bfloat16, bool_, float16, float32, float64, int32, int64
from .errors import MithrilError
from .models import IOKey, Model
from .primitives.base import Primitive, Term

_BACKEND_CLASSES = {
    "NumpyBackend": "numpy",
    "TorchBackend": "torch",
    "JaxBackend": "jax",
    "GGMLBackend": "ggml",
}


#: the training API, imported on first use: ``ml.optim.AdamW``, ``ml.Trainer``, ``ml.compile_step``
_TRAINING = {"training", "optim", "schedules", "Trainer", "compile_step", "TrainState"}


def __getattr__(name: str) -> Any:
    if name in _BACKEND_CLASSES:
        return plugins.plugin_manager().backend_class(_BACKEND_CLASSES[name])
    if name == "compile":
        from .physical.compile import compile as _compile

        return _compile
    if name in ("compare", "certify"):
        from . import divergence

        return getattr(divergence, name)
    if name in _TRAINING:
        import importlib

        training = importlib.import_module(".training", __name__)
        return training if name == "training" else getattr(training, name)
    raise AttributeError(f"module 'mithril' has no attribute {name!r}")


def backend(name: str, **options: Any) -> Backend:
    """Instantiate an installed backend by registry name: ``ml.backend("torch", dtype=ml.float64)``."""
    instance: Backend = plugins.plugin_manager().backend_class(name)(**options)  # registered classes are Backends
    return instance


def compile(model: Model, backend: Backend, *args: Any, **options: Any) -> Any:
    """Compile a logical model for a backend; see :func:`mithril.physical.compile.compile`."""
    from .physical.compile import compile as _compile

    return _compile(model, backend, *args, **options)


__all__ = [
    "Backend",
    "DType",
    "IOKey",
    "MithrilError",
    "Model",
    "Primitive",
    "Term",
    "__version__",
    "backend",
    "bfloat16",
    "bool_",
    "compile",
    "float16",
    "float32",
    "float64",
    "int32",
    "int64",
    "parallel",
    "plugins",
]
