"""The executable a :class:`~mithril_ggml.GGMLBackend` lowers a graph to.

One ggml graph per :class:`~mithril.ir.graph.Graph` (one set of concrete
shapes), built once. A run copies the inputs into their tensors, copies or
quantizes params only when a different array object is passed, and calls
``ggml_graph_compute``.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Mapping
from typing import Any

import numpy as np

from mithril.errors import EvaluationError, MissingInputError, UnsupportedError
from mithril.ir.graph import Graph

from ._lib import ggml
from .blas import BlasOps
from .builder import Built, build, measure
from .checks import available_memory, lowering_problems, raise_if, size_problems
from .emitter import T
from .lowering import Mode
from .weights import QuantizationReport, WeightPlan, folded_transposes, plan_weights, quantize_into, report

_FROM_FILE = object()  # marks params whose stored bytes came from a GGUF file
_F32 = np.dtype(np.float32)


def _view(t: T) -> np.ndarray:
    """A NumPy view of a contiguous F32/I32 tensor's data (valid while its context lives)."""
    g = ggml()
    dtype = np.int32 if t.type == g.GGML_TYPE_I32 else np.float32
    n = int(np.prod(t.shape, dtype=np.int64)) if t.shape else 1
    buf = (ctypes.c_char * (n * 4)).from_address(t.ptr.contents.data)
    return np.frombuffer(memoryview(buf), dtype=dtype).reshape(t.shape)


class _ComputePlan:
    """``ggml_graph_plan`` for one graph, with its work buffer allocated once."""

    def __init__(self, cgraph: Any, n_threads: int, blas: BlasOps | None = None) -> None:
        g = ggml()
        self.cgraph = cgraph
        self.blas = blas
        self.cplan = g.ggml_graph_plan(cgraph, n_threads, None)
        self._work = (ctypes.c_uint8 * max(int(self.cplan.work_size), 1))()
        self.cplan.work_data = ctypes.cast(self._work, ctypes.POINTER(ctypes.c_uint8))

    def compute(self) -> None:
        g = ggml()
        status = g.ggml_graph_compute(self.cgraph, ctypes.byref(self.cplan))
        if status != 0:
            raise EvaluationError(f"ggml_graph_compute failed: {g.ggml_status_to_string(status).decode()}")
        if self.blas is not None and self.blas.errors:
            e = self.blas.errors[0]
            self.blas.errors.clear()
            raise EvaluationError(f"a BLAS matrix product in the ggml graph failed: {type(e).__name__}: {e}") from e


