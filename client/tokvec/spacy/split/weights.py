"""A listening component's trained weights, carried over to its split twin.

A component's ``model`` file is thinc's ``Model.to_bytes``: msgpack of per-node lists (names,
dims, refs, attrs, params, shims) in the order of ``model.walk()``, breadth first. The split
component's model is the same tree with each listener subtree replaced by one
``RemoteListener`` node, so its walk order differs. To map nodes, the listener node is swapped,
for a moment, for a stand-in of the subtree the original had (same node names and layout, no
weights), which gives the original's walk order; every other node is the same object in both
walks. A listener subtree holds no weights of its own (a TransformerListener's is its pooling
and grad_factor; a Tok2VecListener has none), so nothing trained is lost; a layout that does not
match what the saved file holds is refused, never guessed.
"""

from __future__ import annotations

from typing import Any, cast

import srsly
from thinc.api import Model, chain, registry

from tokvec.spacy.errors import SplitError
from tokvec.spacy.listener import RemoteListener
from tokvec.spacy.split.plan import TOK2VEC_LISTENER, TRANSFORMER_LISTENER, Listener

# thinc's pooling layers by tokvec's names.
_POOL_LAYERS = {
    "mean": "reduce_mean.v1",
    "max": "reduce_max.v1",
    "first": "reduce_first.v1",
    "last": "reduce_last.v1",
    "sum": "reduce_sum.v1",
}


def _noop(model: Model[Any, Any], X: Any, is_train: bool) -> Any:  # stand-ins are never run
    raise AssertionError("a layout stand-in was run")


def stand_in(listener: Listener) -> Model[Any, Any]:
    """The layout of the original listener subtree (spacy-transformers 1.x: chain of the
    TransformerListener and ``trfs2arrays`` around the pooling layer; spaCy: one node)."""
    if listener.architecture == TOK2VEC_LISTENER:
        return Model("tok2vec-listener", _noop)
    assert listener.architecture == TRANSFORMER_LISTENER
    pooling: Model[Any, Any] = registry.layers.get(_POOL_LAYERS[listener.pooling])()  # type: ignore[attr-defined]
    return chain(Model("transformer-listener", _noop), Model("trfs2arrays", _noop, layers=[pooling]))


def carry_over(saved: bytes, model: Model[Any, Any], listeners: list[Listener], component: str) -> bytes:
    """``saved`` (the original component's model file) rewritten for ``model`` (the split
    component's, built from the split config), whose RemoteListener nodes stand, in walk
    order, for ``listeners``."""
    msg = srsly.msgpack_loads(saved)
    remotes = [node for node in model.walk() if isinstance(node, RemoteListener)]
    if len(remotes) != len(listeners):
        raise SplitError(
            f"component {component!r}: {len(listeners)} listeners in its config, {len(remotes)} in its model"
        )
    stand_ins = {remote.id: stand_in(listener) for remote, listener in zip(remotes, listeners)}
    old_walk = _walk_with(model, stand_ins)
    _check_layout(msg, old_walk, stand_ins, component)
    old_index = {node.id: i for i, node in enumerate(old_walk)}
    new_walk = list(model.walk())
    new_index = {node.id: i for i, node in enumerate(new_walk)}
    # A reference to a listener subtree's root now points at its RemoteListener.
    stood_for = {stand.id: remote_id for remote_id, stand in stand_ins.items()}
    fresh = model.to_dict()  # the RemoteListener nodes' own entries
    out: dict[str, list[Any]] = {"nodes": [], "attrs": [], "params": [], "shims": []}
    for i, node in enumerate(new_walk):
        if node.id in stand_ins:
            for key in out:
                out[key].append(fresh[key][i])
            out["nodes"][-1]["index"] = i
            continue
        j = old_index[node.id]
        info = dict(msg["nodes"][j], index=i)
        info["refs"] = {
            name: _ref(ref, old_walk, stood_for, new_index, component) for name, ref in info["refs"].items()
        }
        out["nodes"].append(info)
        for key in ("attrs", "params", "shims"):
            out[key].append(msg[key][j])
    return cast(bytes, srsly.msgpack_dumps(out))


def _walk_with(model: Model[Any, Any], stand_ins: dict[int, Model[Any, Any]]) -> list[Model[Any, Any]]:
    """``model.walk()`` with each RemoteListener replaced by its stand-in, then put back."""
    swapped: list[tuple[list[Model[Any, Any]], int, Model[Any, Any]]] = []
    try:
        for node in list(model.walk()):
            for k, layer in enumerate(node.layers):
                if layer.id in stand_ins:
                    swapped.append((node.layers, k, layer))
                    node.layers[k] = stand_ins[layer.id]
        return list(model.walk())
    finally:
        for layers, k, layer in swapped:
            layers[k] = layer


def _check_layout(
    msg: dict[str, Any], walk: list[Model[Any, Any]], stand_ins: dict[int, Model[Any, Any]], component: str
) -> None:
    nodes = msg.get("nodes", [])
    problem = ""
    if len(nodes) != len(walk):
        problem = f"it holds {len(nodes)} layers, the original architecture has {len(walk)}"
    else:
        for i, (info, node) in enumerate(zip(nodes, walk)):
            # Combinators take their name from their layers; leaves and weights must match.
            if not node.layers and info["name"] != node.name:
                problem = f"layer {i} is {info['name']!r}, expected {node.name!r}"
            elif set(msg["params"][i]) != set(node.param_names):
                problem = f"layer {i} ({node.name!r}) has weights {sorted(msg['params'][i])}, expected {sorted(node.param_names)}"
            if problem:
                break
    if problem:
        raise SplitError(
            f"component {component!r}: its saved model does not have the layout its config describes ({problem}); "
            "was it saved by another version of its listener's package?"
        )


def _ref(
    ref: int | None,
    old_walk: list[Model[Any, Any]],
    stood_for: dict[int, int],
    new_index: dict[int, int],
    component: str,
) -> int | None:
    if ref is None:
        return None
    node_id = stood_for.get(old_walk[ref].id, old_walk[ref].id)
    if node_id not in new_index:
        raise SplitError(
            f"component {component!r}: a layer refers into a listener's insides ({old_walk[ref].name!r}), which the split drops"
        )
    return new_index[node_id]
