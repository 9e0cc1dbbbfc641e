"""Lowering of the graph IR to source code over a backend's kernels."""
