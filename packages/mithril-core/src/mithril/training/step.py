"""One compiled training step: forward, loss, backward, optimizer and state updates in one function.

:func:`compile_step` builds, from a logical model, a loss block and an optimizer, a
:class:`TrainingStep` whose generated function (one per input shape set) runs the
model, its loss and metrics, the core's reverse-mode autodiff, the optimizer's update
(:mod:`mithril.training.update`) and the model's state updates. With ``jit=True`` that
function is one ``torch.compile`` graph or one ``jax.jit`` (the params and optimizer
state donated). The same step evaluates without updating (``evaluate``) and predicts
with the model alone (``predict``), all on the same parameter names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from .._gc import gc_paused
from ..backend import Backend
from ..dtypes import DType
from ..errors import (
    CompileError,
    EvaluationError,
    MissingInputError,
    ModelBuildError,
    ParamsError,
    UnknownKeyError,
    UnsupportedError,
    warn_recompiles,
)
from ..ir.graph import Graph, GraphBuilder, Value, ValueRole
from ..ir.randomness import SEED_INPUT
from ..models.block import Block
from ..parallel.layout import Layout
from ..physical.checks import check_indices
from ..physical.model import PhysicalModel
from ..physical.pipeline import Compiled, Options, compile_graph
from .expr import X
from .graph import LOSS_OUTPUT, as_model, attach_loss
from .metrics import Metric, as_metric
from .optim.base import Optimizer
from .padding import ROW_WEIGHT_INPUT, refusal, row_weights, weigh_rows
from .state import StepResult, TrainState
from .update import GRAD_NORM_OUTPUT, LR_OUTPUT, append_update

#: prefix of the gradient inputs of an accumulated step's update
_GRAD = "grad."


def _mixed_precision(backend: Backend, precision: Any, loss_scale: float | None) -> tuple[Any, float, Any]:
    """(precision, loss scale, the backend computing in that precision, or None)."""
    if precision is None or precision == backend.dtype:
        if loss_scale is not None and loss_scale != 1.0:
            raise CompileError("loss_scale needs precision=ml.float16 (or ml.bfloat16) on a float32 backend")
        return None, 1.0, None
    if precision not in (DType.float16, DType.bfloat16):
        raise CompileError(f"precision must be ml.bfloat16 or ml.float16, got {precision!r}")
    if backend.dtype is not DType.float32:
        raise CompileError(
            f"mixed precision keeps float32 master weights: compile it for a float32 backend, not {backend!r}"
        )
    if precision not in type(backend).supported_dtypes:
        raise UnsupportedError(f"{type(backend).__name__} cannot compute in {precision.value}")
    if backend.mesh is not None:
        raise UnsupportedError("mixed precision on a device mesh is not supported yet")
    scale = (1024.0 if precision is DType.float16 else 1.0) if loss_scale is None else float(loss_scale)
    if not scale > 0 or scale != scale or scale == float("inf"):
        raise CompileError(f"loss_scale must be a positive finite number, got {loss_scale!r}")
    return precision, scale, type(backend)(dtype=precision, device=backend.device)


class TrainingStep:
    """A compiled training step; see :func:`compile_step`."""

    def __init__(
        self,
        model: Block,
        backend: Backend,
        *,
        loss: Block | None,
        optimizer: Optimizer,
        shapes: Mapping[str, Sequence[int | None]] | None,
        metrics: Iterable[str | Metric],
        prediction: str | None,
        target: str,
        jit: bool,
        gradient_checkpointing: bool,
        accumulate: int,
        sharding: Any = None,
        precision: Any = None,
        loss_scale: float | None = None,
    ) -> None:
        if not isinstance(backend, Backend):
            raise CompileError(f"backend must be a mithril Backend instance, got {type(backend).__name__}")
        if not isinstance(model, Block):
            raise CompileError(f"model must be a mithril Model or block, got {type(model).__name__}")
        model = as_model(model)
        if not isinstance(optimizer, Optimizer):
            raise CompileError(f"optimizer must be a mithril.optim optimizer, got {type(optimizer).__name__}")
        if not backend.supports_training:
            raise UnsupportedError(
                f"{type(backend).__name__} is for inference only: train on another backend "
                f"and compile the trained model for it (the params carry over by name)"
            )
        if jit and not backend.supports_jit:
            raise UnsupportedError(f"{type(backend).__name__} has no JIT compiler; compile with jit=False")
        if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
            raise CompileError(f"accumulate must be a positive int (micro-batches per step), got {accumulate!r}")
        self.backend = backend
        self.optimizer = optimizer
        self.accumulate = accumulate
        self.precision, self.loss_scale, self._compute_backend = _mixed_precision(backend, precision, loss_scale)
        self.metrics: tuple[Metric, ...] = tuple(as_metric(m) for m in metrics)
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names) or set(names) & {LOSS_OUTPUT, LR_OUTPUT, GRAD_NORM_OUTPUT}:
            raise ModelBuildError(f"metric names must be distinct and not 'loss', 'lr' or 'grad_norm': {names}")
        model._freeze()
        outputs = model.output_terminals()
        if loss is None:
            if LOSS_OUTPUT not in outputs:
                raise ModelBuildError(
                    f"without a loss block the model must have an output {LOSS_OUTPUT!r}; its outputs: {outputs}"
                )
            self.prediction = prediction
            self.target = target if target in model.input_terminals() else None
            flatten_fn = None
            inference_model = None
        else:
            if prediction is None:
                prediction = "output" if "output" in outputs else outputs[0] if len(outputs) == 1 else None
                if prediction is None:
                    raise ModelBuildError(
                        f"the model has several outputs {outputs}: say which one the loss reads with prediction=..."
                    )
            if not isinstance(loss, Block):
                raise CompileError(f"loss must be a loss block (CrossEntropyLoss()...), got {type(loss).__name__}")
            loss_model = as_model(loss)
            loss_model._freeze()
            self.prediction, self.target = prediction, target
            flatten_fn = partial(attach_loss, model, loss_model, prediction=prediction, target=target)
            inference_model = model
        if self.metrics and (self.prediction is None or self.target is None):
            raise ModelBuildError("metrics need the model's prediction and the target: give prediction= and target=")
        self.model = model
        shapes = dict(shapes or {})
        if sharding is not None and backend.mesh is None:
            raise CompileError(f"sharding=... needs a backend with a device mesh; {backend!r} has none")
        layout = None if sharding is None else Layout.of(sharding)
        self.options = Options(jit=jit, gradient_checkpointing=gradient_checkpointing, layout=layout)
        self.physical = PhysicalModel(
            model,
            backend,
            shapes=shapes,
            constants={},
            static_shapes=False,
            training=True,
            options=Options(gradient_checkpointing=gradient_checkpointing),
            flatten_fn=flatten_fn,
        )
        #: where forward and backward run: the model itself, or its twin in the compute precision
        self._compute = (
            self.physical
            if self._compute_backend is None
            else PhysicalModel(
                model,
                self._compute_backend,
                shapes=shapes,
                constants={},
                static_shapes=False,
                training=True,
                options=Options(gradient_checkpointing=gradient_checkpointing),
                flatten_fn=flatten_fn,
            )
        )
        model_shapes = {k: v for k, v in shapes.items() if k != self.target}
        self._inference_model = inference_model or model
        self._inference_shapes = model_shapes
        self._inference: PhysicalModel | None = None
        flat = self.physical._flat_for(True).graph
        # kinds are not all known before shapes are: a param is trainable unless declared int/bool
        self._trainable = [
            k for k, v in flat.params.items() if v.kind in (None, "float") and k in self.physical.param_keys
        ]
        self._resolved = optimizer.resolve(self._trainable)
        self._wrt = [k for k in self._trainable if self._resolved[k] is not None]
        self._cache: dict[Any, Compiled] = {}
        self._last: Compiled | None = None
        #: why a padded (row-weighted) step would not be exact, by (kind, shapes); None: it is
        self._refusals: dict[Any, str | None] = {}
        self._weights: dict[tuple[int, int], Any] = {}
        self.input_keys: tuple[str, ...] = self.physical.input_keys

    # ---------------------------------------------------------------- state
    def init(self, params: Mapping[str, Any] | None = None, *, seed: int | None = None) -> TrainState:
        """A fresh state: ``params`` (copied; default :meth:`PhysicalModel.randomize_params` with
        ``seed``) and zeroed optimizer state. ``seed`` also fixes the steps' random draws."""
        be = self.backend
        with be.scope():
            if params is None:
                params = self.physical.randomize_params(seed)
            checked = self._check_params(params)
            state = {k: be.array(be.to_numpy(v)) for k, v in checked.items()}
            opt: dict[str, Any] = {}
            shapes = self.physical.param_shapes
            for key, (shape, init) in self.optimizer.state_layout(self._resolved, shapes).items():
                opt[key] = be.full(shape, init) if init else be.zeros(*shape)
            opt[self.optimizer.step_key] = be.array(np.zeros((), np.int64))
        return TrainState(state, opt, 0, 0 if seed is None else int(seed))

    def _check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(params, Mapping):
            raise ParamsError(f"params must be a dict of arrays, got {type(params).__name__}")
        need = set(self.physical.param_keys) | set(self.physical.state_keys)
        missing, extra = sorted(need - set(params)), sorted(set(params) - need)
        if missing or extra:
            raise ParamsError(f"params do not fit the model: missing {missing}, unknown {extra}")
        shapes = self.physical.param_shapes
        out = {}
        for k in (*self.physical.param_keys, *self.physical.state_keys):  # model order, the same in every process
            x = self.backend.accept(params[k], f"params[{k!r}]")
            if tuple(self.backend.shape_of(x)) != tuple(shapes[k]):
                raise ParamsError(
                    f"params[{k!r}] has shape {list(self.backend.shape_of(x))}, the model needs {list(shapes[k])}"
                )
            out[k] = x
        return out

    @property
    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the optimizer's state arrays, by key."""
        layout = self.optimizer.state_layout(self._resolved, self.physical.param_shapes)
        return {**{k: s for k, (s, _) in layout.items()}, self.optimizer.step_key: ()}

    # ------------------------------------------------------------- compiling
    def _batch(self, batch: Mapping[str, Any], need_target: bool = True) -> tuple[dict[str, Any], Any]:
        if not isinstance(batch, Mapping):
            raise EvaluationError(
                f"a batch must be a dict of arrays keyed by the model's inputs "
                f"{list(self.input_keys)}, got {type(batch).__name__}"
            )
        keys = set(self.input_keys) if need_target else set(self.input_keys) - {self.target}
        missing, extra = sorted(keys - set(batch)), sorted(set(batch) - set(self.input_keys))
        if missing:
            raise MissingInputError(
                f"the batch is missing {missing}; the training step's inputs are {list(self.input_keys)}"
            )
        if extra:
            raise UnknownKeyError(
                f"the batch has unknown key(s) {extra}; the training step's inputs are {list(self.input_keys)}"
            )
        inputs = {k: self.backend.accept(batch[k], f"batch[{k!r}]") for k in keys}
        shapes = tuple(sorted((k, tuple(self.backend.shape_of(v))) for k, v in inputs.items()))
        return inputs, shapes

    def _add_metrics(self, graph: Graph) -> None:
        b = GraphBuilder(graph, where="metrics")
        for m in self.metrics:
            b.where = f"metrics ({m.name})"
            graph.outputs[m.name] = m.emit(X(b, graph.outputs[self.prediction]), X(b, graph.inputs[self.target])).v  # type: ignore[index]  # prediction is set once metrics exist

    def _loss_graph(self, kind: str, shapes: Mapping[str, tuple[int, ...]]) -> Graph:
        """The checked graph of ``kind`` with its metrics, keeping only the loss and metric outputs."""
        source = self._compute if kind == "grad" else self.physical
        graph = source.checked_graph(kind != "eval", dict(shapes))
        self._add_metrics(graph)
        keep = {LOSS_OUTPUT, *(m.name for m in self.metrics)}
        graph.outputs = {k: v for k, v in graph.outputs.items() if k in keep}
        return graph

    def padding_refusal(self, shapes: Mapping[str, Sequence[int]], *, training: bool = True) -> str | None:
        """Why a batch of these shapes cannot be padded exactly (see :mod:`mithril.training.padding`),
        or None when a partial batch padded to them gives the unpadded loss, metrics and gradients."""
        key = (
            "eval" if not training else "train",
            tuple(sorted((k, tuple(int(d) for d in v)) for k, v in shapes.items())),
        )
        if key not in self._refusals:
            self._refusals[key] = self._refusal(*key)
        return self._refusals[key]

    def _refusal(self, kind: str, shapes: tuple[tuple[str, tuple[int, ...]], ...]) -> str | None:
        if kind == "train" and (self.accumulate > 1 or self._compute_backend is not None):
            return "gradient accumulation and mixed precision steps are not padded"
        if self.options.layout is not None:
            return "steps laid out over a device mesh are not padded"
        sizes = {s[0] if s else None for _, s in shapes}
        if len(sizes) != 1 or None in sizes:
            return f"the inputs do not share a batch axis: {dict(shapes)}"
        batch = int(next(iter(sizes)))  # type: ignore[arg-type]  # None is excluded above

        def build(n: int) -> Graph:
            with self.backend.scope():
                return self._loss_graph(kind, {k: (n, *s[1:]) for k, s in shapes})

        return refusal(build, batch)

    def _row_weights(self, rows: int, batch: int) -> Any:
        if isinstance(rows, bool) or not isinstance(rows, int) or not 0 < rows <= batch:
            raise EvaluationError(f"rows={rows!r}: a padded batch of {batch} needs 1 <= rows <= {batch} real rows")
        hit = self._weights.get((rows, batch))
        if hit is None:
            hit = self._weights[(rows, batch)] = self.backend.array(row_weights(rows, batch))
        return hit

    def _padded(self, kind: str, shapes: tuple[tuple[str, tuple[int, ...]], ...]) -> Compiled:
        why = self.padding_refusal(dict(shapes), training=kind == "train")
        if why is not None:
            raise UnsupportedError(f"this batch cannot be padded exactly (rows=...): {why}")
        return self._compiled(kind, shapes, weighted=True)

    @gc_paused
    def _compiled(self, kind: str, shapes: tuple[tuple[str, tuple[int, ...]], ...], weighted: bool = False) -> Compiled:
        """``kind``: "train" (the whole step), "grad" (loss, metrics, gradients and state of one
        micro-batch) or "eval" (loss and metrics in inference mode). ``weighted``: with the
        per-row weight input of a padded batch (:func:`~mithril.training.padding.weigh_rows`)."""
        key = (kind, shapes, "rows") if weighted else (kind, shapes)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        source = self._compute if kind == "grad" else self.physical
        graph = self._loss_graph(kind, dict(shapes))
        if weighted:
            weigh_rows(graph, shapes[0][1][0])
        if kind == "eval":
            graph.state_updates = {}
            compiled = compile_graph(
                graph, self.backend, Options(jit=self.options.jit, layout=self.options.layout), cotangent_outputs=None
            )
        else:
            wrt = [k for k in self._wrt if k in graph.params]
            update = None
            if kind == "train":
                graph.donates_params = True
                update = partial(self._append_update, grad_scale=None)
            compiled = compile_graph(
                graph,
                source.backend,
                self.options,
                cotangent_outputs=(LOSS_OUTPUT,),
                wrt=wrt,
                after_autodiff=update,
                seed_cotangents={LOSS_OUTPUT: self.loss_scale},
            )
        self._cache[key] = self._last = compiled
        warn_recompiles("this training step", len(self._cache), dict(shapes))
        return compiled

    def _append_update(self, graph: Graph, grad_scale: float | None) -> None:
        grads = dict(graph.gradients)
        graph.gradients = {}
        append_update(graph, self.optimizer, grads, self._resolved, grad_scale=grad_scale)
        # every entry of the donated params dict comes back, changed or not
        for k, v in {**graph.params, **graph.state}.items():
            graph.state_updates.setdefault(k, v)

    @gc_paused
    def _compiled_apply(self) -> Compiled:
        """The optimizer's update alone, from gradients summed over ``accumulate`` micro-batches."""
        hit = self._cache.get(("apply",))
        if hit is not None:
            return hit
        graph = Graph(donates_params=True)
        shapes = self.physical.param_shapes
        for k in self.physical.param_keys:
            graph.params[k] = Value(ValueRole.PARAM, name=k, kind="float", shape=tuple(shapes[k]))
        for k in self._wrt:
            graph.gradients[k] = graph.inputs[_GRAD + k] = Value(
                ValueRole.INPUT, name=_GRAD + k, kind="float", shape=tuple(shapes[k])
            )
        self._append_update(graph, grad_scale=1.0 / (self.accumulate * self.loss_scale))
        compiled = compile_graph(
            graph, self.backend, Options(jit=self.options.jit, layout=self.options.layout), cotangent_outputs=None
        )
        self._cache[("apply",)] = compiled
        return compiled

    # ------------------------------------------------------------------ run
    def __call__(self, state: TrainState, batch: Mapping[str, Any], *, rows: int | None = None) -> StepResult:
        """One update from ``batch`` (a dict keyed by the model's inputs and the target).

        ``rows``: only the first ``rows`` rows of the batch are real, the rest padding that
        contributes nothing (the loss and metrics are means over the real rows, the gradients
        those of the real rows alone); every batch of one shape, padded or full, then runs one
        compiled step. Refused (:class:`~mithril.errors.UnsupportedError`, naming the block)
        where examples interact; see :meth:`padding_refusal`.
        """
        if not isinstance(state, TrainState):
            raise EvaluationError(f"a training step takes a TrainState (from step.init()), got {type(state).__name__}")
        be = self.backend
        with be.scope():
            inputs, shapes = self._batch(batch)
            compiled: Compiled | None
            if rows is not None:
                compiled = self._padded("train", shapes)
                inputs[ROW_WEIGHT_INPUT] = self._row_weights(rows, shapes[0][1][0])
            elif self.accumulate > 1 or self._compute_backend is not None:
                compiled = None
                outputs, updates = self._accumulated(state, inputs)
            else:
                compiled = self._compiled("train", shapes)
            if compiled is not None:
                arrays = {**state.params, **state.optimizer}
                if arrays.keys() != compiled.graph.params.keys() | compiled.graph.state.keys():
                    self._check_state_keys(state, compiled)
                if compiled.graph.index_checks:
                    check_indices(be, compiled.graph.index_checks, inputs)
                if compiled.random:
                    inputs[SEED_INPUT] = self._seed(state)
                outputs, _, updates = compiled.executable.run(arrays, inputs, {})
        params = {k: updates.get(k, v) for k, v in state.params.items()}
        opt = {k: updates.get(k, v) for k, v in state.optimizer.items()}
        metrics = {m.name: outputs[m.name] for m in self.metrics}
        if GRAD_NORM_OUTPUT in outputs:
            metrics[GRAD_NORM_OUTPUT] = outputs[GRAD_NORM_OUTPUT]
        return StepResult(
            TrainState(params, opt, state.step + 1, state.seed), outputs[LOSS_OUTPUT], metrics, outputs.get(LR_OUTPUT)
        )

    def _accumulated(self, state: TrainState, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``accumulate`` forward/backward passes over equal slices of the batch, then one update."""
        be, k = self.backend, self.accumulate
        sizes = {name: be.shape_of(x)[0] if be.shape_of(x) else None for name, x in inputs.items()}
        n = next(iter(sizes.values()))
        if any(s != n for s in sizes.values()) or n is None or n % k:
            raise EvaluationError(
                f"accumulate={k}: every input needs a batch axis divisible by {k}; got "
                f"{ {name: list(be.shape_of(x)) for name, x in inputs.items()} }"
            )
        m = n // k
        add, mul = be.kernel("add"), be.kernel("mul")
        params = dict(state.params)
        low = self._compute_backend
        if low is not None:  # float32 master weights, forward and backward in the compute precision
            params = {name: low.array(x) if be.kind_of(x) == "float" else x for name, x in params.items()}
            inputs = {name: low.array(x) if be.kind_of(x) == "float" else x for name, x in inputs.items()}

        def full(x: Any) -> Any:
            """A compute-precision float array back in the backend's float32 (anything else as it is)."""
            return be.array(x) if low is not None and low.kind_of(x) == "float" else x

        total: dict[str, Any] = {}
        sums: dict[str, Any] = {}
        for i in range(k):
            micro = {name: x[i * m : (i + 1) * m] for name, x in inputs.items()}
            shapes = tuple(sorted((name, tuple(be.shape_of(x))) for name, x in micro.items()))
            compiled = self._compiled("grad", shapes)
            if compiled.graph.index_checks:
                check_indices(be, compiled.graph.index_checks, micro)
            if compiled.random:
                micro[SEED_INPUT] = self._seed(state, i)
            outputs, grads, new_state = compiled.executable.run(
                {name: params[name] for name in (*compiled.graph.params, *compiled.graph.state)}, micro, {}
            )
            params.update(new_state)  # running statistics advance micro-batch by micro-batch
            grads = {name: full(g) for name, g in grads.items()}  # summed in float32
            outputs = {name: full(v) for name, v in outputs.items()}
            total = grads if not total else {name: add(total[name], g) for name, g in grads.items()}
            sums = dict(outputs) if not sums else {name: add(sums[name], v) for name, v in outputs.items()}
        apply = self._compiled_apply()
        arrays = {name: state.params[name] for name in apply.graph.params}
        arrays.update({name: state.optimizer[name] for name in apply.graph.state})
        out, _, updates = apply.executable.run(arrays, {_GRAD + name: g for name, g in total.items()}, {})
        scale = be.constant(np.asarray(1.0 / k))
        outputs = {name: mul(v, scale) for name, v in sums.items()}
        outputs.update(out)
        updates = {**{name: full(v) for name, v in params.items() if name in self.physical.state_keys}, **updates}
        return outputs, updates

    def _check_state_keys(self, state: TrainState, compiled: Compiled) -> None:
        need = compiled.graph.params.keys() | compiled.graph.state.keys()
        have = state.params.keys() | state.optimizer.keys()
        missing, extra = sorted(need - have), sorted(have - need)
        raise ParamsError(
            f"the state does not fit this training step: missing {missing}, unknown {extra}; "
            f"make it with step.init() or load_checkpoint(..., step)"
        )

    def _seed(self, state: TrainState, micro: int = 0) -> Any:
        """The random seed of step ``state.step``: the same for the same (seed, step), on every run."""
        digest = hashlib.blake2b(f"{state.seed}:{state.step}:{micro}".encode(), digest_size=8).digest()
        self.backend.seed(int.from_bytes(digest, "little") >> 1)
        return self.backend.next_seed()

    def evaluate(
        self, params: Mapping[str, Any] | TrainState, batch: Mapping[str, Any], *, rows: int | None = None
    ) -> dict[str, Any]:
        """The loss and metrics on ``batch`` in inference mode (running statistics, no dropout), no update.
        ``rows``: only the first ``rows`` rows are real (as for a training step)."""
        if isinstance(params, TrainState):
            params = params.params
        be = self.backend
        with be.scope():
            inputs, shapes = self._batch(batch)
            if rows is not None:
                compiled = self._padded("eval", shapes)
                inputs[ROW_WEIGHT_INPUT] = self._row_weights(rows, shapes[0][1][0])
            else:
                compiled = self._compiled("eval", shapes)
            if compiled.graph.index_checks:
                check_indices(be, compiled.graph.index_checks, inputs)
            arrays = {k: params[k] for k in (*compiled.graph.params, *compiled.graph.state)}
            outputs, _, _ = compiled.executable.run(arrays, inputs, {})
        return dict(outputs)

    def predict(self, params: Mapping[str, Any] | TrainState, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The model's outputs in inference mode, without target or loss (the loss branch is not compiled)."""
        if isinstance(params, TrainState):
            params = params.params
        pm = self.inference_model
        outputs: dict[str, Any] = pm.evaluate(
            {k: params[k] for k in (*pm.param_keys, *pm.state_keys)}, inputs, training=False
        )
        return outputs

    @property
    def inference_model(self) -> PhysicalModel:
        """The model alone, compiled for inference on the same parameter names (export it from here)."""
        if self._inference is None:
            self._inference = PhysicalModel(
                self._inference_model,
                self.backend,
                shapes=self._inference_shapes,
                constants={},
                static_shapes=False,
                training=False,
                options=Options(jit=self.options.jit, layout=self.options.layout),
            )
        return self._inference

    @property
    def source(self) -> str:
        """The generated code of the most recently compiled step (the whole step, readable)."""
        if self._last is None:
            raise CompileError("no step is compiled yet: call the step once (or step.lower(batch_shapes))")
        return self._last.executable.source or ""

    def lower(self, shapes: Mapping[str, Sequence[int]], *, training: bool = True) -> str:
        """Compile the step for these input shapes now; returns the generated source."""
        key = tuple(sorted((k, tuple(int(d) for d in v)) for k, v in shapes.items()))
        with self.backend.scope():
            return self._compiled("train" if training else "eval", key).executable.source or ""

    @property
    def compile_count(self) -> int:
        """How many (mode, shapes) variants are compiled."""
        return len(self._cache)

    def __repr__(self) -> str:
        return (
            f"TrainingStep({self.backend!r}, optimizer={self.optimizer!r}, inputs={list(self.input_keys)}, "
            f"metrics={[m.name for m in self.metrics]})"
        )


def compile_step(
    model: Block,
    backend: Backend,
    *,
    loss: Block | None,
    optimizer: Optimizer,
    shapes: Mapping[str, Sequence[int | None]] | None = None,
    metrics: Iterable[str | Metric] = (),
    prediction: str | None = None,
    target: str = "target",
    jit: bool = False,
    gradient_checkpointing: bool = False,
    accumulate: int = 1,
    sharding: Any = None,
    precision: Any = None,
    loss_scale: float | None = None,
) -> TrainingStep:
    """Compile a training step for ``model``.

    * ``loss``: a loss block (``CrossEntropyLoss()``...) reading the model's output
      ``prediction`` (default ``"output"``) and the new input ``target``; ``None`` when the
      model computes its own output ``"loss"``.
    * ``optimizer``: an optimizer of :mod:`mithril.optim` (its groups, clipping and schedule).
    * ``metrics``: names (``"accuracy"``, ``"top5_accuracy"``, ``"mae"``, ``"mse"``) or
      :class:`~mithril.training.metrics.Metric` objects, computed in the same graph.
    * ``jit``: one ``torch.compile`` / ``jax.jit`` of the whole step.
    * ``accumulate``: micro-batches per update (gradient accumulation).
    * ``precision``: ``ml.bfloat16`` or ``ml.float16`` on a float32 backend: mixed precision, forward
      and backward in that precision, float32 master weights and optimizer update; ``loss_scale``
      (static; default 1024 for float16, 1 for bfloat16) scales the loss's gradient to keep float16
      gradients from underflowing and is divided out before the update.
    * ``sharding``: on a backend with a ``device_mesh``, the layout of params, optimizer state
      and inputs (:class:`mithril.parallel.Layout`); default data parallel.
    """
    return TrainingStep(
        model,
        backend,
        loss=loss,
        optimizer=optimizer,
        shapes=shapes,
        metrics=metrics,
        prediction=prediction,
        target=target,
        jit=jit,
        gradient_checkpointing=gradient_checkpointing,
        accumulate=accumulate,
        sharding=sharding,
        precision=precision,
        loss_scale=loss_scale,
    )


__all__ = ["LOSS_OUTPUT", "TrainingStep", "compile_step"]
