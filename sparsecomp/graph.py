"""Who feeds whom in a Keras model, read from its config (public API, no private attributes)."""

from __future__ import annotations

__all__ = ["LayerGraph"]


def _histories(node, out):
    if isinstance(node, dict):
        hist = node.get("config", {}).get("keras_history") if isinstance(node.get("config"), dict) else None
        if node.get("class_name") == "__keras_tensor__" and hist:
            out.append(hist[0])
            return
        for v in node.values():
            _histories(v, out)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _histories(v, out)


class LayerGraph:
    """Producers and consumers of each layer, by name, for Sequential and functional models.

    ``outputs`` are the names of the layers whose outputs are the model's outputs.
    """

    def __init__(self, model):
        cfg = model.get_config()
        self.producers: dict[str, list[str]] = {}
        self.consumers: dict[str, list[str]] = {}
        layers = cfg.get("layers", [])
        names = [layer.name for layer in model.layers]
        if type(model).__name__ == "Sequential" or not any("inbound_nodes" in c for c in layers):
            chain = names
            for a, b in zip(chain, chain[1:]):
                self.producers.setdefault(b, []).append(a)
                self.consumers.setdefault(a, []).append(b)
            self.outputs = [chain[-1]] if chain else []
        else:
            for c in layers:
                name = c.get("name") or c.get("config", {}).get("name")
                srcs: list[str] = []
                _histories(c.get("inbound_nodes", []), srcs)
                self.producers[name] = srcs
                for s in srcs:
                    self.consumers.setdefault(s, []).append(name)
            outs = cfg.get("output_layers", [])
            if outs and not isinstance(outs[0], (list, tuple)):
                outs = [outs]
            self.outputs = [o[0] for o in outs]
        self.layers = {layer.name: layer for layer in model.layers}

    def consumers_of(self, name: str) -> list[str]:
        return list(self.consumers.get(name, []))

    def producers_of(self, name: str) -> list[str]:
        return list(self.producers.get(name, []))
