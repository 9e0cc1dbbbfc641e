"""The model zoo: torch.nn-compatible blocks built from core primitives.

Parameter names and shapes follow torch.nn, so a torch state dict maps one to one
(``LayerNorm.weight``, ``Embedding.weight``, ``MultiHeadAttention.in_proj_weight``...).
"""

from .activations import Silu
from .attention import MultiHeadAttention, TransformerBlock
from .layers import AdaptiveAvgPool2d, Conv1d, ConvTranspose2d, Embedding, MaxPool1d
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, NLLLoss
from .mlp import MLP
from .norm import BatchNorm1d, GroupNorm, LayerNorm, RMSNorm

__all__ = [
    "Silu", "MultiHeadAttention", "TransformerBlock", "AdaptiveAvgPool2d", "Conv1d", "ConvTranspose2d",
    "Embedding", "MaxPool1d", "BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "L1Loss", "MSELoss",
    "NLLLoss", "MLP", "BatchNorm1d", "GroupNorm", "LayerNorm", "RMSNorm",
]
