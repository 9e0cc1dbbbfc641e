"""The model zoo: torch.nn-compatible blocks built from core primitives.

Parameter names and shapes follow torch.nn, so a torch state dict maps one to one
(``LayerNorm.weight``, ``Embedding.weight``, ``MultiHeadAttention.in_proj_weight``...).
"""

from .activations import Silu
from .attention import MultiHeadAttention, TransformerBlock
from .dropout import Dropout
from .gpt2 import GPT2, GPT2MLP, GPT2Attention, GPT2Block, GPT2Config, GPT2Transformer, gpt2
from .layers import AdaptiveAvgPool2d, Conv1d, ConvTranspose2d, Embedding, MaxPool1d
from .losses import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .mlp import MLP
from .norm import BatchNorm1d, GroupNorm, LayerNorm, RMSNorm
from .recurrent import GRU, LSTM
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50

__all__ = [
    "GPT2",
    "GPT2MLP",
    "GRU",
    "LSTM",
    "MLP",
    "AdaptiveAvgPool2d",
    "BCEWithLogitsLoss",
    "BasicBlock",
    "BatchNorm1d",
    "Bottleneck",
    "Conv1d",
    "ConvTranspose2d",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "GPT2Attention",
    "GPT2Block",
    "GPT2Config",
    "GPT2Transformer",
    "GroupNorm",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "LayerNorm",
    "MSELoss",
    "MaxPool1d",
    "MultiHeadAttention",
    "NLLLoss",
    "RMSNorm",
    "ResNet",
    "Silu",
    "SmoothL1Loss",
    "TransformerBlock",
    "gpt2",
    "resnet18",
    "resnet34",
    "resnet50",
]
