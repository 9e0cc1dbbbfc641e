"""Symbolic shapes: dimensions and variadic tails unified with union-find.

A :class:`SymShape` is ``prefix + [*variadic] + suffix`` where each element
of prefix/suffix is a :class:`Dim` (known int or a symbol) and ``variadic``
stands for any number of dimensions. Unifying two shapes binds symbols;
rules that need concrete numbers (broadcasting of unknown dims, convolution
arithmetic) are :class:`Constraint` objects that wake up when a symbol they
watch gets bound. Every mutation is recorded on a trail so that a failed
connection is rolled back and leaves the model as it was.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

from ..errors import ShapeMismatchError

_ids = itertools.count()


# --------------------------------------------------------------------- trail
_Undo = Callable[[], object] | tuple[object, str, object]


class _Trail:
    """Undo log; active while a :func:`transaction` runs."""

    def __init__(self) -> None:
        # undo records: callbacks (results ignored), or ``(obj, attr, old)`` for ``setattr(obj, attr, old)``
        # (a tuple is cheaper to make than a partial, and attribute writes are most of the records)
        self.frames: list[list[_Undo]] = []

    def record(self, undo: Callable[[], object]) -> None:
        if self.frames:
            self.frames[-1].append(undo)


_trail = _Trail()


class transaction:
    """Context manager: on an exception every shape binding made inside is undone."""

    def __enter__(self) -> transaction:
        _trail.frames.append([])
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        frame = _trail.frames.pop()
        if exc_type is not None:
            _undo(frame)
        elif _trail.frames:
            _trail.frames[-1].extend(frame)


class trial(transaction):
    """A transaction that is always undone: what is learnt inside is read, then forgotten."""

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _queue.clear()
        _undo(_trail.frames.pop())


def _undo(frame: list[_Undo]) -> None:
    for undo in reversed(frame):
        if isinstance(undo, tuple):
            obj, attr, old = undo
            setattr(obj, attr, old)
        else:
            undo()


def _set(obj: object, attr: str, value: object) -> None:
    frames = _trail.frames
    if frames:
        frames[-1].append((obj, attr, getattr(obj, attr)))
    setattr(obj, attr, value)


# ---------------------------------------------------------------- variables
class _Node(Protocol):
    """A union-find node: :class:`Dim`, :class:`Variadic`, :class:`~mithril.shapes.kinds.KindVar`."""

    parent: Self | None


_N = TypeVar("_N", bound=_Node)


def _find(node: _N) -> _N:
    """Union-find root with path compression (recorded on the trail)."""
    root = node.parent
    if root is None:
        return node
    if root.parent is None:  # a root or a child of one: nothing to compress
        return root
    while root.parent is not None:
        root = root.parent
    while node.parent is not None and node.parent is not root:
        nxt = node.parent
        _set(node, "parent", root)
        node = nxt
    return root


class Dim:
    """One dimension: a known int or a symbol (union-find node)."""

    __slots__ = ("parent", "uid", "value", "watchers")

    def __init__(self, value: int | None = None) -> None:
        self.parent: Dim | None = None
        self.value = value
        self.watchers: dict[int, Constraint] | None = None  # by id(constraint), insertion-ordered
        self.uid = next(_ids)

    def find(self) -> Dim:
        return self if self.parent is None else _find(self)

    @property
    def known(self) -> int | None:
        return (self if self.parent is None else _find(self)).value

    def __repr__(self) -> str:
        r = self.find()
        return str(r.value) if r.value is not None else f"d{r.uid}"


class Variadic:
    """Any number of dimensions; bound to a :class:`SymShape` once known."""

    __slots__ = ("binding", "parent", "uid", "watchers")

    def __init__(self) -> None:
        self.parent: Variadic | None = None
        self.binding: SymShape | None = None
        self.watchers: dict[int, Constraint] | None = None  # by id(constraint), insertion-ordered
        self.uid = next(_ids)

    def find(self) -> Variadic:
        return self if self.parent is None else _find(self)

    def __repr__(self) -> str:
        return f"*v{self.find().uid}"


DimLike = int | Dim | None


def as_dim(d: DimLike) -> Dim:
    if isinstance(d, Dim):
        return d
    if d is None:
        return Dim()
    if isinstance(d, bool) or not isinstance(d, int) or d < 0:
        raise ValueError(f"invalid dimension {d!r}")
    return Dim(int(d))


class SymShape:
    """``prefix + [*variadic] + suffix``; ``variadic is None`` means known rank."""

    __slots__ = ("prefix", "suffix", "variadic")

    def __init__(
        self,
        prefix: Iterable[DimLike] = (),
        variadic: Variadic | None = None,
        suffix: Iterable[DimLike] = (),
    ) -> None:
        self.prefix = [as_dim(d) for d in prefix]
        self.variadic = variadic
        self.suffix = [as_dim(d) for d in suffix]
        if variadic is None and self.suffix:
            self.prefix += self.suffix
            self.suffix = []

    # construction helpers
    @classmethod
    def unknown(cls) -> SymShape:
        return _raw([], Variadic(), [])

    @classmethod
    def of(cls, spec: Sequence[DimLike | str] | None, names: dict[str, Dim | Variadic] | None = None) -> SymShape:
        """Build from a spec like ``[None, 3]``, ``["...", "n"]`` (named symbols shared via ``names``)."""
        if spec is None:
            return cls.unknown()
        names = {} if names is None else names
        pre: list[Dim] = []
        suf: list[Dim] = []
        var: Variadic | None = None
        for item in spec:
            if isinstance(item, str) and (item == "..." or item.startswith("*")):
                if var is not None:
                    raise ValueError(f"shape spec {spec!r} has two variadic parts")
                named = names.setdefault(item, Variadic())
                if not isinstance(named, Variadic):
                    raise ValueError(f"shape spec {spec!r}: {item!r} names a dimension, not a variadic part")
                var = named
                continue
            if isinstance(item, str):
                named = names.setdefault(item, Dim())
                if not isinstance(named, Dim):
                    raise ValueError(f"shape spec {spec!r}: {item!r} names a variadic part, not a dimension")
                d = named
            else:
                d = as_dim(item)
            (suf if var is not None else pre).append(d)
        return cls(pre, var, suf)

    # views
    def resolve(self) -> SymShape:
        """Expand bound variadics: the result's variadic (if any) is free."""
        var = self.variadic
        s = SymShape.__new__(SymShape)
        if var is None:
            s.prefix, s.variadic, s.suffix = list(self.prefix), None, []
            return s
        root = var if var.parent is None else _find(var)
        if root.binding is None:
            s.prefix, s.variadic, s.suffix = list(self.prefix), root, list(self.suffix)
            return s
        b = _expand(root)
        return _raw(self.prefix + b.prefix, b.variadic, b.suffix + self.suffix)

    @property
    def rank(self) -> int | None:
        r = _view(self)
        return len(r.prefix) if r.variadic is None else None

    @property
    def min_rank(self) -> int:
        r = _view(self)
        return len(r.prefix) + len(r.suffix)

    def dims(self) -> list[Dim] | None:
        """The dims if the rank is known, else None."""
        r = self.resolve()
        return r.prefix if r.variadic is None else None

    def concrete(self) -> tuple[int, ...] | None:
        r = _view(self)
        if r.variadic is not None:
            return None
        vals: list[int] = []
        for d in r.prefix:
            v = (d if d.parent is None else _find(d)).value
            if v is None:
                return None
            vals.append(v)
        return tuple(vals)

    def free_vars(self) -> list[Dim | Variadic]:
        r = _view(self)
        out: list[Dim | Variadic] = []
        for dims in (r.prefix, r.suffix):
            for d in dims:
                root = d if d.parent is None else _find(d)
                if root.value is None:
                    out.append(root)
        if r.variadic is not None:
            out.append(r.variadic.find())
        return out

    def to_list(self) -> list[object]:
        """A readable form: ints, symbol names and '...'."""
        r = self.resolve()
        items: list[object] = [d.known if d.known is not None else repr(d) for d in r.prefix]
        if r.variadic is not None:
            items.append("...")
            items += [d.known if d.known is not None else repr(d) for d in r.suffix]
        return items

    def __repr__(self) -> str:
        return "[" + ", ".join(str(x) for x in self.to_list()) + "]"


