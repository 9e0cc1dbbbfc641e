"""Plugin protocol: a researcher's primitive from an installed distribution; broken plugins isolated."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mithril as ml
from mithril.errors import BackendNotInstalledError, PluginError
from mithril.models import IOKey, Model, PrimitiveBlock

swish_installed = pytest.mark.skipif(
    "swish" not in {i.name for i in ml.plugins.list_plugins()},
    reason="the test plugin distribution tests/plugins/mithril-swish is not installed",
)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


@swish_installed
def test_custom_primitive_from_a_distribution_compiles_evaluates_and_differentiates(numpy64):
    model = Model()
    model |= PrimitiveBlock("swish", beta=1.5)(input=IOKey("w", role="param"), output=IOKey("output"))
    pm = ml.compile(model, numpy64, shapes={"w": [3, 4]})
    w = np.random.default_rng(1).standard_normal((3, 4))
    out = pm.evaluate({"w": numpy64.array(w)})["output"]
    np.testing.assert_allclose(out, w / (1 + np.exp(-1.5 * w)), rtol=1e-12)
    g = np.random.default_rng(2).standard_normal((3, 4))
    _, grads = pm.evaluate({"w": numpy64.array(w)}, {}, {"output": numpy64.array(g)})

    def f(x):
        return np.sum(g * x / (1 + np.exp(-1.5 * x)))

    eps, fd = 1e-6, np.zeros_like(w)
    for i in np.ndindex(w.shape):
        d = np.zeros_like(w)
        d[i] = eps
        fd[i] = (f(w + d) - f(w - d)) / (2 * eps)
    np.testing.assert_allclose(grads["w"], fd, rtol=1e-6, atol=1e-9)


@swish_installed
def test_broken_and_incompatible_plugins_are_reported_and_isolated():
    infos = {i.name: i for i in ml.plugins.list_plugins()}
    assert infos["broken_import"].status == "failed"
    assert "does_not_exist" in infos["broken_import"].reason
    assert infos["too_new"].status == "failed" and "API 99" in infos["too_new"].reason
    assert infos["swish"].status == "loaded"
    assert "numpy" in ml.plugins.backends()  # the rest keeps working
    report = ml.plugins.report()
    assert "broken_import" in report and "failed" in report


@swish_installed
def test_strict_mode_raises_on_a_broken_plugin():
    r = run_python("import mithril as ml; ml.plugins.backends()", MITHRIL_STRICT_PLUGINS="1")
    assert r.returncode != 0 and "PluginError" in r.stderr and "broken_import" in r.stderr


def test_disabled_backend_plugin_says_what_to_install():
    r = run_python(
        """
        import mithril as ml
        try:
            ml.NumpyBackend
        except ml.errors.BackendNotInstalledError as e:
            print("ERR", e)
        """,
        MITHRIL_DISABLE_PLUGINS="numpy",
    )
    assert "ERR" in r.stdout and "disabled" in r.stdout and "MITHRIL_DISABLE_PLUGINS" in r.stdout


def test_backend_not_installed_error_names_the_extra_or_lists_the_installed():
    with pytest.raises(BackendNotInstalledError, match=r"no backend named 'tpu_thing'.*numpy"):
        ml.plugins.plugin_manager().backend_class("tpu_thing")
    r = run_python(
        """
        import mithril as ml
        ml.plugins.backends()
        ml.plugins.plugin_manager()._backends.pop("jax", None)
        ml.plugins.plugin_manager().infos.pop("jax", None)
        try:
            ml.JaxBackend
        except ml.errors.BackendNotInstalledError as e:
            print("ERR", e)
        """
    )
    assert "pip install -c constraints.txt -e packages/mithril-jax" in r.stdout, r.stdout + r.stderr
    assert "mithril[" not in r.stdout, "a bare `pip install mithril[...]` resolves an index's unrelated placeholder"


def test_in_process_plugin_registration_for_notebooks(numpy64):
    from mithril import Primitive
    from mithril.plugins import hookimpl
    from mithril.shapes.symbolic import unify

    def rule(ins, out, attrs):
        unify(ins[0].shape, out.shape)
        return True

    class Cube:
        @hookimpl
        def mithril_register_primitives(self, register):
            register(
                Primitive(
                    "cube_test",
                    ("input",),
                    rule,
                    vjp=lambda b, n, g: [
                        b.emit("mul", g, b.emit("mul", b.const(3.0), b.emit("mul", n.inputs[0], n.inputs[0])))
                    ],
                )
            )

        @hookimpl
        def mithril_register_kernels(self, backend_name, register):
            register("cube_test", lambda x: x * x * x)

    ml.plugins.register(Cube(), name="cube_notebook")
    try:
        m = Model()
        m |= PrimitiveBlock("cube_test")(input=IOKey("w", role="param"), output=IOKey("output"))
        pm = ml.compile(m, ml.NumpyBackend(dtype=ml.float64), shapes={"w": [2]})
        w = np.array([1.0, -2.0])
        _, g = pm.evaluate({"w": w}, {}, {"output": np.ones(2)})
        np.testing.assert_allclose(g["w"], 3 * w**2)
        with pytest.raises(PluginError, match="already registered"):
            ml.plugins.register(Cube(), name="cube_notebook")
    finally:
        ml.plugins.unregister("cube_notebook")
    assert "cube_test" not in ml.primitives.registry


def test_disable_by_name_in_process():
    r = run_python(
        """
        import mithril as ml
        assert "numpy" in ml.plugins.backends()
        ml.plugins.disable("numpy")
        assert "numpy" not in ml.plugins.backends()
        print([i.status for i in ml.plugins.list_plugins() if i.name == "numpy"])
        """
    )
    assert r.returncode == 0, r.stderr
    assert "disabled" in r.stdout


def test_creating_one_backend_imports_no_other_framework():
    """Backends register lazily ("module:Class"): the NumPy backend does not import torch or JAX."""
    r = run_python(
        """
        import sys
        import mithril as ml
        ml.NumpyBackend()
        print(sorted(ml.plugins.backend_names()))
        print("heavy:", [m for m in ("torch", "jax", "ggml") if m in sys.modules])
        """
    )
    assert "heavy: []" in r.stdout, r.stdout + r.stderr
    assert "'numpy'" in r.stdout


def test_lazy_backend_that_fails_to_import_is_reported_with_the_reason():
    from mithril.plugins import hookimpl

    class Lazy:
        MITHRIL_PLUGIN_API = 1

        @hookimpl
        def mithril_register_backends(self, register):
            register("mithril_no_such_module.backend:NoBackend", name="ghost_backend")

    ml.plugins.register(Lazy(), name="lazy_ghost")
    try:
        assert "ghost_backend" in ml.plugins.backend_names()
        with pytest.raises(BackendNotInstalledError, match=r"ghost_backend.*failed to import.*mithril_no_such_module"):
            ml.backend("ghost_backend")
        assert "ghost_backend" not in ml.plugins.backend_names()
        assert "failed to import" in ml.plugins.report()
    finally:
        ml.plugins.unregister("lazy_ghost")


def test_lazy_backend_registration_needs_a_name():
    from mithril.plugins import hookimpl

    class Nameless:
        @hookimpl
        def mithril_register_backends(self, register):
            register("somewhere:Backend")

    with pytest.raises(PluginError, match=r"register\('module:Class', name=\.\.\.\)"):
        ml.plugins.register(Nameless(), name="lazy_nameless")
