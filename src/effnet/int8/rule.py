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
- ``swish``: each Sigmoid / HardSigmoid and the Mul that multiplies its input by it, or the one
  ``com.microsoft.QuickGelu`` node that `fuse_swish` made of such a pair.

`DEFAULT_KEEP` is SE and swish: ReLU6 networks (EfficientNet-Lite), which have neither, are all INT8 by default.

`fuse_swish` turns each Sigmoid(x) -> Mul(x, .) into one onnxruntime ``QuickGelu(x, alpha=1)`` (= x * sigmoid(x)),
the same numbers in one kernel. A float swish between INT8 convs otherwise costs two DequantizeLinear (onnxruntime
gives each consumer of a quantized tensor its own), a Sigmoid, a Mul and a QuantizeLinear over the block's largest
activation; at large batches those passes through memory outweighed the INT8 convs (benchmarks/results/int8/README.md).
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
FUSED_SWISH = ("QuickGelu", "com.microsoft")  # op type and domain of onnxruntime's x * sigmoid(alpha * x)


@dataclass
class FloatLayers:
    """The nodes kept float, by kind (node names of the exported graph), and how many SE blocks they make up."""

    nodes: dict[str, list[str]] = field(default_factory=dict)
    se_blocks: int = 0
    swish: int = 0  # swish activations kept float (a sigmoid+mul pair or one fused node each)

    @property
    def names(self) -> list[str]:
        """Every node kept float, each once."""
        return sorted({name for names in self.nodes.values() for name in names})

    def summary(self) -> str:
        """One line, e.g. 'stem conv, classifier, squeeze-excitation of 16 blocks (64 nodes), swish (49 activations)'."""
        parts = []
        if self.nodes.get("stem"):
            parts.append("stem conv")
        if self.nodes.get("classifier"):
            parts.append(f"classifier ({len(self.nodes['classifier'])} Gemm/MatMul)")
        if self.nodes.get("squeeze_excite"):
            parts.append(f"squeeze-excitation of {self.se_blocks} blocks ({len(self.nodes['squeeze_excite'])} nodes)")
        if self.nodes.get("swish"):
            parts.append(f"swish ({self.swish} activations)")
        return ", ".join(parts) or "none (every supported layer is INT8)"

    def to_dict(self) -> dict[str, Any]:
        return {"kinds": {k: len(v) for k, v in self.nodes.items()}, "se_blocks": self.se_blocks, "swish": self.swish, "nodes": self.names}


def float_layers(graph: Any, keep: tuple[str, ...] | list[str] = KINDS) -> FloatLayers:
    """The nodes of `graph` (an ``onnx.GraphProto``) of the kinds in `keep` (names from `KINDS`)."""
    unknown = sorted(set(keep) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown layer kinds to keep float {unknown}; choose from {', '.join(KINDS)}")
    consumers = _consumers(graph)
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
        for node in (n for n in graph.node if n.name not in taken):
            if (node.op_type, node.domain) == FUSED_SWISH:
                swish.append(node.name)
                found.swish += 1
            elif node.op_type in GATES:
                mul = _swish_mul(node, consumers)
                if mul is not None and mul.name not in taken:
                    swish += [node.name, mul.name]
                    found.swish += 1
        found.nodes["swish"] = swish
    return found


def fuse_swish(model: Any) -> int:
    """Replace each Sigmoid(x) -> Mul(x, sigmoid) of `model` (an ``onnx.ModelProto``, edited in place) by one QuickGelu; returns how many.

    A sigmoid whose output has other consumers, or whose Mul multiplies something else (an SE gate), is left alone.
    """
    from onnx import helper

    graph = model.graph
    consumers = _consumers(graph)
    fused: dict[str, Any] = {}  # Mul name -> its replacement
    dropped = set()
    for gate in (n for n in graph.node if n.op_type == "Sigmoid"):
        mul = _swish_mul(gate, consumers)
        if mul is not None and len(consumers[gate.output[0]]) == 1:
            op_type, domain = FUSED_SWISH
            fused[mul.name] = helper.make_node(op_type, [gate.input[0]], list(mul.output), name=f"{mul.name}/swish", domain=domain, alpha=1.0)
            dropped.add(gate.name)
    if fused:
        nodes = [fused.get(n.name, n) for n in graph.node if n.name not in dropped]  # the Mul's place keeps the order topological
        del graph.node[:]
        graph.node.extend(nodes)
        if not any(entry.domain == FUSED_SWISH[1] for entry in model.opset_import):
            model.opset_import.append(helper.make_opsetid(FUSED_SWISH[1], 1))
    return len(fused)


def _consumers(graph: Any) -> dict[str, list[Any]]:
    """Each tensor name of `graph` -> the nodes that read it."""
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    return consumers


def _swish_mul(gate: Any, consumers: dict[str, list[Any]]) -> Any:
    """The Mul that multiplies the gate's own input by the gate's output (x * sigmoid(x)), or None."""
    return next((m for m in consumers[gate.output[0]] if m.op_type == "Mul" and gate.input[0] in m.input), None)


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
