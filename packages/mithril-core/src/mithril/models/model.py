"""``Model``: a composite block built with ``|=``, ``+=`` and call-style connections.

* ``model |= block`` adds a block; on an empty model its canonical input becomes
  the model's (exposed as ``input``).
* ``model += block`` also chains: the block's canonical input is connected to
  the canonical output of the block added before.
* Terminals attach by name (``Relu()(input="x", output="y")``), by
  :class:`IOKey`, by reference (``other_block.output``) or to a constant.

The model's interface (what a parent or ``compile`` sees): every unconnected
input (data, parameters, state), named outputs nobody consumes, the canonical
output (``output``), and connections exposed with ``IOKey(expose=True)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .._gc import gc_paused_long_lived
from ..errors import (
    CycleError,
    DTypeMismatchError,
    DuplicateNameError,
    ModelBuildError,
    ShapeMismatchError,
    UnknownKeyError,
)
from ..primitives.base import Term, registry
from ..shapes.kinds import bind_kind, unify_kinds
from ..shapes.symbolic import SymShape, transaction, unify
from .block import Block, PrimitiveBlock
from .connections import ROLE_ORDER, Connection, IOKey, TerminalRef, is_constant_like
from .summary import logical_summary

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Self  # typing.Self needs Python 3.11


def _kind_name(block: Block) -> str:
    """Base of automatic block names: the class name, or the primitive's for plain primitive blocks."""
    if type(block) is PrimitiveBlock:
        return block.primitive.name
    return type(block).__name__.lower()


def _is_variadic(primitive: str) -> bool:
    return registry.get(primitive).variadic


