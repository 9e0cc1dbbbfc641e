"""Wheels: every package builds; ``mithril[numpy]`` installs offline from them and runs a model.

The name ``mithril`` on the public index belongs to an unrelated placeholder;
this test proves an install from our wheels never needs (or reaches) it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["mithril-core", "mithril-numpy", "mithril-torch", "mithril-jax", "mithril-ggml"]


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


#: the core's third-party dependencies (packages/mithril-core/pyproject.toml), from the index
CORE_DEPS = ("numpy", "pluggy", "importlib-metadata", "safetensors", "tqdm")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    pkgs = [str(ROOT / "packages" / p) for p in PACKAGES if (ROOT / "packages" / p / "pyproject.toml").exists()]
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), *pkgs)
    return dist


def metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return z.read(name).decode()


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


def test_offline_install_of_mithril_numpy_from_local_wheels(wheelhouse, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # third-party dependencies may come from the index; ours only from the wheelhouse
    run(*pip, "-c", str(ROOT / "constraints.txt"), *CORE_DEPS)
    run(*pip, "--no-index", "--find-links", str(wheelhouse), "mithril[numpy]")
    code = (
        "import mithril as ml, mithril_numpy, numpy as np\n"
        "from mithril.models import Model, Linear, Relu\n"
        "m = Model(); m |= Linear(dimension=4); m += Relu()\n"
        "assert 'numpy' in ml.plugins.backends(), ml.plugins.report()\n"
        "pm = ml.compile(m, ml.NumpyBackend(), shapes={'input': [2, 3]})\n"
        "out = pm.evaluate(pm.randomize_params(), {'input': np.ones((2, 3), np.float32)})\n"
        "assert out['output'].shape == (2, 4)\n"
        "print(ml.__version__, ml.__file__)\n"
    )
    r = run(py, "-c", code, cwd=str(tmp_path), env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    version, path = r.stdout.split()
    assert version == "0.1.0" and str(env_dir) in path
    # the index's placeholder version is not something our wheelhouse can satisfy
    r = subprocess.run([*pip, "--no-index", "--find-links", str(wheelhouse), "mithril==0.1.2"],
                       capture_output=True, text=True)
    assert r.returncode != 0


@pytest.mark.parametrize("extra, deps, cls", [
    ("torch", ["torch==2.13.0"], "TorchBackend"),
    ("jax", ["jax", "jaxlib"], "JaxBackend"),
    ("ggml", ["ggml-python==0.0.45"], "GGMLBackend"),
])
def test_offline_install_of_each_backend_extra(wheelhouse, tmp_path, extra, deps, cls):
    """``pip install mithril[<extra>]`` from local wheels; the heavy third-party wheels come first."""
    if not any(wheelhouse.glob(f"mithril_{extra}-*.whl")):
        pytest.skip(f"mithril-{extra} is not in this repository")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    py = str(env_dir / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run(*pip, "-c", str(ROOT / "constraints.txt"), *CORE_DEPS, *deps)
    run(*pip, "--no-index", "--find-links", str(wheelhouse), f"mithril[{extra}]")
    code = (
        "import mithril as ml, numpy as np\n"
        "from mithril.models import Model, Linear\n"
        f"be = ml.{cls}()\n"
        "m = Model(); m |= Linear(dimension=3)\n"
        "pm = ml.compile(m, be, shapes={'input': [2, 4]})\n"
        "out = pm.evaluate(pm.randomize_params(), {'input': be.array(np.ones((2, 4), np.float32))})\n"
        "print(tuple(out['output'].shape), ml.__file__)\n"
    )
    r = run(py, "-c", code, cwd=str(tmp_path), env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert r.stdout.startswith("(2, 3)") and str(env_dir) in r.stdout
