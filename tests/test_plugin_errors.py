"""Registration mistakes are PluginErrors that name the distributions, the primitive and the fix.

* a kernel for a primitive no one defines;
* two plugins defining the same primitive, or registering a kernel for the same primitive
  on the same backend (never resolved silently by load order);
* a lazily registered backend whose import fails: the same error, with the reason, on every
  ask, and the plugin's status ``failed``;
* a kernel whose signature does not take Mithril's call ``kernel(*inputs, **attrs)``.

Installed plugins are reported (a ``RuntimeWarning`` with the message) and raise with
``MITHRIL_STRICT_PLUGINS=1``; in-process plugins (your own code) raise at once. The installed
cases run in a subprocess over small distributions written to a temporary folder (a package and
its ``.dist-info`` with an entry point), as pip would install them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mithril as ml
from mithril.errors import BackendLoadError, BackendNotInstalledError, PluginError
from mithril.models import IOKey, Model, PrimitiveBlock
from mithril.plugins import hookimpl

pytest.importorskip("mithril_numpy")

SOFTPLUS_DEF = """
import numpy as np
from mithril import Primitive
from mithril.plugins import hookimpl
from mithril.shapes.symbolic import unify


def _rule(ins, out, attrs):
    unify(ins[0].shape, out.shape)
    return True


SOFTPLUS = Primitive("softplus_t", ("input",), _rule, attrs={"beta": 1.0})


@hookimpl
def mithril_register_primitives(register):
    register(SOFTPLUS)
"""

KERNEL = """
@hookimpl
def mithril_register_kernels(backend_name, register):
    if backend_name == "numpy":
        register({name!r}, lambda x, *, beta: np.logaddexp(0.0, beta * x) / beta)
"""

HEADER = "import numpy as np\nfrom mithril.plugins import hookimpl\n"


def make_dist(site: Path, dist: str, module: str, code: str) -> None:
    """An installed distribution ``dist`` with the module ``module`` as its ``mithril`` entry point."""
    pkg = module.replace("-", "_")
    (site / f"{pkg}.py").write_text(textwrap.dedent(code))
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[mithril]\n{pkg} = {pkg}\n")
    (info / "RECORD").write_text("")


def run_with(site: Path, code: str, strict: bool = False) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        "PYTHONWARNINGS": "always::RuntimeWarning",
    }
    env.pop("MITHRIL_STRICT_PLUGINS", None)
    if strict:  # without the deliberately broken entry points of the test plugin mithril-swish
        env["MITHRIL_STRICT_PLUGINS"] = "1"
        env["MITHRIL_DISABLE_PLUGINS"] = "broken_import,too_new"
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=str(site),
    )


USE_NUMPY = """
import mithril as ml
try:
    ml.NumpyBackend().kernels
except ml.errors.PluginError as e:
    print("PluginError:", e)
else:
    print("OK")
