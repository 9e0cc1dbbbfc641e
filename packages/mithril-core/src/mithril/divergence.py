"""Where do backends disagree? Run one logical model on several backends and compare block by block.

:func:`compare` compiles the model for each backend with every block's outputs as extra
outputs, runs it with the same parameters and inputs (and, with ``grads``, the same
output gradients), and reports, per logical block (by its path in the model, not IR ids),
the largest difference of its outputs and of its parameters' gradients from the first
backend's, and the **first block where the results diverge** beyond the tolerance.
:func:`certify` turns a comparison into a small JSON report to attach to a release.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ._version import __version__
from .backend import Backend
from .dtypes import float64
from .errors import CompileError, MithrilError
from .ir.flat import FlatModel
from .models.block import Block
from .models.flatten import flatten
from .models.model import Model
from .physical.model import PhysicalModel
from .physical.pipeline import Options
from .plugins import plugin_manager

#: separates a block's path from its output terminal in the extra outputs
_SEP = "::"


@dataclass(frozen=True)
class Difference:
    """One value compared between a backend and the reference."""

    block: str  # the block's path in the model ("h_0.attn"), or "" for the model itself
    value: str  # the output terminal, or the parameter for a gradient
    kind: str  # "forward" or "gradient"
    max_abs: float
    max_rel: float  # max |a - b| / max |b|
    diverges: bool


@dataclass
class Comparison:
    """The result of :func:`compare`: per backend, every :class:`Difference` against the reference."""

    reference: str
    rtol: float
    atol: float
    differences: dict[str, list[Difference]] = field(default_factory=dict)

    def first_divergence(self, backend: str) -> Difference | None:
        """The first block, in the model's order, whose outputs diverge (None: none does)."""
        return next((d for d in self.differences[backend] if d.kind == "forward" and d.diverges), None)

    def max_difference(self, backend: str, kind: str = "forward") -> float:
        return max((d.max_rel for d in self.differences[backend] if d.kind == kind), default=0.0)

    @property
    def ok(self) -> bool:
        return not any(d.diverges for ds in self.differences.values() for d in ds)

    def table(self, backend: str | None = None, *, only_diverging: bool = False) -> str:
        """A readable table of one backend's (or every backend's) differences."""
        rows = []
        for name, ds in self.differences.items():
            if backend is not None and name != backend:
                continue
            for d in ds:
                if only_diverging and not d.diverges:
                    continue
                rows.append(
                    (
                        name,
                        d.kind,
                        d.block or "(model)",
                        d.value,
                        f"{d.max_abs:.2e}",
                        f"{d.max_rel:.2e}",
                        "DIVERGES" if d.diverges else "ok",
                    )
                )
        header = ("backend", "kind", "block", "value", "max abs", "max rel", "")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

        def line(r: tuple[object, ...]) -> str:
            return "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()

        return "\n".join([line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])

    def summary(self) -> str:
        lines = [f"reference: {self.reference} (rtol {self.rtol:g}, atol {self.atol:g})"]
        for name in self.differences:
            first = self.first_divergence(name)
            where = "none" if first is None else f"{first.block or '(model)'} ({first.value}, rel {first.max_rel:.2e})"
            grads = self.max_difference(name, "gradient")
            lines.append(
                f"{name}: max forward rel diff {self.max_difference(name):.2e}, max gradient rel diff "
                f"{grads:.2e}; first diverging block: {where}"
            )
        return "\n".join(lines)


def _block_outputs(model: Model, flat: FlatModel, depth: int | None = None) -> list[tuple[str, str, Any]]:
    """(block path, terminal, value) of every block's outputs (blocks nested at most ``depth`` deep),
    in the order the graph computes them."""
    position = {n.output.uid: i for i, n in enumerate(flat.graph.nodes)}
    seen: set[int] = set()
    found = []
    for path, block in model.iter_blocks():
        if depth is not None and path.count(".") > depth:
            continue
        for t in block.output_terminals():
            v = flat.conn_values.get(id(block._binding[t]))
            if v is None or v.uid in seen or v.uid not in position or v.kind == "bool":
                continue
            seen.add(v.uid)
            found.append((position[v.uid], path, t, v))
    found.sort(key=lambda x: x[0])
    return [(p, t, v) for _, p, t, v in found]


