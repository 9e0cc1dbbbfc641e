"""The training model's graph: the model's graph with the loss's graph attached to one output.

The loss is flattened on its own and spliced into the model's graph at the IR level
(its ``input`` becomes the model's prediction, its ``target`` a new input, its
``output`` the output ``loss``), so the model keeps its parameter names and stays a
model of its own, which can be compiled for inference or trained again.
"""

from __future__ import annotations

from ..errors import ModelBuildError
from ..ir.flat import FlatModel
from ..ir.graph import Value
from ..models.block import Block
from ..models.flatten import flatten
from ..models.model import Model

LOSS_OUTPUT = "loss"


def as_model(block: Block) -> Model:
    """``block`` itself if it is a Model, else a model holding it."""
    if isinstance(block, Model):
        return block
    wrapped = Model()
    wrapped |= block
    return wrapped


def attach_loss(model: Model, loss: Model, training: bool, *, prediction: str, target: str) -> FlatModel:
    """The flat graph of ``model`` with ``loss(input=prediction, target=target)`` as output ``loss``."""
    flat = flatten(model, training=training)
    lflat = flatten(loss, training=training)
    g, lg = flat.graph, lflat.graph
    if prediction not in g.outputs:
        raise ModelBuildError(
            f"the loss reads {prediction!r}, which is not an output of the model; its outputs: {sorted(g.outputs)}"
        )
    if set(lg.outputs) != {"output"} or "input" not in lg.inputs or "target" not in lg.inputs:
        raise ModelBuildError(
            f"{loss.display_name}: a loss has inputs 'input', 'target' and the output 'output'; "
            f"this one has {sorted(lg.inputs)} -> {sorted(lg.outputs)}"
        )
    names = {*g.inputs, *g.params, *g.state, *g.outputs}
    for name in (target, LOSS_OUTPUT):
        if name in names:
            raise ModelBuildError(
                f"the model already has a terminal named {name!r}; name the loss's target otherwise (target=...)"
            )
    pred = g.outputs[prediction]
    x = lg.inputs.pop("input")
    info = {**flat.info, **lflat.info}
    if x.uid in lflat.info:  # what the loss declares about its input holds for the prediction
        mine, theirs = info.setdefault(pred.uid, lflat.info[x.uid]), lflat.info[x.uid]
        if mine is not theirs:
            mine.declared_shapes.extend(theirs.declared_shapes)
            if theirs.declared_kind is not None:
                if mine.declared_kind not in (None, theirs.declared_kind):
                    raise ModelBuildError(
                        f"{loss.display_name}: its input must be {theirs.declared_kind}, the "
                        f"model's {prediction!r} is {mine.declared_kind}"
                    )
                mine.declared_kind = theirs.declared_kind
        info.pop(x.uid, None)
    for node in lg.nodes:
        node.inputs = [pred if v is x else v for v in node.inputs]
        node.where = f"{loss.display_name}.{node.where}" if node.where else loss.display_name
    t = lg.inputs.pop("target")
    t.name = target
    g.inputs[target] = t
    for table, ltable in ((g.inputs, lg.inputs), (g.params, lg.params), (g.state, lg.state)):
        for name, v in ltable.items():
            if name in names or name in table:
                raise ModelBuildError(f"{loss.display_name}: its terminal {name!r} clashes with the model's")
            table[name] = v
    g.initializers.update(lg.initializers)
    g.nodes = [*g.nodes, *lg.nodes]
    loss_value: Value = lg.outputs["output"]
    g.outputs[LOSS_OUTPUT] = loss_value
    g.state_updates.update(lg.state_updates)
    flat.state_updates.update(lflat.state_updates)
    flat.output_names.append(LOSS_OUTPUT)
    flat.conn_values.update(lflat.conn_values)
    flat.info.clear()
    flat.info.update(info)
    flat.model_terms_current = None  # the graph is no longer the model's
    return flat


__all__ = ["LOSS_OUTPUT", "as_model", "attach_loss"]
