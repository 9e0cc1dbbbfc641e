"""A graph as JSON (for GGUF metadata) and back.

Values are numbered; CONST arrays with more than one element are returned
separately (they go into the GGUF file as tensors), scalars stay inline.
Attribute lists come back as tuples, as Mithril's attributes are tuples.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mithril.ir.graph import Graph, Node, Value, ValueRole
from mithril.primitives import registry

FORMAT_VERSION = 1


def _plain(x: Any) -> Any:
    if isinstance(x, (tuple, list)):
        return [_plain(i) for i in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    return x


def _tuples(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_tuples(i) for i in x)
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    return x


def graph_to_json(graph: Graph) -> tuple[str, dict[str, np.ndarray]]:
    """(JSON text, constant arrays by key)."""
    ids: dict[int, int] = {}
    values: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}

    def ref(v: Value) -> int:
        if v.uid in ids:
            return ids[v.uid]
        ids[v.uid] = len(values)
        entry: dict[str, Any] = {
            "role": v.role.value,
            "name": v.name,
            "kind": v.kind,
            "shape": list(v.shape) if v.shape is not None else None,
        }
        if v.role is ValueRole.CONST:
            arr = np.asarray(v.data)
            if arr.size == 1 and arr.ndim == 0:
                entry["data"] = _plain(v.data)
                entry["dtype"] = arr.dtype.name
            else:
                key = f"c{len(arrays)}"
                arrays[key] = arr
                entry["array"] = key
                entry["dtype"] = arr.dtype.name
        values.append(entry)
        return ids[v.uid]

    for table in (graph.inputs, graph.params, graph.state):
        for v in table.values():
            ref(v)
    nodes = []
    for n in graph.nodes:
        ins = [ref(v) for v in n.inputs]
        nodes.append(
            {
                "primitive": n.primitive.name,
                "inputs": ins,
                "attrs": _plain(n.attrs),
                "output": ref(n.output),
                "where": n.where,
            }
        )
    doc = {
        "format": FORMAT_VERSION,
        "values": values,
        "nodes": nodes,
        **{
            key: {k: ref(v) for k, v in getattr(graph, key).items()}
            for key in ("inputs", "params", "state", "outputs", "state_updates")
        },
    }
    return json.dumps(doc), arrays


def graph_from_json(text: str, arrays: dict[str, np.ndarray]) -> Graph:
    doc = json.loads(text)
    if doc.get("format") != FORMAT_VERSION:
        raise ValueError(f"graph format {doc.get('format')!r}, this mithril-ggml reads {FORMAT_VERSION}")
    values: list[Value] = []
    for e in doc["values"]:
        data = None
        if "array" in e:
            data = np.asarray(arrays[e["array"]], dtype=e["dtype"])
        elif "data" in e:
            data = np.asarray(e["data"], dtype=e["dtype"])[()]
        shape = tuple(e["shape"]) if e["shape"] is not None else None
        values.append(Value(ValueRole(e["role"]), name=e["name"], kind=e["kind"], shape=shape, data=data))
    graph = Graph()
    for e in doc["nodes"]:
        out = values[e["output"]]
        node = Node(
            registry.get(e["primitive"]), [values[i] for i in e["inputs"]], _tuples(e["attrs"]), out, e["where"]
        )
        out.producer = node
        graph.nodes.append(node)
    for key in ("inputs", "params", "state", "outputs", "state_updates"):
        getattr(graph, key).update({k: values[i] for k, i in doc[key].items()})
    return graph
