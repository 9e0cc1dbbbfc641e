"""Lowering: graph IR -> Python source over a backend's kernels.

The generated function reads params/inputs/cotangents from dicts, calls one
kernel per node with its attributes as literals, frees each intermediate
after its last use and returns ``(outputs, gradients, state_updates)``.
Nodes of a primitive with several ``results`` that differ only in their
``result`` attribute share one kernel call, which returns a tuple in the
primitive's ``results`` order (``out, mean, rstd = k_normalize(x, ...)``).
A random node's kernel gets ``random_key(seed, stream)`` first, the seed read
from ``inputs[SEED_INPUT]`` (see :mod:`mithril.ir.randomness`).
"""

from __future__ import annotations

import itertools
import keyword
import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ..dtypes import DType
from ..errors import UnsupportedError
from ..ir.graph import Graph, Value, ValueRole
from ..ir.passes.expand import result_call
from ..ir.randomness import SEED_INPUT, stream_ids


class PythonExecutable:
    """A generated Python function (optionally jit-compiled by the backend)."""

    def __init__(self, source: str, fn: Callable[..., Any], raw: Callable[..., Any]) -> None:
        self.source = source
        self._fn = fn
        self.raw = raw

    def run(self, params: Any, inputs: Any, cotangents: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        return self._fn(params, inputs, cotangents)


_IDENT = re.compile(r"[^0-9a-zA-Z_]")


class _Names:
    """Unique Python identifiers from readable hints (``matmul``, ``matmul_2``...)."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self._next: dict[str, int] = {}

    def make(self, hint: str) -> str:
        base = _IDENT.sub("_", hint).strip("_") or "v"
        if base[0].isdigit() or keyword.iskeyword(base):
            base = "v_" + base
        name, i = base, self._next.get(base, 1)
        if i > 1:
            name = f"{base}_{i}"
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self._next[base] = i + 1
        self.used.add(name)
        return name


def generate_source(graph: Graph, backend: Any) -> tuple[str, dict[str, Any]]:
    """Source text of ``run(params, inputs, cotangents)`` and the namespace it needs."""
    names = _Names()
    for reserved in ("params", "inputs", "cotangents", "run", "random_key"):
        names.used.add(reserved)
    var: dict[int, str] = {}
    ns: dict[str, Any] = {}
    lines: list[str] = []
    kernels = backend.kernels

    def kernel_name(prim: str, where: str) -> str:
        key = f"k_{prim}"
        if key not in ns:
            if prim not in kernels:
                raise UnsupportedError(
                    f"{where}: {type(backend).__name__} has no kernel for primitive {prim!r} "
                    f"(a plugin can register one with mithril_register_kernels)"
                )
            ns[key] = kernels[prim]
            names.used.add(key)
        return key

    def const_name(v: Value) -> str:
        n = names.make("c")
        ns[n] = backend.constant(np.asarray(v.data, dtype=_np_dtype(backend, v.kind)))
        return n

    body: list[str] = []
    for d, label in (
        (graph.params, "params"),
        (graph.state, "params"),
        (graph.inputs, "inputs"),
        (graph.cotangents, "cotangents"),
    ):
        for key, v in d.items():
            n = names.make(("d_" if label == "cotangents" else "") + key)
            var[v.uid] = n
            body.append(f"    {n} = {label}[{key!r}]")

    # random nodes: the call's seed, and each node's stream (mithril.ir.randomness)
    streams = stream_ids(graph)
    seed = ""
    if streams:
        seed = names.make("seed")
        ns["random_key"] = backend.random_key
        body.append(f"    {seed} = inputs[{SEED_INPUT!r}]")

    # last use of each value, to free intermediates early
    results = {v.uid for v in graph.results()}
    last_use: dict[int, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last_use[v.uid] = i

    def _free(body: list[str], node: Any, i: int) -> None:
        dead = [
            var[v.uid]
            for v in {v.uid: v for v in node.inputs}.values()
            if last_use.get(v.uid) == i and v.uid not in results and v.role is ValueRole.NODE
        ]
        if dead:
            body.append(f"    del {', '.join(dead)}")

    groups = _result_groups(graph)
    for i, node in enumerate(graph.nodes):
        group = groups.get(id(node))
        if group is not None and group[0] is not node:  # computed by the group's first call
            _free(body, node, i)
            continue
        args = []
        for v in node.inputs:
            if v.uid not in var:
                if v.role is ValueRole.CONST:
                    var[v.uid] = const_name(v)
                else:
                    raise UnsupportedError(f"{node.where}: input {v!r} of {node.primitive.name} is never computed")
            args.append(var[v.uid])
        if node.primitive.random:
            args.insert(0, f"random_key({seed}, {streams[node.output.uid]})")
        if group is None:
            attrs = [f"{k}={v!r}" for k, v in node.attrs.items()]
            out = names.make(node.output.name or node.primitive.name)
            var[node.output.uid] = out
        else:
            attrs = [f"{k}={v!r}" for k, v in node.attrs.items() if k != "result"]
            out, aliases = _unpack(group, names, var)
        call = f"{kernel_name(node.primitive.name, node.where)}({', '.join(args + attrs)})"
        body.append(f"    {out} = {call}  # {node.where}")
        if group is not None:
            body.extend(f"    {a} = {b}" for a, b in aliases)
        _free(body, node, i)

    def ref(v: Value) -> str:
        if v.uid not in var:
            if v.role is ValueRole.CONST:
                var[v.uid] = const_name(v)
            else:
                raise UnsupportedError(f"result {v!r} is never computed")
        return var[v.uid]

    def dict_src(d: dict[str, Value]) -> str:
        return "{" + ", ".join(f"{k!r}: {ref(v)}" for k, v in d.items()) + "}"

    body.append(f"    return {dict_src(graph.outputs)}, {dict_src(graph.gradients)}, {dict_src(graph.state_updates)}")
    lines.append("def run(params, inputs, cotangents):")
    lines.extend(body)
    header = f"# generated by mithril for {type(backend).__name__} ({backend.dtype.value})\n"
    return header + "\n".join(lines) + "\n", ns


def _result_groups(graph: Graph) -> dict[int, list[Any]]:
    """Nodes of a multi-result primitive that differ only in ``result``: id(node) -> the group's nodes."""
    by_key: dict[Any, list[Any]] = {}
    for node in graph.nodes:
        prim = node.primitive
        if prim.results:
            key = (*result_call(node), id(node) if prim.random else 0)
            by_key.setdefault(key, []).append(node)
    return {id(n): group for group in by_key.values() for n in group}


def _unpack(group: list[Any], names: _Names, var: dict[int, str]) -> tuple[str, list[tuple[str, str]]]:
    """Names every member's output: the target list of the group's call (``_`` for a result no
    member reads) and ``(alias, name)`` pairs for members asking for a result another one has."""
    prim = group[0].primitive
    slots: dict[str, str] = {}
    aliases: list[tuple[str, str]] = []
    for node in group:
        r = node.attrs["result"]
        name = var[node.output.uid] = names.make(node.output.name or f"{prim.name}_{r}")
        if r in slots:
            aliases.append((name, slots[r]))
        else:
            slots[r] = name
    target = ", ".join(slots.get(r, "_") for r in prim.results)
    return (target + "," if len(prim.results) == 1 else target), aliases


_generated = itertools.count(1)


def lower_to_python(graph: Graph, backend: Any, *, jit: bool, source_path: str | None = None) -> PythonExecutable:
    source, ns = generate_source(graph, backend)
    # one name per generated function: torch.compile keys what it learns about a function (which
    # dimensions vary between calls) by file name and line, and would otherwise treat every
    # generated function as one, compiling later ones with dynamic shapes
    filename = f"<mithril-generated-{next(_generated)}>"
    if source_path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(source_path)) or ".", exist_ok=True)
        with open(source_path, "w") as f:
            f.write(source)
        filename = os.path.abspath(source_path)
    code = compile(source, filename, "exec")
    exec(code, ns)
    raw = ns["run"]
    what = "train_step" if graph.donates_params else "gradients" if graph.gradients else "evaluate"
    fn = backend.jit(raw, what=what) if jit else raw
    return PythonExecutable(source, fn, raw)


def _np_dtype(backend: Any, kind: str | None) -> Any:
    if kind == "int":
        return np.int64
    if kind == "bool":
        return np.bool_
    return np.float32 if backend.dtype is DType.bfloat16 else backend.dtype.numpy
