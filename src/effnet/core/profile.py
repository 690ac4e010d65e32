"""Parameters and multiply-adds (the paper's "FLOPS") computed analytically from a spec.

No model is built, so millions of candidate specs can be scored (the architecture
search does this). MACs count convolutions and the classifier (what
`torch.utils.flop_counter` counts, divided by 2); BN, activations, pooling and the
SE gate's elementwise products are not multiply-adds of weights and are left out, as
in the paper. `measure` counts the same on a built model, to cross-check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from effnet.core.parts import site_parts
from effnet.core.spec import NetSpec


@dataclass(frozen=True)
class LayerProfile:
    """One weight layer: name as in the built model's state dict, its params, MACs and output shape."""

    name: str
    kind: str  # conv, dwconv, se, bn, linear
    params: int
    macs: int
    out_shape: tuple[int, int, int]  # (C, H, W)


@dataclass(frozen=True)
class StageProfile:
    name: str  # stem, stage1..stageN, head
    params: int
    macs: int
    out_shape: tuple[int, int, int]


@dataclass(frozen=True)
class Profile:
    """Params and MACs of a network at one resolution, with per-layer and per-stage breakdowns."""

    name: str
    resolution: int
    params: int
    macs: int
    layers: list[LayerProfile] = field(repr=False)
    stages: list[StageProfile] = field(repr=False)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resolution": self.resolution,
            "params": self.params,
            "macs": self.macs,
            "stages": [{"name": s.name, "params": s.params, "macs": s.macs, "out_shape": list(s.out_shape)} for s in self.stages],
        }


def _out(size: int, stride: int) -> int:
    # symmetric k//2 padding with odd k and TF 'same' padding both give ceil(size / stride)
    return (size + stride - 1) // stride


class _Counter:
    def __init__(self) -> None:
        self.layers: list[LayerProfile] = []

    def conv(self, name: str, cin: int, cout: int, k: int, stride: int, size: int, groups: int = 1, bias: bool = False, kind: str = "conv") -> int:
        out = _out(size, stride)
        params = cout * (cin // groups) * k * k + (cout if bias else 0)
        macs = out * out * cout * (cin // groups) * k * k
        self.layers.append(LayerProfile(f"{name}.weight" if kind == "se" else f"{name}.conv", kind, params, macs, (cout, out, out)))
        return out

    def bn(self, name: str, channels: int, size: int) -> None:
        self.layers.append(LayerProfile(f"{name}.bn", "bn", 2 * channels, 0, (channels, size, size)))

    def conv_bn(self, name: str, cin: int, cout: int, k: int, stride: int, size: int, groups: int = 1) -> int:
        out = self.conv(name, cin, cout, k, stride, size, groups, kind="dwconv" if groups > 1 else "conv")
        self.bn(name, cout, out)
        return out


def profile_spec(spec: NetSpec, resolution: int | None = None) -> Profile:
    """Analytic params and MACs of `spec` at `resolution` (default: the spec's own)."""
    res = resolution or spec.resolution
    counter = _Counter()
    stages: list[StageProfile] = []

    def close_stage(stage_name: str, start: int, shape: tuple[int, int, int]) -> None:
        chunk = counter.layers[start:]
        stages.append(StageProfile(stage_name, sum(x.params for x in chunk), sum(x.macs for x in chunk), shape))

    size = counter.conv_bn("stem", spec.in_chans, spec.stem_channels, spec.stem_kernel, 2, res)
    if spec.stem_pool:
        size = _out(size, 2)  # 3x3 stride-2 max pool, padding 1
    close_stage("stem", 0, (spec.stem_channels, size, size))
    cin = spec.stem_channels
    start = 0
    for site in spec.blocks():
        stage = site.stage
        if site.block_index == 0:
            start = len(counter.layers)
        block_in_size = size
        for part in site_parts(site):
            name = f"{site.name}.{part.name}"
            if part.kind == "se":
                counter.conv(name, part.in_channels, part.out_channels, 1, 1, 1, bias=True, kind="se")
            elif part.name == "shortcut":
                counter.conv_bn(name, part.in_channels, part.out_channels, 1, part.stride, block_in_size)
            else:
                size = counter.conv_bn(name, part.in_channels, part.out_channels, part.kernel, part.stride, size, groups=part.groups)
        cin = stage.out_channels
        if site.block_index == stage.repeats - 1:
            close_stage(f"stage{site.stage_index + 1}", start, (cin, size, size))
    start = len(counter.layers)
    if spec.head_channels:
        counter.conv_bn("head", cin, spec.head_channels, 1, 1, size)
    if spec.num_classes:
        features = spec.num_features
        counter.layers.append(
            LayerProfile("classifier", "linear", features * spec.num_classes + spec.num_classes, features * spec.num_classes, (spec.num_classes, 1, 1))
        )
    close_stage("head", start, (spec.num_classes or spec.num_features, 1, 1))
    return Profile(
        name=spec.name or "custom",
        resolution=res,
        params=sum(x.params for x in counter.layers),
        macs=sum(x.macs for x in counter.layers),
        layers=counter.layers,
        stages=stages,
    )


def profile(spec_or_model: Any, resolution: int | None = None) -> Profile:
    """Params and MACs (multiply-adds, the paper's "FLOPS") of a spec or a built effnet model.

    Model names are resolved a layer up: `effnet.profile("efficientnet_b3")` looks the name up
    in the zoo, then calls this.
    """
    if isinstance(spec_or_model, NetSpec):
        spec = spec_or_model
    elif hasattr(spec_or_model, "spec") and isinstance(spec_or_model.spec, NetSpec):
        spec = spec_or_model.spec
    elif isinstance(spec_or_model, str):
        raise TypeError(
            f"effnet.core.profile.profile() takes a NetSpec or an effnet model, not the name {spec_or_model!r}: "
            "use effnet.profile(name), which looks names up, or profile(effnet.get_spec(name))"
        )
    else:
        raise TypeError(f"profile() takes a NetSpec, a model name or an effnet model, got {type(spec_or_model).__name__}")
    return profile_spec(spec, resolution)


def measure(model: Any, resolution: int, in_chans: int = 3) -> tuple[int, int]:
    """(params, MACs) of a built model, measured: parameter count and FlopCounterMode on one image / 2."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_chans, resolution, resolution))
    model.train(was_training)
    return params, counter.get_total_flops() // 2
