"""Reading and writing parameters (``mithril.io.safetensors``, ``mithril.io.state_dict``) and converting
Hugging Face checkpoints (``mithril.io.huggingface``)."""

from .huggingface import gpt2_config_from_hf, gpt2_from_hf, gpt2_to_hf
from .safetensors import load_params, save_params
from .state_dict import load_state_dict, to_state_dict

__all__ = [
    "gpt2_config_from_hf",
    "gpt2_from_hf",
    "gpt2_to_hf",
    "load_params",
    "load_state_dict",
    "save_params",
    "to_state_dict",
]
