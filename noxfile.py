"""Sessions: ``demo`` (the main job), ``tests``, ``bench``, ``docs``, ``wheels``.

Every install uses ``constraints.txt``; our packages are installed by path,
never resolved from an index (the name ``mithril`` there is someone else's).
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
BACKENDS = ["numpy", "torch", "jax", "ggml"]
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _backends() -> list[str]:
    """Backends to install: all, or those named in MITHRIL_BACKENDS=numpy,torch."""
    names = os.environ.get("MITHRIL_BACKENDS")
    wanted = [b.strip() for b in names.split(",")] if names else BACKENDS
    return [b for b in wanted if (ROOT / "packages" / f"mithril-{b}" / "pyproject.toml").exists()]


def install_project(session: nox.Session, *extra: str) -> None:
    """The core and every backend package, editable, by path, with the constraints."""
    paths = ["-e", str(ROOT / "packages" / "mithril-core")]
    for b in _backends():
        paths += ["-e", str(ROOT / "packages" / f"mithril-{b}")]
    session.install(*CONSTRAINTS, *paths, *extra)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: the quickstart model on every installed backend (evaluate, gradients, training)."""
    install_project(session)
    session.run("python", str(ROOT / "examples" / "demo.py"), *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests of every package, the conformance suite on every backend, docs and seeds."""
    install_project(session, "pytest>=7", "build", "safetensors", "transformers", "optax")
    session.install(*CONSTRAINTS, "--no-deps", "-e", str(ROOT / "tests" / "plugins" / "mithril-swish"))
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=10",
        *(session.posargs or ["packages", "tests"]),
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "MITHRIL_TEST_NOX": "1"},
    )


@nox.session
def wheels(session: nox.Session) -> None:
    """Build every wheel, install ``mithril[numpy]`` offline from them, run a model."""
    session.install(*CONSTRAINTS, "build", "pytest>=7", "numpy", "pluggy", "importlib-metadata", "safetensors", "tqdm")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_distribution.py"),
                env={"MITHRIL_DISTRIBUTION_TEST": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against hand-written native code; ``nox -s bench -- --quick`` for a smoke run."""
    install_project(session)
    session.run("python", str(ROOT / "benchmarks" / "run.py"), *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (MkDocs) into site/."""
    install_project(session, "mkdocs>=1.5")
    session.run("mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(ROOT / "site"))
