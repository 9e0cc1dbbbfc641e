"""Physical models: a logical model compiled for one backend (pipeline, executable, memory, summary)."""
