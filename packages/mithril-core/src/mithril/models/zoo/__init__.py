"""The model zoo: torch.nn-compatible blocks built from core primitives.

Parameter names and shapes follow torch.nn, so a torch state dict maps one to one
(``LayerNorm.weight``, ``Embedding.weight``, ``MultiHeadAttention.in_proj_weight``...).
"""

from .activations import Silu
from .attention import MultiHeadAttention, TransformerBlock
from .dropout import Dropout
from .gpt2 import GPT2, GPT2Attention, GPT2Block, GPT2Config, GPT2MLP, GPT2Transformer, gpt2
from .layers import AdaptiveAvgPool2d, Conv1d, ConvTranspose2d, Embedding, MaxPool1d
from .losses import (
    BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, NLLLoss, SmoothL1Loss,
)
from .mlp import MLP
from .norm import BatchNorm1d, GroupNorm, LayerNorm, RMSNorm
from .recurrent import GRU, LSTM
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50

__all__ = [
    "Silu", "Dropout", "MultiHeadAttention", "TransformerBlock", "AdaptiveAvgPool2d", "Conv1d", "ConvTranspose2d",
    "Embedding", "MaxPool1d", "BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "KLDivLoss", "L1Loss",
    "MSELoss", "NLLLoss", "SmoothL1Loss", "MLP", "BatchNorm1d", "GroupNorm", "LayerNorm", "RMSNorm",
    "LSTM", "GRU",
    "GPT2", "GPT2Attention", "GPT2Block", "GPT2Config", "GPT2MLP", "GPT2Transformer", "gpt2",
    "BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50",
]
