"""Lazy access to ggml-python, so that ``import mithril_ggml`` stays cheap."""

from __future__ import annotations

from functools import lru_cache
from types import ModuleType

from mithril.errors import BackendNotInstalledError


@lru_cache(maxsize=1)
def ggml() -> ModuleType:
    """The ``ggml.ggml`` ctypes module (raises a Mithril error when it cannot load)."""
    try:
        from ggml import ggml as lib
    except Exception as e:
        raise BackendNotInstalledError(
            f"ml.GGMLBackend needs ggml-python==0.0.45 ({type(e).__name__}: {e}); "
            "install it with `pip install ggml-python==0.0.45` (the pin of constraints.txt)"
        ) from e
    return lib


def op_name(tensor: object) -> str:
    """ggml's name of the op that produced ``tensor`` ('MUL_MAT', 'UNARY:RELU'...)."""
    g = ggml()
    op = tensor.contents.op  # type: ignore[attr-defined]  # a ctypes pointer to ggml_tensor, typed object here
    name = g.ggml_op_name(op).decode()
    if name == "UNARY":
        name += ":" + g.ggml_unary_op_name(g.ggml_get_unary_op(tensor)).decode()
    return name
