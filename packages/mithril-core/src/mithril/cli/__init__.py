"""The ``mithril`` command line (also ``python -m mithril``).

Commands, one module each: ``plugins``, ``backends``, ``info``, ``check``, ``summary``, ``compare``.
A user's mistake (a missing file, an unknown backend, a corrupted header) is one line
``mithril: error: ...`` on stderr and exit status 2; never a traceback (``--traceback``
shows one for an internal error). Nothing heavy is imported until a command needs it.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from ._common import CLIError

COMMANDS = ("plugins", "backends", "info", "check", "summary", "compare")


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported as one line (``mithril: error: ...``)."""

    def error(self, message: str) -> NoReturn:
        if message.startswith(("argument COMMAND: invalid choice", "argument command: invalid choice")):
            wrong = message.split("'")[1] if "'" in message else "?"
            message = f"unknown command {wrong!r} (commands: {', '.join(COMMANDS)}; see mithril --help)"
        else:
            message = f"{message} (see {self.prog} --help)"
        raise CLIError(message)


def build_parser() -> argparse.ArgumentParser:
    import mithril

    from . import backends, check, compare, info, plugins, summary

    parser = _Parser(
        prog="mithril",
        description="Mithril's command line: what is installed, whether a backend conforms, what a weights file holds.",
    )
    parser.add_argument("--version", action="version", version=f"mithril {mithril.__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (plugins, backends, info, check, summary, compare):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    traceback = False
    try:
        with warnings.catch_warnings():
            # a plugin that fails to load is a RuntimeWarning in a program; here `mithril plugins` reports it
            warnings.filterwarnings("ignore", message="mithril: ", category=RuntimeWarning)
            parser = build_parser()
            args = parser.parse_args(argv)
            traceback = args.traceback
            if args.command is None:
                parser.print_help()
                return 0
            return int(args.run(args))
    except CLIError as e:
        print(f"mithril: error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("mithril: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mithril plugins | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as e:
        from ..errors import MithrilError

        if traceback:
            raise
        if isinstance(e, MithrilError):  # e.g. a plugin failing in strict mode (MITHRIL_STRICT_PLUGINS=1)
            print(f"mithril: error: {e}", file=sys.stderr)
            return 2
        print(
            f"mithril: internal error: {type(e).__name__}: {e} (run again with --traceback, and report it)",
            file=sys.stderr,
        )
        return 1


__all__ = ["CLIError", "build_parser", "main"]
