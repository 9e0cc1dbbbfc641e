"""GGUF export and import of a compiled inference model.

A file holds the stored params (quantized or float32, in the layout the
executable uses), the graph as JSON (``mithril.graph``), constant arrays, and
the storage plan (``mithril.params``). :func:`load_gguf` rebuilds the same
executable and loads the stored bytes as they are, so it computes exactly
what the saved executable computed.
"""

from __future__ import annotations

import ctypes
import json
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mithril.errors import EvaluationError, MissingInputError, MithrilError, ShapeMismatchError, UnknownKeyError
from mithril.ir.graph import Graph

from ._lib import ggml
from .executable import GGMLExecutable
from .serialize import graph_from_json, graph_to_json

KEY_GRAPH = "mithril.graph"
KEY_PARAMS = "mithril.params"
KEY_QUANTIZE = "mithril.quantize"
KEY_VERSION = "mithril.format_version"
#: JSON {tensor name: CRC-32 of its bytes}: a corrupted payload is an error at load, not wrong weights
KEY_CHECKSUMS = "mithril.checksums"
FORMAT_VERSION = 1


class GGUFError(MithrilError):
    """A GGUF file cannot be written or read as a Mithril model."""


@dataclass
class GGUFModel:
    """A model read back from GGUF: its graph, a ready executable, and the file's metadata."""

    graph: Graph
    executable: GGMLExecutable
    quantize: str | None

    def evaluate(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run the model on ``inputs`` (NumPy arrays keyed by the graph's inputs, in float32)."""
        want = self.graph.inputs
        if not isinstance(inputs, Mapping):
            raise EvaluationError(
                f"GGUFModel.evaluate: inputs must be a dict of arrays keyed by {list(want)}, "
                f"got {type(inputs).__name__}"
            )
        missing, extra = sorted(set(want) - set(inputs)), sorted(set(inputs) - set(want))
        if missing:
            raise MissingInputError(
                f"GGUFModel.evaluate: inputs is missing {missing}; the model's inputs: {list(want)}"
            )
        if extra:
            raise UnknownKeyError(
                f"GGUFModel.evaluate: inputs has unknown key(s) {extra}; the model's inputs: {list(want)}"
            )
        for name, v in want.items():
            x = inputs[name]
            if not isinstance(x, np.ndarray):
                raise EvaluationError(
                    f"GGUFModel.evaluate: input {name!r} must be a NumPy array, got {type(x).__name__}"
                )
            if x.dtype != np.float32:
                raise EvaluationError(
                    f"GGUFModel.evaluate: input {name!r} is {x.dtype}; the model computes in "
                    f"float32 (convert it with x.astype(np.float32))"
                )
            if tuple(x.shape) != tuple(v.shape or ()):
                raise ShapeMismatchError(
                    f"GGUFModel.evaluate: input {name!r} has shape {list(x.shape)}, the model "
                    f"was exported for {list(v.shape or ())}"
                )
        outputs, _, _ = self.executable.run({}, inputs, {})
        return outputs


def _executable_of(target: Any) -> GGMLExecutable | None:
    if isinstance(target, GGMLExecutable):
        return target
    for attr in ("executable", "_executable"):
        exe = getattr(target, attr, None)
        if isinstance(exe, GGMLExecutable):
            return exe
    return None


def save_gguf(
    target: Any, path: str | os.PathLike[str], params: dict[str, Any] | None = None, *, quantize: str | None = None
) -> None:
    """Write ``target`` (a GGMLExecutable, an object holding one, or a Graph) and its params to ``path``.

    With a Graph, ``params`` are required and ``quantize`` picks the storage.
    """
    exe = _executable_of(target)
    if exe is None:
        if not isinstance(target, Graph):
            raise GGUFError(f"save_gguf: expected a GGMLExecutable or a Graph, got {type(target).__name__}")
        if params is None:
            raise GGUFError("save_gguf: params are required to save a Graph")
        exe = GGMLExecutable(target, quantize=quantize, n_threads=1)
    if exe.wrt:
        raise GGUFError("save_gguf: export an inference executable (compiled without gradients)")
    if params is not None:
        exe.load_params(params)
    stored = exe.stored_params()
    try:
        graph_json, arrays = graph_to_json(exe.graph)
    except (TypeError, ValueError) as e:
        raise GGUFError(f"save_gguf: the graph cannot be written as JSON: {e}") from e

    g = ggml()
    names = {name: f"p{i}" for i, name in enumerate(stored)}
    plan_doc = [
        {
            "name": name,
            "tensor": names[name],
            "layout": plan.layout,
            "type": plan.type_name,
            "shape": list(plan.shape),
            "stored_shape": list(plan.stored_shape),
        }
        for name, (plan, _) in stored.items()
    ]
    blobs: list[tuple[str, int, tuple[int, ...], np.ndarray]] = []
    for name, (plan, raw) in stored.items():
        blobs.append((names[name], plan.ggml_type, plan.stored_shape, raw))
    for key, arr in arrays.items():
        a = np.ascontiguousarray(arr, dtype=np.float32 if arr.dtype.kind in "fb" else np.int32)
        gtype = g.GGML_TYPE_F32 if a.dtype == np.float32 else g.GGML_TYPE_I32
        blobs.append((key, gtype, a.shape, a.view(np.uint8).reshape(-1)))

    meta = g.ggml_init(
        g.ggml_init_params(mem_size=(len(blobs) + 1) * g.ggml_tensor_overhead(), mem_buffer=None, no_alloc=True)
    )
    gctx = g.gguf_init_empty()
    try:
        g.gguf_set_val_str(gctx, b"general.architecture", b"mithril")
        g.gguf_set_val_u32(gctx, KEY_VERSION.encode(), FORMAT_VERSION)
        g.gguf_set_val_str(gctx, KEY_QUANTIZE.encode(), (exe.quantize or "none").encode())
        g.gguf_set_val_str(gctx, KEY_GRAPH.encode(), graph_json.encode())
        g.gguf_set_val_str(gctx, KEY_PARAMS.encode(), json.dumps(plan_doc).encode())
        checksums = {tname: zlib.crc32(np.ascontiguousarray(raw).view(np.uint8).data) for tname, _, _, raw in blobs}
        g.gguf_set_val_str(gctx, KEY_CHECKSUMS.encode(), json.dumps(checksums).encode())
        for tname, gtype, shape, raw in blobs:
            ne = [int(d) for d in reversed(shape)] or [1]
            t = g.ggml_new_tensor(meta, gtype, len(ne), (ctypes.c_int64 * len(ne))(*ne))
            if g.ggml_nbytes(t) != raw.nbytes:
                raise GGUFError(f"save_gguf: tensor {tname}: {raw.nbytes} bytes, ggml expects {g.ggml_nbytes(t)}")
            g.ggml_set_name(t, tname.encode())
            t.contents.data = raw.ctypes.data  # raw stays alive in blobs until written
            g.gguf_add_tensor(gctx, t)
        if not g.gguf_write_to_file(gctx, os.fsencode(path), False):
            raise GGUFError(f"save_gguf: could not write {os.fspath(path)!r}")
    finally:
        g.gguf_free(gctx)
        g.ggml_free(meta)


def load_gguf(path: str | os.PathLike[str], *, n_threads: int | None = None) -> GGUFModel:
    """Read a file written by :func:`save_gguf` and build a ready-to-run model.

    The header is first read and checked in plain Python (:mod:`mithril.headers`: every length
    and offset against the file's size), so ggml never sees a malformed file; the metadata must be
    Mithril's, and each tensor's bytes must match the CRC-32 written with it. Anything else is a
    :class:`GGUFError`.
    """
    from mithril.headers import HeaderError, read_gguf_header

    g = ggml()
    where = f"load_gguf: {os.fspath(path)!r}"
    fname = os.fsencode(path)
    if not os.path.isfile(fname):
        raise GGUFError(f"load_gguf: no file {os.fspath(path)!r}")
    try:
        header = read_gguf_header(path)
    except HeaderError as e:
        raise GGUFError(f"{where} is not a valid GGUF file: {e}") from None
    except OSError as e:
        raise GGUFError(f"{where} cannot be read: {e}") from None
    if any(t.nbytes is None or t.offset + t.nbytes > header.file_size for t in header.tensors):
        raise GGUFError(f"{where} is truncated or has a tensor of unknown size")
    gctx = g.gguf_init_from_file(fname, g.gguf_init_params(no_alloc=True, ctx=None))
    if not gctx:
        raise GGUFError(f"{where} is not a valid GGUF file")
    try:

        def optional_text(key: str) -> str | None:
            kid = g.gguf_find_key(gctx, key.encode())
            if kid < 0:
                return None
            if g.gguf_get_kv_type(gctx, kid) != g.GGUF_TYPE_STRING:
                raise GGUFError(f"{where}: {key!r} is not a string")
            value: str = g.gguf_get_val_str(gctx, kid).decode("utf-8", errors="replace")
            return value

        def text(key: str) -> str:
            value = optional_text(key)
            if value is None:
                raise GGUFError(f"{where} has no {key!r} (not written by mithril-ggml)")
            return value

        stored = text(KEY_QUANTIZE)
        quantize = None if stored == "none" else stored
        graph_json, params_json, checksums_json = text(KEY_GRAPH), text(KEY_PARAMS), optional_text(KEY_CHECKSUMS)
        base = g.gguf_get_data_offset(gctx)
        tensors: dict[str, tuple[int, int, int]] = {}
        for i in range(g.gguf_get_n_tensors(gctx)):
            name = g.gguf_get_tensor_name(gctx, i).decode()
            tensors[name] = (
                g.gguf_get_tensor_type(gctx, i),
                base + g.gguf_get_tensor_offset(gctx, i),
                g.gguf_get_tensor_size(gctx, i),
            )
    finally:
        g.gguf_free(gctx)
    try:
        plan_doc = json.loads(params_json)
        checksums = json.loads(checksums_json) if checksums_json is not None else None
        doc = json.loads(graph_json)
        if (
            not isinstance(plan_doc, list)
            or not isinstance(doc, dict)
            or not isinstance(doc.get("values"), list)
            or (checksums is not None and not isinstance(checksums, dict))
        ):
            raise ValueError("unexpected structure")
    except ValueError as e:
        raise GGUFError(f"{where}: the Mithril metadata is corrupted ({e})") from None

    def read(name: str) -> tuple[int, np.ndarray]:
        if name not in tensors:
            raise GGUFError(f"{where}: tensor {name!r} is missing")
        gtype, offset, size = tensors[name]
        raw = np.fromfile(fname, dtype=np.uint8, count=size, offset=offset)
        if raw.size != size:
            raise GGUFError(f"{where} is truncated: tensor {name!r} has {raw.size} of its {size} bytes")
        if checksums is not None and checksums.get(name) != zlib.crc32(raw.data):
            raise GGUFError(
                f"{where}: the data of tensor {name!r} is corrupted (its CRC-32 does not match the one written with it)"
            )
        return gtype, raw

    try:
        arrays = {}
        for entry in doc["values"]:
            if "array" in entry:
                gtype, raw = read(entry["array"])
                dtype = np.float32 if gtype == g.GGML_TYPE_F32 else np.int32
                arrays[entry["array"]] = raw.view(dtype).reshape(entry["shape"])
        graph = graph_from_json(graph_json, arrays)
    except GGUFError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise GGUFError(f"{where}: the Mithril graph in the metadata is corrupted ({type(e).__name__}: {e})") from None
    from .backend import GGMLBackend

    backend = GGMLBackend(quantize=quantize, n_threads=n_threads)
    exe = backend.lower(graph, jit=False)
    for entry in plan_doc:
        if not isinstance(entry, dict) or not {"name", "type", "stored_shape", "tensor"} <= set(entry):
            raise GGUFError(f"{where}: the Mithril metadata is corrupted (a param entry {entry!r})")
        plan = exe.weight_plans.get(entry["name"])
        if plan is None or plan.type_name != entry["type"] or list(plan.stored_shape) != entry["stored_shape"]:
            raise GGUFError(
                f"{where}: param {entry['name']!r} is stored as {entry['type']} "
                f"{entry['stored_shape']}, this mithril-ggml plans {plan}"
            )
        gtype, raw = read(entry["tensor"])
        if gtype != plan.ggml_type:
            raise GGUFError(f"{where}: tensor {entry['tensor']!r} has ggml type {gtype}, expected {plan.ggml_type}")
        exe.load_stored_param(entry["name"], raw)
    missing = sorted(set(exe.weight_plans) - {e["name"] for e in plan_doc})
    if missing:
        raise GGUFError(f"{where}: params {missing} are not in the file")
    return GGUFModel(graph, exe, quantize)
