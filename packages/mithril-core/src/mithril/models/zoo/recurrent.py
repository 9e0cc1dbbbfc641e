"""Recurrent layers with torch.nn parameter names: LSTM and GRU over a whole sequence.

Each block is the ``lstm``/``gru`` composite primitive (one node per result), which
the compiler expands into one ``scan`` per layer and direction once shapes are concrete:
build and compile time do not depend on the sequence length.
"""

from __future__ import annotations

import math
from typing import Any

from ...errors import ModelBuildError
from ...primitives.recurrent import Layout, weight_shape
from .. import arguments as A
from ..connections import Initializer, IOKey
from ..model import Model
from .dropout import Dropout, check_probability


def _uniform_hidden(hidden_size: int) -> Initializer:
    """torch's RNN initialisation: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size)
    return Initializer(
        lambda backend, shape, ref: backend.uniform(-bound, bound, shape), label=f"uniform(±1/sqrt({hidden_size}))"
    )


class _Recurrent(Model):
    """The shared body: parameters in torch's order, one primitive call per result.

    Without dropout the whole stack is one call of the composite (per result). With
    dropout, each layer is its own call and a :class:`Dropout` block sits between
    layers, so the training/inference switch and the random mask are the ordinary ones.
    """

    mode = ""

    def __init__(
        self,
        input_size: int | None,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        proj_size: int,
        initial_state: bool,
        name: str | None,
    ) -> None:
        super().__init__(name=name)
        cls = type(self).__name__
        for k, v in (("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ModelBuildError(f"{cls}: {k} must be an int >= 1, got {v!r}")
        if isinstance(proj_size, bool) or not isinstance(proj_size, int) or not 0 <= proj_size < hidden_size:
            raise ModelBuildError(
                f"{cls}: proj_size must be an int in [0, hidden_size={hidden_size}), got {proj_size!r}"
            )
        p = check_probability(dropout, cls)
        at = A.where(cls, name)
        input_size = A.size(input_size, "input_size", at, optional=True)
        attrs: dict[str, Any] = dict(
            hidden_size=hidden_size,
            num_layers=num_layers,
            bias=A.flag(bias, "bias", at),
            batch_first=A.flag(batch_first, "batch_first", at),
            bidirectional=A.flag(bidirectional, "bidirectional", at),
            initial_state=A.flag(initial_state, "initial_state", at),
        )
        if self.mode == "lstm":
            attrs["proj_size"] = proj_size
        lay = Layout.of(self.mode, attrs)
        self.input_size, self.hidden_size, self.num_layers, self.dropout = input_size, hidden_size, num_layers, p
        init = _uniform_hidden(hidden_size)
        names = lay.weight_names()
        declared = {w: IOKey(w, shape=weight_shape(lay, w, input_size), role="param", init=init) for w in names}
        dl = lay.directions * num_layers
        sizes = {"h0": lay.out_size, "c0": hidden_size}
        state_keys = [IOKey(st, shape=[dl, None, sizes[st]]) for st in lay.states]
        x: Any = IOKey("input", shape=[None, None, input_size])
        layers = [(k, k + 1) for k in range(num_layers)] if p and num_layers > 1 else [(0, num_layers)]
        per_layer = len(names) // num_layers
        results = ("output", "h_n", "c_n") if self.mode == "lstm" else ("output", "h_n")
        finals: dict[str, list[Any]] = {r: [] for r in results}
        for first, last in layers:
            states = [self._rows(st, first, last, lay) for st in state_keys] if len(layers) > 1 else state_keys
            mine = names[first * per_layer : last * per_layer]
            for i, r in enumerate(results):
                # one node per result (declarations on the first); the compiler expands them together, once
                ins = [x, *states, *(declared[w] for w in mine)] if i == 0 else [x, *states, *mine]
                out = IOKey(r) if len(layers) == 1 else None
                finals[r].append(
                    self.call(self.mode, *ins, result=r, output=out, **{**attrs, "num_layers": last - first})
                )
                if isinstance(x, IOKey):
                    x = "input"
            if last < num_layers:
                drop = Dropout(p)
                self |= drop(input=finals["output"][-1])
                x = drop.output
        if len(layers) > 1:
            self.call("identity", finals["output"][-1], output=IOKey("output"))
            for r in results[1:]:
                self.call("concat", *finals[r], axis=0, output=IOKey(r))
        self.set_canonical(input="input", output="output")

    def _rows(self, state: IOKey, first: int, last: int, lay: Layout) -> Any:
        """The rows of ``h0``/``c0`` that belong to layers ``first..last-1``."""
        d = lay.directions
        return self.call("slice", state, starts=(first * d,), stops=(last * d,), steps=(None,))


class LSTM(_Recurrent):
    """torch.nn.LSTM: ``input [T, N, I]`` (``[N, T, I]`` with ``batch_first``) -> ``output``, ``h_n``, ``c_n``.

    Parameters ``weight_ih_l{k}`` ``[4H, I]``, ``weight_hh_l{k}`` ``[4H, R]``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``[4H]`` (gates i, f, g, o), ``weight_hr_l{k}``
    ``[proj_size, H]`` with ``proj_size``, and ``..._reverse`` when bidirectional;
    ``R`` is ``proj_size`` or ``H``. With ``initial_state=True`` the block has the
    inputs ``h0 [D*L, N, R]`` and ``c0 [D*L, N, H]``; without, both start at zero.
    ``dropout`` zeroes outputs of every layer but the last in training mode, as torch.
    """

    mode = "lstm"

    def __init__(
        self,
        input_size: int | None,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        initial_state: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            initial_state,
            name,
        )


class GRU(_Recurrent):
    """torch.nn.GRU: ``input [T, N, I]`` (``[N, T, I]`` with ``batch_first``) -> ``output``, ``h_n``.

    Parameters ``weight_ih_l{k}`` ``[3H, I]``, ``weight_hh_l{k}`` ``[3H, H]``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``[3H]`` (gates r, z, n; ``b_hn`` inside the
    r-gated term, as torch), and ``..._reverse`` when bidirectional. With
    ``initial_state=True`` the block has the input ``h0 [D*L, N, H]``; without, it
    starts at zero. ``dropout`` zeroes outputs of every layer but the last in training mode, as torch.
    """

    mode = "gru"

    def __init__(
        self,
        input_size: int | None,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        initial_state: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, initial_state, name
        )


__all__ = ["GRU", "LSTM"]
