"""Recurrent composites ``lstm`` and ``gru``, with torch.nn.LSTM / torch.nn.GRU semantics.

Both are variadic: ``inputs = [input, (h0, c0 | h0 if initial_state), *weights]``
with the weights in torch's order (:func:`weight_names`). ``input`` is
``[N, T, I]`` (``batch_first``) or ``[T, N, I]``; the results (attribute
``result``) are ``output [.., D*R]``, ``h_n [D*L, N, R]`` and, for LSTM,
``c_n [D*L, N, H]``, where ``D`` is 2 when bidirectional, ``L`` the number of
layers and ``R`` the hidden size (LSTM's ``proj_size`` when set).

They are composites: once shapes are concrete each layer and direction expands into
one ``scan`` over the time axis (:mod:`mithril.primitives.control_flow`) whose body is
one step of primitives (``matmul``, ``slice``, ``sigmoid``...), so the graph, the
generated code and the compile time do not grow with the sequence length, and the
gradient is a reverse ``scan``. The input projection of all time steps is one matmul
per layer and direction, outside the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from ..errors import ShapeMismatchError
from ..shapes.kinds import bind_kind, unify_kinds
from ..shapes.rules import with_rank
from ..shapes.symbolic import Dim, unify_dims
from .base import REQUIRED, Term, primitive

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value


@dataclass(frozen=True)
class Layout:
    """Sizes and weight names of one recurrent primitive call, from its attributes."""

    mode: str  # 'lstm' or 'gru'
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    bidirectional: bool
    initial_state: bool
    proj_size: int

    @classmethod
    def of(cls, mode: str, attrs: Mapping[str, Any]) -> Layout:
        return cls(
            mode,
            attrs["hidden_size"],
            attrs["num_layers"],
            attrs["bias"],
            attrs["batch_first"],
            attrs["bidirectional"],
            attrs["initial_state"],
            attrs.get("proj_size", 0),
        )

    @property
    def gates(self) -> int:
        return 4 if self.mode == "lstm" else 3

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def out_size(self) -> int:
        """Size of ``h`` per direction: ``proj_size`` when set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @property
    def states(self) -> tuple[str, ...]:
        if not self.initial_state:
            return ()
        return ("h0", "c0") if self.mode == "lstm" else ("h0",)

    def suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def weight_names(self) -> list[str]:
        return weight_names(self.mode, self.num_layers, self.bidirectional, self.bias, self.proj_size)

    def input_names(self) -> list[str]:
        return ["input", *self.states, *self.weight_names()]


def weight_names(mode: str, num_layers: int, bidirectional: bool, bias: bool, proj_size: int = 0) -> list[str]:
    """torch's parameter names, in its order: ``weight_ih_l0, weight_hh_l0, bias_ih_l0, ...``."""
    names = []
    for layer in range(num_layers):
        for d in range(2 if bidirectional else 1):
            s = f"_l{layer}" + ("_reverse" if d else "")
            names += [f"weight_ih{s}", f"weight_hh{s}"]
            if bias:
                names += [f"bias_ih{s}", f"bias_hh{s}"]
            if proj_size:
                names.append(f"weight_hr{s}")
    return names


@overload
def weight_shape(layout: Layout, name: str, input_size: int | None) -> list[int | None]: ...
@overload
def weight_shape(layout: Layout, name: str, input_size: int | Dim | None) -> list[int | Dim | None]: ...
def weight_shape(layout: Layout, name: str, input_size: int | Dim | None) -> list[Any]:
    """Shape of the weight ``name`` (``input_size`` is the size of the input's last axis)."""
    g, h, r = layout.gates * layout.hidden_size, layout.hidden_size, layout.out_size
    layer = int(name.split("_l")[1].split("_")[0])
    if name.startswith("weight_ih"):
        return [g, input_size if layer == 0 else layout.directions * r]
    if name.startswith("weight_hh"):
        return [g, r]
    if name.startswith("weight_hr"):
        return [layout.proj_size, h]
    return [g]


