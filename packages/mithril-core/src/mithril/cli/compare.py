"""``mithril compare SPEC``: run one model on several backends and name the first block where they diverge.

``SPEC`` is ``package.module:function``, a function that returns a logical model (the zoo's
constructors with their defaults, or your own), or ``module:name`` of a model object.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._common import CLIError, print_json

HELP = "run one model on several backends; report per block where the results diverge"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("compare", help=HELP, description=HELP + ".")
    p.add_argument("spec", metavar="MODULE:FUNCTION", help="a function returning a model, e.g. mymodels:cnn")
    p.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME=D1,D2,...",
        required=True,
        help="an input's shape (repeat for several inputs)",
    )
    p.add_argument(
        "--backends",
        default=None,
        help="comma-separated backend names (default: every installed backend that trains: numpy, torch, jax)",
    )
    p.add_argument("--dtype", default="float64", help="dtype of every backend (default float64)")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-6)
    p.add_argument("--depth", type=int, default=None, help="blocks nested at most this deep (default all)")
    p.add_argument("--no-grads", action="store_true", help="compare outputs only")
    p.add_argument("--certificate", metavar="FILE", help="also write a JSON certificate (ml.certify)")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(run=run)


def _model(spec: str) -> Any:
    from ..models.block import Block

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"model spec {spec!r} must be MODULE:FUNCTION (e.g. mymodels:cnn)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise CLIError(f"cannot import {module_name!r}: {e}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise CLIError(f"{module_name!r} has no attribute {attr!r}")
    model = obj() if callable(obj) and not isinstance(obj, Block) else obj
    if not isinstance(model, Block):
        raise CLIError(f"{spec} gave a {type(model).__name__}, not a mithril model")
    return model


def _shapes(items: list[str]) -> dict[str, list[int]]:
    shapes = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            raise CLIError(f"--shape {item!r}: expected NAME=D1,D2,... with integer sizes") from None
        if not sep or not name:
            raise CLIError(f"--shape {item!r}: expected NAME=D1,D2,...")
    return shapes


def run(args: Any) -> int:
    import mithril as ml
    from mithril.dtypes import DType

    try:
        dtype = DType(args.dtype)
    except ValueError:
        raise CLIError(f"unknown dtype {args.dtype!r}") from None
    if args.backends:
        names = [b.strip() for b in args.backends.split(",") if b.strip()]
    else:
        names = [b for b in ("numpy", "torch", "jax") if b in ml.plugins.backends()]
    unknown = sorted(set(names) - set(ml.plugins.backends()))
    if unknown:
        raise CLIError(f"backend(s) {unknown} not installed; installed: {sorted(ml.plugins.backends())}")
    model, shapes = _model(args.spec), _shapes(args.shape)
    options = dict(shapes=shapes, rtol=args.rtol, atol=args.atol, grads=not args.no_grads, depth=args.depth)
    result = ml.compare(model, [ml.backend(n, dtype=dtype) for n in names], **options)
    if args.certificate:
        ml.certify(model, [ml.backend(n, dtype=dtype) for n in names], path=args.certificate, **options)
    if args.json:
        print_json({name: [d.__dict__ for d in ds] for name, ds in result.differences.items()})
    else:
        print(result.summary())
        diverging = result.table(only_diverging=True)
        if not result.ok:
            print()
            print(diverging)
    return 0 if result.ok else 1


__all__ = ["add_parser", "run"]