"""


# ------------------------------------------------------------------ (a) kernel for an unknown primitive
def test_kernel_for_an_undefined_primitive_is_reported_and_raises_in_strict_mode(tmp_path: Path) -> None:
    make_dist(tmp_path, "mithril-typo", "mithril_typo", HEADER + KERNEL.format(name="sofmax"))
    r = run_with(tmp_path, USE_NUMPY)
    assert "OK" in r.stdout, r.stdout + r.stderr
    for words in ("mithril_typo", "distribution mithril-typo", "'sofmax'", "did you mean 'softmax'"):
        assert words in r.stderr, r.stderr
    r = run_with(tmp_path, USE_NUMPY, strict=True)
    msg = r.stdout
    assert msg.startswith("PluginError:"), r.stdout + r.stderr
    for words in ("distribution mithril-typo", "primitive 'sofmax'", "backend 'numpy'", "Fix:", "did you mean"):
        assert words in msg, msg


def test_in_process_kernel_for_an_undefined_primitive_raises() -> None:
    class Typo:
        @hookimpl
        def mithril_register_kernels(self, backend_name, register):
            register("sofmax", lambda x, *, axis: x)

    ml.plugins.register(Typo(), name="typo_kernel")
    try:
        with pytest.raises(PluginError, match=r"plugin 'typo_kernel' \(in-process\).*'sofmax'.*did you mean 'softmax'"):
            ml.NumpyBackend().kernels
    finally:
        ml.plugins.unregister("typo_kernel")
    assert "softmax" in ml.NumpyBackend().kernels


# ---------------------------------------------------------------- (b) two plugins, one primitive
def test_two_distributions_defining_one_primitive_name_both(tmp_path: Path) -> None:
    make_dist(tmp_path, "mithril-softplus-a", "softplus_a", SOFTPLUS_DEF)
    make_dist(tmp_path, "mithril-softplus-b", "softplus_b", SOFTPLUS_DEF)
    code = """
    import mithril as ml
    infos = {i.name: i for i in ml.plugins.list_plugins()}
    print("STATUS", infos["softplus_a"].status, infos["softplus_b"].status)
    """
    r = run_with(tmp_path, code)
    assert "STATUS loaded failed" in r.stdout, r.stdout + r.stderr
    for words in (
        "'softplus_t' is defined twice",
        "distribution mithril-softplus-a",
        "distribution mithril-softplus-b",
        "MITHRIL_DISABLE_PLUGINS=softplus_b",
    ):
        assert words in r.stderr, r.stderr
    r = run_with(tmp_path, code, strict=True)
    assert r.returncode != 0 and "PluginError" in r.stderr
    assert "mithril-softplus-a" in r.stderr and "mithril-softplus-b" in r.stderr


def test_two_distributions_registering_a_kernel_for_one_primitive_name_both(tmp_path: Path) -> None:
    make_dist(tmp_path, "mithril-softplus-a", "softplus_a", SOFTPLUS_DEF + KERNEL.format(name="softplus_t"))
    make_dist(tmp_path, "mithril-fast-softplus", "softplus_fast", HEADER + KERNEL.format(name="softplus_t"))
    r = run_with(tmp_path, USE_NUMPY)
    assert "OK" in r.stdout, r.stdout + r.stderr
    for words in (
        "two plugins register a kernel for primitive 'softplus_t' on backend 'numpy'",
        "distribution mithril-softplus-a",
        "distribution mithril-fast-softplus",
        "Fix:",
    ):
        assert words in r.stderr, r.stderr
    r = run_with(tmp_path, USE_NUMPY, strict=True)
    assert r.stdout.startswith("PluginError:") and "mithril-fast-softplus" in r.stdout, r.stdout + r.stderr


def test_a_plugin_cannot_redefine_a_core_primitive() -> None:
    from mithril import Primitive

    class Shadow:
        @hookimpl
        def mithril_register_primitives(self, register):
            register(Primitive("add", ("left", "right"), lambda i, o, a: True))

    with pytest.raises(PluginError, match=r"'add' is defined twice: by the core.*register a kernel for it instead"):
        ml.plugins.register(Shadow(), name="shadow_add")
    assert ml.primitives.registry.origin("add") == "mithril"
    ml.plugins.unregister("shadow_add")


# --------------------------------------------------------- (c) a lazy backend that fails to import
def test_lazy_backend_import_failure_keeps_its_reason_and_status() -> None:
    class Lazy:
        MITHRIL_PLUGIN_API = 1

        @hookimpl
        def mithril_register_backends(self, register):
            register("mithril_no_such_module.backend:NoBackend", name="ghost2")

    ml.plugins.register(Lazy(), name="lazy_ghost2")
    try:
        for _ in range(2):  # the second ask gives the same reason, not "not installed"
            with pytest.raises(BackendLoadError, match=r"plugin 'lazy_ghost2'.*ghost2.*mithril_no_such_module.*Fix:"):
                ml.backend("ghost2")
        info = {i.name: i for i in ml.plugins.list_plugins()}["lazy_ghost2"]
        assert info.status == "failed" and "mithril_no_such_module" in info.reason
        assert "ghost2" in ml.plugins.plugin_manager().backend_failures()
        assert issubclass(BackendLoadError, PluginError) and issubclass(BackendLoadError, BackendNotInstalledError)
    finally:
        ml.plugins.unregister("lazy_ghost2")
    with pytest.raises(BackendNotInstalledError, match="no backend named 'ghost2'"):
        ml.backend("ghost2")


# ---------------------------------------------------------------- (d) kernel signatures
def _softplus_plugin(kernel):
    from mithril import Primitive
    from mithril.shapes.symbolic import unify

    def rule(ins, out, attrs):
        unify(ins[0].shape, out.shape)
        return True

    class Plugin:
        @hookimpl
        def mithril_register_primitives(self, register):
            register(Primitive("softplus_sig", ("input",), rule, attrs={"beta": 1.0}))

        @hookimpl
        def mithril_register_kernels(self, backend_name, register):
            if backend_name == "numpy":
                register("softplus_sig", kernel)

    return Plugin()


def _softplus_model() -> Model:
    m = Model()
    m |= PrimitiveBlock("softplus_sig")(input=IOKey("x"), output=IOKey("output"))
    return m


@pytest.mark.parametrize(
    "kernel",
    [
        lambda x: np.logaddexp(0.0, x),  # no beta
        lambda x, y, *, beta: x,  # a second input softplus_sig does not have
        lambda *, input, beta: input,  # the input as a keyword
    ],
    ids=["missing-attribute", "extra-input", "keyword-input"],
)
def test_a_kernel_with_the_wrong_signature_is_a_plugin_error_before_evaluate(kernel) -> None:
    ml.plugins.register(_softplus_plugin(kernel), name="softplus_sig")
    try:
        with pytest.raises(
            PluginError,
            match=r"plugin 'softplus_sig'.*'softplus_sig' on backend 'numpy' that cannot "
            r"be called.*Fix: write it as kernel\(input, \*, beta\)",
        ):
            ml.compile(_softplus_model(), ml.NumpyBackend(), shapes={"x": [3]})
    finally:
        ml.plugins.unregister("softplus_sig")


def test_a_kernel_with_a_matching_signature_runs() -> None:
    ml.plugins.register(
        _softplus_plugin(lambda x, *, beta=1.0, **_: np.logaddexp(0.0, beta * x) / beta), name="softplus_sig"
    )
    try:
        pm = ml.compile(_softplus_model(), ml.NumpyBackend(dtype=ml.float64), shapes={"x": [3]})
        out = pm.evaluate({}, {"x": np.array([-1.0, 0.0, 2.0])})["output"]
        np.testing.assert_allclose(out, np.logaddexp(0.0, [-1.0, 0.0, 2.0]))
    finally:
        ml.plugins.unregister("softplus_sig")


def test_a_backend_core_kernel_with_the_wrong_signature_names_the_backend_distribution() -> None:
    from mithril_numpy import NumpyBackend

    class Sloppy(NumpyBackend):
        name = "sloppy"
        distribution = "sloppy-backend"

        def core_kernels(self):
            return {**super().core_kernels(), "softmax": lambda x, dim: x}

    with pytest.raises(
        PluginError,
        match=r"Sloppy \(backend 'sloppy', distribution sloppy-backend\).*'softmax'.*"
        r"kernel\(input, \*, axis\)",
    ):
        Sloppy().kernels
