"""Mithril's exception hierarchy.

Every error raised for bad user input derives from :class:`MithrilError`, and
its message names the block, the terminal and the shapes involved where they
are known.
"""

from __future__ import annotations


class MithrilError(Exception):
    """Base class of every error Mithril raises on purpose."""


class ModelBuildError(MithrilError):
    """A logical model cannot be built as asked (bad connection, bad name...)."""


class ShapeMismatchError(ModelBuildError):
    """Two shapes that must agree do not."""


class BatchStatisticsError(ShapeMismatchError):
    """A block needs batch statistics (BatchNorm in training mode) of a batch too small to have them."""


class DTypeMismatchError(ModelBuildError):
    """Two dtypes that must agree do not."""


class DuplicateNameError(ModelBuildError):
    """A name is used for two different things in one model."""


class CycleError(ModelBuildError):
    """A connection would make the graph cyclic."""


class UnknownKeyError(MithrilError, KeyError):
    """A key names no terminal, input, parameter or output."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnknownTerminalError(UnknownKeyError, AttributeError):
    """A block has no terminal of that name (``block.inp``); also an AttributeError, so
    ``hasattr``/``getattr(block, name, default)`` keep working."""


class CompileError(MithrilError):
    """A logical model cannot be compiled as asked."""


class ShapeUnknownError(CompileError):
    """A shape that compilation needs is still symbolic."""


class UnsupportedError(CompileError):
    """A backend cannot do what was asked (an op, a keyword, a dtype)."""


class EvaluationError(MithrilError):
    """Arguments to ``evaluate`` do not match the compiled model."""


class MissingInputError(EvaluationError):
    """An input or parameter the model needs was not given."""


class ParamsError(EvaluationError):
    """A params dict has missing or extra keys or wrong shapes."""


class PluginError(MithrilError):
    """A plugin failed to load or is incompatible with this core."""


class BackendNotInstalledError(MithrilError, ImportError):
    """The distribution providing a backend is not installed."""


class BackendLoadError(BackendNotInstalledError, PluginError):
    """A plugin registered a backend lazily (``"module:Class"``) and importing it failed."""


class TrainingError(MithrilError):
    """Training cannot go on as asked (a non-finite loss, a batch that does not fit)."""


class CheckpointError(MithrilError):
    """A checkpoint file is unreadable, corrupted or from another model or optimizer."""


class StateNotReturnedWarning(UserWarning):
    """A model with state (BatchNorm's running statistics) ran in training mode without returning the new state."""


class RecompileWarning(UserWarning):
    """A compiled model or training step was compiled for many shape sets (each costs a full compile)."""


#: compiles of one physical model or training step after which :class:`RecompileWarning` is given
RECOMPILE_WARN_AFTER = 8


def warn_recompiles(what: str, count: int, shapes: object) -> None:
    """Warn once, when ``count`` passes :data:`RECOMPILE_WARN_AFTER`."""
    if count == RECOMPILE_WARN_AFTER + 1:
        import warnings

        warnings.warn(
            f"{what} has been compiled {count} times, once per distinct input shape set (the last: "
            f"{shapes}); give fixed shapes (drop or pad the last partial batch, bucket sequence lengths) "
            f"to avoid a compile per shape",
            RecompileWarning,
            stacklevel=4,
        )
