"""Random primitives: the per-node key and the kernels that draw from it.

The call's seed is a 0-d int64 CPU tensor (so ``torch.compile`` traces it as data
and a new seed never recompiles); a node's key is ``seed ^ stream``. Each kernel
seeds a fresh :class:`torch.Generator` on the data's device with it. Dynamo cannot
trace generator seeding, so the kernels run eagerly under ``torch.compile``: a
graph break, named by the reason below, around each random node only.
"""

from __future__ import annotations

from typing import Any

import torch

_EAGER = "mithril random kernel: seeds a torch.Generator per call, which torch.compile cannot trace"


def random_key(seed: torch.Tensor, stream: int) -> torch.Tensor:
    return seed ^ stream


def _generator(key: torch.Tensor, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(key))
    return g


@torch.compiler.disable(reason=_EAGER)  # type: ignore[untyped-decorator]  # torch.compiler.disable is unannotated
def bernoulli(key: torch.Tensor, like: torch.Tensor, *, p: float) -> torch.Tensor:
    g = _generator(key, like.device)
    return torch.rand(like.shape, generator=g, device=like.device, dtype=torch.float32) < p


KERNELS: dict[str, Any] = {"bernoulli": bernoulli}

__all__ = ["KERNELS", "random_key"]