# ------------------------------------------------------------------ shape rule
def _shape_rule(mode: str) -> Callable[[Sequence[Term], Term, Mapping[str, Any]], bool]:
    def rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
        lay = Layout.of(mode, attrs)
        names = lay.input_names()
        if len(ins) != len(names):
            raise ShapeMismatchError(
                f"{mode} with these attributes takes {len(names)} inputs ({', '.join(names)}), got {len(ins)}"
            )
        for term in ins:
            bind_kind(term.kind, "float")
            unify_kinds(term.kind, out.kind)
        x = _expect(ins[0], "input", [None, None, None], "[N, T, I]" if lay.batch_first else "[T, N, I]")
        n, steps, i = x if lay.batch_first else (x[1], x[0], x[2])
        dl, r, h = lay.directions * lay.num_layers, lay.out_size, lay.hidden_size
        terms = dict(zip(names, ins))
        if lay.initial_state:
            _expect(terms["h0"], "h0", [dl, n, r])
            if mode == "lstm":
                _expect(terms["c0"], "c0", [dl, n, h])
        for name in lay.weight_names():
            _expect(terms[name], name, weight_shape(lay, name, i))
        result = attrs["result"]
        want: list[int | Dim | None]
        if result == "output":
            want = [n, steps, lay.directions * r] if lay.batch_first else [steps, n, lay.directions * r]
        else:
            want = [dl, n, r if result == "h_n" else h]
        _expect(out, result, want)
        return True

    return rule


def _expect(term: Term, name: str, dims: list[int | Dim | None], spec: str | None = None) -> list[Dim]:
    """Unify ``term`` with ``dims``; a mismatch names the terminal and both shapes."""
    want = [d if isinstance(d, Dim) else Dim(d) for d in dims]
    try:
        have = with_rank(term.shape, len(dims))
        for a, b in zip(have, want):
            unify_dims(a, b)
    except ShapeMismatchError:
        readable = spec or "[" + ", ".join(str(d.known) if d.known is not None else "?" for d in want) + "]"
        raise ShapeMismatchError(f"{name} must be {readable}, got {term.shape}") from None
    return have


# ------------------------------------------------------------------ expansion
@dataclass
class _Direction:
    """One layer in one direction: its weights, already transposed for ``h @ W.T``."""

    w_ih_t: Value
    w_hh_t: Value
    bias_x: Value | None  # added to the input projection (LSTM: b_ih + b_hh; GRU: b_ih)
    bias_h: Value | None  # added to the hidden projection (GRU: b_hh, as b_hn must stay inside r * (...))
    w_hr_t: Value | None


def _t(b: GraphBuilder, w: Value) -> Value:
    return b.emit("transpose", w, axes=(1, 0))


def _direction(b: GraphBuilder, lay: Layout, w: Mapping[str, Value], s: str) -> _Direction:
    bias_x = bias_h = None
    if lay.bias:
        if lay.mode == "lstm":
            bias_x = b.emit("add", w[f"bias_ih{s}"], w[f"bias_hh{s}"])
        else:
            bias_x, bias_h = w[f"bias_ih{s}"], w[f"bias_hh{s}"]
    w_hr = w.get(f"weight_hr{s}")
    return _Direction(
        _t(b, w[f"weight_ih{s}"]), _t(b, w[f"weight_hh{s}"]), bias_x, bias_h, _t(b, w_hr) if w_hr is not None else None
    )


def _columns(b: GraphBuilder, x: Value, index: int, size: int) -> Value:
    """``x[:, index*size:(index+1)*size]`` of a ``[N, k*size]`` value."""
    return b.emit("slice", x, starts=(None, index * size), stops=(None, (index + 1) * size), steps=(None, None))


def _row(b: GraphBuilder, x: Value, index: int) -> Value:
    """``x[index]`` of a rank-3 value."""
    part = b.emit("slice", x, starts=(index,), stops=(index + 1,), steps=(None,))
    return b.emit("reshape", part, shape=x.known_shape[1:])


