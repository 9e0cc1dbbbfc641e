"""Readers of the headers of ``.safetensors`` and ``.gguf`` files, in plain Python.

Only the header is read (tensor names, shapes, types, offsets, metadata), never the data, and
every length and offset is checked against the file's size first, so a truncated or corrupted
file is a :class:`HeaderError` that says what is wrong, not a traceback or a huge allocation.
Neither reader needs the safetensors package or ggml.

* safetensors: an 8-byte little-endian header length, then that many bytes of JSON
  (``{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``), then the data.
* GGUF (versions 2 and 3; version 1 predates 64-bit counts and is not read): magic ``GGUF``, version, tensor and key counts, typed key/value metadata,
  then per tensor its name, dimensions (innermost first), ggml type and offset in the aligned data section.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from typing import IO, Any


class HeaderError(Exception):
    """A file is not a valid safetensors / GGUF file (the message says why)."""


@dataclass
class TensorInfo:
    name: str
    dtype: str  # safetensors dtype ("F32") or ggml type name ("Q8_0")
    shape: tuple[int, ...]  # row-major, outermost first (as NumPy and torch write it)
    offset: int  # of the data, from the start of the file
    nbytes: int | None  # None for a ggml type this reader does not know

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class FileHeader:
    path: str
    format: str  # "safetensors" or "gguf"
    file_size: int
    header_size: int
    tensors: list[TensorInfo]
    metadata: dict[str, Any]
    version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------- safetensors
#: safetensors dtype -> bits per element
SAFETENSORS_DTYPES = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

#: safetensors refuses headers above 100 MB; so do we
MAX_SAFETENSORS_HEADER = 100_000_000


def read_safetensors_header(path: str | os.PathLike[str]) -> FileHeader:
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise HeaderError(f"{size} bytes: too short for a safetensors file (an 8-byte header length comes first)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_SAFETENSORS_HEADER:
            raise HeaderError(
                f"the header length field says {n} bytes (more than safetensors allows): "
                f"not a safetensors file, or a corrupted one"
            )
        if 8 + n > size:
            raise HeaderError(f"truncated: the header is {n} bytes, but only {size - 8} bytes follow the length field")
        raw = f.read(n)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HeaderError(f"the header is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise HeaderError(f"the header is JSON {type(doc).__name__}, not an object")
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise HeaderError("__metadata__ is not an object of strings")
    data_start, data_size = 8 + n, size - 8 - n
    tensors = []
    for name, entry in doc.items():
        where = f"tensor {name!r}"
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise HeaderError(f"{where}: expected an object with dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise HeaderError(f"{where}: shape {shape!r} is not a list of non-negative integers")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise HeaderError(f"{where}: data_offsets {offsets!r} is not [begin, end]")
        if offsets[1] > data_size:
            raise HeaderError(f"truncated: {where} ends at byte {offsets[1]} of the data, which has {data_size} bytes")
        nbytes = offsets[1] - offsets[0]
        bits = SAFETENSORS_DTYPES.get(dtype)
        if bits is not None and nbytes * 8 != math.prod(shape) * bits:
            raise HeaderError(
                f"{where}: {dtype} {shape} needs {math.prod(shape) * bits // 8} bytes, data_offsets give {nbytes}"
            )
        tensors.append(TensorInfo(name, str(dtype), tuple(shape), data_start + offsets[0], nbytes))
    tensors.sort(key=lambda t: (t.offset, t.name))
    return FileHeader(path, "safetensors", size, 8 + n, tensors, {str(k): v for k, v in metadata.items()})


# ---------------------------------------------------------------------- GGUF
GGUF_MAGIC = b"GGUF"

#: ggml type id -> (name, elements per block, bytes per block), as in ggml.h
#: (checked against ggml-python 0.0.45 by tests/test_cli.py)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}

#: GGUF metadata value type -> struct format (scalars)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
GGUF_VALUE_TYPES = {
    0: "u8",
    1: "i8",
    2: "u16",
    3: "i16",
    4: "u32",
    5: "i32",
    6: "f32",
    7: "bool",
    8: "string",
    9: "array",
    10: "u64",
    11: "i64",
    12: "f64",
}
MAX_DIMS = 8  # GGML_MAX_DIMS is 4; leave room
MAX_NESTING = 4  # arrays of arrays of ...


class _Reader:
    """Little-endian reads from a file that fail with a HeaderError instead of running short."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.size, self.pos = f, size, 0

    def bytes(self, n: int, what: str) -> bytes:
        if n > self.size - self.pos:
            raise HeaderError(f"truncated: {what} needs {n} bytes at byte {self.pos}, the file has {self.size}")
        data = self.f.read(n)
        if len(data) != n:  # pragma: no cover - the file shrank while being read
            raise HeaderError(f"truncated while reading {what}")
        self.pos += n
        return data

    def scalar(self, fmt: str, what: str) -> Any:
        return struct.unpack("<" + fmt, self.bytes(struct.calcsize(fmt), what))[0]

    def length(self, what: str, item_size: int = 1) -> int:
        n = self.scalar("Q", what)
        if n * item_size > self.size - self.pos:
            raise HeaderError(
                f"corrupted or truncated: {what} is {n} (x {item_size} bytes) at byte {self.pos}, "
                f"only {self.size - self.pos} bytes are left"
            )
        return int(n)

    def string(self, what: str) -> str:
        raw = self.bytes(self.length(f"the length of {what}"), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HeaderError(f"{what} at byte {self.pos - len(raw)} is not UTF-8") from None

    def value(self, vtype: int, what: str, depth: int = 0) -> tuple[Any, str]:
        """A metadata value and its type name (``u32``, ``string``, ``array[string]``...)."""
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype], what), GGUF_VALUE_TYPES[vtype]
        if vtype == _STRING:
            return self.string(what), "string"
        if vtype == _ARRAY:
            etype = self.scalar("I", f"the element type of {what}")
            if depth >= MAX_NESTING:
                raise HeaderError(f"{what}: arrays nested more than {MAX_NESTING} deep (corrupted header)")
            if etype not in _SCALARS and etype not in (_STRING, _ARRAY):
                raise HeaderError(f"{what}: unknown array element type {etype}")
            size = struct.calcsize(_SCALARS[etype]) if etype in _SCALARS else 8
            n = self.length(f"the length of {what}", size)
            if etype in _SCALARS:  # one read for the whole array
                fmt = _SCALARS[etype]
                items = list(struct.unpack(f"<{n}{fmt}", self.bytes(n * struct.calcsize(fmt), what)))
            else:
                items = [self.value(etype, f"{what}[{i}]", depth + 1)[0] for i in range(n)]
            return items, f"array[{GGUF_VALUE_TYPES[etype]}]"
        raise HeaderError(f"{what}: unknown value type {vtype} at byte {self.pos - 4}")


