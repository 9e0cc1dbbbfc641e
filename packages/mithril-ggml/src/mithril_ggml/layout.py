"""NumPy shapes <-> ggml dimensions.

ggml stores at most 4 dimensions, innermost first: ``ne[0]`` is the last NumPy
axis. A NumPy shape ``(d0, ..., d{r-1})`` becomes ``ne = (d{r-1}, ..., d0, 1, ...)``,
so NumPy's trailing-axis broadcasting lines up with ggml's leading dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_DIMS = 4


def ne_of(shape: Sequence[int]) -> tuple[int, int, int, int]:
    """ggml ``ne`` of a NumPy shape of rank <= 4 (rank 0 is one element)."""
    if len(shape) > MAX_DIMS:
        raise ValueError(f"ggml tensors have at most {MAX_DIMS} dimensions, got shape {list(shape)}")
    ne = [int(d) for d in reversed(tuple(shape))] + [1] * (MAX_DIMS - len(shape))
    return ne[0], ne[1], ne[2], ne[3]


def data_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """The shape a value's ggml tensor has: its own, or its flat data past :data:`MAX_DIMS` axes
    (such a value only passes between reshapes and reductions: see ``checks.rank_free``)."""
    shape = tuple(int(d) for d in shape)
    return shape if len(shape) <= MAX_DIMS else (math.prod(shape),)


def gdim(axis: int, rank: int) -> int:
    """ggml dimension of NumPy ``axis`` (negative allowed) of a rank-``rank`` array."""
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return rank - 1 - (axis % rank)


def permute_args(axes: Sequence[int], rank: int) -> tuple[int, int, int, int]:
    """Arguments of ``ggml_permute`` equivalent to ``np.transpose(x, axes)``.

    ``ggml_permute(a, p0, p1, p2, p3)`` moves source dimension ``i`` to ``p_i``.
    NumPy output axis ``j`` takes input axis ``axes[j]``.
    """
    perm = [0, 1, 2, 3]
    for j, a in enumerate(axes):
        perm[gdim(a, rank)] = rank - 1 - j
    return perm[0], perm[1], perm[2], perm[3]


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...]:
    """NumPy broadcast of shapes."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        non_one = dims - {1}
        if len(non_one) > 1:
            raise ValueError(f"cannot broadcast shapes {[list(s) for s in shapes]}")
        out.append(non_one.pop() if non_one else 1)
    return tuple(out)


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape)
