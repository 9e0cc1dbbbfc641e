"""Everything that can be decided in Python before ggml is called.

:func:`lowering_problems` lists every node the lowering cannot handle (all of
them, with their blocks), so :class:`~mithril.errors.UnsupportedError` names
them together. :func:`backward_problems` does the same for ggml's backward pass
from the ops actually emitted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

from mithril.errors import UnsupportedError
from mithril.ir.graph import Graph, Node, Value

from .layout import MAX_DIMS
from .lowering import BOOL_RESULTS, RULES, Mode, why_not

#: ggml ops whose backward pass ggml implements (ggml.c: ggml_compute_backward, ggml 0.15)
BACKWARD_OPS = frozenset(
    {
        "NONE",
        "DUP",
        "ADD",
        "ADD1",
        "ACC",
        "SUB",
        "MUL",
        "DIV",
        "SQR",
        "SQRT",
        "LOG",
        "SIN",
        "COS",
        "SUM",
        "SUM_ROWS",
        "MEAN",
        "REPEAT",
        "REPEAT_BACK",
        "MUL_MAT",
        "SCALE",
        "SET",
        "CPY",
        "CONT",
        "RESHAPE",
        "VIEW",
        "PERMUTE",
        "TRANSPOSE",
        "SOFT_MAX",
        "IM2COL",
        "POOL_2D",
        "UNARY:ABS",
        "UNARY:SGN",
        "UNARY:NEG",
        "UNARY:STEP",
        "UNARY:RELU",
        "UNARY:SILU",
        "UNARY:EXP",
        "UNARY:EXPM1",
        "UNARY:SOFTPLUS",
    }
)

#: primitives whose output may be non-float (an int result is only read back, never computed on)
INT_OUTPUT = frozenset({"argmax"})


#: primitives that reinterpret their input's contiguous data, or reduce it: a value of more than
#: MAX_DIMS axes between two of them needs no ggml tensor of that rank (only its flat data)
RANK_FREE = frozenset({"reshape", "flatten", "unflatten", "reshape_as", "sum", "mean", "max", "min"})


def rank_free(v: Value, consumers: dict[int, list[Node]], results: set[int]) -> bool:
    """Whether ``v`` is made and used by :data:`RANK_FREE` primitives only (never a model result)."""
    return (
        v.producer is not None
        and v.producer.primitive.name in RANK_FREE
        and v.uid not in results
        and all(c.primitive.name in RANK_FREE for c in consumers.get(v.uid, []))
    )


def _value_problem(v: Value, free: bool = False) -> str | None:
    if v.shape is None:
        return "shape unknown (the graph must be shape-inferred before lowering)"
    if len(v.shape) > MAX_DIMS and not free:
        return (
            f"rank {len(v.shape)} > {MAX_DIMS} (ggml tensors have at most {MAX_DIMS} dimensions; more are "
            "only possible between reshapes and reductions)"
        )
    if any(d == 0 for d in v.shape):
        return f"empty shape {list(v.shape)} (ggml has no empty tensors)"
    return None


def lowering_problems(graph: Graph, mode: Mode) -> list[str]:
    """One line per problem: ``primitive 'x' in block 'b': reason``."""
    problems: list[str] = []
    if graph.gradients:
        problems.append(
            "the graph carries the core's backward pass (graph.gradients); GGMLBackend "
            "differentiates natively: lower the forward graph with wrt=(param names)"
        )
    consumers = graph.consumers()
    results = {v.uid for v in [*graph.outputs.values(), *graph.state_updates.values()]}
    for role, table in (("input", graph.inputs), ("param", graph.params), ("state", graph.state)):
        for name, v in table.items():
            why = _value_problem(v)
            if why is None and v.kind not in (None, "float"):
                why = f"kind {v.kind!r}: the ggml lowering handles float data only"
            if why:
                problems.append(f"{role} {name!r}: {why}")
    for n in graph.nodes:
        name = n.primitive.name
        rule = RULES.get(name)
        why = None
        if rule is None:
            why = why_not(name)
        else:
            values = [*n.inputs, n.output]
            why = next((w for v in values if (w := _value_problem(v, rank_free(v, consumers, results)))), None)
            kind = n.output.kind
            if why is None and kind == "bool" and name in BOOL_RESULTS:
                if n.output.uid in results:
                    why = (
                        "its bool result is a model output; GGML computes booleans as float 0/1: "
                        "cast it to float in the model"
                    )
            elif why is None and kind != "float":
                if name not in INT_OUTPUT:
                    why = f"produces kind {kind!r}; the ggml lowering handles float (and 0/1 bool) data only"
                elif consumers.get(n.output.uid):
                    why = f"its {kind} result is used by another node; only float data is computed on"
            if why is None and rule.check is not None:
                why = rule.check(n, mode)
        if why:
            problems.append(f"primitive {name!r} in block {n.where or '?'!r}: {why}")
    return problems


def available_memory() -> int:
    """Bytes this process may allocate: the smaller of MemAvailable (Linux) and a cgroup limit, else the
    physical memory; ggml aborts the process when its context cannot be allocated, so it is checked first."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
            if text.isdigit():
                limits.append(int(text))
        except OSError:
            pass
    if not limits:
        try:
            limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            return 1 << 62
    return min(limits)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def size_problems(graph: Graph, budget: int | None = None) -> list[str]:
    """Values too large to allocate (in Python, before any ggml call): ggml aborts on a failed allocation."""
    budget = available_memory() if budget is None else budget
    problems = []
    seen: set[int] = set()
    values = [
        (f"{role} {name!r}", v)
        for role, table in (("input", graph.inputs), ("param", graph.params), ("state", graph.state))
        for name, v in table.items()
    ]
    values += [(f"primitive {n.primitive.name!r} in block {n.where or '?'!r}", n.output) for n in graph.nodes]
    for what, v in values:
        if v.shape is None or v.uid in seen:
            continue
        seen.add(v.uid)
        nbytes = 4 * math.prod(v.shape)
        if nbytes > budget:
            problems.append(
                f"{what}: shape {list(v.shape)} needs {_gib(nbytes)}, more than the "
                f"{_gib(budget)} this process can allocate"
            )
    return problems


