"""``mithril check BACKEND``: the conformance suite (:mod:`mithril.testing.conformance`) against a backend.

The suite is a set of pytest tests; this command writes the one-fixture test module a backend
package would have (in a temporary folder, with an empty pytest configuration so that the
current directory's ``conftest.py`` and ``pytest.ini`` play no part), runs pytest on it in this
process, and prints a summary. The options are the backend class's ``conformance_options``
(if it declares them), narrowed by the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from collections import Counter
from typing import Any

from ._common import CLIError

HELP = "run the conformance suite (mithril.testing) against an installed backend"

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

#: what the generated test module reads (set by :func:`run`, in this process)
CURRENT: dict[str, Any] = {}

TEST_MODULE = '''"""Written by `mithril check`: the conformance suite against one backend."""
import pytest

from mithril.cli.check import CURRENT
from mithril.testing.conformance import *  # noqa: F401,F403


@pytest.fixture(params=[CURRENT["options"]], ids=[CURRENT["backend"]])
def mithril_conformance_options(request):
    return request.param


@pytest.fixture
def mithril_backend_factory():
    cls, kwargs = CURRENT["class"], CURRENT["kwargs"]
    return lambda dtype: cls(dtype=dtype, **kwargs)
'''


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help=HELP,
        description=HELP + ": every core primitive (forward and gradients, against an independent NumPy "
        "reference) and the block cases. Exit status 0 only if every selected test passed.",
    )
    p.add_argument("backend", metavar="BACKEND", help="registry name of the backend (see `mithril backends`)")
    p.add_argument(
        "--dtype",
        action="append",
        choices=FLOAT_DTYPES,
        metavar="DTYPE",
        help="float dtype to test (repeatable; default: float32 and float64, as the backend supports)",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="NAMES",
        help="only these primitives, case ids or block case ids, comma-separated (repeatable), "
        "e.g. --only add,matmul,block-cnn",
    )
    p.add_argument(
        "-k",
        dest="keyword",
        metavar="EXPRESSION",
        help="pytest -k expression on the test names, e.g. -k 'forward and not conv'",
    )
    p.add_argument("--device", help="device to make the backend on (e.g. cuda, gpu:0); default: the backend's")
    p.add_argument("--jit", action="store_true", help="compile with jit=True")
    p.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    p.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output, one line per test")
    p.set_defaults(run=run)


class _Tally:
    """A pytest plugin that counts outcomes and keeps the failures."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.failures: list[tuple[str, str]] = []
        self.skips: Counter[str] = Counter()
        self.deselected = 0

    def pytest_deselected(self, items: list[Any]) -> None:
        self.deselected += len(items)

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.counts["error"] += 1
            self.failures.append((report.nodeid or "collection", _message(report)))

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call":
            outcome = "skipped" if report.skipped else "passed" if report.passed else "failed"
        elif report.failed:
            outcome = "error"  # in a fixture (setup) or teardown
        elif report.skipped and report.when == "setup":
            outcome = "skipped"
        else:
            return
        self.counts[outcome] += 1
        if outcome in ("failed", "error"):
            self.failures.append((report.nodeid.rpartition("::")[2], _message(report)))
        elif outcome == "skipped":
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
            self.skips[reason.removeprefix("Skipped: ")] += 1


def _message(report: Any) -> str:
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    joined = " ".join(lines[:4]).removeprefix("mithril.errors.") or "failed"
    return joined if len(joined) <= 300 else joined[:297] + "..."


def _options(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    from ..testing.conformance import DTYPES, ConformanceOptions

    options = dict(getattr(cls, "conformance_options", None) or {})
    supported = [getattr(d, "value", str(d)) for d in getattr(cls, "supported_dtypes", ())]
    if args.dtype:
        bad = [d for d in args.dtype if d not in supported]
        if bad:
            raise CLIError(
                f"backend {args.backend!r} does not support {', '.join(bad)} (it supports {', '.join(supported)})"
            )
        options["dtypes"] = tuple(dict.fromkeys(args.dtype))
    elif "dtypes" not in options:
        options["dtypes"] = tuple(d for d in DTYPES if d in supported) or DTYPES
    if args.only:
        names = {n.strip() for group in args.only for n in group.split(",") if n.strip()}
        known = _case_names()
        unknown = sorted(names - known)
        if unknown:
            raise CLIError(
                f"--only: no primitive, case or block case named {', '.join(unknown)} "
                f"(names are primitive names such as 'add', case ids such as 'conv2d-groups' or "
                f"block case ids such as 'block-cnn')"
            )
        options["only"] = names if options.get("only") is None else set(options["only"]) & names
    if args.jit:
        options["jit"] = True
    try:
        ConformanceOptions.of(options)
    except ValueError as e:
        raise CLIError(f"the conformance options of {cls.__name__} are not valid: {e}") from None
    return options


def _case_names() -> set[str]:
    from ..testing.cases import BLOCK_CASES, PRIMITIVE_CASES

    names = {c.primitive for c in PRIMITIVE_CASES} | {c.id for c in PRIMITIVE_CASES}
    return names | {c.id for c in BLOCK_CASES} | {c.label for c in BLOCK_CASES}


def _pytest_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "error"))]
    text = (errors or lines or ["pytest could not run the suite"])[-1]
    return text.removeprefix("ERROR: ")


