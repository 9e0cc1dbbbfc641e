"""A researcher's custom primitive shipped as a plugin (used by Mithril's tests)."""
