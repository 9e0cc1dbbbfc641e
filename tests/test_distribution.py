"""Wheels: every package builds; Mithril installs from them as the README says and runs a model.

The name ``mithril`` on the public index belongs to an unrelated placeholder; these tests prove an
install from our wheels never needs (or reaches) it: ``constraints.txt`` pins ``mithril==0.1.0``
(and each backend), a version only the local wheelhouse has.

The wheelhouse is built once per session (the ``wheelhouse`` fixture of tests/conftest.py). The
default run installs ``mithril[numpy]`` with the README's command into a fresh environment; the
heavy end-to-end installs (each backend extra with torch, JAX or ggml-python, and the fully
offline wheelhouse) are marked ``nightly`` (``nox -s nightly``, and ``nox -s wheels``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = str(ROOT / "constraints.txt")
#: the README's install from wheels (third-party dependencies from your index, ours only from dist/)
README_INSTALL = 'pip install -c constraints.txt --find-links dist "mithril[numpy]"'
#: the README's fully offline install, from a wheelhouse that also holds the dependencies
README_DOWNLOAD = 'pip download -d dist -c constraints.txt --find-links dist "mithril[numpy]"'
README_OFFLINE = 'pip install --no-index --find-links dist "mithril[numpy]"'


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=900, **kw)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def fresh_env(path: Path) -> str:
    """A new virtual environment without pip (this pip installs into it with --python: seconds faster)."""
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(path)
    return str(path / "bin" / "python")


def pip_install(py: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--disable-pip-version-check", *args]


def metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return z.read(name).decode()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MITHRIL_STRICT_PLUGINS")}


RUN_NUMPY_MODEL = (
    "import mithril as ml, mithril_numpy, numpy as np\n"
    "from mithril.models import Model, Linear, Relu\n"
    "m = Model(); m |= Linear(dimension=4); m += Relu()\n"
    "assert 'numpy' in ml.plugins.backends(), ml.plugins.report()\n"
    "pm = ml.compile(m, ml.NumpyBackend(), shapes={'input': [2, 3]})\n"
    "out = pm.evaluate(pm.randomize_params(), {'input': np.ones((2, 3), np.float32)})\n"
    "assert out['output'].shape == (2, 4)\n"
    "print(ml.__version__, ml.__file__)\n"
)


def test_every_package_builds_a_wheel_with_its_entry_point(wheelhouse):
    wheels = {w.name.split("-")[0]: w for w in wheelhouse.glob("*.whl")}
    assert "mithril" in wheels and "mithril_numpy" in wheels
    for dist, wheel in wheels.items():
        with zipfile.ZipFile(wheel) as z:
            names = z.namelist()
        if dist != "mithril":
            ep = next(n for n in names if n.endswith("entry_points.txt"))
            with zipfile.ZipFile(wheel) as z:
                assert "[mithril]" in z.read(ep).decode()
        assert any(n.endswith("py.typed") for n in names), dist


def test_core_declares_the_backend_extras(wheelhouse):
    meta = metadata(next(wheelhouse.glob("mithril-0*.whl")))
    for extra in ("numpy", "torch", "jax", "ggml", "all"):
        assert f"Provides-Extra: {extra}" in meta
    assert "Requires-Dist: mithril-jax<0.2,>=0.1; extra == 'jax'" in meta


def test_the_readme_gives_the_commands_tested_here():
    readme = (ROOT / "README.md").read_text()
    for command in (README_INSTALL, README_DOWNLOAD, README_OFFLINE):
        assert command in readme, f"README.md no longer says `{command}`: update it and this test together"
    pins = (ROOT / "constraints.txt").read_text().split()
    assert "mithril==0.1.0" in pins and "mithril-numpy==0.1.0" in pins


def test_readme_install_of_mithril_numpy_from_local_wheels(wheelhouse, tmp_path):
    """README: ``pip install -c constraints.txt --find-links dist "mithril[numpy]"`` in a fresh environment."""
    py = fresh_env(tmp_path / "venv")
    run(*pip_install(py, "-c", CONSTRAINTS, "--find-links", str(wheelhouse), "mithril[numpy]"))
    r = run(py, "-c", RUN_NUMPY_MODEL, cwd=str(tmp_path), env=clean_env())
    version, path = r.stdout.split()
    assert version == "0.1.0" and str(tmp_path / "venv") in path
    # the index's placeholder version is not something our wheelhouse (or the pins) can satisfy
    r = subprocess.run(
        pip_install(py, "--no-index", "--find-links", str(wheelhouse), "mithril==0.1.2"), capture_output=True, text=True
    )
    assert r.returncode != 0
    # a plugin depending on mithril>=0.1,<0.2, installed the way docs/plugins.md says, keeps our 0.1.0
    run(
        *pip_install(
            py, "-c", CONSTRAINTS, "--find-links", str(wheelhouse), str(ROOT / "tests" / "plugins" / "mithril-swish")
        )
    )
    r = run(
        py,
        "-W",
        "ignore",
        "-c",
        "import mithril as ml; print(ml.__version__, 'swish' in ml.primitives.registry "
        "or 'swish' in [p for i in ml.plugins.list_plugins() for p in i.primitives])",
        cwd=str(tmp_path),
        env=clean_env(),
    )
    assert r.stdout.split() == ["0.1.0", "True"], r.stdout


@pytest.mark.nightly
def test_fully_offline_install_from_a_wheelhouse_with_the_dependencies(wheelhouse, tmp_path):
    """README: ``pip download`` the dependencies next to our wheels, then install with ``--no-index``."""
    dist = tmp_path / "dist"
    shutil.copytree(wheelhouse, dist)
    run(
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "-d",
        str(dist),
        "-c",
        CONSTRAINTS,
        "--find-links",
        str(dist),
        "mithril[numpy]",
    )
    py = fresh_env(tmp_path / "venv")
    run(*pip_install(py, "--no-index", "--find-links", str(dist), "mithril[numpy]"))
    r = run(py, "-c", RUN_NUMPY_MODEL, cwd=str(tmp_path), env=clean_env())
    assert r.stdout.split()[0] == "0.1.0"


@pytest.mark.nightly
@pytest.mark.parametrize("extra, cls", [("torch", "TorchBackend"), ("jax", "JaxBackend"), ("ggml", "GGMLBackend")])
def test_install_of_each_backend_extra_from_local_wheels(wheelhouse, tmp_path, extra, cls):
    """``pip install -c constraints.txt --find-links dist "mithril[<extra>]"``: torch, JAX or ggml-python from
    the index (pinned), ours from the wheelhouse."""
    if not any(wheelhouse.glob(f"mithril_{extra}-*.whl")):
        pytest.skip(f"mithril-{extra} is not in this repository")
    py = fresh_env(tmp_path / "venv")
    run(*pip_install(py, "-c", CONSTRAINTS, "--find-links", str(wheelhouse), f"mithril[{extra}]"))
    code = (
        "import mithril as ml, numpy as np\n"
        "from mithril.models import Model, Linear\n"
        f"be = ml.{cls}()\n"
        "m = Model(); m |= Linear(dimension=3)\n"
        "pm = ml.compile(m, be, shapes={'input': [2, 4]})\n"
        "out = pm.evaluate(pm.randomize_params(), {'input': be.array(np.ones((2, 4), np.float32))})\n"
        "print(tuple(out['output'].shape), ml.__file__)\n"
    )
    r = run(py, "-c", code, cwd=str(tmp_path), env=clean_env())
    assert r.stdout.startswith("(2, 3)") and str(tmp_path / "venv") in r.stdout