def run(args: argparse.Namespace) -> int:
    from ..errors import BackendNotInstalledError
    from ..plugins import plugin_manager

    try:
        cls = plugin_manager().backend_class(args.backend)
    except BackendNotInstalledError as e:
        raise CLIError(str(e)) from None
    try:
        import pytest
    except ImportError:
        raise CLIError(
            "`mithril check` runs the conformance suite with pytest, which is not installed (pip install 'pytest>=7')"
        ) from None
    options = _options(args, cls)
    kwargs: dict[str, Any] = {"device": args.device} if args.device else {}
    if args.device:  # a device the machine lacks is a user error, reported before hundreds of failures
        from ..errors import MithrilError

        try:
            cls(**kwargs)
        except (MithrilError, ValueError, RuntimeError) as e:
            raise CLIError(f"cannot make {cls.__name__}(device={args.device!r}): {e}") from None
    CURRENT.update(backend=args.backend, options=options, **{"class": cls}, kwargs=kwargs)

    tally = _Tally()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mithril-check-") as tmp:
        module = os.path.join(tmp, f"test_conformance_{args.backend}.py")
        with open(module, "w", encoding="utf-8") as f:
            f.write(TEST_MODULE)
        ini = os.path.join(tmp, "pytest.ini")
        with open(ini, "w", encoding="utf-8") as f:
            f.write("[pytest]\n")
        argv = [
            module,
            "-c",
            ini,
            "--rootdir",
            tmp,
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            "-q" if not args.verbose else "-v",
            "--tb=short" if args.verbose else "--tb=no",
            "-W",
            "ignore::RuntimeWarning",
        ]
        if args.keyword:
            argv += ["-k", args.keyword]
        if args.exitfirst:
            argv.append("-x")
        out = io.StringIO()
        if args.verbose:
            status = pytest.main(argv, plugins=[tally])
        else:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                status = pytest.main(argv, plugins=[tally])
    elapsed = time.perf_counter() - t0
    CURRENT.clear()

    if status in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR):
        raise CLIError(f"pytest: {_pytest_error(out.getvalue())}")
    ran = sum(tally.counts[k] for k in ("passed", "failed", "skipped", "error"))
    if status == pytest.ExitCode.NO_TESTS_COLLECTED or ran == 0:
        raise CLIError(f"no conformance test of {args.backend!r} matches the selection (--only / -k / --dtype)")
    print(_render(args.backend, cls, options, tally, elapsed))
    bad = tally.counts["failed"] + tally.counts["error"]
    return 0 if bad == 0 and status in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) else 1


def _render(name: str, cls: type, options: dict[str, Any], tally: _Tally, elapsed: float) -> str:
    c = tally.counts
    dtypes = ", ".join(options.get("dtypes", ()))
    head = (
        f"mithril check {name}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
        + (f", {c['error']} errors" if c["error"] else "")
        + f" in {elapsed:.1f} s ({cls.__name__}, {dtypes}{', jit' if options.get('jit') else ''})"
    )
    lines = [head]
    if tally.failures:
        lines.append("")
        lines.append("failures:")
        lines += [f"  {test}: {message}" for test, message in tally.failures]
    if tally.skips:
        lines.append("")
        lines.append("skipped:")
        for reason, n in tally.skips.most_common(10):
            lines.append(f"  {n:>4} {reason}")
        if len(tally.skips) > 10:
            lines.append(f"       ... and {len(tally.skips) - 10} more reasons")
    lines.append("")
    lines.append("result: " + ("ok" if not (c["failed"] or c["error"]) else "FAILED"))
    return "\n".join(lines)