def _stack(b: GraphBuilder, values: list[Value]) -> Value:
    """Stack values of equal shape along a new leading axis."""
    rows = [b.emit("reshape", v, shape=(1, *v.known_shape)) for v in values]
    return rows[0] if len(rows) == 1 else b.emit("concat", *rows, axis=0)


def _lstm_step(b: GraphBuilder, lay: Layout, p: _Direction, xw: Value, h: Value, c: Value) -> tuple[Value, Value]:
    """``i, f, g, o`` gates (torch's order) -> the new ``(h, c)``."""
    gates = b.emit("add", xw, b.emit("matmul", h, p.w_hh_t))
    size = lay.hidden_size
    i, f, o = (b.emit("sigmoid", _columns(b, gates, k, size)) for k in (0, 1, 3))
    g = b.emit("tanh", _columns(b, gates, 2, size))
    c = b.emit("add", b.emit("mul", f, c), b.emit("mul", i, g))
    h = b.emit("mul", o, b.emit("tanh", c))
    if p.w_hr_t is not None:
        h = b.emit("matmul", h, p.w_hr_t)
    return h, c


def _gru_step(b: GraphBuilder, lay: Layout, p: _Direction, xw: Value, h: Value) -> Value:
    """``r, z, n`` gates; ``n = tanh(x_n + r * (W_hn h + b_hn))``; ``h' = n + z * (h - n)``."""
    hw = b.emit("matmul", h, p.w_hh_t)
    if p.bias_h is not None:
        hw = b.emit("add", hw, p.bias_h)
    size = lay.hidden_size
    r, z = (b.emit("sigmoid", b.emit("add", _columns(b, xw, k, size), _columns(b, hw, k, size))) for k in (0, 1))
    n = b.emit("tanh", b.emit("add", _columns(b, xw, 2, size), b.emit("mul", r, _columns(b, hw, 2, size))))
    return b.emit("add", n, b.emit("mul", z, b.emit("sub", h, n)))


def _run(
    b: GraphBuilder, lay: Layout, p: _Direction, x: Value, h: Value, c: Value | None, reverse: bool
) -> tuple[Value, Value, Value | None]:
    """One direction of one layer over time-major ``x [T, N, in]``: ``(ys [T, N, R], h_T, c_T)``.

    The step is the body of one ``scan`` node (mithril.ir.control_flow), so the graph has the
    same size for every sequence length.
    """
    xw = b.emit("matmul", x, p.w_ih_t)  # every time step's input projection at once
    if p.bias_x is not None:
        xw = b.emit("add", xw, p.bias_x)
    carries = [h] if c is None else [h, c]
    consts = [v for v in (p.w_hh_t, p.bias_h, p.w_hr_t) if v is not None]
    body = _step_body(b, lay, [*carries, xw], p)
    ins = [*carries, xw, *consts]
    outs = [
        b.emit(
            "scan", *ins, body=body, n_carry=len(carries), n_xs=1, length=x.known_shape[0], reverse=reverse, result=k
        )
        for k in range(len(carries) + 1)
    ]
    return outs[-1], outs[0], (outs[1] if c is not None else None)


def _step_body(b: GraphBuilder, lay: Layout, steps: list[Value], p: _Direction) -> Any:
    """The scan body of one step: ``(h, [c], xw_t, *weights) -> (h', [c'], y_t = h')``."""
    sb = b.sub("step")
    carry = [sb.input(n, v.known_shape, v.kind) for n, v in zip(("h", "c"), steps[:-1])]
    xw = steps[-1]
    xw_t = sb.input("xw_t", xw.known_shape[1:], xw.kind)
    local = {
        k: sb.input(k, v.known_shape, v.kind)
        for k, v in (("w_hh_t", p.w_hh_t), ("bias_h", p.bias_h), ("w_hr_t", p.w_hr_t))
        if v is not None
    }
    step = _Direction(p.w_ih_t, local["w_hh_t"], None, local.get("bias_h"), local.get("w_hr_t"))
    if lay.mode == "lstm":
        h, c = _lstm_step(sb, lay, step, xw_t, carry[0], carry[1])
        return sb.as_subgraph({"h": h, "c": c, "y": h}, label=f"{lay.mode}_step")
    h = _gru_step(sb, lay, step, xw_t, carry[0])
    return sb.as_subgraph({"h": h, "y": h}, label=f"{lay.mode}_step")


