"""Which nodes of an ONNX EfficientNet graph stay float in INT8, by rule: the layers that lose accuracy when quantized.

Post-training INT8 of EfficientNet-B* collapses mostly in a few places: the squeeze-excitation
gates (a global average, two tiny convs and a sigmoid whose output scales every channel), the
sigmoid of swish, the stem conv (which sees the raw normalised pixels) and the classifier
(whose logits decide top-1). The rule finds them in the exported graph by structure, not by
name, so it holds for any effnet model (and for other graphs built the same way):

- ``stem``: the first Conv (ONNX nodes are in topological order; a TF-padded model has a Pad before it);
- ``classifier``: every Gemm / MatMul (the final fully connected layer);
- ``squeeze_excite``: every node from a ReduceMean / GlobalAveragePool up to and including the
  Mul that gates the feature map with it (a pooling whose path reaches no Mul, the head's, is not SE);
- ``swish``: each Sigmoid / HardSigmoid and the Mul that multiplies its input by it.

`DEFAULT_KEEP` is SE and swish: ReLU6 networks (EfficientNet-Lite), which have neither, are all INT8 by default.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

KINDS = ("stem", "classifier", "squeeze_excite", "swish")
# The default: SE and swish, the B-series' known INT8 failure points. Keeping the stem and classifier float measured
# worse on every ReLU6 model tried (benchmarks/results/int8/README.md), so they are INT8 unless asked for.
DEFAULT_KEEP = ("squeeze_excite", "swish")
POOLS = ("ReduceMean", "GlobalAveragePool")
GATES = ("Sigmoid", "HardSigmoid")


@dataclass
class FloatLayers:
    """The nodes kept float, by kind (node names of the exported graph), and how many SE blocks they make up."""

    nodes: dict[str, list[str]] = field(default_factory=dict)
    se_blocks: int = 0

    @property
    def names(self) -> list[str]:
        """Every node kept float, each once."""
        return sorted({name for names in self.nodes.values() for name in names})

    def summary(self) -> str:
        """One line, e.g. 'stem conv, classifier, squeeze-excitation of 16 blocks (64 nodes), swish (49 sigmoid+mul pairs)'."""
        parts = []
        if self.nodes.get("stem"):
            parts.append("stem conv")
        if self.nodes.get("classifier"):
            parts.append(f"classifier ({len(self.nodes['classifier'])} Gemm/MatMul)")
        if self.nodes.get("squeeze_excite"):
            parts.append(f"squeeze-excitation of {self.se_blocks} blocks ({len(self.nodes['squeeze_excite'])} nodes)")
        if self.nodes.get("swish"):
            parts.append(f"swish ({len(self.nodes['swish']) // 2} sigmoid+mul pairs)")
        return ", ".join(parts) or "none (every supported layer is INT8)"

    def to_dict(self) -> dict[str, Any]:
        return {"kinds": {k: len(v) for k, v in self.nodes.items()}, "se_blocks": self.se_blocks, "nodes": self.names}


def float_layers(graph: Any, keep: tuple[str, ...] | list[str] = KINDS) -> FloatLayers:
    """The nodes of `graph` (an ``onnx.GraphProto``) of the kinds in `keep` (names from `KINDS`)."""
    unknown = sorted(set(keep) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown layer kinds to keep float {unknown}; choose from {', '.join(KINDS)}")
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    found = FloatLayers()
    if "stem" in keep:
        stem = next((n for n in graph.node if n.op_type == "Conv"), None)
        found.nodes["stem"] = [stem.name] if stem is not None else []
    if "classifier" in keep:
        found.nodes["classifier"] = [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    if "squeeze_excite" in keep:
        se: list[str] = []
        for pool in (n for n in graph.node if n.op_type in POOLS):
            block = _gate_path(pool, consumers)
            if block:
                found.se_blocks += 1
                se += block
        found.nodes["squeeze_excite"] = se
    if "swish" in keep:
        taken = set(found.nodes.get("squeeze_excite", []))
        swish: list[str] = []
        for gate in (n for n in graph.node if n.op_type in GATES and n.name not in taken):
            for mul in consumers[gate.output[0]]:
                if mul.op_type == "Mul" and gate.input[0] in mul.input and mul.name not in taken:
                    swish += [gate.name, mul.name]
        found.nodes["swish"] = swish
    return found


def _gate_path(pool: Any, consumers: dict[str, list[Any]]) -> list[str]:
    """The nodes from `pool` to the Mul that gates a feature map with the result; [] when no such Mul follows."""
    seen = [pool.name]
    branch_outputs = set(pool.output)
    frontier = [pool]
    for _ in range(16):  # an SE branch is a handful of nodes; anything longer is not one
        following = [c for node in frontier for out in node.output for c in consumers[out] if c.name not in seen]
        if not following:
            return []
        for node in following:
            seen.append(node.name)
            # the gate multiplies a feature map from outside the pooled branch; swish inside the branch does not
            if node.op_type == "Mul" and any(name not in branch_outputs for name in node.input):
                return seen
            branch_outputs.update(node.output)
        frontier = following
    return []
