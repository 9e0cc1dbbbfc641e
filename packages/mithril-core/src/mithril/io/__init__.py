"""Reading and writing parameters (``mithril.io.safetensors``)."""

from .safetensors import load_params, save_params

__all__ = ["load_params", "save_params"]
