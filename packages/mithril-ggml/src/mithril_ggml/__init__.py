"""mithril-ggml: Mithril's GGML backend (CPU inference, int8/int4 weights, GGUF).

``ml.GGMLBackend`` lowers a compiled graph to one ggml graph, built once per
shape set and reused; ``save_gguf`` / ``load_gguf`` write and read a model
(weights plus the graph) as a GGUF file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mithril.plugins.lazy import lazy_attributes

if TYPE_CHECKING:
    from .backend import GGMLBackend
    from .executable import GGMLExecutable
    from .gguf import GGUFError, GGUFModel, load_gguf, save_gguf
    from .weights import QuantizationReport, WeightPlan

__version__ = "0.1.0"

__all__ = [
    "GGMLBackend",
    "GGMLExecutable",
    "GGUFError",
    "GGUFModel",
    "QuantizationReport",
    "WeightPlan",
    "__version__",
    "load_gguf",
    "save_gguf",
]

_LAZY = {
    "GGMLBackend": ".backend",
    "GGMLExecutable": ".executable",
    "GGUFModel": ".gguf",
    "GGUFError": ".gguf",
    "load_gguf": ".gguf",
    "save_gguf": ".gguf",
    "QuantizationReport": ".weights",
    "WeightPlan": ".weights",
}


#: imported on first use, not when the plugin entry point loads (that would import ggml)
__getattr__ = lazy_attributes(__name__, _LAZY)
