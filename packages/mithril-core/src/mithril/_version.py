"""The core distribution's version (its pyproject.toml says the same)."""

__version__ = "0.1.0"
