"""The ``mithril`` pytest plugin (entry point ``pytest11``), loaded wherever Mithril is installed.

It only matters to test modules that use the conformance suite
(:mod:`mithril.testing.conformance`):

* default fixtures: ``mithril_conformance_options`` (``{}``) and
  ``mithril_backend_factory`` (an error that says how to define it); a backend
  package overrides them in its test module or ``conftest.py``;
* when ``mithril_conformance_options`` is parametrized, tests a configuration
  excludes through its ``dtypes``, ``only``, ``blocks`` or ``tests`` keys are deselected
  rather than reported as hundreds of skips.

With plugin autoloading disabled (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), add
``pytest_plugins = ["mithril.testing.pytest_plugin"]`` to the ``conftest.py``.
It imports no Mithril module of its own until a conformance test is collected.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def mithril_conformance_options() -> dict[str, Any]:
    """Options of the conformance suite; override to declare jit, unsupported primitives, ..."""
    return {}


@pytest.fixture
def mithril_backend_factory() -> Any:
    """Override this: a callable ``dtype -> backend instance``."""
    pytest.fail(
        "the Mithril conformance suite needs a fixture named 'mithril_backend_factory' returning a callable "
        "dtype -> backend, e.g.\n\n    @pytest.fixture\n    def mithril_backend_factory():\n"
        "        return lambda dtype: MyBackend(dtype=dtype)\n",
        pytrace=False,
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (
            callspec is None
            or not getattr(getattr(item, "function", None), "mithril_conformance", None)
            or "mithril_conformance_options" not in callspec.params
        ):
            keep.append(item)
            continue
        from .conformance import selected

        params = callspec.params
        kind = item.function.mithril_conformance  # type: ignore[attr-defined]  # set by conformance's tag
        if selected(
            params.get("mithril_case"), params.get("mithril_dtype"), params["mithril_conformance_options"], kind
        ):
            keep.append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
