"""Checks for the author of a custom primitive: gradients by finite differences, and agreement across backends.

::

    from mithril.testing import check_primitive

    report = check_primitive("softplus", shapes=[(4, 3)], attrs={"beta": 2.0}, backends=["numpy", "torch"])
    print(report)

compiles a one-node model of the primitive for every backend asked (default: every installed one),
evaluates it on the same inputs and a random output cotangent, and checks

* **agreement**: every backend's output and gradients against the first backend's (or against
  ``reference``, a NumPy function ``reference(*inputs, **attrs)``, when given);
* **gradients**: every backend's gradients against central finite differences of the forward
  function in float64 (``reference`` where given, else the first backend's float64 forward), which
  checks the gradient rule (or a composite's expansion) and each backend's kernels at once.

Floats are float64 where the backend has it, else float32 with float32 tolerances
(:data:`mithril.testing.conformance.TOLERANCES`). A failure raises ``AssertionError`` with the
report (``raise_on_failure=False`` returns it instead); a backend with no kernel for the
primitive is reported as skipped, unless none is left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .conformance import FD_EPS, TOLERANCES, numerical_vjp


@dataclass
class BackendResult:
    """One backend's outcome: the largest differences found, scaled as the tolerances are."""

    backend: str
    dtype: str = ""
    #: max |output - expected| / max(1, max |expected|)
    forward: float | None = None
    #: per differentiated input: max |gradient - finite differences| / max(1, max |finite differences|)
    gradients: dict[str, float] = field(default_factory=dict)
    #: per differentiated input: against the expected backend's gradient (agreement)
    agreement: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    note: str = ""


@dataclass
class PrimitiveReport:
    """What :func:`check_primitive` found, one row per backend."""

    primitive: str
    shapes: Sequence[Sequence[int]]
    expected: str
    results: list[BackendResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results) and any(not r.note.startswith("skipped") for r in self.results)

    def __str__(self) -> str:
        head = f"check_primitive({self.primitive!r}, shapes={self.shapes}): expected values from {self.expected}"
        lines = [head, f"{'backend':<10} {'dtype':<8} {'forward':>9} {'grad vs FD':>11} {'grad vs exp':>12}  result"]
        for r in self.results:
            fd = max(r.gradients.values()) if r.gradients else None
            ag = max(r.agreement.values()) if r.agreement else None
            cells = [_num(r.forward), _num(fd), _num(ag)]
            verdict = "ok" if r.ok else "FAILED"
            lines.append(
                f"{r.backend:<10} {r.dtype:<8} {cells[0]:>9} {cells[1]:>11} {cells[2]:>12}  "
                f"{verdict}{(': ' + r.note) if r.note else ''}"
            )
        return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def _scaled(got: np.ndarray, want: np.ndarray) -> float:
    want = np.asarray(want, dtype=np.float64)
    if want.size == 0:
        return 0.0
    return float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want)) / max(1.0, float(np.max(np.abs(want)))))


def _within(got: np.ndarray, want: np.ndarray, tol: tuple[float, float]) -> bool:
    rtol, atol = tol
    want = np.asarray(want, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    return bool(np.allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol, atol=atol * scale))


def _model(name: str, n_inputs: int, kinds: Sequence[str], diff: Sequence[bool], attrs: Mapping[str, Any]) -> Any:
    from ..models import IOKey, Model, PrimitiveBlock
    from ..primitives import registry

    prim = registry.get(name)
    if prim.variadic:
        names = [f"{prim.inputs[0]}_{i}" for i in range(n_inputs)]
        block = PrimitiveBlock(name, n_inputs=n_inputs, **attrs)
    else:
        if n_inputs != len(prim.inputs):
            raise ValueError(f"{name} takes {len(prim.inputs)} inputs {list(prim.inputs)}, got {n_inputs} shapes")
        names = list(prim.inputs)
        block = PrimitiveBlock(name, **attrs)
    conns: dict[str, Any] = {}
    for n, kind, d in zip(names, kinds, diff):
        conns[n] = IOKey(n, role="param") if d else IOKey(n, dtype=kind)
    conns[prim.output] = IOKey("output")
    m = Model()
    m |= block(**conns)
    return m, names


def _backend(spec: Any, dtype: str) -> Any:
    import mithril as ml

    if not isinstance(spec, str):
        return spec
    return ml.backend(spec, dtype=getattr(ml, dtype))


def _label(spec: Any) -> str:
    return spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)


