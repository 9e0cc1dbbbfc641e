"""Sessions: ``demo`` (the main job), ``lint``, ``typecheck``, ``tests``, ``fuzz``, ``bench``, ``docs``, ``wheels``.

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


#: every package's source folder, for import-linter (it reads the files; nothing is installed or imported)
SOURCES = [ROOT / "packages" / "mithril-core" / "src", *(ROOT / "packages" / f"mithril-{b}" / "src" for b in BACKENDS)]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (the rules in ruff.toml), the formatter's check and the import contracts (.importlinter); the tools
    are pinned in constraints.txt and the project is not installed. ``nox -s lint -- --fix`` applies ruff's fixes."""
    session.install(*CONSTRAINTS, "ruff", "import-linter")
    fix = "--fix" in session.posargs
    session.run("ruff", "check", *(["--fix"] if fix else []), str(ROOT))
    session.run("ruff", "format", *([] if fix else ["--check"]), str(ROOT))
    pythonpath = os.pathsep.join(str(p) for p in SOURCES)
    session.run("lint-imports", str(ROOT / ".importlinter"), env={"PYTHONPATH": pythonpath})


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over every package's src/ with mypy.ini (strict); the project and its dependencies are installed so
    that torch, jax, NumPy and pytest (the conformance suite) are checked against their own annotations."""
    install_project(session, "mypy", "pytest>=7")
    session.run("mypy", "--config-file", str(ROOT / "mypy.ini"), *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: the quickstart model on every installed backend (evaluate, gradients, training)."""
    install_project(session)
    session.run("python", str(ROOT / "examples" / "demo.py"), *session.posargs)


#: what the test sessions install besides the project (hatchling: the wheelhouse builds without isolation)
TEST_DEPS = ("pytest>=7", "build", "hatchling>=1.18", "safetensors", "transformers", "optax")
TEST_ENV = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "MITHRIL_TEST_NOX": "1"}


def _pytest(session: nox.Session, marks: str, default: list[str]) -> None:
    install_project(session, *TEST_DEPS)
    session.install(*CONSTRAINTS, "--no-deps", "-e", str(ROOT / "tests" / "plugins" / "mithril-swish"))
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--durations=25",
        "-m",
        marks,
        *(session.posargs or default),
        env=TEST_ENV,
    )


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests of every package, the conformance suite on every backend, docs and seeds; the tests
    marked ``nightly`` (fresh environments, whole-tool runs) are left to ``nox -s nightly``."""
    _pytest(session, "not nightly", ["packages", "tests"])


@nox.session
def nightly(session: nox.Session) -> None:
    """The slow end-to-end tests (marked ``nightly``): installs of every backend extra from built wheels into
    fresh environments, the fully offline wheelhouse, the benchmark runner's smoke run."""
    _pytest(session, "nightly", ["packages", "tests"])


@nox.session
def fuzz(session: nox.Session) -> None:
    """The graph fuzzer (tests/reliability/fuzz.py) over a long batch: every graph forward and backward on
    every installed backend against NumPy float64, GGML inference in float32; prints the failures (with
    their specs; ``--minimise`` shrinks them) and GGML's coverage. ``nox -s fuzz -- --graphs N --seed S``."""
    install_project(session, "safetensors")
    args = session.posargs or ["--graphs", "5000", "--seed", "0"]
    session.run("python", str(ROOT / "tests" / "reliability" / "fuzz.py"), *args, env=TEST_ENV)


@nox.session
def wheels(session: nox.Session) -> None:
    """Build every wheel and install Mithril from them into fresh environments as the README says
    (``mithril[numpy]``, every backend extra, fully offline), each running a model.

    Mithril itself is not installed here: tests/conftest.py imports it only inside fixtures.
    """
    session.install(*CONSTRAINTS, "pytest>=7", "hatchling>=1.18", "numpy")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--durations=25",
        str(ROOT / "tests" / "test_distribution.py"),
        *session.posargs,
    )


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