def _expand(root: Variadic) -> SymShape:
    """The fully expanded binding of a bound variadic; long chains are compressed.

    The result may be the binding itself (callers copy its lists before changing them)."""
    b0 = root.binding
    assert b0 is not None
    v0 = b0.variadic
    if v0 is None or (v0.parent is None and v0.binding is None):
        return b0  # one hop, nothing further to expand (the common case)
    pre: list[Dim] = []
    suf: list[Dim] = []
    cur: Variadic | None = root
    hops = 0
    while cur is not None:
        b = cur.binding
        if b is None:
            break
        hops += 1
        pre += b.prefix
        suf = b.suffix + suf
        cur = b.variadic.find() if b.variadic is not None else None
    out = _raw(pre, cur, suf)
    if hops > 1:
        _set(root, "binding", out)
    return out


def _view(s: SymShape) -> SymShape:
    """``s.resolve()`` without copying where nothing is to expand (``s`` itself when its variadic is
    free or absent), for readers that never mutate the lists: the unification below, ``concrete``,
    ``free_vars``. Rules get copies (``resolve``/``dims``)."""
    var = s.variadic
    if var is None:
        return s
    root = var if var.parent is None else _find(var)
    if root.binding is None:
        return s if root is var else _raw(s.prefix, root, s.suffix)
    b = _expand(root)
    return _raw(s.prefix + b.prefix, b.variadic, b.suffix + s.suffix)


