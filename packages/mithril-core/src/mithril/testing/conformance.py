"""The conformance suite every backend package runs against itself.

Use it from a backend package's tests (a third party's included) with one
import and one fixture::

    # tests/test_conformance.py
    import pytest
    from mithril.testing.conformance import *  # noqa: F401,F403

    @pytest.fixture
    def mithril_backend_factory():
        return lambda dtype: MyBackend(dtype=dtype)      # dtype: ml.float32 / ml.float64

The fixture may equally live in the package's ``conftest.py``. An optional
fixture ``mithril_conformance_options`` returns a dict (the default, from the
``mithril`` pytest plugin, is ``{}``):

``jit`` (bool)
    compile with ``jit=True``.
``compile_options`` (dict)
    more keyword arguments for ``ml.compile``.
``gradients`` (bool, default True)
    False for a forward-only backend: gradient tests are skipped.
``unsupported`` (set, or dict name -> reason)
    primitive names, case ids (``"conv2d-dilation"``) or block case ids
    (``"block-cnn"``) the backend does not support: those tests are skipped with
    the reason; a block is skipped when it uses an unsupported primitive, and an
    ``UnsupportedError`` naming an unsupported primitive skips a test too.
    A name prefixed ``"gradient:"`` skips only the gradient tests of it.
``dtypes`` (tuple of dtype names, default ``("float32", "float64")``)
    the float dtypes to test (a dtype the backend rejects is skipped anyway).
``only`` (set)
    run only these primitives / case ids / block case ids (a quick subset,
    e.g. for a ``jit=True`` variant).
``blocks`` (bool, default True)
    run the block cases (Linear, Conv2d, BatchNorm2d, ... and compositions).
``tests`` (set, default all of :data:`TEST_KINDS`)
    which kinds of test to run: ``"forward"``, ``"gradient"``, ``"inference"``,
    ``"randomize"``, ``"kernels"`` (e.g. only ``{"gradient"}`` for a configuration
    that changes nothing but how gradients are computed).
``factory_options`` (dict)
    ignored by the suite; for the backend's own fixtures, e.g. a
    ``mithril_backend_factory`` that depends on ``mithril_conformance_options``
    and builds the backend differently per configuration.
``tolerances`` (dict dtype name -> {"forward": (rtol, atol), "gradient": (rtol, atol)})
    override the tolerances of :data:`TOLERANCES` (atol is scaled by the
    magnitude of the expected values).

Parametrize ``mithril_conformance_options`` to run several configurations;
the pytest plugin :mod:`mithril.testing.pytest_plugin` (loaded by the
star-import through ``pytest_plugins``) then deselects, rather than skips, the
tests a configuration excludes through ``dtypes``, ``only``, ``blocks`` or
``tests``. Declared-unsupported tests are skipped, with the reason.

What is checked, for every case of every core primitive
(:data:`mithril.testing.cases.PRIMITIVE_CASES`):

* forward, in float64 and float32, against the independent NumPy reference
  (:mod:`mithril.testing.reference`) evaluated on exactly the values the backend
  holds, output shape and dtype included;
* gradients (primitives with a gradient rule), through
  ``evaluate(..., output_gradients=...)`` for a random cotangent, against central
  finite differences of the reference in float64; in float32 against the same
  float64 reference gradients with float32 tolerances (so a backend without
  float64 is checked too);

and for every block case (:data:`mithril.testing.cases.BLOCK_CASES`): parameter
names, forward output and state updates (training mode), inference mode
(``static_inference=True`` and ``evaluate(training=False)``), parameter
gradients and ``randomize_params``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from .cases import BLOCK_CASES, PRIMITIVE_CASES, BlockCase, PrimitiveCase

__all__ = [
    "pytest_plugins",
    "test_backend_has_core_kernels",
    "test_block_forward",
    "test_block_gradient",
    "test_block_inference",
    "test_block_randomize_params",
    "test_primitive_forward",
    "test_primitive_gradient",
]

#: the star-import carries this into the backend's test module, so pytest loads the default fixtures
#: and the deselection hook (unless an entry point or a conftest loaded them already)
pytest_plugins: list[str] = [] if "mithril.testing.pytest_plugin" in sys.modules else ["mithril.testing.pytest_plugin"]

DTYPES: tuple[str, ...] = ("float32", "float64")

#: (rtol, atol) per dtype and check; atol is multiplied by max(1, max |expected|)
TOLERANCES: dict[str, dict[str, tuple[float, float]]] = {
    "float64": {"forward": (1e-9, 1e-12), "gradient": (1e-5, 1e-7)},
    "float32": {"forward": (1e-4, 1e-6), "gradient": (3e-4, 3e-6)},
    "float16": {"forward": (1e-2, 1e-3), "gradient": (5e-2, 5e-3)},
    "bfloat16": {"forward": (5e-2, 1e-2), "gradient": (1e-1, 2e-2)},
}

#: finite-difference step (float64)
FD_EPS = 1e-6

OPTION_KEYS = frozenset(
    {
        "jit",
        "compile_options",
        "gradients",
        "unsupported",
        "dtypes",
        "only",
        "blocks",
        "tests",
        "tolerances",
        "factory_options",
    }
)

TEST_KINDS = frozenset({"forward", "gradient", "inference", "randomize", "kernels"})


# ------------------------------------------------------------------- options
@dataclass
class ConformanceOptions:
    """The normalised ``mithril_conformance_options``."""

    jit: bool = False
    compile_options: dict[str, Any] = field(default_factory=dict)
    gradients: bool = True
    unsupported: dict[str, str] = field(default_factory=dict)
    dtypes: tuple[str, ...] = DTYPES
    only: frozenset[str] | None = None
    blocks: bool = True
    tests: frozenset[str] = TEST_KINDS
    tolerances: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    factory_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, options: Mapping[str, Any] | None) -> ConformanceOptions:
        options = dict(options or {})
        bad = sorted(set(options) - OPTION_KEYS)
        if bad:
            raise ValueError(f"mithril_conformance_options: unknown key(s) {bad}; known: {sorted(OPTION_KEYS)}")
        unsupported = options.get("unsupported") or {}
        if not isinstance(unsupported, Mapping):
            unsupported = dict.fromkeys(unsupported, "declared unsupported by the backend")
        dtypes = tuple(getattr(d, "value", d) for d in options.get("dtypes", DTYPES))
        only = options.get("only")
        tests = frozenset(options.get("tests", TEST_KINDS))
        if tests - TEST_KINDS:
            raise ValueError(
                f"mithril_conformance_options: unknown test kind(s) {sorted(tests - TEST_KINDS)}; "
                f"known: {sorted(TEST_KINDS)}"
            )
        return cls(
            jit=bool(options.get("jit", False)),
            compile_options=dict(options.get("compile_options") or {}),
            gradients=bool(options.get("gradients", True)),
            unsupported=dict(unsupported),
            dtypes=dtypes,
            only=None if only is None else frozenset(only),
            blocks=bool(options.get("blocks", True)),
            tests=tests,
            tolerances=dict(options.get("tolerances") or {}),
            factory_options=dict(options.get("factory_options") or {}),
        )

    def compile_kwargs(self) -> dict[str, Any]:
        kw = dict(self.compile_options)
        if self.jit:
            kw["jit"] = True
        return kw

    def tolerance(self, dtype: str, what: str) -> tuple[float, float]:
        rtol, atol = self.tolerances.get(dtype, {}).get(what, TOLERANCES[dtype][what])
        return rtol, atol


def _names_of(case: PrimitiveCase | BlockCase) -> set[str]:
    if isinstance(case, PrimitiveCase):
        return {case.primitive, case.id}
    return {case.id, case.label}


def selected(
    case: PrimitiveCase | BlockCase | None,
    dtype: str | None,
    options: Mapping[str, Any] | None,
    kind: str | None = None,
) -> bool:
    """Whether a configuration includes a test at all (used to deselect, not to skip)."""
    opts = ConformanceOptions.of(options)
    if kind is not None and kind not in opts.tests:
        return False
    if dtype is not None and dtype not in opts.dtypes:
        return False
    if case is not None:
        if isinstance(case, BlockCase) and not opts.blocks:
            return False
        if opts.only is not None and not (_names_of(case) & opts.only):
            return False
    return True


def _skip_unless_selected(
    case: PrimitiveCase | BlockCase | None,
    dtype: str | None,
    opts: ConformanceOptions,
    raw: Mapping[str, Any] | None,
    kind: str = "forward",
) -> None:
    """Skip a test the configuration excludes, or one the backend declares unsupported."""
    if not selected(case, dtype, raw, kind):
        pytest.skip("not part of this conformance configuration (dtypes / only / blocks / tests)")
    if kind == "gradient" and not opts.gradients:
        pytest.skip("forward-only backend (gradients: False)")
    if case is not None:
        for name in sorted(_names_of(case)):
            for key in (name, f"{kind}:{name}"):
                if key in opts.unsupported:
                    pytest.skip(f"{key}: {opts.unsupported[key]}")


# ------------------------------------------------------------------- helpers
def _ml() -> Any:
    import mithril as ml

    return ml


def make_backend(factory: Callable[[Any], Any], dtype: str) -> Any:
    """``factory(ml.<dtype>)``, skipping the test when the backend does not support that dtype."""
    ml = _ml()
    from ..errors import UnsupportedError

    try:
        return factory(getattr(ml, dtype))
    except UnsupportedError as e:
        pytest.skip(f"backend does not support {dtype}: {e}")


@contextlib.contextmanager
def _unsupported_skips(opts: ConformanceOptions) -> Iterator[None]:
    """Turn an UnsupportedError naming a declared-unsupported primitive into a skip."""
    from ..errors import UnsupportedError

    try:
        yield
    except UnsupportedError as e:
        text = str(e)
        hit = [n for n in opts.unsupported if f"'{n}'" in text or f'"{n}"' in text]
        if hit:
            pytest.skip(f"{hit[0]}: {opts.unsupported[hit[0]]} ({text})")
        raise


def _kind_of(x: Any) -> str:
    a = np.asarray(x)
    return "bool" if a.dtype == np.bool_ else "int" if a.dtype.kind in "iu" else "float"


def to_backend(backend: Any, x: np.ndarray) -> tuple[Any, np.ndarray]:
    """A backend array of ``x`` and the float64 (or int/bool) NumPy copy of what it holds."""
    arr = backend.array(x)
    held = np.asarray(backend.to_numpy(arr))
    return arr, held.astype(np.float64) if held.dtype.kind == "f" else held


def assert_matches(backend: Any, got: Any, want: np.ndarray, dtype: str, tol: tuple[float, float], what: str) -> None:
    """Shape, dtype kind (the backend's float dtype for floats) and values of one result."""
    want = np.asarray(want)
    shape = tuple(backend.shape_of(got))
    assert shape == want.shape, f"{what}: shape {list(shape)}, expected {list(want.shape)}"
    kind = _kind_of(want)
    got_dtype = backend.dtype_of(got)
    assert got_dtype.kind == kind, f"{what}: dtype {got_dtype.value}, expected a {kind} dtype"
    if kind == "float":
        assert got_dtype is backend.dtype, f"{what}: dtype {got_dtype.value}, expected the backend's {dtype}"
    g = np.asarray(backend.to_numpy(got))
    if kind != "float":
        np.testing.assert_array_equal(g, want, err_msg=what)
        return
    rtol, atol = tol
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(g.astype(np.float64), want, rtol=rtol, atol=atol * scale, err_msg=what)


def numerical_vjp(
    fn: Callable[[list[np.ndarray]], np.ndarray],
    values: Sequence[np.ndarray],
    wrt: Sequence[int],
    cotangent: np.ndarray,
    eps: float = FD_EPS,
) -> list[np.ndarray]:
    """d(sum(cotangent * fn(values)))/d(values[i]) for i in ``wrt``, by central differences."""
    base = [np.array(v, dtype=np.float64) if _kind_of(v) == "float" else v for v in values]
    grads = []
    for i in wrt:
        x = base[i]
        g = np.zeros(x.shape)
        for idx in np.ndindex(*x.shape):
            xp, xm = x.copy(), x.copy()
            xp[idx] += eps
            xm[idx] -= eps
            yp = fn([xp if j == i else v for j, v in enumerate(base)])
            ym = fn([xm if j == i else v for j, v in enumerate(base)])
            g[idx] = np.sum(cotangent * (np.asarray(yp) - np.asarray(ym))) / (2 * eps)
        grads.append(g)
    return grads


_FD_CACHE: dict[tuple[Any, ...], Any] = {}


def _cached(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    if key not in _FD_CACHE:
        _FD_CACHE[key] = compute()
    return _FD_CACHE[key]


def _fingerprint(arrays: Sequence[np.ndarray]) -> tuple[Any, ...]:
    return tuple((a.shape, str(a.dtype), np.ascontiguousarray(a).tobytes()) for a in arrays)


# ---------------------------------------------------------- primitive models
def primitive_model(case: PrimitiveCase) -> tuple[Any, list[str], list[bool]]:
    """One-primitive model: (model, terminal name per input, whether each input is a param).

    Differentiable float inputs are declared ``role="param"`` (gradients are
    returned for params); the others are data inputs, declared with their kind.
    """
    from ..models import IOKey, Model, PrimitiveBlock
    from ..primitives import registry

    prim = registry.get(case.primitive)
    if prim.variadic:
        names = [f"{prim.inputs[0]}_{i}" for i in range(len(case.args))]
        block = PrimitiveBlock(case.primitive, n_inputs=len(case.args), **case.attrs)
    else:
        names = list(prim.inputs)
        block = PrimitiveBlock(case.primitive, **case.attrs)
    is_param = [a.differentiable for a in case.args]
    conns: dict[str, Any] = {}
    for name, arg, p in zip(names, case.args, is_param):
        conns[name] = IOKey(name, role="param") if p else IOKey(name, dtype=arg.kind)
    conns[prim.output] = IOKey("output")
    m = Model()
    m |= block(**conns)
    return m, names, is_param


def _primitive_setup(
    case: PrimitiveCase,
    factory: Callable[[Any], Any],
    options: Mapping[str, Any] | None,
    dtype: str,
    kind: str = "forward",
) -> tuple[ConformanceOptions, Any, Any, dict[str, Any], dict[str, Any], list[np.ndarray], list[str], list[bool]]:
    opts = ConformanceOptions.of(options)
    _skip_unless_selected(case, dtype, opts, options, kind)
    backend = make_backend(factory, dtype)
    _skip_missing_optional(backend, case.primitive)
    model, names, is_param = primitive_model(case)
    shapes = {n: list(a.shape) for n, a in zip(names, case.args)}
    with _unsupported_skips(opts):
        pm = _ml().compile(model, backend, shapes=shapes, **opts.compile_kwargs())
    params: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    held: list[np.ndarray] = []
    with backend.scope():
        for name, value, p in zip(names, case.inputs(), is_param):
            arr, h = to_backend(backend, value)
            held.append(h)
            (params if p else inputs)[name] = arr
    return opts, backend, pm, params, inputs, held, names, is_param


def _skip_missing_optional(backend: Any, primitive: str) -> None:
    """An optional (fused) primitive is tested only where the backend has a kernel for it."""
    from ..primitives import OPTIONAL_PRIMITIVES

    if primitive in OPTIONAL_PRIMITIVES and primitive not in backend.kernels:
        pytest.skip(f"{type(backend).__name__} has no kernel for the optional primitive {primitive!r}")


def _xfail_marks(case: PrimitiveCase | BlockCase) -> list[Any]:
    if not case.xfail:
        return []
    return [pytest.mark.xfail(strict=True, reason=case.xfail, raises=case.xfail_raises)]


def _params(cases: Sequence[Any]) -> list[Any]:
    return [pytest.param(c, id=c.id, marks=_xfail_marks(c)) for c in cases]


GRADIENT_CASES = tuple(c for c in PRIMITIVE_CASES if c.gradient)
GRADIENT_BLOCK_CASES = tuple(c for c in BLOCK_CASES if c.gradient and c.param_keys)
INFERENCE_BLOCK_CASES = tuple(c for c in BLOCK_CASES if c.inference)
RANDOMIZE_BLOCK_CASES = tuple(c for c in BLOCK_CASES if c.randomize and c.params)


def _conformance(kind: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Tag a suite test with its kind (the pytest plugin deselects by configuration only among these)."""

    def tag(fn: Callable[..., None]) -> Callable[..., None]:
        fn.mithril_conformance = kind  # type: ignore[attr-defined]  # a tag read by the pytest plugin
        return fn

    return tag


_dtype_param = pytest.mark.parametrize("mithril_dtype", DTYPES)


# ------------------------------------------------------------ primitive tests
@_conformance("forward")
@_dtype_param
@pytest.mark.parametrize("mithril_case", _params(PRIMITIVE_CASES))
def test_primitive_forward(
    mithril_case: PrimitiveCase, mithril_dtype: str, mithril_backend_factory: Any, mithril_conformance_options: Any
) -> None:
    """The primitive's output matches the NumPy reference on the values the backend holds."""
    case, dtype = mithril_case, mithril_dtype
    opts, backend, pm, params, inputs, held, _, _ = _primitive_setup(
        case, mithril_backend_factory, mithril_conformance_options, dtype
    )
    with _unsupported_skips(opts):
        out = pm.evaluate(params, inputs)
    want = case.reference(held)
    assert set(out) == {"output"}, f"outputs {sorted(out)}"
    with backend.scope():
        assert_matches(backend, out["output"], want, dtype, opts.tolerance(dtype, "forward"), f"{case.id} output")


@_conformance("gradient")
@_dtype_param
@pytest.mark.parametrize("mithril_case", _params(GRADIENT_CASES))
def test_primitive_gradient(
    mithril_case: PrimitiveCase, mithril_dtype: str, mithril_backend_factory: Any, mithril_conformance_options: Any
) -> None:
    """Gradients wrt every differentiable float input match central differences of the reference."""
    case, dtype = mithril_case, mithril_dtype
    opts, backend, pm, params, inputs, held, names, is_param = _primitive_setup(
        case, mithril_backend_factory, mithril_conformance_options, dtype, "gradient"
    )
    want_out = case.reference(held)
    with backend.scope():
        cot, cot_held = to_backend(backend, case.cotangent(want_out.shape))
    with _unsupported_skips(opts):
        out, grads = pm.evaluate(params, inputs, output_gradients={"output": cot})
    wrt = [i for i, p in enumerate(is_param) if p]
    expected = _cached(
        ("primitive", case.id, _fingerprint(held), _fingerprint([cot_held])),
        lambda: numerical_vjp(case.reference, held, wrt, cot_held),
    )
    want_keys = {names[i] for i in wrt}
    assert set(grads) == want_keys, f"gradients for {sorted(grads)}, expected {sorted(want_keys)}"
    with backend.scope():
        assert_matches(
            backend,
            out["output"],
            want_out,
            dtype,
            opts.tolerance(dtype, "forward"),
            f"{case.id} output (with gradients)",
        )
        for i, g in zip(wrt, expected):
            assert_matches(
                backend,
                grads[names[i]],
                g,
                dtype,
                opts.tolerance(dtype, "gradient"),
                f"{case.id} gradient wrt {names[i]}",
            )


# ---------------------------------------------------------------- block tests
def _block_primitives(model: Any) -> set[str]:
    from ..models import PrimitiveBlock

    return {b.primitive.name for _, b in model.iter_blocks() if isinstance(b, PrimitiveBlock)}


def _block_setup(
    case: BlockCase,
    factory: Callable[[Any], Any],
    options: Mapping[str, Any] | None,
    dtype: str,
    kind: str = "forward",
    **compile_kw: Any,
) -> tuple[ConformanceOptions, Any, Any, dict[str, Any], dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    opts = ConformanceOptions.of(options)
    _skip_unless_selected(case, dtype, opts, options, kind)
    model = case.build()
    used = _block_primitives(model)
    bad = sorted(k for k in opts.unsupported if k in used or (k.startswith(f"{kind}:") and k.split(":", 1)[1] in used))
    if bad:
        pytest.skip(f"{case.id} uses {bad[0]}: {opts.unsupported[bad[0]]}")
    backend = make_backend(factory, dtype)
    shapes = {k: list(a.shape) for k, a in case.inputs.items()}
    with _unsupported_skips(opts):
        pm = _ml().compile(model, backend, shapes=shapes, **{**opts.compile_kwargs(), **compile_kw})
    assert set(pm.param_keys) == set(case.param_keys), f"param keys {sorted(pm.param_keys)}"
    assert set(pm.state_keys) == set(case.state_keys), f"state keys {sorted(pm.state_keys)}"
    assert set(pm.input_keys) == set(case.inputs), f"input keys {sorted(pm.input_keys)}"
    p_np, i_np = case.values()
    params: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    p_held: dict[str, np.ndarray] = {}
    i_held: dict[str, np.ndarray] = {}
    with backend.scope():
        for k, v in p_np.items():
            params[k], p_held[k] = to_backend(backend, v)
        for k, v in i_np.items():
            inputs[k], i_held[k] = to_backend(backend, v)
    return opts, backend, pm, params, inputs, p_held, i_held


def _check_outputs(
    backend: Any,
    got: Mapping[str, Any],
    want: Mapping[str, np.ndarray],
    dtype: str,
    tol: tuple[float, float],
    what: str,
) -> None:
    assert set(got) == set(want), f"{what}: keys {sorted(got)}, expected {sorted(want)}"
    with backend.scope():
        for k in want:
            assert_matches(backend, got[k], want[k], dtype, tol, f"{what} {k!r}")


@_conformance("forward")
@_dtype_param
@pytest.mark.parametrize("mithril_case", _params(BLOCK_CASES))
def test_block_forward(
    mithril_case: BlockCase, mithril_dtype: str, mithril_backend_factory: Any, mithril_conformance_options: Any
) -> None:
    """Training-mode output (and updated state) of a zoo block matches its torch.nn-semantics reference."""
    case, dtype = mithril_case, mithril_dtype
    opts, backend, pm, params, inputs, p_held, i_held = _block_setup(
        case, mithril_backend_factory, mithril_conformance_options, dtype
    )
    want_out, want_state = case.reference(p_held, i_held, True)
    tol = opts.tolerance(dtype, "forward")
    with _unsupported_skips(opts):
        if case.state_keys:
            out, state = pm.evaluate(params, inputs, return_state=True)
        else:
            out, state = pm.evaluate(params, inputs), {}
    _check_outputs(backend, out, want_out, dtype, tol, f"{case.id} output")
    _check_outputs(backend, state, want_state, dtype, tol, f"{case.id} state")


@_conformance("inference")
@_dtype_param
@pytest.mark.parametrize("mithril_case", _params(INFERENCE_BLOCK_CASES))
@pytest.mark.parametrize("mithril_mode", ["static_inference", "training_false"])
def test_block_inference(
    mithril_case: BlockCase,
    mithril_dtype: str,
    mithril_mode: str,
    mithril_backend_factory: Any,
    mithril_conformance_options: Any,
) -> None:
    """Inference mode uses the running statistics: static_inference=True, or evaluate(training=False)."""
    case, dtype = mithril_case, mithril_dtype
    kw = {"static_inference": True} if mithril_mode == "static_inference" else {}
    opts, backend, pm, params, inputs, p_held, i_held = _block_setup(
        case, mithril_backend_factory, mithril_conformance_options, dtype, "inference", **kw
    )
    want_out, _ = case.reference(p_held, i_held, False)
    with _unsupported_skips(opts):
        out = pm.evaluate(params, inputs) if kw else pm.evaluate(params, inputs, training=False)
    _check_outputs(backend, out, want_out, dtype, opts.tolerance(dtype, "forward"), f"{case.id} {mithril_mode}")


@_conformance("gradient")
@_dtype_param
@pytest.mark.parametrize("mithril_case", _params(GRADIENT_BLOCK_CASES))
def test_block_gradient(
    mithril_case: BlockCase, mithril_dtype: str, mithril_backend_factory: Any, mithril_conformance_options: Any
) -> None:
    """Parameter gradients (training mode) match central differences of the block's reference."""
    case, dtype = mithril_case, mithril_dtype
    opts, backend, pm, params, inputs, p_held, i_held = _block_setup(
        case, mithril_backend_factory, mithril_conformance_options, dtype, "gradient"
    )
    want_out, _ = case.reference(p_held, i_held, True)
    cots: dict[str, Any] = {}
    cots_held: dict[str, np.ndarray] = {}
    with backend.scope():
        for k, v in want_out.items():
            cots[k], cots_held[k] = to_backend(backend, case.cotangent(k, v.shape))
    with _unsupported_skips(opts):
        out, grads = pm.evaluate(params, inputs, output_gradients=cots)
    keys = list(p_held)
    wrt = [keys.index(k) for k in case.param_keys]
    out_names = sorted(want_out)
    cot_all = np.concatenate([cots_held[k].ravel() for k in out_names])

    def flat_out(values: list[np.ndarray]) -> np.ndarray:
        o, _ = case.reference(dict(zip(keys, values)), i_held, True)
        return np.concatenate([np.asarray(o[k]).ravel() for k in out_names])

    expected = _cached(
        (
            "block",
            case.id,
            _fingerprint([p_held[k] for k in keys]),
            _fingerprint(list(i_held.values())),
            _fingerprint([cot_all]),
        ),
        lambda: numerical_vjp(flat_out, [p_held[k] for k in keys], wrt, cot_all),
    )
    assert set(grads) == set(case.param_keys), f"gradients for {sorted(grads)}, expected {sorted(case.param_keys)}"
    _check_outputs(backend, out, want_out, dtype, opts.tolerance(dtype, "forward"), f"{case.id} output")
    with backend.scope():
        for i, g in zip(wrt, expected):
            assert_matches(
                backend,
                grads[keys[i]],
                g,
                dtype,
                opts.tolerance(dtype, "gradient"),
                f"{case.id} gradient wrt {keys[i]}",
            )


@_conformance("randomize")
@_dtype_param
@pytest.mark.parametrize("mithril_case", _params(RANDOMIZE_BLOCK_CASES))
def test_block_randomize_params(
    mithril_case: BlockCase, mithril_dtype: str, mithril_backend_factory: Any, mithril_conformance_options: Any
) -> None:
    """randomize_params gives every param and state, of the right shape and dtype, usable by evaluate."""
    case, dtype = mithril_case, mithril_dtype
    opts, backend, pm, _, inputs, _p_held, _ = _block_setup(
        case, mithril_backend_factory, mithril_conformance_options, dtype, "randomize"
    )
    with _unsupported_skips(opts):
        params = pm.randomize_params(seed=0)
    assert set(params) == set(case.params), f"randomize_params keys {sorted(params)}"
    with backend.scope():
        for k, v in params.items():
            assert tuple(backend.shape_of(v)) == case.params[k].shape, f"{k}: shape {backend.shape_of(v)}"
            assert backend.dtype_of(v) is backend.dtype, f"{k}: dtype {backend.dtype_of(v).value}"
            arr = np.asarray(backend.to_numpy(v), dtype=np.float64)
            assert np.all(np.isfinite(arr)), k
            if k.endswith(".weight") and len(case.params[k].shape) >= 2:
                shape = case.params[k].shape
                bound = 1.0 / np.sqrt(shape[1] * int(np.prod(shape[2:])))
                assert np.max(np.abs(arr)) <= bound * (1 + 1e-3), f"{k}: exceeds U(±1/sqrt(fan_in))"
                assert np.std(arr) > 0, f"{k}: constant"
    with _unsupported_skips(opts):
        out = pm.evaluate(params, inputs)
    with backend.scope():
        for k, v in out.items():
            assert np.all(np.isfinite(np.asarray(backend.to_numpy(v), dtype=np.float64))), k


# ------------------------------------------------------------------- kernels
@_conformance("kernels")
def test_backend_has_core_kernels(mithril_backend_factory: Any, mithril_conformance_options: Any) -> None:
    """The backend has a kernel for every core primitive it does not declare unsupported."""
    from ..primitives import CORE_PRIMITIVES

    opts = ConformanceOptions.of(mithril_conformance_options)
    _skip_unless_selected(None, None, opts, mithril_conformance_options, "kernels")
    from ..errors import UnsupportedError

    backend = None
    for dtype in opts.dtypes:
        try:
            backend = mithril_backend_factory(getattr(_ml(), dtype))
            break
        except UnsupportedError:
            continue
    if backend is None:
        pytest.skip(f"backend supports none of {opts.dtypes}")
    if type(backend).differentiates_natively:
        pytest.skip(
            "the backend lowers whole graphs itself (differentiates_natively); the primitive tests "
            "cover it primitive by primitive"
        )
    kernels = set(backend.kernels)
    missing = sorted(set(CORE_PRIMITIVES) - kernels - set(opts.unsupported))
    assert not missing, f"{type(backend).__name__} has no kernel for {missing} (declare them unsupported?)"
