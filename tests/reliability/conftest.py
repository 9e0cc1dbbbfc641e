"""Helpers beside the tests of tests/reliability (pytest runs with --import-mode=importlib), and the
figures of the bad-input catalogue and the fuzzer in the terminal summary."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for name in ("catalogue_cases", "fuzz"):
        module = sys.modules.get(name)
        lines = getattr(module, "SUMMARY", None) if module is not None else None
        if lines:
            terminalreporter.write_sep("-", f"tests/reliability: {name}")
            for line in lines():
                terminalreporter.write_line(line)