def _raw(pre: list[Dim], var: Variadic | None, suf: list[Dim]) -> SymShape:
    s = SymShape.__new__(SymShape)
    s.prefix, s.variadic, s.suffix = pre, var, suf
    if var is None and suf:
        s.prefix = pre + suf
        s.suffix = []
    return s


# --------------------------------------------------------------- constraints
class Constraint:
    """A rule re-run whenever a symbol it watches is bound.

    ``fn()`` returns True once it has done all it can (it is then dropped) and
    False to keep waiting; it raises :class:`ShapeMismatchError` on conflict.
    ``describe()`` names the block for error messages.
    """

    __slots__ = ("done", "fn", "shapes", "where")

    def __init__(self, fn: Callable[[], bool], shapes: Sequence[SymShape], where: object) -> None:
        self.fn = fn
        self.shapes = list(shapes)
        self.where = where
        self.done = False


_queue: deque[Constraint] = deque()
_running = [False]


def _wake(var: Dim | Variadic) -> None:
    if var.watchers:
        alive = [c for c in var.watchers.values() if not c.done]
        if len(alive) != len(var.watchers):
            _set(var, "watchers", {id(c): c for c in alive})
        _queue.extend(alive)


def _merge_watchers(root: Dim | Variadic, child: Dim | Variadic) -> None:
    """Give ``root`` the watchers of ``child`` (just attached under it), the smaller set into the larger.

    Done constraints of the smaller set are dropped. The cost is the smaller set's size, so a symbol
    every layer joins (the batch dim of a deep MLP) no longer costs its whole watcher list per layer:
    copying the merged list for the undo trail made building quadratic in the number of layers.
    """
    small, big = child.watchers, root.watchers
    if not small:
        return
    if big is None or len(big) < len(small):
        _set(root, "watchers", small)  # the child is no longer a root: its watchers are never read again
        small, big = big or {}, small
    added = [(k, c) for k, c in small.items() if k not in big and not c.done]
    if added:
        big.update(added)

        def undo() -> None:
            for k, _ in added:
                big.pop(k)

        _trail.record(undo)


