"""The weight layers of each block kind and their channel arithmetic, from the spec alone (no torch).

`block_parts` lists a block's weight layers by module name, in forward order. The analytic
profile (`effnet.core.profile`), the weight-layout maps (`effnet.models.weights`) and the built modules
(`effnet.models.nn.blocks`) all follow it, and a test checks it against the built modules, so the
three cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from effnet.core.spec import BlockSite


def expanded_channels(in_channels: int, expand_ratio: float) -> int:
    """Width inside an inverted bottleneck: in_channels * expand_ratio (as in the TF reference)."""
    return int(round(in_channels * expand_ratio))


def bottleneck_channels(out_channels: int, reduction: float) -> int:
    """Width inside a ResNet bottleneck: out_channels / reduction (ResNet-50: 256 / 4 = 64)."""
    return max(1, int(round(out_channels / reduction)))


def se_channels(in_channels: int, se_ratio: float) -> int:
    """Squeezed width of SE: se_ratio of the block's input channels, at least 1."""
    return max(1, int(in_channels * se_ratio))


def has_identity_skip(skip: bool, stride: int, in_channels: int, out_channels: int) -> bool:
    """An identity residual exists when the spec asks for one and the shapes allow it."""
    return skip and stride == 1 and in_channels == out_channels


@dataclass(frozen=True)
class Part:
    """One weight layer of a block: a conv+BN (`conv_bn`) or an SE conv with bias (`se`)."""

    name: str  # module name inside the block: "dw" (a ConvBnAct) or "se.reduce" (a Conv2d)
    kind: str  # "conv_bn" | "se"
    in_channels: int
    out_channels: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    on_pooled: bool = False  # runs on the 1x1 pooled map (SE)


def block_parts(kind: str, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: float, se_ratio: float, skip: bool) -> list[Part]:
    """The weight layers of one block, in forward order, named as in the built module.

    `expand_ratio` is the stage's channel ratio: the expansion of ``ir``/``ds``/``fused`` blocks, and
    for ``bt`` the reduction (inner width = out_channels / ratio; `StageSpec.reduction`).
    """

    def se(channels: int) -> list[Part]:
        if se_ratio <= 0:
            return []
        squeezed = se_channels(in_channels, se_ratio)
        return [Part("se.reduce", "se", channels, squeezed, on_pooled=True), Part("se.expand", "se", squeezed, channels, on_pooled=True)]

    if kind in ("ir", "ds"):
        mid = expanded_channels(in_channels, expand_ratio)
        expand = [Part("expand", "conv_bn", in_channels, mid)] if expand_ratio != 1 else []
        return [*expand, Part("dw", "conv_bn", mid, mid, kernel, stride, mid), *se(mid), Part("project", "conv_bn", mid, out_channels)]
    if kind == "fused":
        # TF's FusedMBConvBlock: kxk conv (stride) to the expanded width, SE, 1x1 project; without
        # expansion, SE (if any) on the input and then a single kxk conv-BN-act, named project as in TF
        if expand_ratio == 1:
            return [*se(in_channels), Part("project", "conv_bn", in_channels, out_channels, kernel, stride)]
        mid = expanded_channels(in_channels, expand_ratio)
        return [Part("expand", "conv_bn", in_channels, mid, kernel, stride), *se(mid), Part("project", "conv_bn", mid, out_channels)]
    if kind == "cv":
        return [Part("conv", "conv_bn", in_channels, out_channels, kernel, stride), *se(out_channels)]
    if kind == "sep":
        return [
            Part("dw", "conv_bn", in_channels, in_channels, kernel, stride, in_channels),
            *se(in_channels),
            Part("pw", "conv_bn", in_channels, out_channels),
        ]
    if kind == "bt":
        mid = bottleneck_channels(out_channels, expand_ratio)
        parts = [Part("reduce", "conv_bn", in_channels, mid), Part("spatial", "conv_bn", mid, mid, kernel, stride), *se(mid)]
        parts.append(Part("restore", "conv_bn", mid, out_channels))
        if skip and not has_identity_skip(skip, stride, in_channels, out_channels):
            parts.append(Part("shortcut", "conv_bn", in_channels, out_channels, 1, stride))
        return parts
    raise ValueError(f"unknown block kind {kind!r}")


def site_parts(site: BlockSite) -> list[Part]:
    """The weight layers of one block of a network (`NetSpec.blocks()`), in forward order."""
    stage = site.stage
    ratio = stage.reduction if stage.block == "bt" else stage.expand_ratio
    return block_parts(stage.block, site.in_channels, stage.out_channels, stage.kernel, site.stride, ratio, stage.se_ratio, stage.skip)
