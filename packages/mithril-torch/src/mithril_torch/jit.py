"""``torch.compile`` with a clear, warned fallback to eager execution."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch


def _warn_eager(what: str, reason: str) -> None:
    warnings.warn(
        f"TorchBackend: torch.compile is not usable for {what!r} ({reason}); "
        f"running it eagerly instead (correct, but not compiled). Pass jit=False to silence this.",
        RuntimeWarning,
        stacklevel=3,
    )


def compile_with_fallback(
    fn: Callable[..., Any], *, what: str, options: Mapping[str, Any] | None = None
) -> Callable[..., Any]:
    """Wrap ``fn`` with ``torch.compile``; fall back to ``fn`` itself when compiling fails.

    * ``torch.compile`` missing, or raising when wrapping: warn now, return ``fn``.
    * The compiled function raising (compilation happens on the first call, and may
      fail for lack of a C compiler, an unsupported Python, ...): ``fn`` is run
      eagerly on the same arguments. If that succeeds, warn once (``RuntimeWarning``)
      and use ``fn`` from then on; if it fails too, its own error is raised, since the
      fault is then in the call rather than in the compiler.
    """
    compile_ = getattr(torch, "compile", None)
    if compile_ is None:
        _warn_eager(what, f"this torch {torch.__version__} has no torch.compile")
        return fn
    try:
        compiled = compile_(fn, **dict(options or {}))
    except Exception as e:
        _warn_eager(what, f"{type(e).__name__}: {e}")
        return fn

    return CompiledFunction(fn, compiled, what)


class CompiledFunction:
    """A ``torch.compile``d function that switches to eager if the compiled one fails."""

    def __init__(self, fn: Callable[..., Any], compiled: Callable[..., Any], what: str) -> None:
        self.fn = fn
        self.compiled = compiled
        self.what = what
        #: True once compilation failed and ``fn`` runs eagerly
        self.eager = False
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.eager:
            return self.fn(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as compile_error:
            result = self.fn(*args, **kwargs)  # raises the call's own error if the call is at fault
            self.eager = True
            text = str(compile_error).strip()
            _warn_eager(self.what, f"{type(compile_error).__name__}: {text.splitlines()[0] if text else ''}")
            return result
