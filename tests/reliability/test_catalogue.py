"""The bad-input catalogue (issue 19): every mistake of :mod:`catalogue_cases`, on every installed
backend where it applies, must raise exactly its Mithril error class with a message naming the block
or terminal and the offending value. Nothing may pass silently, raise a raw exception or abort the
interpreter (cases that could abort run in a child process).

``python tests/reliability/catalogue_cases.py`` prints the table of outcomes without pytest.
"""

from __future__ import annotations

import catalogue_cases as C
import numpy as np
import pytest

RUNS = C.runs()


@pytest.mark.parametrize(("case", "bn"), RUNS, ids=[f"{bn}-{c.id}" for c, bn in RUNS])
def test_bad_input_gives_its_mithril_error(case: C.Case, bn: str) -> None:
    kind, detail = C.outcome_isolated(case, bn) if case.isolate else C.outcome(case, bn)
    C.RESULTS.append((case.id, bn, kind))
    assert kind == "ok", f"{kind}: {detail}"


def test_the_catalogue_is_large_enough() -> None:
    assert len(C.CASES) >= 200
    assert len({c.id for c in C.CASES}) == len(C.CASES)
    assert all(c.needles for c in C.CASES), "every case names what its message must name"


# ------------------------------------------------------------------ correct results instead of errors
def test_a_bfloat16_file_loads_exactly_into_a_numpy_backend() -> None:
    from mithril.io.safetensors import load_params

    be = C.backend("numpy", "float64")
    got = load_params(C.bfloat16_file(), be)["w"]
    want = np.array([1.5, -2.25, 3.0e38, 1.0e-30], np.float32)  # the file holds their top 16 bits
    want = ((want.view(np.uint32) >> 16) << 16).view(np.float32).astype(np.float64)
    np.testing.assert_array_equal(got, want)
    assert load_params(C.bfloat16_file())["w"].dtype == np.float32


@pytest.mark.parametrize("bn", [b for b in ("torch",) if b in C.installed()])
def test_a_bfloat16_file_keeps_its_dtype_where_the_backend_has_it(bn: str) -> None:
    import mithril as ml
    from mithril.io.safetensors import load_params

    got = load_params(C.bfloat16_file(), C.backend(bn), keep_dtypes=True)["w"]
    assert C.backend(bn).dtype_of(got) is ml.bfloat16


@pytest.mark.parametrize("bn", [b for b in C.INDEXED if b in C.installed()])
def test_valid_and_ignored_indices_still_run(bn: str) -> None:
    C.index_model("embedding", bn, [0, 4, 2])
    C.index_model("cross_entropy", bn, [0, 3, -100])  # -100: the default ignore_index
    C.index_model("cross_entropy", bn, [0, 3, 2], ignore_index=None)


@pytest.mark.parametrize("bn", C.installed())
def test_batchnorm_batches_that_are_fine(bn: str) -> None:
    from mithril.models import BatchNorm1d, BatchNorm2d

    C.batchnorm(lambda: BatchNorm2d(3), [1, 3, 2, 2], bn)  # one image of 4 pixels: 4 values per channel
    C.batchnorm(lambda: BatchNorm1d(3), [1, 3], bn, training=False)  # running statistics
    C.batchnorm(lambda: BatchNorm1d(3), [2, 3], bn)


@pytest.mark.skipif("ggml" not in C.installed(), reason="needs mithril-ggml")
def test_a_gguf_file_round_trips_with_its_checksums() -> None:
    model = C.gguf_model()
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    assert np.isfinite(model.evaluate({"input": x})["output"]).all()