def add_constraint(c: Constraint) -> None:
    """Run ``c`` now and keep it watching its symbols until it is done."""
    _queue.append(c)
    _drain()


def _drain() -> None:
    if _running[0]:
        return
    _running[0] = True
    try:
        while _queue:
            c = _queue.popleft()
            if c.done:
                continue
            try:
                finished = c.fn()
            except ShapeMismatchError as e:
                where = str(c.where)
                shapes = ", ".join(repr(s) for s in c.shapes)
                msg = f"{where}: {e} (terminal shapes: {shapes})" if where and where not in str(e) else str(e)
                raise ShapeMismatchError(msg) from None
            if finished:
                _set(c, "done", True)
            else:
                for v in {id(v): v for s in c.shapes for v in s.free_vars()}.values():
                    watchers = v.watchers
                    if watchers is None:
                        watchers = {}
                        _set(v, "watchers", watchers)
                    if id(c) not in watchers:
                        watchers[id(c)] = c
                        _trail.record(functools.partial(watchers.pop, id(c)))
    except BaseException:
        _queue.clear()
        raise
    finally:
        _running[0] = False


# ----------------------------------------------------------------- unification
def unify_dims(a: Dim, b: Dim) -> None:
    """Make two dims equal (constraints woken run afterwards)."""
    _unify_dims(a, b)
    _drain()


def _unify_dims(a: Dim, b: Dim) -> None:
    ra = a if a.parent is None else _find(a)
    rb = b if b.parent is None else _find(b)
    if ra is rb:
        return
    if ra.value is not None and rb.value is not None:
        if ra.value != rb.value:
            raise ShapeMismatchError(f"dimension {ra.value} != {rb.value}")
        return
    if ra.value is None:
        ra, rb = rb, ra  # keep the known one as root
    # now ra may be known, rb is free
    # something is learnt only if a watched symbol got a value or two watched symbols met (waking the
    # known side's watchers when an unwatched symbol got its value re-ran them forever: a rule that
    # binds a fresh symbol to a known one on every run, as slice does for an unknown length)
    # Only constraints that gain information wake: rb's watchers when rb gets ra's value, and when two
    # free symbols meet, only those watching both (two of their own symbols became equal); a
    # constraint watching one side only sees no change among its symbols. (Waking every watcher of
    # the merged class re-ran all earlier layers' pending rules each time a new layer joined a shared
    # batch dim: quadratic in model size. Waking the known side's watchers when an unwatched symbol
    # got its value re-ran them forever: a rule that binds a fresh symbol on every run, as slice does.)
    if ra.value is not None:
        woken = [c for c in (rb.watchers or {}).values() if not c.done]
    elif rb.watchers and ra.watchers:
        if len(rb.watchers) <= len(ra.watchers):
            woken = [c for k, c in rb.watchers.items() if k in ra.watchers and not c.done]
        else:
            woken = [c for k, c in ra.watchers.items() if k in rb.watchers and not c.done]
    else:
        woken = []
    _set(rb, "parent", ra)
    if ra.value is None:  # a known symbol's watchers never wake again: only free ones inherit them
        _merge_watchers(ra, rb)
    _queue.extend(woken)


def bind_dim(d: Dim, value: int) -> None:
    unify_dims(d, Dim(value))


def _bind_variadic(v: Variadic, shape: SymShape) -> None:
    root = v.find()
    if root.binding is not None:
        _unify_resolved(_view(_raw([], root, [])), _view(shape))
        return
    r = _view(shape)
    if r.variadic is not None and r.variadic.find() is root:
        if r.prefix or r.suffix:
            raise ShapeMismatchError("a shape cannot contain itself (infinite rank)")
        return
    if not r.prefix and not r.suffix and r.variadic is not None:
        other = r.variadic.find()
        learnt = bool(root.watchers) and bool(other.watchers)
        _set(root, "parent", other)
        _merge_watchers(other, root)
        if learnt:
            _wake(other)
    else:
        _set(root, "binding", r)
        _wake(root)