def _run(
    name: str,
    spec: Any,
    values: Sequence[np.ndarray],
    kinds: Sequence[str],
    diff: Sequence[bool],
    attrs: Mapping[str, Any],
    cot_for: Callable[[tuple[int, ...]], np.ndarray],
) -> tuple[str, np.ndarray, dict[str, np.ndarray], Any, np.ndarray | None]:
    """Compile and evaluate on one backend: (dtype, output, gradients by input name, backend, cotangent)."""
    import mithril as ml

    from ..errors import UnsupportedError

    last: Exception | None = None
    for dtype in ("float64", "float32"):
        try:
            backend = _backend(spec, dtype)
        except UnsupportedError as e:
            last = e
            continue
        dt = backend.dtype.value
        if not getattr(backend, "supports_training", True):  # an inference backend (GGML): forward only
            diff = [False] * len(values)
        model, names = _model(name, len(values), kinds, diff, attrs)
        pm = ml.compile(model, backend, shapes={n: list(np.shape(v)) for n, v in zip(names, values)})
        with backend.scope():
            arrays = {n: backend.array(v) for n, v in zip(names, values)}
            params = {n: a for (n, a), d in zip(arrays.items(), diff) if d}
            inputs = {n: a for (n, a), d in zip(arrays.items(), diff) if not d}
            cot = cot_for(tuple(pm.shapes["output"])) if any(diff) else None
            if cot is None:
                out = pm.evaluate(params, inputs)
                grads: dict[str, Any] = {}
            else:
                out, grads = pm.evaluate(params, inputs, {"output": backend.array(cot)})
            return (
                dt,
                np.asarray(backend.to_numpy(out["output"])),
                {k: np.asarray(backend.to_numpy(g)) for k, g in grads.items()},
                backend,
                cot,
            )
    raise UnsupportedError(f"{_label(spec)} supports neither float64 nor float32: {last}")


def check_primitive(
    name: str,
    shapes: Sequence[Sequence[int]],
    *,
    attrs: Mapping[str, Any] | None = None,
    backends: Sequence[Any] | None = None,
    reference: Callable[..., Any] | None = None,
    inputs: Sequence[np.ndarray] | None = None,
    kinds: Sequence[str] | None = None,
    gradients: bool = True,
    eps: float = FD_EPS,
    seed: int = 0,
    tolerances: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    raise_on_failure: bool = True,
) -> PrimitiveReport:
    """Check one primitive on several backends: forward agreement, and gradients by finite differences.

    ``shapes`` gives one shape per input (in the primitive's input order; any number for a variadic
    one). Inputs are standard normal draws from ``seed`` unless ``inputs`` gives them (then ``kinds``
    defaults to theirs: float inputs not in the primitive's ``nondiff`` are differentiated).
    ``backends``: names (``"numpy"``) or backend instances; default every installed backend, with
    NumPy first when it is installed. ``reference``: a NumPy function ``reference(*inputs, **attrs)``
    giving the expected output (in float64) instead of the first backend. ``tolerances``: as the
    conformance option of that name (dtype -> {"forward": (rtol, atol), "gradient": (rtol, atol)}).
    """
    import mithril as ml

    from ..errors import UnsupportedError
    from ..primitives import registry

    prim = registry.get(name)
    attrs = dict(attrs or {})
    shapes = [tuple(int(d) for d in s) for s in shapes]
    rng = np.random.default_rng(seed)
    if inputs is None:
        kinds = list(kinds or ["float"] * len(shapes))
        values = [
            rng.standard_normal(s) if k == "float" else (rng.integers(0, 3, s) if k == "int" else rng.random(s) < 0.5)
            for s, k in zip(shapes, kinds)
        ]
    else:
        values = [np.asarray(v) for v in inputs]
        shapes = [v.shape for v in values]
        kinds = list(
            kinds or ["bool" if v.dtype == np.bool_ else "int" if v.dtype.kind in "iu" else "float" for v in values]
        )
    values = [v.astype({"float": np.float64, "int": np.int64, "bool": np.bool_}[k]) for v, k in zip(values, kinds)]
    names = [f"{prim.inputs[0]}_{i}" for i in range(len(values))] if prim.variadic else list(prim.inputs)
    diff = [
        gradients and k == "float" and (prim.variadic or names[i] not in prim.nondiff) and prim.differentiable
        for i, k in enumerate(kinds)
    ]
    if backends is None:
        installed = sorted(ml.plugins.backend_names(), key=lambda b: (b != "numpy", b))
        backends = installed
    tol = {d: {**TOLERANCES[d], **(tolerances or {}).get(d, {})} for d in TOLERANCES}
    bound = prim.bind_attrs(attrs)
    kernel_attrs = {k: v for k, v in bound.items() if not (prim.results and k == "result")}

    ran: list[tuple[str, str, np.ndarray, dict[str, np.ndarray], Any]] = []
    results: list[BackendResult] = []
    cot: np.ndarray | None = None

    def cot_for(shape: tuple[int, ...]) -> np.ndarray:
        return np.random.default_rng(seed + 1).standard_normal(shape)

    for spec in backends:
        label = _label(spec)
        try:
            dt, out, grads, be, used = _run(name, spec, values, kinds, diff, attrs, cot_for)
            cot = cot if used is None else used
        except UnsupportedError as e:
            results.append(BackendResult(label, note=f"skipped: {e}"))
            continue
        ran.append((label, dt, out, grads, be))
        results.append(BackendResult(label, dt))
    if not ran:
        report = PrimitiveReport(name, shapes, "-", results)
        if raise_on_failure:
            raise AssertionError(f"{report}\nno backend could run {name!r}")
        return report

    if reference is not None:
        expected_label = "reference"
        expected_out = np.asarray(reference(*values, **kernel_attrs), dtype=np.float64)
        forward_fn = _in_float64(reference, kernel_attrs)
        expected_grads: dict[str, np.ndarray] | None = None
    else:
        first = ran[0]
        expected_label = f"{first[0]} ({first[1]})"
        expected_out = first[2].astype(np.float64) if first[2].dtype.kind == "f" else first[2]
        expected_grads = {k: g.astype(np.float64) for k, g in first[3].items()}
        forward_fn = _forward_of(name, ran[0][4], kinds, attrs)

    wrt = [i for i, d in enumerate(diff) if d]
    fd: dict[str, np.ndarray] = {}
    if wrt and cot is not None:
        fd = dict(zip([names[i] for i in wrt], numerical_vjp(forward_fn, values, wrt, cot, eps=eps)))

    for res in results:
        row = next((r for r in ran if r[0] == res.backend), None)
        if row is None:
            continue
        _, dt, out, grads, _ = row
        t = tol.get(dt, TOLERANCES["float32"])
        res.forward = _scaled(out, expected_out) if out.dtype.kind == "f" else float(np.any(out != expected_out))
        ok = (out.shape == expected_out.shape) and (
            _within(out, expected_out, t["forward"]) if out.dtype.kind == "f" else bool(np.all(out == expected_out))
        )
        if out.shape != expected_out.shape:
            res.note = f"output shape {list(out.shape)}, expected {list(expected_out.shape)}"
        if not grads and fd and not getattr(row[4], "supports_training", True):
            res.note = "forward only (an inference backend)"
            fd_here: dict[str, np.ndarray] = {}
        else:
            fd_here = fd
        for k, g in fd_here.items():
            if k not in grads:
                ok = False
                res.note = f"no gradient for {k!r}"
                continue
            res.gradients[k] = _scaled(grads[k], g)
            ok = ok and _within(grads[k], g, t["gradient"])
            if expected_grads is not None and k in expected_grads:
                res.agreement[k] = _scaled(grads[k], expected_grads[k])
                ok = ok and _within(grads[k], expected_grads[k], t["gradient"])
        res.ok = ok
    report = PrimitiveReport(name, shapes, expected_label, results)
    if raise_on_failure and not report.ok:
        raise AssertionError(str(report))
    return report


