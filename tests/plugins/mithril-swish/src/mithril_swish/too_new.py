"""A plugin written for a future hook API: must be reported, not loaded."""

MITHRIL_PLUGIN_API = 99


def mithril_register_backends(register):  # pragma: no cover - never called
    raise AssertionError("an incompatible plugin must not be called")
