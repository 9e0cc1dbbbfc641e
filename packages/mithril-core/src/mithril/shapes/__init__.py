"""Symbolic shapes and dtype kinds: the unification every shape rule and model connection uses."""