def _in_float64(fn: Callable[..., Any], attrs: Mapping[str, Any]) -> Callable[[list[np.ndarray]], np.ndarray]:
    """``fn(*values, **attrs)`` as a float64 array: a NumPy reference as a function for finite differences."""

    def forward(vs: list[np.ndarray]) -> np.ndarray:
        return np.asarray(fn(*vs, **attrs), dtype=np.float64)

    return forward


def _forward_of(name: str, backend: Any, kinds: Sequence[str], attrs: Mapping[str, Any]) -> Callable[..., np.ndarray]:
    """The primitive's forward on ``backend`` in float64 (for finite differences), as a NumPy function."""
    import mithril as ml

    if backend.dtype.value != "float64":
        with contextlib.suppress(Exception):
            backend = type(backend)(dtype=ml.float64)
    cache: dict[Any, Any] = {}

    def fn(values: list[np.ndarray]) -> np.ndarray:
        key = tuple(np.shape(v) for v in values)
        if key not in cache:
            model, names = _model(name, len(values), kinds, [False] * len(values), attrs)
            cache[key] = (
                ml.compile(model, backend, shapes={n: list(np.shape(v)) for n, v in zip(names, values)}),
                names,
            )
        pm, names = cache[key]
        with backend.scope():
            out = pm.evaluate({}, {n: backend.array(v) for n, v in zip(names, values)})["output"]
            return np.asarray(backend.to_numpy(out), dtype=np.float64)

    return fn


def check_gradient(
    name: str, shapes: Sequence[Sequence[int]], *, backend: Any = "numpy", **options: Any
) -> PrimitiveReport:
    """The gradients of ``name`` on one backend against finite differences of its own forward
    (:func:`check_primitive` with one backend; the same options)."""
    return check_primitive(name, shapes, backends=[backend], **options)


__all__ = ["BackendResult", "PrimitiveReport", "check_gradient", "check_primitive"]
