"""In-place buffer reuse: which nodes may write their result into an input's buffer.

A backend offers in-place kernels (:meth:`mithril.backend.Backend.inplace_kernels`, asked per
compile) and names the primitives whose kernels always return a new buffer
(:attr:`~mithril.backend.Backend.fresh_primitives`). :func:`plan` then picks, for each node of a
graph, at most one input whose buffer the node's kernel may overwrite. That is safe only when all
of these hold:

* the backend has an in-place kernel for the node's primitive (and the kernel the node would
  otherwise run is the backend's own, not a plugin's replacement);
* the node is a plain call: not random, not one call of a multi-result primitive, not control flow;
* the input is an intermediate (``ValueRole.NODE``): never a param, state, input, output gradient
  or constant;
* it has the output's shape and kind (nothing is broadcast into it);
* it is the owner of its buffer: made by a primitive known to allocate a new one (or by an earlier
  in-place node that took such a buffer over), never a view or a value a kernel may pass through;
* no later node reads it, and it is not a result; and every other value that may share its storage
  (its *alias class*) is dead too: not read by this node or any later one, not a result, not a
  source (sources count as always alive).

Alias classes are conservative: the output of every primitive not known to allocate a new buffer
(views, casts, reductions over no axis, multi-result and control-flow calls, plugin kernels...)
joins the classes of all its inputs. A control-flow node's outputs are treated so too; the
generated code plans each sub-graph's function on its own (a call's intermediates are its own; its
inputs and results are never written).

``MITHRIL_INPLACE=0`` in the environment turns planning off (:func:`enabled`), so that the
generated code and the memory estimate can be compared with and without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ..ir.graph import Graph, Node, ValueRole

#: the environment variable that turns in-place reuse off ("0") or on (anything else; the default)
ENV = "MITHRIL_INPLACE"


def enabled() -> bool:
    """Whether in-place reuse is on (``MITHRIL_INPLACE`` is not ``"0"``)."""
    return os.environ.get(ENV, "1").strip() != "0"


def capabilities(backend: Any, *, jit: bool) -> tuple[dict[str, Callable[..., Any]], frozenset[str]]:
    """The in-place kernels to use and the primitives that allocate a new buffer, for one compile.

    Only primitives whose kernel is still the backend's own (a plugin may replace a kernel with
    one of other semantics or aliasing) count; nothing at all while :func:`enabled` is False.
    """
    if not enabled():
        return {}, frozenset()
    offered = dict(backend.inplace_kernels(jit=jit))
    if not offered:
        return {}, frozenset()
    active = backend.kernels
    core = backend.core_kernels()

    def own(prim: str) -> bool:
        return prim in active and prim in core and active[prim] is core[prim]

    kernels = {p: k for p, k in offered.items() if own(p)}
    fresh = frozenset(p for p in (*backend.fresh_primitives, *kernels) if own(p))
    return kernels, fresh


def _plain(node: Node) -> bool:
    prim = node.primitive
    return not (prim.random or prim.results or prim.subgraphs)


def plan(graph: Graph, inplace: frozenset[str] | set[str], fresh: frozenset[str] | set[str]) -> dict[int, int]:
    """Node index -> the position of the input whose buffer that node's kernel writes its result into.

    ``inplace``: primitives with an in-place kernel; ``fresh``: primitives whose kernel always
    returns a new buffer, as those of ``inplace`` do (see the module docstring for the rules).
    """
    if not inplace:
        return {}
    fresh = frozenset(fresh) | frozenset(inplace)
    results = {v.uid for v in graph.results()}
    last_use: dict[int, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last_use[v.uid] = i

    parent: dict[int, int] = {}

    def find(u: int) -> int:
        root = u
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(u, u) != root:  # path compression
            parent[u], u = root, parent[u]
        return root

    members: dict[int, list[Any]] = {}  # class root -> its values

    def new_class(v: Any) -> None:
        parent[v.uid] = v.uid
        members[v.uid] = [v]

    def join(a: Any, b: Any) -> None:
        ra, rb = find(a.uid), find(b.uid)
        if ra == rb:
            return
        if len(members[ra]) < len(members[rb]):
            ra, rb = rb, ra
        parent[rb] = ra
        members[ra].extend(members.pop(rb))

    def ensure(v: Any) -> None:
        if v.uid not in parent:
            new_class(v)

    #: values that own their buffer outright (made by a fresh primitive, or taken over in place)
    owner: set[int] = set()
    out: dict[int, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            ensure(v)
        o = node.output
        new_class(o)
        name, plain = node.primitive.name, _plain(node)
        target = _target(node, i, results, last_use, owner, members, find) if plain and name in inplace else None
        if target is not None:
            out[i] = target
            join(node.inputs[target], o)  # the output is the input's buffer, which nothing else reads now
            owner.add(o.uid)
        elif plain and name in fresh:
            owner.add(o.uid)
        else:
            for v in node.inputs:  # may pass an input through or view it: shares its storage
                join(v, o)
    return out


def _target(
    node: Node,
    i: int,
    results: set[int],
    last_use: Mapping[int, int],
    owner: set[int],
    members: Mapping[int, list[Any]],
    find: Callable[[int], int],
) -> int | None:
    """The position of the first input of ``node`` (index ``i``) whose buffer may take its result."""
    o = node.output
    if o.shape is None:
        return None
    read_here = {v.uid for v in node.inputs}
    for j, v in enumerate(node.inputs):
        if (
            v.role is not ValueRole.NODE
            or v.uid in results
            or v.uid not in owner
            or v.shape is None
            or tuple(v.shape) != tuple(o.shape)
            or v.kind != o.kind
            or last_use.get(v.uid) != i
        ):
            continue
        if all(_dead_after(m, i, v.uid, read_here, results, last_use) for m in members[find(v.uid)]):
            return j
    return None


def _dead_after(
    m: Any, i: int, target: int, read_here: set[int], results: set[int], last_use: Mapping[int, int]
) -> bool:
    """Whether ``m`` (of the target's alias class) is never read again once node ``i`` writes the buffer."""
    if m.uid == target:
        return True
    if m.role is not ValueRole.NODE or m.uid in results or m.uid in read_here:
        return False
    return last_use.get(m.uid, -1) < i


__all__ = ["ENV", "capabilities", "enabled", "plan"]