class GGMLExecutable:
    """A graph lowered to one ggml graph; ``run`` follows mithril's Executable protocol.

    Attributes: ``source`` (a readable listing of the ggml ops per node),
    ``quantization_report``, ``weight_plans``, ``memory_bytes``.
    """

    source: str | None

    def __init__(
        self, graph: Graph, *, quantize: str | None = None, n_threads: int = 1, wrt: tuple[str, ...] = ()
    ) -> None:
        self.graph = graph
        self.quantize = quantize
        self.n_threads = int(n_threads)
        self.wrt = tuple(wrt)
        unknown = [n for n in self.wrt if n not in graph.params]
        if unknown:
            raise UnsupportedError(f"GGMLBackend: cannot differentiate with respect to {unknown}: not params")
        if self.wrt and quantize is not None:
            raise UnsupportedError(
                f"GGMLBackend(quantize={quantize!r}) cannot compute gradients (ggml differentiates float32 "
                "weights only); use quantize=None for a model that computes gradients"
            )
        mode = Mode(grad=bool(self.wrt))
        raise_if(lowering_problems(graph, mode), "lower this graph")
        raise_if(size_problems(graph), "allocate this graph")  # in Python: ggml aborts on a failed malloc
        self.weight_plans = plan_weights(graph, quantize, grad=mode.grad)
        folded = folded_transposes(graph)
        self.quantization_report: QuantizationReport = report(self.weight_plans, quantize)
        names = tuple(graph.cotangents) or tuple(graph.outputs)
        self._cot_names = tuple(n for n in names if graph.outputs[n].kind == "float") if self.wrt else ()
        sizes = measure(graph, self.weight_plans, folded, mode, self.wrt, self._cot_names)
        budget = available_memory()
        if sizes.mem_size > budget:
            raise UnsupportedError(
                f"GGMLBackend cannot allocate this graph: its ggml context needs "
                f"{sizes.mem_size / 2**30:.1f} GiB ({sizes.n_tensors} tensors), more than the "
                f"{budget / 2**30:.1f} GiB this process can allocate"
            )
        self._built: Built | None = build(
            graph,
            self.weight_plans,
            folded,
            mode,
            self.wrt,
            self._cot_names,
            alloc=True,
            mem_size=sizes.mem_size,
            graph_sizes=sizes.graph_sizes,
        )
        b = self._built
        self.memory_bytes = sizes.mem_size
        self._forward = _ComputePlan(b.gf, self.n_threads, b.blas)
        self._backward = _ComputePlan(b.gb, self.n_threads) if b.gb is not None else None
        self._sources = {k: _view(t) for k, t in b.sources.items()}
        self._outputs = {k: _view(t) for k, t in b.outputs.items()}
        self._updates = {k: _view(t) for k, t in b.state_updates.items()}
        self._cots = {k: _view(t) for k, t in b.cotangents.items()}
        self._grads = {k: (_view(t) if t is not None else None) for k, t in b.grads.items()}
        self._loaded: dict[str, Any] = {}
        self._stored = tuple(b.params)
        self._param_keys = frozenset(graph.params) | frozenset(graph.state)
        self._input_keys = frozenset(graph.inputs)
        self.source = self._describe()

    # ----------------------------------------------------------------- params
    def load_params(self, params: Mapping[str, Any]) -> None:
        """Copy (or quantize) each param whose array object is not the one loaded last."""
        b = self._alive()
        for name, t in b.params.items():
            if name not in params:
                if name in self._loaded:
                    continue
                raise MissingInputError(f"GGMLBackend: param {name!r} was not given")
            arr = params[name]
            if self._loaded.get(name) is arr:
                continue
            plan = self.weight_plans[name]
            a = np.asarray(arr)
            if tuple(a.shape) != plan.shape:
                raise EvaluationError(f"param {name!r}: expected shape {list(plan.shape)}, got {list(a.shape)}")
            quantize_into(plan, a, t.ptr.contents.data, ggml().ggml_nbytes(t.ptr))
            self._loaded[name] = arr  # holding it keeps its id from being reused

    def refresh_params(self) -> None:
        """Forget loaded params (call after modifying a param array in place)."""
        self._loaded = {k: v for k, v in self._loaded.items() if v is _FROM_FILE}

    def stored_params(self) -> dict[str, tuple[WeightPlan, np.ndarray]]:
        """The bytes of each loaded param as stored (quantized or float32), for export."""
        b = self._alive()
        missing = [n for n in b.params if n not in self._loaded]
        if missing:
            raise MissingInputError(f"GGMLBackend: params {missing} were never loaded")
        out = {}
        for name, t in b.params.items():
            n = ggml().ggml_nbytes(t.ptr)
            raw = np.frombuffer(ctypes.string_at(t.ptr.contents.data, n), dtype=np.uint8).copy()
            out[name] = (self.weight_plans[name], raw)
        return out

    def load_stored_param(self, name: str, raw: np.ndarray) -> None:
        """Set a param from bytes in its stored layout and type (as :meth:`stored_params` gives)."""
        b = self._alive()
        t = b.params[name]
        data = np.ascontiguousarray(raw, dtype=np.uint8)
        if data.nbytes != ggml().ggml_nbytes(t.ptr):
            raise EvaluationError(f"param {name!r}: {data.nbytes} bytes for a {ggml().ggml_nbytes(t.ptr)}-byte tensor")
        ctypes.memmove(t.ptr.contents.data, data.ctypes.data, data.nbytes)
        self._loaded[name] = _FROM_FILE

    # -------------------------------------------------------------------- run
    def run(
        self, params: Mapping[str, Any], inputs: Mapping[str, Any], cotangents: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        self.load_params(params)
        for name, view in self._sources.items():
            arr = inputs[name] if name in inputs else params.get(name)
            if arr is None:
                raise MissingInputError(f"GGMLBackend: input {name!r} was not given")
            _assign(view, arr, f"input {name!r}")
        gradients: dict[str, Any] = {}
        if cotangents and self.wrt:
            for name, view in self._cots.items():
                if name in cotangents:
                    _assign(view, cotangents[name], f"cotangent {name!r}")
                else:
                    view[...] = 0.0
            if self._backward is not None:
                ggml().ggml_graph_reset(self._backward.cgraph)
                self._backward.compute()
            else:
                self._forward.compute()
            for name in self.wrt:
                grad = self._grads.get(name)
                shape = self.weight_plans[name].shape
                gradients[name] = np.array(grad) if grad is not None else np.zeros(shape, np.float32)
        else:
            self._forward.compute()
        outputs = {k: _read(v) for k, v in self._outputs.items()}
        updates = {k: _read(v) for k, v in self._updates.items()}
        return outputs, gradients, updates

    def fast_call(
        self, params: dict[str, Any], inputs: dict[str, Any], cotangents: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
        """``run`` for the common repeated call, which skips the model's per-call checks; None when it
        cannot vouch for the arguments (then the checked path runs).

        It vouches when: no cotangents; the same keys as the graph's params, state and inputs;
        every stored param the very array object loaded last; every input and state array a
        float32 ``np.ndarray`` of its tensor's shape.
        """
        if cotangents or params.keys() != self._param_keys or inputs.keys() != self._input_keys:
            return None
        loaded = self._loaded
        for name in self._stored:
            if loaded.get(name) is not params[name]:
                return None
        for name, view in self._sources.items():
            arr = inputs[name] if name in inputs else params[name]
            if type(arr) is not np.ndarray or arr.dtype != _F32 or view.dtype != _F32 or arr.shape != view.shape:
                return None
        for name, view in self._sources.items():
            view[...] = inputs[name] if name in inputs else params[name]
        self._forward.compute()
        return {k: _read(v) for k, v in self._outputs.items()}, {}, {k: _read(v) for k, v in self._updates.items()}

    # ----------------------------------------------------------------- misc
    def _alive(self) -> Built:
        if self._built is None:
            raise EvaluationError("this GGMLExecutable was closed")
        return self._built

    def close(self) -> None:
        """Free the ggml context (the executable cannot run afterwards)."""
        if self._built is not None:
            self._sources = self._outputs = self._updates = self._cots = {}
            self._grads = {}
            ggml().ggml_free(self._built.ctx)
            self._built = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    def _describe(self) -> str:
        b = self._alive()
        mib = 1024 * 1024
        lines = [
            f"# ggml graph (GGMLBackend quantize={self.quantize!r}, n_threads={self.n_threads})",
            f"# context {self.memory_bytes / mib:.2f} MiB: {b.n_tensors} tensors, "
            f"{b.data_bytes / mib:.2f} MiB of data; graph sizes {list(b.graph_sizes)}",
        ]
        for name, t in b.sources.items():
            lines.append(f"input  {name} {list(t.shape)} f32")
        for name, p in self.weight_plans.items():
            layout = "" if p.layout == "natural" else f", stored {p.layout} as {list(p.stored_shape)}"
            lines.append(f"param  {name} {list(p.shape)} {p.type_name}{layout}")
        for i, n in enumerate(self.graph.nodes):
            ops = b.ops.get(i)
            what = " ".join(ops) if ops else "(folded: its matmul reads the source directly)"
            lines.append(f"{n!r:<40} # {n.where or '-'}: {what}")
        for name, v in self.graph.outputs.items():
            lines.append(f"output {name} = {v.name or f'v{v.uid}'}")
        if self.wrt:
            lines.append(f"# gradients with ggml's backward pass for {list(self.wrt)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"GGMLExecutable(outputs={list(self.graph.outputs)}, quantize={self.quantize!r}, "
            f"memory={self.memory_bytes} bytes)"
        )


def _assign(view: np.ndarray, arr: Any, what: str) -> None:
    a = np.asarray(arr)
    if a.shape != view.shape:
        raise EvaluationError(f"{what}: expected shape {list(view.shape)}, got {list(a.shape)}")
    view[...] = a


def _read(view: np.ndarray) -> np.ndarray:
    return view.astype(np.int64) if view.dtype == np.int32 else np.array(view)
