"""Random primitives in the IR: passes never merge, fold or recompute them; streams; lowering.

Where a pass is checked, a control runs the same graph with the ``random`` flag
cleared (``dataclasses.replace``), so the test shows that the flag is what keeps
the node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest

from mithril.backend import Backend
from mithril.errors import ModelBuildError, UnsupportedError
from mithril.ir.graph import Graph, GraphBuilder, Value, ValueRole
from mithril.ir.passes import simplify
from mithril.ir.randomness import SEED_INPUT, is_random, path_stream, stream_ids
from mithril.models import IOKey, Model
from mithril.models.flatten import flatten
from mithril.primitives import CORE_PRIMITIVES, RANDOM_PRIMITIVES, registry


def inp(g: Graph, name: str, shape: Sequence[int]) -> Value:
    v = Value(ValueRole.INPUT, name=name, kind="float", shape=tuple(shape))
    g.inputs[name] = v
    return v


def two_draws(where: tuple[str, str] = ("a.draw", "b.draw")) -> Graph:
    """``first``/``second`` = bernoulli of the same input with the same p, plus two equal ``exp`` nodes."""
    g = Graph()
    x = inp(g, "x", (3, 4))
    for name, path in zip(("first", "second"), where):
        g.outputs[name] = GraphBuilder(g, where=path).emit("bernoulli", x, p=0.5)
    b = GraphBuilder(g, where="e")
    g.outputs["e1"], g.outputs["e2"] = b.emit("exp", x), b.emit("exp", x)
    return g


def without_random_flag(g: Graph) -> Graph:
    for n in g.nodes:
        if n.primitive.random:
            n.primitive = dataclasses.replace(n.primitive, random=False)
    return g


def count(g: Graph, name: str) -> int:
    return sum(n.primitive.name == name for n in g.nodes)


# ------------------------------------------------------------------ definitions
def test_bernoulli_is_random_and_not_a_core_primitive() -> None:
    prim = registry.get("bernoulli")
    assert prim.random and "bernoulli" in RANDOM_PRIMITIVES
    assert not set(RANDOM_PRIMITIVES) & set(CORE_PRIMITIVES)
    assert prim.nondiff == ("like",) and prim.vjp is None


def test_bernoulli_output_is_a_bool_of_the_like_shape() -> None:
    g = two_draws()
    assert g.outputs["first"].kind == "bool" and g.outputs["first"].shape == (3, 4)


@pytest.mark.parametrize("p", [-0.5, 1.01, float("nan"), True, "half"])
def test_bernoulli_rejects_a_p_that_is_not_a_probability(p: object) -> None:
    model = Model()
    with pytest.raises(ModelBuildError, match="p must be a probability"):
        model.call("bernoulli", IOKey("input"), p=p)


# ------------------------------------------------------------------ passes
def test_cse_never_merges_random_nodes() -> None:
    g = simplify.cse(two_draws())
    assert count(g, "bernoulli") == 2 and count(g, "exp") == 1
    assert g.outputs["first"] is not g.outputs["second"]
    control = simplify.cse(without_random_flag(two_draws()))
    assert count(control, "bernoulli") == 1


def test_constant_folding_never_draws_at_compile_time() -> None:
    numpy_backend = pytest.importorskip("mithril_numpy").NumpyBackend()
    g = Graph()
    b = GraphBuilder(g, where="net")
    c = b.const(np.ones((2, 3)))
    g.outputs["mask"] = b.emit("bernoulli", c, p=0.5)
    g.outputs["sum"] = b.emit("add", c, c)
    simplify.fold_constants(g, numpy_backend)
    assert [n.primitive.name for n in g.nodes] == ["bernoulli"]
    assert g.outputs["sum"].role is ValueRole.CONST


def checkpointed_dropout_graph(random: bool) -> tuple[Graph, Graph]:
    """A dropout MLP compiled with gradients, without and with gradient checkpointing."""
    from mithril.models import Dropout, Linear, Relu
    from mithril.physical.pipeline import Options, build_graph, compile_graph

    numpy_backend = pytest.importorskip("mithril_numpy").NumpyBackend()
    model = Model()
    model |= Linear(dimension=6)(input=IOKey("input", shape=[4, 5]))
    for _ in range(3):
        model += Relu()
        model += Dropout(0.5)
        model += Linear(dimension=6)
    out = []
    for ckpt in (False, True):
        graph = build_graph(flatten(model), {}, {})
        if not random:
            without_random_flag(graph)
        out.append(
            compile_graph(
                graph, numpy_backend, Options(gradient_checkpointing=ckpt), cotangent_outputs=("output",)
            ).graph
        )
    return out[0], out[1]


def test_checkpointing_keeps_draws_instead_of_recomputing_them() -> None:
    plain, ckpt = checkpointed_dropout_graph(random=True)
    recomputed = [n for n in ckpt.nodes if n.where.endswith("(recomputed)")]
    assert recomputed, "the graph is long enough to be checkpointed"
    assert not any(n.primitive.random for n in recomputed)
    assert count(ckpt, "bernoulli") == count(plain, "bernoulli") == 3
    _, control = checkpointed_dropout_graph(random=False)
    assert count(control, "bernoulli") > 3


# ------------------------------------------------------------------ streams
def test_each_random_node_gets_a_distinct_stream_from_its_path() -> None:
    g = two_draws()
    streams = stream_ids(g)
    first, second = g.outputs["first"].uid, g.outputs["second"].uid
    assert streams == {first: path_stream("a.draw"), second: path_stream("b.draw")}
    assert streams[first] != streams[second] and all(0 <= s < 2**31 for s in streams.values())
    # a node keeps its stream when another random node is pruned away
    del g.outputs["first"]
    assert stream_ids(simplify.prune(g)) == {second: path_stream("b.draw")}


def test_nodes_sharing_a_path_still_get_distinct_streams() -> None:
    g = two_draws(("same", "same"))
    streams = stream_ids(g)
    assert len(set(streams.values())) == 2
    assert streams[g.outputs["first"].uid] == path_stream("same")


# ------------------------------------------------------------------ lowering
def test_lowered_code_reads_the_seed_only_when_it_draws() -> None:
    numpy_backend = pytest.importorskip("mithril_numpy").NumpyBackend()
    from mithril.codegen.python_source import lower_to_python

    g = two_draws()
    assert is_random(g)
    exe = lower_to_python(g, numpy_backend, jit=False)
    assert f"inputs[{SEED_INPUT!r}]" in exe.source
    assert f"k_bernoulli(random_key(seed, {path_stream('a.draw')}), x, p=0.5)" in exe.source
    x = np.ones((3, 4), np.float32)

    def masks(seed: int) -> tuple[np.ndarray, np.ndarray]:
        out, _, _ = exe.run({}, {"x": x, SEED_INPUT: seed}, {})
        return out["first"], out["second"]

    assert all(np.array_equal(a, b) for a, b in zip(masks(5), masks(5)))
    assert not np.array_equal(masks(5)[0], masks(6)[0]) or not np.array_equal(masks(5)[1], masks(6)[1])

    plain = Graph()
    plain.outputs["e"] = GraphBuilder(plain, where="e").emit("exp", inp(plain, "x", (2,)))
    assert not is_random(plain) and "seed" not in lower_to_python(plain, numpy_backend, jit=False).source


def test_a_backend_without_random_primitives_says_so() -> None:
    numpy_backend = pytest.importorskip("mithril_numpy").NumpyBackend()
    with pytest.raises(UnsupportedError, match="no random primitives"):
        Backend.next_seed(numpy_backend)
    with pytest.raises(UnsupportedError, match="no random primitives"):
        Backend.random_key(numpy_backend, 0, 1)
