"""Logical models: ``Model``, blocks, ``IOKey``."""

from .block import Block, PrimitiveBlock, primitive_block
from .connections import IOKey, Initializer, TerminalRef
from .layers import BatchNorm2d, Conv2d, Linear
from .model import Model
from . import zoo
from .zoo import *  # noqa: F401,F403  (the model zoo: mithril.models.zoo.__all__)
from .primitive_blocks import (
    Abs, Add, ArgMax, AvgPool2d, Cast, Concat, Cosine, Divide, Equal, Exp, Flatten, Gelu, Greater, LeakyRelu,
    Less, Log, LogSoftmax, MatrixMultiply, Max, Maximum, MaxPool2d, Mean, Min, Minimum, Multiply, Negate,
    Power, Relu, Reshape, Sigmoid, Sine, Softmax, Sqrt, Subtract, Sum, Tanh, Transpose, Where,
)

__all__ = [
    "Block", "PrimitiveBlock", "primitive_block", "IOKey", "Initializer", "TerminalRef", "Model",
    "Linear", "Conv2d", "BatchNorm2d",
    "Abs", "Add", "ArgMax", "AvgPool2d", "Cast", "Concat", "Cosine", "Divide", "Equal", "Exp", "Flatten",
    "Gelu", "Greater", "LeakyRelu", "Less", "Log", "LogSoftmax", "MatrixMultiply", "Max", "Maximum",
    "MaxPool2d", "Mean", "Min", "Minimum", "Multiply", "Negate", "Power", "Relu", "Reshape", "Sigmoid",
    "Sine", "Softmax", "Sqrt", "Subtract", "Sum", "Tanh", "Transpose", "Where",
] + list(zoo.__all__)
