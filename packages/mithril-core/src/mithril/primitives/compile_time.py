"""Primitives resolved by the compiler itself; they never reach a backend.

* ``identity``: an alias, removed before lowering.
* ``mode_switch(train, eval)``: picks a branch by the compiled mode (BatchNorm, Dropout).
* ``numel(input; axis)``: the number of elements over ``axis``, a float scalar known
  once shapes are concrete (folded to a constant).
"""

from __future__ import annotations

from ..shapes.kinds import bind_kind, unify_kinds
from ..shapes.symbolic import SymShape, unify
from .base import primitive


def _identity_rule(ins, out, attrs) -> bool:
    unify(ins[0].shape, out.shape)
    unify_kinds(ins[0].kind, out.kind)
    return True


def _switch_rule(ins, out, attrs) -> bool:
    for t in ins:
        unify(t.shape, out.shape)
        unify_kinds(t.kind, out.kind)
    return True


def _numel_rule(ins, out, attrs) -> bool:
    unify(out.shape, SymShape.of([]))
    bind_kind(out.kind, "float")
    return True


identity = primitive("identity", ("input",), _identity_rule, vjp=lambda b, n, g: [g], compile_time=True)
mode_switch = primitive("mode_switch", ("train", "eval"), _switch_rule, compile_time=True)
numel = primitive("numel", ("input",), _numel_rule, attrs={"axis": None}, compile_time=True,
                  nondiff=("input",))