def _with_block_outputs(model: Model, training: bool, depth: int | None) -> FlatModel:
    flat = flatten(model, training=training)
    for path, t, v in _block_outputs(model, flat, depth):
        flat.graph.outputs.setdefault(f"{path}{_SEP}{t}", v)
    return flat


def _diff(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> tuple[float, float, bool]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return math.inf, math.inf, True
    delta = np.abs(a - b)
    max_abs = float(delta.max()) if delta.size else 0.0
    scale = float(np.abs(b).max()) if b.size else 0.0
    rel = max_abs / scale if scale > 0 else max_abs
    nonfinite = bool((np.isfinite(a) != np.isfinite(b)).any())
    return max_abs, rel, nonfinite or not np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


def _backends(backends: Sequence[Backend | str], dtype: Any) -> list[Backend]:
    out = []
    for b in backends:
        if isinstance(b, Backend):
            out.append(b)
        elif isinstance(b, str):
            out.append(plugin_manager().backend_class(b)(dtype=dtype or float64))
        else:
            raise CompileError(f"compare: backends are Backend instances or registry names, got {b!r}")
    if len(out) < 2:
        raise CompileError("compare needs at least two backends")
    return out


def compare(
    model: Block,
    backends: Sequence[Backend | str],
    *,
    shapes: Mapping[str, Sequence[int]],
    inputs: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    grads: bool = True,
    training: bool = False,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    seed: int = 0,
    dtype: Any = None,
    depth: int | None = None,
) -> Comparison:
    """Compare ``model`` on ``backends`` (instances, or names made with ``dtype``, default float64).

    ``inputs`` (NumPy, by name) default to standard normal floats; give integer inputs
    (token ids) yourself. ``params`` (NumPy) default to the first backend's
    ``randomize_params(seed)``. With ``grads`` every parameter's gradient is compared too,
    for output gradients drawn once from ``seed``. The first backend is the reference.
    """
    if not isinstance(model, Block):
        raise CompileError(f"compare: model must be a mithril Model or block, got {type(model).__name__}")
    if not isinstance(model, Model):
        wrapped = Model()
        wrapped |= model
        model = wrapped
    model._freeze()
    bes = _backends(backends, dtype)
    rng = np.random.default_rng(seed)
    physical = []
    for be in bes:
        try:
            physical.append(
                PhysicalModel(
                    model,
                    be,
                    shapes=shapes,
                    constants={},
                    static_shapes=False,
                    training=training,
                    options=Options(),
                    flatten_fn=lambda t: _with_block_outputs(model, t, depth),
                )
            )
        except MithrilError as e:
            raise type(e)(f"compare: {type(be).__name__}: {e}") from None
    ref_pm = physical[0]
    if params is None:
        params = {k: bes[0].to_numpy(v) for k, v in ref_pm.randomize_params(seed).items()}
    data: dict[str, np.ndarray] = {}
    # kinds are known once shapes are: the graph compiled for the given shapes has them
    known = ref_pm._last.graph if ref_pm._last is not None else ref_pm._flat_for(training).graph
    flat_inputs = known.inputs
    for k in ref_pm.input_keys:
        if inputs is not None and k in inputs:
            data[k] = np.asarray(inputs[k])
        elif flat_inputs[k].kind in ("int", "bool"):
            raise CompileError(f"compare: input {k!r} holds integers (indices): give it in inputs=")
        else:
            data[k] = rng.standard_normal(tuple(shapes[k]))
    real_outputs = [k for k in ref_pm.output_keys if _SEP not in k]
    results = []
    cot_np: dict[str, np.ndarray] | None = None
    for be, pm in zip(bes, physical):
        with be.scope():
            p = {k: be.array(np.asarray(v)) for k, v in params.items()}
            x = {k: be.array(v) for k, v in data.items()}
            if grads:
                out = pm.evaluate(p, x, training=training)
                if cot_np is None:
                    cot_np = {
                        k: rng.standard_normal(tuple(be.shape_of(out[k])))
                        for k in real_outputs
                        if be.kind_of(out[k]) == "float"
                    }
                out, g = pm.evaluate(p, x, {k: be.array(v) for k, v in cot_np.items()}, training=training)
            else:
                out, g = pm.evaluate(p, x, training=training), {}
            results.append(({k: be.to_numpy(v) for k, v in out.items()}, {k: be.to_numpy(v) for k, v in g.items()}))
    comparison = Comparison(reference=_label(bes[0], bes), rtol=rtol, atol=atol)
    ref_out, ref_grads = results[0]
    graph = ref_pm._flat_for(training).graph
    position = {n.output.uid: i for i, n in enumerate(graph.nodes)}
    # in the order the model computes them; a model output after the block that makes it
    order = sorted(ref_pm.output_keys, key=lambda k: (position.get(graph.outputs[k].uid, -1), _SEP not in k))
    for be, (out, g) in zip(bes[1:], results[1:]):
        rows = []
        for k in order:
            block, _, value = k.rpartition(_SEP) if _SEP in k else ("", "", k)
            rows.append(Difference(block, value, "forward", *_diff(out[k], ref_out[k], rtol, atol)))
        for k in ref_grads:
            block = k.rpartition(".")[0]
            rows.append(Difference(block, k, "gradient", *_diff(g[k], ref_grads[k], rtol, atol)))
        comparison.differences[_label(be, bes)] = rows
    return comparison


def _label(be: Backend, all_backends: Sequence[Backend]) -> str:
    same = [b for b in all_backends if b.name == be.name]
    return be.name if len(same) == 1 else f"{be.name}#{same.index(be)}"


def model_hash(model: Block) -> str:
    """A hash of the model's structure (its primitive calls, attributes, names and declared shapes)."""
    m = model if isinstance(model, Model) else None
    if m is None:
        wrapped = Model()
        wrapped |= model
        m = wrapped
    g = flatten(m, training=True).graph
    ids: dict[int, str] = {}
    for table in (g.inputs, g.params, g.state):
        for k, v in table.items():
            ids[v.uid] = k
    lines = [f"in {sorted(g.inputs)} params {sorted(g.params)} state {sorted(g.state)}"]
    for i, n in enumerate(g.nodes):
        ids[n.output.uid] = f"%{i}"
        args = [ids.get(v.uid, repr(v.data) if v.data is not None else "?") for v in n.inputs]
        lines.append(f"{n.primitive.name}({', '.join(args)}; {sorted(n.attrs.items(), key=str)}) @{n.where}")
    lines.append(f"out {[(k, ids.get(v.uid)) for k, v in g.outputs.items()]}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def certify(
    model: Block,
    backends: Sequence[Backend | str],
    *,
    shapes: Mapping[str, Sequence[int]],
    path: str | os.PathLike[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`compare`, reported as a small JSON-able dict (written to ``path`` if given): the model's
    hash, each backend's distribution and version, the largest differences, and pass/fail."""
    from importlib.metadata import PackageNotFoundError, version

    bes = _backends(backends, options.pop("dtype", None))
    result = compare(model, bes, shapes=shapes, **options)

    def dist_version(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    report: dict[str, Any] = {
        "format": "mithril-certificate/1",
        "mithril": __version__,
        "model_sha256": model_hash(model),
        "shapes": {k: list(v) for k, v in shapes.items()},
        "tolerance": {"rtol": result.rtol, "atol": result.atol},
        "reference": result.reference,
        "backends": [
            {
                "name": _label(b, bes),
                "class": type(b).__name__,
                "distribution": b.distribution,
                "version": dist_version(b.distribution) if b.distribution else None,
                "dtype": b.dtype.value,
                "device": b.device,
            }
            for b in bes
        ],
        "results": {
            name: {
                "max_forward_rel": result.max_difference(name, "forward"),
                "max_gradient_rel": result.max_difference(name, "gradient"),
                "first_divergence": None if (d := result.first_divergence(name)) is None else asdict(d),
                "passed": not any(x.diverges for x in ds),
            }
            for name, ds in result.differences.items()
        },
        "passed": result.ok,
    }
    if path is not None:
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
    return report


__all__ = ["Comparison", "Difference", "certify", "compare", "model_hash"]
