"""The conformance suite (mithril.testing) against every installed backend, discovered through the plugins.

Each backend runs eagerly in the float dtypes it supports, with the options its
class declares in ``conformance_options`` (a dict, see
:mod:`mithril.testing.conformance`), if any. Backends named in
:data:`OPT_IN` run only when they declare ``conformance_options``: GGML is an
inference backend still being written, with its own coverage rules.
"""

from __future__ import annotations

from typing import Any

import pytest

import mithril as ml
from mithril.testing.conformance import *  # noqa: F403  (the suite: pytest collects its tests by name)

#: backends that take part only when their class declares ``conformance_options``
OPT_IN = frozenset({"ggml"})

#: cases that abort the whole process on a backend (so they cannot run even as failures), by backend
#: name; the backend's own test_conformance.py declares the same, with the reason
PROCESS_ABORTS: dict[str, dict[str, str]] = {}


def _backends() -> dict[str, type]:
    return dict(sorted(ml.plugins.backends().items()))


def _declared(cls: type) -> dict[str, Any] | None:
    opts = getattr(cls, "conformance_options", None)
    return None if opts is None else dict(opts)


def _configurations() -> list[Any]:
    out = []
    for name, cls in _backends().items():
        declared = _declared(cls)
        if name in OPT_IN and declared is None:
            continue
        opts = dict(declared or {})
        unsupported = opts.get("unsupported") or {}
        if not isinstance(unsupported, dict):
            unsupported = dict.fromkeys(unsupported, "declared unsupported by the backend")
        opts["unsupported"] = {**PROCESS_ABORTS.get(name, {}), **unsupported}
        opts["factory_options"] = {"backend": name, **(opts.get("factory_options") or {})}
        out.append(pytest.param(opts, id=name))
    return out


@pytest.fixture(params=_configurations())
def mithril_conformance_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.param


@pytest.fixture
def mithril_backend_factory(mithril_conformance_options: dict[str, Any]) -> Any:
    kw = dict(mithril_conformance_options["factory_options"])
    cls = _backends()[kw.pop("backend")]
    return lambda dtype: cls(dtype=dtype, **kw)


@pytest.mark.parametrize("name", sorted(OPT_IN))
def test_opt_in_backends_declare_support(name: str) -> None:
    """Report, as a skip, an opt-in backend that is installed but not part of the run."""
    cls = _backends().get(name)
    if cls is None:
        pytest.skip(f"backend {name!r} is not installed")
    if _declared(cls) is None:
        pytest.skip(f"{cls.__name__} does not declare conformance_options; it is not part of the shared run")


def test_every_backend_is_discovered() -> None:
    """The backends shipped with Mithril that are importable are discovered through their entry points."""
    import importlib.util

    found = _backends()
    for name, module in (("numpy", "mithril_numpy"), ("torch", "mithril_torch"), ("jax", "mithril_jax")):
        if importlib.util.find_spec(module) is not None:
            assert name in found, f"{module} is importable but no backend {name!r} is registered: {sorted(found)}"