def read_gguf_header(path: str | os.PathLike[str]) -> FileHeader:
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        r = _Reader(f, size)
        magic = r.bytes(4, "the magic number") if size >= 4 else b""
        if magic != GGUF_MAGIC:
            raise HeaderError(f"not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")
        version = r.scalar("I", "the version")
        if version not in (2, 3):
            raise HeaderError(f"GGUF version {version} is not supported (versions 2 and 3 are)")
        n_tensors = r.length("the tensor count", 8)
        n_kv = r.length("the metadata count", 8)
        metadata: dict[str, Any] = {}
        types: dict[str, str] = {}
        for i in range(n_kv):
            key = r.string(f"metadata key {i}")
            vtype = r.scalar("I", f"the type of {key!r}")
            metadata[key], types[key] = r.value(vtype, repr(key))
        raw_tensors = []
        for i in range(n_tensors):
            name = r.string(f"the name of tensor {i}")
            n_dims = r.scalar("I", f"the dimension count of {name!r}")
            if n_dims > MAX_DIMS:
                raise HeaderError(f"tensor {name!r}: {n_dims} dimensions (corrupted header)")
            dims = [r.scalar("Q", f"the dimensions of {name!r}") for _ in range(n_dims)]
            gtype = r.scalar("I", f"the type of {name!r}")
            offset = r.scalar("Q", f"the offset of {name!r}")
            raw_tensors.append((name, dims, gtype, offset))
        alignment = metadata.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise HeaderError(f"general.alignment is {alignment!r}, not a power of two")
        header_size = r.pos
    data_start = (header_size + alignment - 1) // alignment * alignment
    tensors = []
    for name, dims, gtype, offset in raw_tensors:
        shape = tuple(int(d) for d in reversed(dims))  # ggml lists the innermost dimension first
        known = GGML_TYPES.get(gtype)
        type_name = known[0] if known else f"type {gtype}"
        nbytes = None
        if known:
            _, block, block_bytes = known
            numel = math.prod(shape)
            if shape and shape[-1] % block:
                raise HeaderError(
                    f"tensor {name!r}: {type_name} stores rows in blocks of {block}, but a row has "
                    f"{shape[-1]} elements (corrupted header)"
                )
            nbytes = numel // block * block_bytes
        end = data_start + offset + (nbytes or 0)
        if end > size:
            raise HeaderError(f"truncated: tensor {name!r} ends at byte {end}, the file has {size} bytes")
        tensors.append(TensorInfo(name, type_name, shape, data_start + offset, nbytes))
    return FileHeader(
        path, "gguf", size, header_size, tensors, metadata, version, {"alignment": alignment, "metadata_types": types}
    )


# ------------------------------------------------------------------ dispatch
def detect_format(path: str | os.PathLike[str]) -> str:
    """ "gguf" or "safetensors": by the file name, else by the first bytes."""
    path = os.fspath(path)
    if path.endswith(".gguf"):
        return "gguf"
    if path.endswith(".safetensors"):
        return "safetensors"
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    raise HeaderError("neither a safetensors nor a GGUF file (name it .safetensors or .gguf to have it read as one)")


def read_header(path: str | os.PathLike[str]) -> FileHeader:
    fmt = detect_format(path)
    return read_gguf_header(path) if fmt == "gguf" else read_safetensors_header(path)
