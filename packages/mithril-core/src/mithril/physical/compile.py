"""``ml.compile``: a logical model and a backend in, a physical model out."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._gc import gc_paused
from ..backend import Backend
from ..errors import CompileError, UnknownKeyError, UnsupportedError
from ..models.block import Block
from ..models.model import Model
from ..parallel.layout import Layout
from .model import PhysicalModel
from .pipeline import Options


@gc_paused
def compile(
    model: Block,
    backend: Backend,
    shapes: Mapping[str, Sequence[int | None]] | None = None,
    *extra: Any,
    jit: bool = False,
    static_shapes: bool = False,
    gradient_checkpointing: bool = False,
    static_inference: bool = False,
    constants: Mapping[str, Any] | None = None,
    training: bool | None = None,
    source_path: str | None = None,
    sharding: Any = None,
    **unknown: Any,
) -> PhysicalModel:
    """Compile ``model`` for ``backend``.

    * ``shapes``: concrete shapes of inputs (``None`` entries stay free); without
      them the physical model compiles on first ``evaluate`` for the shapes it sees.
    * ``jit``: compile the generated functions with the backend's JIT
      (torch.compile, jax.jit); an error on a backend that has none.
    * ``static_shapes``: every shape must be known now; other shapes are rejected
      at ``evaluate``.
    * ``gradient_checkpointing``: the backward pass recomputes activations
      instead of keeping them all.
    * ``static_inference``: inference-only (BatchNorm uses running statistics, no
      gradients) with everything computable from ``constants`` folded at compile time.
    * ``constants``: inputs fixed at compile time, by name.
    * ``training``: default mode of ``evaluate`` (True unless ``static_inference``).
    * ``source_path``: also write the generated source to this file.
    * ``sharding``: on a backend with a ``device_mesh``, how params and inputs are split
      (a :class:`mithril.parallel.Layout` or a dict of name pattern -> spec); default:
      inputs split along the data axis, params replicated.
    """
    # a misspelt keyword or a stray positional argument is a CompileError with the close name, not a
    # TypeError (``extra`` and ``unknown`` are not part of the documented signature: see __signature__)
    if extra:
        raise CompileError(
            f"compile takes model, backend and shapes positionally; got {len(extra)} more "
            f"positional argument(s) {_brief(extra)}: give the options by keyword "
            f"({', '.join(OPTIONS[1:])})"
        )
    if unknown:
        raise CompileError("; ".join(_unknown_keyword(k) for k in sorted(unknown)))
    for flag, value in (
        ("jit", jit),
        ("static_shapes", static_shapes),
        ("gradient_checkpointing", gradient_checkpointing),
        ("static_inference", static_inference),
    ):
        _check_flag(flag, value)
    if training is not None:
        _check_flag("training", training)
        training = bool(training)
    jit, static_shapes = bool(jit), bool(static_shapes)
    gradient_checkpointing, static_inference = bool(gradient_checkpointing), bool(static_inference)
    if not isinstance(backend, Backend):
        raise CompileError(f"backend must be a mithril Backend instance, got {type(backend).__name__}")
    if isinstance(model, Model):
        logical = model
    elif isinstance(model, Block):
        logical = Model()
        logical |= model
    else:
        raise CompileError(f"model must be a mithril Model or block, got {type(model).__name__}")
    if jit and not backend.supports_jit:
        raise UnsupportedError(f"{type(backend).__name__} has no JIT compiler; compile with jit=False")
    if static_inference and training:
        raise CompileError("static_inference=True compiles an inference model; it cannot use training=True")
    if gradient_checkpointing and static_inference:
        raise CompileError("gradient_checkpointing needs gradients, which static_inference=True removes")
    if gradient_checkpointing and backend.differentiates_natively:
        raise UnsupportedError(
            f"{type(backend).__name__} computes gradients with its own autodiff, which gradient_checkpointing "
            f"does not reach (it recomputes activations in the core's backward pass)"
            + ("; use autodiff='mithril' to checkpoint" if getattr(backend, "autodiff", None) is not None else "")
        )
    logical._freeze()
    known = set(logical._iface or {})
    shapes = _checked_shapes(shapes)
    if constants is not None and not isinstance(constants, Mapping):
        raise CompileError(f"compile(constants=...) must be a dict of name -> array, got {type(constants).__name__}")
    constants = dict(constants or {})
    for what, d in (("shapes", shapes), ("constants", constants)):
        bad = sorted(set(d) - known)
        if bad:
            raise UnknownKeyError(f"compile({what}=...): unknown key(s) {bad}; the model has {sorted(known)}")
    nones = sorted(k for k, v in constants.items() if v is None)
    if nones:
        raise CompileError(
            f"compile(constants=...): {nones} given None; give an array, or leave the key out to keep it an input"
        )
    if sharding is not None and backend.mesh is None:
        raise CompileError(
            f"sharding=... needs a backend with a device mesh; {backend!r} has none "
            f"(e.g. ml.JaxBackend(device_mesh=(8,)))"
        )
    opts = Options(
        layout=None if sharding is None else Layout.of(sharding),
        jit=jit,
        gradient_checkpointing=gradient_checkpointing,
        static_inference=static_inference,
        fold_constants=static_inference,
        source_path=source_path,
    )
    return PhysicalModel(
        logical,
        backend,
        shapes=shapes,
        constants=constants,
        static_shapes=static_shapes,
        training=not static_inference if training is None else training,
        options=opts,
    )


#: compile's keyword options, in the order of its signature
OPTIONS = (
    "shapes",
    "jit",
    "static_shapes",
    "gradient_checkpointing",
    "static_inference",
    "constants",
    "training",
    "source_path",
    "sharding",
)

# help(ml.compile) and inspect.signature show the documented signature, without the catch-alls
_sig = inspect.signature(compile)
setattr(  # noqa: B010 (a function has no declared __signature__ for mypy)
    compile,
    "__signature__",
    _sig.replace(parameters=[p for p in _sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]),
)
del _sig


def _brief(values: Sequence[Any]) -> str:
    text = ", ".join(repr(v) if len(repr(v)) <= 40 else f"<{type(v).__name__}>" for v in values)
    return f"({text})"


def _unknown_keyword(name: str) -> str:
    close = difflib.get_close_matches(name, OPTIONS, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; compile's options: {', '.join(OPTIONS)}"
    return f"compile() got an unknown keyword argument {name!r}{hint}"


def _check_flag(name: str, value: Any) -> None:
    """Options that are flags take True or False: ``"False"`` (a string) would be true."""
    if not isinstance(value, (bool, np.bool_)):
        raise CompileError(f"compile({name}=...) must be True or False, got {value!r} ({type(value).__name__})")


def _checked_shapes(shapes: Any) -> dict[str, list[int | None]]:
    """``shapes``: name -> list of dimensions (ints >= 0, None where free)."""
    if shapes is None:
        return {}
    if not isinstance(shapes, Mapping):
        raise CompileError(
            f"compile(shapes=...) must be a dict of name -> list of ints, got {type(shapes).__name__} "
            f"{_brief([shapes])[1:-1]}"
        )
    out: dict[str, list[int | None]] = {}
    for key, spec in shapes.items():
        if spec is None:
            continue
        ok = (isinstance(spec, Sequence) and not isinstance(spec, (str, bytes))) or isinstance(spec, np.ndarray)
        dims = list(spec) if ok else []
        if ok and not all(
            d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0)
            for d in dims
        ):
            ok = False
        if not ok:
            raise CompileError(
                f"compile(shapes=...): the shape of {key!r} must be a list of ints >= 0 (None where free), got {spec!r}"
            )
        out[key] = [None if d is None else int(d) for d in dims]
    return out
