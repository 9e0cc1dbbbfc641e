"""``ml.compile``: a logical model and a backend in, a physical model out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._gc import gc_paused
from ..backend import Backend
from ..errors import CompileError, UnknownKeyError, UnsupportedError
from ..models.block import Block
from ..models.model import Model
from ..parallel.layout import Layout
from .model import PhysicalModel
from .pipeline import Options


@gc_paused
def compile(  # noqa: A001 - the public name the seeds use
    model: Block,
    backend: Backend,
    shapes: Mapping[str, Sequence[int | None]] | None = None,
    *,
    jit: bool = False,
    static_shapes: bool = False,
    gradient_checkpointing: bool = False,
    static_inference: bool = False,
    constants: Mapping[str, Any] | None = None,
    training: bool | None = None,
    source_path: str | None = None,
    sharding: Any = None,
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
    logical._freeze()
    known = set(logical._iface or {})
    shapes = dict(shapes or {})
    constants = dict(constants or {})
    for what, d in (("shapes", shapes), ("constants", constants)):
        bad = sorted(set(d) - known)
        if bad:
            raise UnknownKeyError(f"compile({what}=...): unknown key(s) {bad}; the model has {sorted(known)}")
    nones = sorted(k for k, v in constants.items() if v is None)
    if nones:
        raise CompileError(f"compile(constants=...): {nones} given None; give an array, or leave the key out "
                           f"to keep it an input")
    if sharding is not None and backend.mesh is None:
        raise CompileError(f"sharding=... needs a backend with a device mesh; {backend!r} has none "
                           f"(e.g. ml.JaxBackend(device_mesh=(8,)))")
    opts = Options(
        layout=None if sharding is None else Layout.of(sharding),
        jit=jit,
        gradient_checkpointing=gradient_checkpointing,
        static_inference=static_inference,
        fold_constants=static_inference,
        source_path=source_path,
    )
    return PhysicalModel(
        logical, backend, shapes=shapes, constants=constants, static_shapes=static_shapes,
        training=not static_inference if training is None else training, options=opts,
    )
