"""How random nodes get their randomness: one seed per call, one stream per node.

A graph with random nodes (``Primitive.random``) is lowered to code that reads a
seed from ``inputs[SEED_INPUT]``. The physical model puts a fresh seed there on
every ``evaluate``, drawn from the backend's generator (``backend.next_seed()``),
so ``backend.seed(n)`` makes a sequence of calls reproducible and successive calls
differ. Under a JIT the seed is an ordinary argument (a tensor or a PRNG key), so a
new seed never retraces.

Each random node calls its kernel with ``backend.random_key(seed, stream)``, where
``stream`` is a 31-bit number derived from the node's block path: two random
nodes of one graph draw independently, and a node keeps its stream in every
compiled variant of a model (forward only, with gradients, checkpointed), since
the number does not depend on which other nodes a variant keeps.
"""

from __future__ import annotations

import hashlib

from .graph import Graph

#: key of the per-call seed in the ``inputs`` of an executable whose graph has random nodes
SEED_INPUT = "#seed"

_STREAM_BITS = 31  # fits jax.random.fold_in's uint32 and leaves int64 seeds positive when xor-ed


def is_random(graph: Graph) -> bool:
    """Whether ``graph`` has a random node (its executable reads ``inputs[SEED_INPUT]``)."""
    return any(n.primitive.random for n in graph.nodes)


def path_stream(where: str) -> int:
    """The stream number a block path hashes to."""
    digest = hashlib.blake2b(where.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & ((1 << _STREAM_BITS) - 1)


def stream_ids(graph: Graph) -> dict[int, int]:
    """The stream of each random node, by the uid of its output.

    Nodes whose paths hash alike (or share a path) get the next free number, in
    graph order, so the streams of one graph are distinct.
    """
    mask = (1 << _STREAM_BITS) - 1
    used: set[int] = set()
    out: dict[int, int] = {}
    for n in graph.nodes:
        if not n.primitive.random:
            continue
        s = path_stream(n.where)
        while s in used:
            s = (s + 1) & mask
        used.add(s)
        out[n.output.uid] = s
    return out


__all__ = ["SEED_INPUT", "is_random", "path_stream", "stream_ids"]