def _unify_when_decidable(a: SymShape, b: SymShape) -> bool:
    ra, rb = _view(a), _view(b)
    if ra.variadic is not None and rb.variadic is not None and ra.variadic.find() is not rb.variadic.find():
        return False
    _unify_resolved(ra, rb)
    return True


def unify(a: SymShape, b: SymShape) -> None:
    """Make two shapes equal or raise :class:`ShapeMismatchError`."""
    ra, rb = _view(a), _view(b)
    try:
        _unify_resolved(ra, rb)
    except ShapeMismatchError as e:
        raise ShapeMismatchError(f"{ra!r} vs {rb!r}: {e}") from None
    _drain()


def _unify_resolved(ra: SymShape, rb: SymShape) -> None:
    # ranks known on both sides
    if ra.variadic is None and rb.variadic is None:
        if len(ra.prefix) != len(rb.prefix):
            raise ShapeMismatchError(f"rank {len(ra.prefix)} != {len(rb.prefix)}")
        for x, y in zip(ra.prefix, rb.prefix):
            _unify_dims(x, y)
        return
    if ra.variadic is None:
        ra, rb = rb, ra
    # ra has a variadic
    assert ra.variadic is not None
    n_pre = min(len(ra.prefix), len(rb.prefix))
    for x, y in zip(ra.prefix[:n_pre], rb.prefix[:n_pre]):
        _unify_dims(x, y)
    if rb.variadic is None:
        body = rb.prefix
        if len(body) < len(ra.prefix) + len(ra.suffix):
            raise ShapeMismatchError(f"rank {len(body)} < {len(ra.prefix) + len(ra.suffix)}")
        for x, y in zip(ra.suffix, body[len(body) - len(ra.suffix) :]):
            _unify_dims(x, y)
        middle = body[len(ra.prefix) : len(body) - len(ra.suffix)]
        _bind_variadic(ra.variadic, _raw(list(middle), None, []))
        return
    # both variadic: align prefixes and suffixes, bind the side with less left
    n_suf = min(len(ra.suffix), len(rb.suffix))
    for x, y in zip(ra.suffix[len(ra.suffix) - n_suf :], rb.suffix[len(rb.suffix) - n_suf :]):
        _unify_dims(x, y)
    a_pre, b_pre = ra.prefix[n_pre:], rb.prefix[n_pre:]
    a_suf, b_suf = ra.suffix[: len(ra.suffix) - n_suf], rb.suffix[: len(rb.suffix) - n_suf]
    if (a_pre and b_pre) or (a_suf and b_suf):  # pragma: no cover - impossible by construction
        raise AssertionError
    if ra.variadic.find() is rb.variadic.find():
        if a_pre or b_pre or a_suf or b_suf:
            raise ShapeMismatchError("a shape cannot contain itself (infinite rank)")
        return
    # ra = a_pre + [*va] + a_suf ; rb = b_pre + [*vb] + b_suf (one of each pair empty)
    if not a_pre and not a_suf:
        _bind_variadic(ra.variadic, _raw(list(b_pre), rb.variadic, list(b_suf)))
    elif not b_pre and not b_suf:
        _bind_variadic(rb.variadic, _raw(list(a_pre), ra.variadic, list(a_suf)))
    else:
        # va + a_suf == b_pre + vb (or mirrored): the fixed parts may overlap, so no single
        # most general answer exists yet; wait until a rank is known
        a_rest, b_rest = _raw(list(a_pre), ra.variadic, list(a_suf)), _raw(list(b_pre), rb.variadic, list(b_suf))
        _queue.append(Constraint(lambda: _unify_when_decidable(a_rest, b_rest), [a_rest, b_rest], ""))