def raise_if(problems: list[str], what: str) -> None:
    if problems:
        lines = "\n  ".join(problems)
        raise UnsupportedError(f"GGMLBackend cannot {what}:\n  {lines}")


def depends_on(graph: Graph, sources: Iterable[Value]) -> set[int]:
    """uids of values computed from any of ``sources``."""
    dep = {v.uid for v in sources}
    for n in graph.nodes:
        if any(v.uid in dep for v in n.inputs):
            dep.add(n.output.uid)
    return dep


def ancestors(graph: Graph, targets: Iterable[Value]) -> set[int]:
    """uids of values ``targets`` are computed from (themselves included)."""
    need = {v.uid for v in targets}
    for n in reversed(graph.nodes):
        if n.output.uid in need:
            need.update(v.uid for v in n.inputs)
    return need


def backward_problems(
    graph: Graph, ops: dict[int, list[str]], wrt: Iterable[Value], loss_outputs: Iterable[Value]
) -> list[str]:
    """Nodes on a path from a ``wrt`` param to a differentiated output whose ggml ops lack a backward."""
    on_path = depends_on(graph, wrt) & ancestors(graph, loss_outputs)
    problems = []
    for i, n in enumerate(graph.nodes):
        if n.output.uid not in on_path:
            continue
        bad = sorted({op for op in ops.get(i, []) if op not in BACKWARD_OPS})
        if bad:
            problems.append(
                f"primitive {n.primitive.name!r} in block {n.where or '?'!r}: ggml has no backward for {', '.join(bad)}"
            )
    return problems


__all__ = [
    "BACKWARD_OPS",
    "RANK_FREE",
    "ancestors",
    "available_memory",
    "backward_problems",
    "depends_on",
    "lowering_problems",
    "raise_if",
    "rank_free",
    "size_problems",
]
