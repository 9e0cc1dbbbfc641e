"""Arithmetic on terminal references: ``model_a.output + block_b.output`` adds an Add block."""

from __future__ import annotations

from typing import Any

from ..errors import ModelBuildError
from .block import PrimitiveBlock
from .connections import TerminalRef


def apply_binary(prim: str, ref: TerminalRef, other: Any, reverse: bool) -> TerminalRef:
    """Add ``prim(ref, other)`` (or reversed) to the model that owns ``ref``."""
    model = ref.block._parent
    if model is None:
        raise ModelBuildError(f"{ref!r}: add the block to a model before using its terminals in expressions")
    if isinstance(other, TerminalRef) and other.block._parent is not model:
        raise ModelBuildError(f"{ref!r} and {other!r} belong to different models")
    left, right = (other, ref) if reverse else (ref, other)
    block = PrimitiveBlock(prim)(left=left, right=right)
    model |= block
    return TerminalRef(block, "output")
