"""The collector pauses of mithril._gc: the collector is always back on, nothing of the caller's is
frozen or thawed, and the caller's garbage cycles are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

import mithril._gc as mgc
from mithril._gc import gc_paused, gc_paused_long_lived
from mithril.errors import ModelBuildError
from mithril.models import Linear, Model, Relu


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


@pytest.mark.parametrize("pause", [gc_paused, gc_paused_long_lived])
def test_collector_paused_inside_and_on_after(pause) -> None:  # type: ignore[no-untyped-def]
    seen = []
    pause(lambda: seen.append(gc.isenabled()))()
    assert seen == [False] and gc.isenabled()


@pytest.mark.parametrize("pause", [gc_paused, gc_paused_long_lived])
def test_collector_on_after_an_exception(pause) -> None:  # type: ignore[no-untyped-def]
    def boom() -> None:
        raise ValueError("x")

    with pytest.raises(ValueError):
        pause(boom)()
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    gc_paused_long_lived(lambda: None)()
    assert not gc.isenabled()


def test_callers_garbage_cycles_are_collected_not_promoted() -> None:
    """Young garbage of the caller is collected before a builder call moves the young generations."""
    c = _Cycle()
    dead = weakref.ref(c)
    del c
    model = Model()
    model |= Linear(4)  # builder calls
    assert dead() is None


def test_callers_frozen_objects_stay_frozen() -> None:
    gc.collect()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        model = Model()
        model |= Linear(4)
        model += Relu()
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_builder_leaves_nothing_frozen() -> None:
    gc.collect()
    model = Model()
    for _ in range(3):
        model += Linear(4)
        model += Relu()
    assert gc.get_freeze_count() == 0


def test_failed_build_call_restores_the_collector() -> None:
    model = Model()
    model |= Linear(4)
    with pytest.raises(ModelBuildError):
        model |= Linear(4)(input=object())
    assert gc.isenabled()


def test_what_was_frozen_at_import_counts_as_the_interpreters(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython 3.12 starts with immortal tuples in the permanent generation: they must not switch the
    promotion off (simulated here: objects frozen before the baseline was taken)."""
    gc.collect()
    gc.freeze()
    try:
        monkeypatch.setattr(mgc, "_FROZEN_AT_IMPORT", gc.get_freeze_count())
        model = Model()
        model |= Linear(4)
        assert gc.get_freeze_count() == 0  # promoted: the permanent generation was thawed into the oldest
    finally:
        gc.unfreeze()


def test_a_deep_build_runs_no_full_collection() -> None:
    """Building block by block promotes each call's objects unaccounted, so the collector never walks
    the whole process while the model grows (before: several full collections per deep build)."""
    full: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    gc.collect()
    gc.callbacks.append(count)
    try:
        model = Model()
        for _ in range(1000):
            model += Linear(8)
            model += Relu()
    finally:
        gc.callbacks.remove(count)
    assert full == []
    assert len(model._blocks) == 2000