def _expand_rule(mode: str) -> Callable[[GraphBuilder, Node], dict[str, Value]]:
    def expand(b: GraphBuilder, node: Node) -> dict[str, Value]:
        lay = Layout.of(mode, node.attrs)
        named = dict(zip(lay.input_names(), node.inputs))
        x = named["input"]
        if lay.batch_first:
            x = b.emit("transpose", x, axes=(1, 0, 2))
        batch = x.known_shape[1]
        where = b.where
        h_n: list[Value] = []
        c_n: list[Value] = []
        for layer in range(lay.num_layers):
            ys = []
            for d in range(lay.directions):
                k = layer * lay.directions + d
                s = lay.suffix(layer, d)
                b.where = f"{where} (layer {layer}{', reverse' if d else ''})"
                h = _row(b, named["h0"], k) if lay.initial_state else _zeros(b, (batch, lay.out_size))
                c = None
                if mode == "lstm":
                    c = _row(b, named["c0"], k) if lay.initial_state else _zeros(b, (batch, lay.hidden_size))
                y, h, c = _run(b, lay, _direction(b, lay, named, s), x, h, c, reverse=bool(d))
                ys.append(y)
                h_n.append(h)
                if c is not None:
                    c_n.append(c)
            x = ys[0] if len(ys) == 1 else b.emit("concat", *ys, axis=2)
        b.where = where
        output = b.emit("transpose", x, axes=(1, 0, 2)) if lay.batch_first else x
        results = {"output": output, "h_n": _stack(b, h_n)}
        if mode == "lstm":
            results["c_n"] = _stack(b, c_n)
        return results

    return expand


def _zeros(b: GraphBuilder, shape: tuple[int, ...]) -> Value:
    return b.emit("broadcast_to", b.const(0.0, "float"), shape=shape)


# ---------------------------------------------------------------- definitions
def _check_attrs(mode: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def check(attrs: dict[str, Any]) -> dict[str, Any]:
        h, layers, proj = attrs["hidden_size"], attrs["num_layers"], attrs.get("proj_size", 0)
        for k, v in (("hidden_size", h), ("num_layers", layers), ("proj_size", proj)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{k} must be an int, got {v!r}")
        if h < 1 or layers < 1:
            raise ValueError(f"hidden_size and num_layers must be >= 1, got {h} and {layers}")
        if not 0 <= proj < h:
            raise ValueError(f"proj_size must be in [0, hidden_size), got {proj}")
        for k in ("bias", "batch_first", "bidirectional", "initial_state"):
            attrs[k] = bool(attrs[k])
        return attrs

    return check


_COMMON = {
    "hidden_size": REQUIRED,
    "num_layers": 1,
    "bias": True,
    "batch_first": False,
    "bidirectional": False,
    "initial_state": False,
    "result": "output",
}

lstm = primitive(
    "lstm",
    ("inputs",),
    _shape_rule("lstm"),
    attrs={**_COMMON, "proj_size": 0},
    variadic=True,
    expand=_expand_rule("lstm"),
    results=("output", "h_n", "c_n"),
    normalize=_check_attrs("lstm"),
    doc="torch.nn.LSTM over [input, (h0, c0), *weights]; result 'output', 'h_n' or 'c_n'",
)
gru = primitive(
    "gru",
    ("inputs",),
    _shape_rule("gru"),
    attrs=dict(_COMMON),
    variadic=True,
    expand=_expand_rule("gru"),
    results=("output", "h_n"),
    normalize=_check_attrs("gru"),
    doc="torch.nn.GRU over [input, (h0), *weights]; result 'output' or 'h_n'",
)

__all__ = ["Layout", "weight_names", "weight_shape"]
