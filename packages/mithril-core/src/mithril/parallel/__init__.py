"""Parallelism described once: a device mesh with named axes and a layout of the model's arrays.

Backends map the description onto engines that exist: JAX's GSPMD (``Mesh`` +
``NamedSharding`` under one ``jax.jit``) and torch.distributed (DTensor over a
``DeviceMesh``, one process per device under ``torchrun``).
"""

from .layout import Layout, Spec, column_parallel, resolve, row_parallel
from .mesh import DATA_AXIS, MODEL_AXIS, DeviceMesh

__all__ = ["DATA_AXIS", "MODEL_AXIS", "DeviceMesh", "Layout", "Spec", "column_parallel", "resolve", "row_parallel"]
