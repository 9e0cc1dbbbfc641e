"""The physical model: a logical model compiled for one backend."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._gc import gc_paused
from ..backend import Backend
from ..errors import (
    BatchStatisticsError,
    EvaluationError,
    MissingInputError,
    ParamsError,
    ShapeMismatchError,
    ShapeUnknownError,
    StateNotReturnedWarning,
    UnknownKeyError,
    UnsupportedError,
    warn_recompiles,
)
from ..ir.flat import FlatModel
from ..ir.graph import Graph, IndexCheck
from ..ir.passes.shape_inference import solve, symbolic_shapes
from ..ir.randomness import SEED_INPUT
from ..models.connections import uniform_fan_in
from ..models.flatten import flatten
from ..models.model import Model
from .checks import check_indices
from .memory import estimate, float_bytes_of
from .pipeline import Compiled, Options, _forward_prefix, build_graph, compile_graph
from .summary import physical_summary


class PhysicalModel:
    """Evaluate, differentiate and initialise a compiled model.

    Compiled code is cached per concrete shape set, mode (training or
    inference) and set of outputs given gradients; with ``static_shapes`` only
    the shapes given to ``compile`` are accepted.
    """

    def __init__(
        self,
        model: Model,
        backend: Backend,
        *,
        shapes: Mapping[str, Sequence[int | None]],
        constants: Mapping[str, Any],
        static_shapes: bool,
        training: bool,
        options: Options,
        flatten_fn: Callable[[bool], FlatModel] | None = None,
    ) -> None:
        self.model = model
        #: the model's graph in training or inference mode (default :func:`mithril.models.flatten.flatten`;
        #: a training step adds its loss)
        self._flatten_fn = flatten_fn or (lambda training: flatten(model, training=training))
        self.backend = backend
        self.options = options
        self.static_shapes = static_shapes
        self.training = training
        self._shapes = {k: list(v) for k, v in shapes.items()}
        self._constants = dict(constants)
        self._flat: dict[bool, FlatModel] = {}
        self._cache: dict[Any, Compiled] = {}
        self._last: Compiled | None = None
        #: ((training, output-gradient keys), executable.fast_call) of the last checked call, if offered
        #: (mode and gradient names, the executable's fast call, index checks) of the last evaluate
        self._fast: tuple[tuple[Any, ...], Callable[..., Any], tuple[IndexCheck, ...]] | None = None
        flat = self._flat_for(training)
        g = flat.graph
        self.input_keys: tuple[str, ...] = tuple(k for k in g.inputs if k not in self._constants)
        self.param_keys: tuple[str, ...] = tuple(k for k in g.params if k not in self._constants)
        self.state_keys: tuple[str, ...] = tuple(k for k in g.state if k not in self._constants)
        self.output_keys: tuple[str, ...] = tuple(g.outputs)
        self._param_shapes: dict[str, tuple[int, ...]] | None = None
        self._param_set = frozenset(self.param_keys) | frozenset(self.state_keys)
        self._warned_state = False
        self._input_set = frozenset(self.input_keys)
        self._check_static()

    # ------------------------------------------------------------- compile
    def _flat_for(self, training: bool) -> FlatModel:
        if training not in self._flat:
            self._flat[training] = self._flatten_fn(training)
        return self._flat[training]

    def _check_static(self) -> None:
        """Eagerly compile what the given shapes determine (errors surface at compile)."""
        try:
            graph = self._graph(self.training, {})
        except ShapeUnknownError:
            if self.static_shapes:
                raise
            self._try_param_shapes()
            return
        except BatchStatisticsError:
            # e.g. batch 1 with BatchNorm: fine for inference; training-mode evaluate will say so
            self._try_param_shapes()
            return
        self._param_shapes = {k: v.known_shape for k, v in {**graph.params, **graph.state}.items()}
        key = self._key(self.training, {k: v.known_shape for k, v in graph.inputs.items()}, None)
        self._cache[key] = compile_graph(graph, self.backend, self.options, cotangent_outputs=None)
        self._last = self._cache[key]

    def _try_param_shapes(self) -> None:
        flat = self._flat_for(self.training)
        terms = solve(flat, self._shapes)
        shapes = {}
        for k, v in {**flat.graph.params, **flat.graph.state}.items():
            if k in self._constants:
                continue
            c = terms[v.uid].shape.concrete()
            if c is None:
                return
            shapes[k] = c
        self._param_shapes = shapes

    def _graph(self, training: bool, input_shapes: Mapping[str, tuple[int, ...]]) -> Graph:
        flat = self._flat_for(training)
        shapes: dict[str, Any] = dict(self._shapes)
        shapes.update(input_shapes)
        for k, v in self._constants.items():
            shapes[k] = list(getattr(v, "shape", ()))
        return build_graph(flat, shapes, self._constants, keep=self.backend.kernels)

    @staticmethod
    def _key(training: bool, input_shapes: Mapping[str, tuple[int, ...]], cot: tuple[str, ...] | None) -> Any:
        return (training, tuple(sorted(input_shapes.items())), cot)

    def _compiled(
        self, training: bool, input_shapes: dict[str, tuple[int, ...]], cot: tuple[str, ...] | None
    ) -> Compiled:
        key = self._key(training, input_shapes, cot)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        return self._compile_new(key, training, input_shapes, cot)

    def checked_graph(self, training: bool, input_shapes: Mapping[str, tuple[int, ...]]) -> Graph:
        """The concrete graph for ``input_shapes``, checked against the static shapes and the params'
        shapes of earlier calls (a new shape set must not change the parameters)."""
        if self.static_shapes:
            for k, s in input_shapes.items():
                want = self._shapes.get(k)
                if want is not None and list(s) != list(want):
                    raise ShapeMismatchError(
                        f"input {k!r} has shape {list(s)}, but the model was compiled with static_shapes "
                        f"for {list(want)}"
                    )
        try:
            graph = self._graph(training, input_shapes)
        except ShapeMismatchError as e:
            given = ", ".join(f"{k} {list(v)}" for k, v in input_shapes.items())
            raise type(e)(f"inputs of shape {given} do not fit the model: {e}") from None
        if self._param_shapes is not None:
            for k, v in {**graph.params, **graph.state}.items():
                compiled_for = self._param_shapes.get(k)
                if compiled_for is not None and v.known_shape != compiled_for:
                    given = ", ".join(f"{n} {list(s)}" for n, s in input_shapes.items())
                    raise ShapeMismatchError(
                        f"with inputs {given} the model would need params[{k!r}] of shape {list(v.known_shape)}, "
                        f"but it was compiled for {list(compiled_for)}"
                    )
        else:
            self._param_shapes = {k: v.known_shape for k, v in {**graph.params, **graph.state}.items()}
        return graph

    @gc_paused
    def _compile_new(
        self, key: Any, training: bool, input_shapes: dict[str, tuple[int, ...]], cot: tuple[str, ...] | None
    ) -> Compiled:
        graph = self.checked_graph(training, input_shapes)
        self._cache[key] = compiled = compile_graph(graph, self.backend, self.options, cotangent_outputs=cot)
        warn_recompiles("this physical model", len(self._cache), dict(input_shapes))
        self._last = compiled
        return compiled

    # ------------------------------------------------------------- public
    @property
    def shapes(self) -> dict[str, list[object]]:
        """Shapes of inputs, params, state and outputs (symbolic where still unknown)."""
        return symbolic_shapes(self._flat_for(self.training), self._known_shapes())

    def _known_shapes(self) -> dict[str, Any]:
        """Shapes given to compile, completed by those of the last compiled call."""
        shapes: dict[str, Any] = dict(self._shapes)
        if self._last is not None:
            shapes.update({k: list(v) for k, v in self._last.input_shapes.items() if k in self.input_keys})
        return shapes

    @property
    def source(self) -> str:
        """The generated code of the most recently compiled graph."""
        if self._last is None:
            raise ShapeUnknownError("nothing is compiled yet: shapes are not all known until evaluate is called")
        src = self._last.executable.source
        if src is None:
            raise UnsupportedError(f"{type(self.backend).__name__} does not generate Python source")
        return src

    @property
    def executable(self) -> Any:
        """The backend's executable of the most recently compiled graph (e.g. for GGUF export)."""
        if self._last is None:
            raise ShapeUnknownError("nothing is compiled yet: shapes are not all known until evaluate is called")
        return self._last.executable

    def write_source(self, path: str) -> None:
        """Write the generated code to ``path``."""
        with open(path, "w") as f:
            f.write(self.source)

    @property
    def compile_count(self) -> int:
        """How many (mode, input shapes, gradient outputs) variants are compiled so far."""
        return len(self._cache)

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        if self._param_shapes is None:
            raise ShapeUnknownError("parameter shapes are not known: give the input shapes in compile(shapes=...)")
        return dict(self._param_shapes)

    def randomize_params(self, seed: int | None = None) -> dict[str, Any]:
        """Parameters and state initialised like the torch.nn defaults of each block."""
        with self.backend.scope():
            return self._randomize_params(seed)

    def _randomize_params(self, seed: int | None) -> dict[str, Any]:
        if seed is not None:
            self.backend.seed(seed)
        shapes = self.param_shapes
        flat = self._flat_for(self.training)
        inits = flat.graph.initializers
        ref_shapes = self._init_ref_shapes()
        out: dict[str, Any] = {}
        for k in (*self.param_keys, *self.state_keys):
            init = inits.get(k)
            shape = shapes[k]
            if init is None:
                init = uniform_fan_in
            out[k] = init.fn(self.backend, shape, ref_shapes.get(k))
        return out

    def _init_ref_shapes(self) -> dict[str, tuple[int, ...]]:
        flat = self._flat_for(self.training)
        shapes = {**{k: tuple(getattr(v, "shape", ())) for k, v in self._constants.items()}, **self.param_shapes}
        names = {v.uid: k for k, v in {**flat.graph.params, **flat.graph.state}.items()}
        out = {}
        for k, v in {**flat.graph.params, **flat.graph.state}.items():
            ref = flat.info[v.uid].init_ref
            if ref is not None and ref.uid in names and names[ref.uid] in shapes:
                out[k] = shapes[names[ref.uid]]
        return out

    def evaluate(
        self,
        params: Mapping[str, Any],
        inputs: Mapping[str, Any] | None = None,
        output_gradients: Mapping[str, Any] | None = None,
        *,
        training: bool | None = None,
        return_state: bool = False,
    ) -> Any:
        """Run the model.

        Returns ``outputs``; with ``output_gradients`` ``(outputs, gradients)``
        where gradients are d(sum <output_gradients, outputs>)/d(param); with
        ``return_state`` the updated state dict is appended to the result. A graph
        with random nodes (Dropout in training mode) gets a fresh seed per call from
        the backend's generator (``backend.seed(n)`` makes calls reproducible).
        """
        if training is not None and training is not True and training is not False:
            _check_flag("training", training)
        if return_state is not True and return_state is not False:
            _check_flag("return_state", return_state)
        fast = self._fast
        if (
            fast is not None
            and type(inputs) is dict
            and type(params) is dict
            and (output_gradients is None or type(output_gradients) is dict)
        ):
            key = (
                self.training if training is None else training,
                None if output_gradients is None else tuple(output_gradients),
            )
            if key == fast[0]:
                if fast[2]:
                    check_indices(self.backend, fast[2], inputs)
                ran = fast[1](params, inputs, output_gradients or {})
                if ran is not None:
                    return self._result(ran, output_gradients is not None, return_state)
        with self.backend.scope():
            return self._evaluate(params, inputs, output_gradients, training, return_state)

    @staticmethod
    def _result(ran: tuple[Any, Any, Any], gradients: bool, return_state: bool) -> Any:
        outputs, grads, state = ran
        result: Any = (outputs, grads) if gradients else outputs
        if return_state:
            result = (*result, state) if isinstance(result, tuple) else (result, state)
        return result

    def _evaluate(
        self,
        params: Mapping[str, Any],
        inputs: Mapping[str, Any] | None,
        output_gradients: Mapping[str, Any] | None,
        training: bool | None,
        return_state: bool,
    ) -> Any:
        if inputs is None:
            inputs = {}
        elif not isinstance(inputs, Mapping):
            raise EvaluationError(
                f"inputs must be a dict of arrays keyed by the model's inputs "
                f"{list(self.input_keys)}, got {type(inputs).__name__}; "
                f"evaluate(params, {{{', '.join(repr(k) + ': ...' for k in self.input_keys)}}})"
            )
        if output_gradients is not None and not isinstance(output_gradients, Mapping):
            raise EvaluationError(
                f"output_gradients must be a dict of arrays keyed by the model's outputs "
                f"{list(self.output_keys)}, got {type(output_gradients).__name__}"
            )
        mode = self.training if training is None else bool(training)
        if mode and self.options.static_inference:
            raise UnsupportedError("this model was compiled with static_inference=True: it runs in inference mode")
        be = self.backend
        if not isinstance(params, Mapping) or params.keys() != self._param_set or inputs.keys() != self._input_set:
            self._check_keys(params, inputs)  # raises with the details
        in_shapes: dict[str, tuple[int, ...]] = {}
        checked_inputs: dict[str, Any] = {}
        for k in self.input_keys:
            x = be.accept(inputs[k], f"input {k!r}")
            checked_inputs[k] = x
            in_shapes[k] = tuple(be.shape_of(x))
        cot: tuple[str, ...] | None = None
        if output_gradients is not None:
            if self.options.static_inference:
                raise UnsupportedError(
                    "static_inference=True compiles an inference-only model; compile without it to compute gradients"
                )
            bad = sorted(set(output_gradients) - set(self.output_keys))
            if bad:
                raise UnknownKeyError(f"output_gradients: unknown output(s) {bad}; outputs: {list(self.output_keys)}")
            cot = tuple(k for k in self.output_keys if k in output_gradients)
        compiled = self._compiled(mode, in_shapes, cot)
        expected = compiled.expected
        if expected is None:
            expected = compiled.expected = self._expected(compiled)
        checked_params: dict[str, Any] = {}
        native_of = be.native_dtype_of
        for k, (shape, native) in expected.items():
            if k in checked_inputs:
                x = checked_inputs[k]
                if native_of(x) != native:
                    self._check_dtype(x, compiled.graph, k, "input")
                continue
            x = be.accept(params[k], f"params[{k!r}]")
            got = tuple(be.shape_of(x))
            if got != shape:
                raise ParamsError(f"params[{k!r}] has shape {list(got)}, the model needs {list(shape)}")
            if native_of(x) != native:
                self._check_dtype(x, compiled.graph, k, "params")
            checked_params[k] = x
        cots: dict[str, Any] = {}
        if cot and output_gradients is not None:  # cot names keys of output_gradients
            for k in cot:
                g = be.accept(output_gradients[k], f"output_gradients[{k!r}]")
                want = compiled.output_shapes[k]
                if tuple(be.shape_of(g)) != want:
                    raise ShapeMismatchError(
                        f"output_gradients[{k!r}] has shape {list(be.shape_of(g))}, output {k!r} has {list(want)}"
                    )
                if compiled.graph.outputs[k].kind in (None, "float") and native_of(g) != be.native_dtype("float"):
                    raise EvaluationError(
                        f"output_gradients[{k!r}] is {be.dtype_of(g).value} but output {k!r} is "
                        f"{be.dtype.value}; give it in the output's dtype (backend.array(...)): it is not cast"
                    )
                cots[k] = g
        if mode and compiled.graph.state_updates and not return_state and not self._warned_state:
            self._warned_state = True
            warnings.warn(
                f"the model updates state in training mode ({', '.join(sorted(compiled.graph.state_updates)[:4])}"
                f"{', ...' if len(compiled.graph.state_updates) > 4 else ''}) but evaluate(..., return_state=False) "
                f"drops the new values, so inference will use the initial ones; pass return_state=True and merge "
                f"them into params, evaluate with training=False, or train with mithril.training",
                StateNotReturnedWarning,
                stacklevel=3,
            )
        checks = compiled.graph.index_checks
        if checks:
            check_indices(be, checks, checked_inputs)
        if compiled.random:
            checked_inputs[SEED_INPUT] = be.next_seed()
        ran = compiled.executable.run(checked_params, checked_inputs, cots)
        # an executable may offer a fast path that vouches for its arguments itself (a jitted JAX
        # function traced only from here): the next call with the same mode and gradients tries it
        fast_call = None if compiled.random else getattr(compiled.executable, "fast_call", None)
        self._fast = (
            None
            if fast_call is None
            else ((mode, None if output_gradients is None else tuple(output_gradients)), fast_call, tuple(checks))
        )
        return self._result(ran, output_gradients is not None, return_state)

    def _expected(self, compiled: Compiled) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Per param/input: shape and the backend's native dtype, for the per-call fast checks."""
        g = compiled.graph
        out: dict[str, tuple[tuple[int, ...], Any]] = {}
        for k, v in {**g.params, **g.state, **g.inputs}.items():
            out[k] = (v.known_shape, self.backend.native_dtype(v.kind or "float"))
        return out

    def _check_keys(self, params: Mapping[str, Any], inputs: Mapping[str, Any]) -> None:
        if not isinstance(params, Mapping):
            raise ParamsError(f"params must be a dict of arrays, got {type(params).__name__}")
        need = set(self.param_keys) | set(self.state_keys)
        missing = sorted(need - set(params))
        if missing:
            raise ParamsError(f"params is missing {missing}")
        extra = sorted(set(params) - need)
        if extra:
            raise ParamsError(f"params has unknown key(s) {extra}; the model's params: {sorted(need)}")
        missing_in = sorted(set(self.input_keys) - set(inputs))
        if missing_in:
            raise MissingInputError(f"inputs is missing {missing_in}; the model's inputs: {list(self.input_keys)}")
        extra_in = sorted(set(inputs) - set(self.input_keys))
        if extra_in:
            raise UnknownKeyError(f"inputs has unknown key(s) {extra_in}; the model's inputs: {list(self.input_keys)}")

    def _check_dtype(self, x: Any, graph: Graph, key: str, what: str) -> None:
        v = graph.params.get(key) or graph.state.get(key) or graph.inputs.get(key)
        if v is None:
            return
        dt = self.backend.dtype_of(x)
        if dt.kind != v.kind:
            raise EvaluationError(f"{what} {key!r} has dtype {dt.value}; the model needs a {v.kind} array")
        if v.kind == "float" and dt is not self.backend.dtype:
            raise EvaluationError(
                f"{what} {key!r} is {dt.value} but the backend computes in {self.backend.dtype.value}; "
                f"convert it with backend.array(...)"
            )

    def memory_report(
        self, *, gradients: bool = True, training: bool | None = None, gradient_checkpointing: bool | None = None
    ) -> Any:
        """Estimated peak bytes of a call for the shapes given to compile (or of the last call), from
        liveness (:mod:`mithril.physical.memory`): parameters, inputs, activations at the peak and those
        kept for the backward pass. ``gradients``: a call with output gradients for every output;
        ``gradient_checkpointing``: estimate as if compiled with (or without) it."""
        from dataclasses import replace

        mode = self.training if training is None else bool(training)
        shapes = {k: tuple(v) for k, v in self._known_shapes().items() if k in self.input_keys}
        if any(None in v for v in shapes.values()) or set(shapes) != set(self.input_keys):
            raise ShapeUnknownError(
                "memory_report needs every input's shape: give them to compile(shapes=...) or evaluate once"
            )
        graph = self.checked_graph(mode, shapes)
        opts = (
            self.options
            if gradient_checkpointing is None
            else replace(self.options, gradient_checkpointing=bool(gradient_checkpointing))
        )
        cot = tuple(k for k in self.output_keys if graph.outputs[k].kind == "float") if gradients else None
        compiled = compile_graph(graph, self.backend, opts, cotangent_outputs=cot)
        g = compiled.graph
        return estimate(
            g,
            float_bytes_of(self.backend),
            _forward_prefix(g) if gradients else None,
            self.backend.kernel_memory,
            inplace=getattr(compiled.executable, "inplace_plan", None),
        )

    def summary(self) -> str:
        """Blocks, their shapes and parameter counts."""
        return physical_summary(self)

    def __repr__(self) -> str:
        return (
            f"PhysicalModel({self.backend!r}, inputs={list(self.input_keys)}, "
            f"outputs={list(self.output_keys)}, params={len(self.param_keys)})"
        )


def _check_flag(name: str, value: Any) -> None:
    """A flag of evaluate takes True or False: ``training="False"`` (a string) would be true."""
    if not isinstance(value, (bool, np.bool_)):
        raise EvaluationError(f"evaluate({name}=...) must be True or False, got {value!r} ({type(value).__name__})")


__all__ = ["EvaluationError", "PhysicalModel"]