class Model(Block):
    """A logical model: blocks and the connections between them."""

    def __init__(self, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self._blocks: list[Block] = []
        self._conns: list[Connection] = []
        self._named: dict[str, Connection] = {}
        self._block_names: set[str] = set()
        self._class_counts: dict[str, int] = {}
        self._cin: Connection | None = None
        self._cout: Connection | None = None
        self._state_updates: list[tuple[Connection, Connection]] = []
        self._iface: dict[str, Connection] | None = None
        self._iface_outputs: set[str] = set()

    # ------------------------------------------------------------ operators
    def __call__(self, **connections: Any) -> Self:
        """Call-style connection of a finished model used as a block (freezes it)."""
        self._freeze()
        return super().__call__(**connections)

    def __ior__(self, block: Block) -> Self:
        self.add(block, chain=False)
        return self

    def __iadd__(self, block: Block) -> Self:
        self.add(block, chain=True)
        return self

    def _binary(self, prim: str, ref: TerminalRef, other: Any, reverse: bool) -> TerminalRef:
        """``prim(ref, other)`` (or reversed) as a new block of this model: arithmetic on terminals."""
        if isinstance(other, TerminalRef) and other.block._parent is not self:
            raise ModelBuildError(f"{ref!r} and {other!r} belong to different models")
        left, right = (other, ref) if reverse else (ref, other)
        block = PrimitiveBlock(prim)(left=left, right=right)
        self.add(block, chain=False)
        return TerminalRef(block, "output")

    def extend(self, block: Block, **connections: Any) -> Model:
        """``model |= block(**connections)``."""
        return self.add(block(**connections) if connections else block, chain=False)

    @gc_paused_long_lived
    def add(self, block: Block, *, chain: bool = False) -> Model:
        """Add ``block``; with ``chain`` its canonical input follows the last output."""
        self._check_mutable()
        if not isinstance(block, Block):
            raise ModelBuildError(f"{self.display_name}: can only add blocks, got {type(block).__name__}")
        if block is self:
            raise CycleError(f"{self.display_name}: a model cannot contain itself")
        if block._parent is not None:
            raise ModelBuildError(
                f"{block} is already part of {block._parent.display_name}; create a new instance "
                f"(each block instance can be added once)"
            )
        local = self._local_name_for(block)
        pending = dict(block._pending or {})
        if isinstance(block, Model):
            block._freeze()
        terminals = block.terminals()
        outputs = set(block.output_terminals())
        bad = sorted(set(pending) - set(terminals))
        if bad:
            raise UnknownKeyError(f"{self.display_name}.{local}: no terminal(s) {bad}; terminals: {terminals}")
        if chain and block.canonical_input and block.canonical_input not in pending and self._cout is not None:
            pending[block.canonical_input] = self._cout

        # resolve targets (no bookkeeping changes yet)
        block._local_name = local
        new_conns: list[Connection] = []
        binding: dict[str, Connection] = {}
        try:
            with transaction():
                for t in terminals:
                    term = block.terminal_term(t)
                    conn = self._resolve(pending.get(t), new_conns, f"{local}.{t}", term)
                    if t in outputs:
                        if conn.producer is not None:
                            pb, pt = conn.producer
                            raise ModelBuildError(
                                f"{self.display_name}: {local}.{t} cannot write to {conn.describe()}, "
                                f"already the output of {pb._local_name}.{pt}"
                            )
                        if conn.is_const:
                            raise ModelBuildError(
                                f"{self.display_name}: {local}.{t} is an output; it cannot be a constant"
                            )
                        if any(b is block for b, _ in conn.consumers) or any(
                            c is conn for tt, c in binding.items() if tt not in outputs
                        ):
                            raise CycleError(f"{self.display_name}: {local}.{t} feeds back into {local}")
                    binding[t] = conn
                    if conn.term is not term:  # a connection made for this terminal shares its term
                        self._unify_terminal(block, local, t, conn)
                if any(binding[t].consumers for t in outputs):
                    self._check_no_cycle(block, binding, outputs, local)
        except BaseException:
            block._local_name = None
            raise

        # commit
        for conn in new_conns:
            self._conns.append(conn)
            if conn.name is not None:
                self._named[conn.name] = conn
        for t in terminals:
            conn = binding[t]
            if t in outputs:
                conn.producer = (block, t)
            else:
                conn.consumers.append((block, t))
        block._binding = binding
        block._parent = self
        block._pending = None
        self._blocks.append(block)
        self._block_names.add(local)
        cls = _kind_name(block)
        if block.name is None:
            self._class_counts[cls] = self._class_counts.get(cls, 0) + 1
        if self._cin is None and block.canonical_input in binding:
            c = binding[block.canonical_input]
            if c.producer is None and not c.is_const:
                self._cin = c
        if block.canonical_output in binding:
            self._cout = binding[block.canonical_output]
        return self

    @gc_paused_long_lived
    def call(self, primitive: str, *inputs: Any, output: Any = None, **attrs: Any) -> TerminalRef:
        """Add one primitive call and return its output: ``h = m.call("matmul", "x", w_ref)``."""
        prim_block = (
            PrimitiveBlock(primitive, n_inputs=len(inputs), **attrs)
            if _is_variadic(primitive)
            else PrimitiveBlock(primitive, **attrs)
        )
        names = prim_block.input_terminals()
        if len(inputs) != len(names):
            raise ModelBuildError(
                f"{self.display_name}: {primitive} takes {len(names)} inputs {names}, got {len(inputs)}"
            )
        conns = dict(zip(names, inputs))
        out_name = prim_block.primitive.output
        if output is not None:
            conns[out_name] = output
        # what ``prim_block(**conns)`` records: the block is new and every key one of its terminals
        prim_block._pending = conns
        self.add(prim_block)
        return TerminalRef(prim_block, out_name)

    # --------------------------------------------------------------- naming
    def _local_name_for(self, block: Block) -> str:
        if block.name is not None:
            if block.name in self._block_names:
                raise DuplicateNameError(f"{self.display_name}: a block named {block.name!r} already exists")
            return block.name
        cls = _kind_name(block)
        n = self._class_counts.get(cls, 0)
        name = f"{cls}_{n}"
        while name in self._block_names:
            n += 1
            name = f"{cls}_{n}"
        return name

    def _check_mutable(self) -> None:
        if self._parent is not None or self._iface is not None:
            where = self._parent.display_name if self._parent is not None else "a compiled or composed model"
            raise ModelBuildError(
                f"{self.display_name} is frozen (used in {where}); build a model completely before using it"
            )

    # ----------------------------------------------------------- resolution
    def _new_conn(self, name: str | None, new_conns: list[Connection], term: Term | None = None) -> Connection:
        c = Connection(self, name, term)
        new_conns.append(c)
        return c

    def _resolve(self, spec: Any, new_conns: list[Connection], where: str, term: Term | None = None) -> Connection:
        """The connection ``spec`` names; one made here for a terminal whose ``term`` is given shares it.

        Sharing the terminal's term instead of unifying a fresh unknown one with it gives the same
        shapes, with no unification, no undo records and fewer objects. Declarations (an IOKey's
        shape or dtype, a constant) are applied to a fresh term, as before, so that a mismatch is
        reported by the terminal check with both shapes.
        """
        if spec is None:
            return self._new_conn(None, new_conns, term)
        if isinstance(spec, Connection):
            if spec.model is not self:
                raise ModelBuildError(f"{self.display_name}: {where}: connection belongs to another model")
            return spec
        if isinstance(spec, str):
            return self._named_conn(spec, new_conns, term)
        if isinstance(spec, TerminalRef):
            if spec.block._parent is not self:
                owner = spec.block._parent.display_name if spec.block._parent else "no model yet"
                raise ModelBuildError(f"{self.display_name}: {where}: {spec!r} belongs to {owner}, not to this model")
            return spec.block._binding[spec.terminal]
        if isinstance(spec, IOKey):
            if spec.shape is not None or spec.kind is not None or spec.value is not None:
                shared = self._declared_on_term(spec, new_conns, where, term)
                if shared is not None:
                    return shared
                term = None
            conn = self._named_conn(spec.name, new_conns, term) if spec.name else self._new_conn(None, new_conns, term)
            self._apply_iokey(conn, spec, where)
            return conn
        if is_constant_like(spec):
            conn = self._new_conn(None, new_conns)
            self._set_constant(conn, spec, where)
            return conn
        raise ModelBuildError(
            f"{self.display_name}: {where}: cannot connect to {type(spec).__name__} "
            f"(use a name, an IOKey, another block's terminal or a constant)"
        )

    def _declared_on_term(
        self, spec: IOKey, new_conns: list[Connection], where: str, term: Term | None
    ) -> Connection | None:
        """A new connection for an IOKey declaring a shape or dtype, sharing the terminal's ``term``
        with the declaration applied to it; None where that does not apply.

        Applying the declaration to the terminal directly saves a fresh term and its unification
        with the terminal (a third of a ``Linear``'s construction, whose weight and bias declare
        shapes). A declaration that does not fit the terminal is rolled back and None returned: the
        caller then applies it to a fresh term as before, and the terminal check reports the mismatch
        with both shapes.
        """
        if term is None or spec.value is not None:
            return None
        if spec.name is not None and (spec.name in self._named or any(c.name == spec.name for c in new_conns)):
            return None  # an existing connection: the terminal check unifies it
        n_new = len(new_conns)
        try:
            with transaction():
                conn = self._new_conn(spec.name, new_conns, term)
                self._apply_iokey(conn, spec, where)
        except (ShapeMismatchError, DTypeMismatchError):
            del new_conns[n_new:]
            return None
        return conn

    def _named_conn(self, name: str, new_conns: list[Connection], term: Term | None = None) -> Connection:
        if name in self._named:
            return self._named[name]
        for c in new_conns:
            if c.name == name:
                return c
        return self._new_conn(name, new_conns, term)

    def _apply_iokey(self, conn: Connection, key: IOKey, where: str) -> None:
        try:
            if key.shape is not None:
                unify(conn.term.shape, SymShape.of(key.shape))
                conn.declared_shapes.append(list(key.shape))
            if key.kind is not None:
                bind_kind(conn.term.kind, key.kind)
                conn.declared_kind = key.kind
        except (ShapeMismatchError, DTypeMismatchError) as e:
            raise type(e)(f"{self.display_name}: {where}: IOKey {key.name!r} declares {key.shape}: {e}") from None
        if key.value is not None:
            self._set_constant(conn, key.value, where)
        if key.expose is not None:
            conn.expose = key.expose
        if key.role is not None and ROLE_ORDER[key.role] > ROLE_ORDER[conn.role]:
            conn.role = key.role
        if key.init is not None:
            conn.init = key.init
        if not key.differentiable:
            conn.differentiable = False

    def _set_constant(self, conn: Connection, value: Any, where: str) -> None:
        if conn.producer is not None:
            raise ModelBuildError(
                f"{self.display_name}: {where}: {conn.describe()} is produced by a block; it cannot also be a constant"
            )
        arr = np.asarray(value)
        conn.value = value if isinstance(value, (int, float, bool)) else arr
        unify(conn.term.shape, SymShape.of(list(arr.shape)))
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            kind = "bool" if arr.dtype == np.bool_ else "int" if arr.dtype.kind in "iu" else "float"
            bind_kind(conn.term.kind, kind)
            conn.declared_kind = kind
        elif isinstance(value, float):
            pass  # Python scalars are weakly typed: they take the kind of what they meet

    def _unify_terminal(self, block: Block, local: str, t: str, conn: Connection) -> None:
        term = block.terminal_term(t)
        try:
            unify(conn.term.shape, term.shape)
            unify_kinds(conn.term.kind, term.kind)
        except ShapeMismatchError as e:
            raise ShapeMismatchError(
                f"{self.display_name}: cannot connect {local}.{t} ({type(block).__name__}, shape "
                f"{term.shape}) to {conn.describe()} (shape {conn.term.shape}): {e}"
            ) from None
        except DTypeMismatchError as e:
            raise DTypeMismatchError(
                f"{self.display_name}: cannot connect {local}.{t} ({type(block).__name__}, dtype "
                f"{term.kind}) to {conn.describe()} (dtype {conn.term.kind}): {e}"
            ) from None

    def _check_no_cycle(self, block: Block, binding: dict[str, Connection], outputs: set[str], local: str) -> None:
        """Depth-first search from the new outputs' consumers back to the block's inputs."""
        targets = {id(binding[t]) for t in binding if t not in outputs}
        stack = [binding[t] for t in outputs]
        seen: set[int] = set()
        while stack:
            c = stack.pop()
            if id(c) in targets:
                raise CycleError(f"{self.display_name}: connecting {local} would create a cycle through {c.describe()}")
            if id(c) in seen:
                continue
            seen.add(id(c))
            for b, _ in c.consumers:
                stack.extend(b._binding[o] for o in b.output_terminals())

    # ---------------------------------------------------------- interface
    def _freeze(self) -> dict[str, Connection]:
        """Compute (once) the terminals this model shows to a parent or to ``compile``."""
        if self._iface is not None:
            return self._iface
        if not self._blocks:
            raise ModelBuildError(f"{self.display_name}: the model is empty")
        iface: dict[str, Connection] = {}
        outs: set[str] = set()

        def put(name: str, c: Connection, is_out: bool) -> None:
            if name in iface and iface[name] is not c:
                raise DuplicateNameError(
                    f"{self.display_name}: the name {name!r} is used by two terminals "
                    f"({iface[name].describe()} and {c.describe()})"
                )
            iface[name] = c
            if is_out:
                outs.add(name)

        sources = [c for c in self._conns if c.producer is None and not c.is_const]
        if self._cin is not None and self._cin in sources:  # canonical input first
            sources.remove(self._cin)
            sources.insert(0, self._cin)
        for c in sources:
            put(self._source_name(c), c, False)
        for c in self._conns:
            if c.producer is None or c.expose is False:
                continue
            if c is self._cout:
                name = c.name or ("output" if "output" not in self._named else None)
                if name is None:
                    b, t = c.producer
                    name = f"{b._local_name}.{t}"
                put(name, c, True)
            elif c.expose or (c.name is not None and not c.consumers):
                put(c.name or self._auto_name(c), c, True)
        self._iface = iface
        self._iface_outputs = outs
        return iface

    def _source_name(self, c: Connection) -> str:
        if c.name is not None:
            return c.name
        if c is self._cin and "input" not in self._named:
            return "input"
        return self._auto_name(c)

    @staticmethod
    def _auto_name(c: Connection) -> str:
        b, t = c.producer if c.producer is not None else c.consumers[0]
        return f"{b._local_name}.{t}"

    def input_terminals(self) -> list[str]:
        iface = self._freeze()
        return [n for n in iface if n not in self._iface_outputs]

    def output_terminals(self) -> list[str]:
        iface = self._freeze()
        return [n for n in iface if n in self._iface_outputs]

    def terminals(self) -> list[str]:
        if self._iface is None and self._parent is None:
            # still being built: named connections and the canonical terminals are addressable
            names = list(self._named)
            return names + [n for n in ("input", "output") if n not in names]
        return super().terminals()

    def terminal_term(self, name: str) -> Term:
        iface = self._freeze()
        try:
            return iface[name].term
        except KeyError:
            raise UnknownKeyError(f"{self.display_name} has no terminal {name!r}; terminals: {list(iface)}") from None

    @property
    def canonical_input(self) -> str | None:  # type: ignore[override]  # a property over Block's class attribute
        if self._cin is None:
            return None
        return self._source_name(self._cin) if self._cin.producer is None else None

    @property
    def canonical_output(self) -> str | None:  # type: ignore[override]  # as canonical_input
        if self._cout is None:
            return None
        iface = self._freeze() if self._iface is not None else None
        if iface is not None:
            for n, c in iface.items():
                if c is self._cout:
                    return n
        return self._cout.name or "output"

    def set_canonical(self, input: str | None = None, output: str | None = None) -> None:
        """Choose which named connections ``+=`` chains from and to."""
        self._check_mutable()
        if input is not None:
            self._cin = self._require_named(input)
        if output is not None:
            self._cout = self._require_named(output)

    def _require_named(self, name: str) -> Connection:
        try:
            return self._named[name]
        except KeyError:
            raise UnknownKeyError(
                f"{self.display_name}: no connection named {name!r}; named: {sorted(self._named)}"
            ) from None

    def update_state(self, state: str, new_value: str | TerminalRef) -> None:
        """Declare that, in training mode, ``new_value`` replaces state ``state`` after a call."""
        self._check_mutable()
        s = self._require_named(state)
        n = (
            self._require_named(new_value)
            if isinstance(new_value, str)
            else self._resolve(new_value, [], "update_state")
        )
        if s.role != "state":
            raise ModelBuildError(f"{self.display_name}: {state!r} is not declared as state")
        self._state_updates.append((s, n))

    # ------------------------------------------------------------ reading
    @property
    def blocks(self) -> list[Block]:
        return list(self._blocks)

    def iter_blocks(self) -> Iterator[tuple[str, Block]]:
        """Every block at any depth with its dotted path (iterative, no recursion)."""
        stack: list[tuple[str, Block]] = [(b._local_name or "", b) for b in reversed(self._blocks)]
        while stack:
            path, b = stack.pop()
            yield path, b
            if isinstance(b, Model):
                stack.extend((f"{path}.{c._local_name}", c) for c in reversed(b._blocks))

    def connection(self, name: str) -> TerminalRef | Connection:
        return self._require_named(name)

    def shapes(self) -> dict[str, list[object]]:
        """Symbolic shapes of the interface terminals (freezes nothing while building)."""
        if self._iface is None and self._parent is None:
            out = {n: c.term.shape.to_list() for n, c in self._named.items()}
            if self._cin is not None and self._cin.name is None:
                out.setdefault("input", self._cin.term.shape.to_list())
            if self._cout is not None and self._cout.name is None:
                out.setdefault("output", self._cout.term.shape.to_list())
            return out
        return super().shapes()

    def __repr__(self) -> str:
        return f"Model({self.display_name!r}, {len(self._blocks)} blocks)"

    def summary(self) -> str:
        """Blocks and their symbolic terminal shapes."""
        return logical_summary(self)
