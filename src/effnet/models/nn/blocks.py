"""Blocks, one per block kind of the spec language.

- ``ir`` / ``ds``: MBConv, the inverted bottleneck with depthwise conv and squeeze-excitation
  (EfficientNet's Table 1; ``ds`` is MBConv1, without the expansion conv);
- ``cv``: a regular kxk convolution (MnasNet's "regular conv" op);
- ``sep``: MobileNetV1's depthwise-separable conv (activation after both convs);
- ``bt``: ResNet's bottleneck (1x1 reduce, kxk, 1x1 restore, projection shortcut);
- ``fused``: EfficientNetV2's Fused-MBConv (kxk conv to the expanded width, SE, 1x1 project).

Each block's weight layers are listed by `effnet.core.parts.block_parts` (torch-free, so the
analytic profile needs no torch); the modules here are named to match, and a test checks it.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import StochasticDepth

# the channel arithmetic and the per-block weight layers live with the specs (torch-free); re-exported here
from effnet.core.parts import Part, block_parts, bottleneck_channels, expanded_channels, has_identity_skip, se_channels
from effnet.models.nn.layers import ConvBnAct, SqueezeExcite, make_activation

__all__ = [
    "Bottleneck",
    "ConvBlock",
    "FusedMBConv",
    "MBConv",
    "Part",
    "SeparableConv",
    "block_parts",
    "bottleneck_channels",
    "expanded_channels",
    "has_identity_skip",
    "make_block",
    "se_channels",
]


class _Residual(nn.Module):
    """Shared residual logic: drop path on the branch, identity added when the block has a skip."""

    # no class-level annotations here: TorchScript cannot resolve them under `from __future__ import annotations`
    def _init_residual(self, has_skip: bool, drop_path: float) -> None:
        self.has_skip = has_skip
        self.drop_path = StochasticDepth(drop_path, "row") if has_skip and drop_path > 0 else nn.Identity()

    def zero_init_branch(self) -> bool:
        """Zero the scale of the residual branch's last BatchNorm, so the block starts as its shortcut (Goyal et al.
        2017). The branch's output is then 0 (a following swish or SE keeps it 0). Returns whether the block has a skip."""
        if self.has_skip:
            nn.init.zeros_(getattr(self, self.BRANCH_END).bn.weight)
        return self.has_skip


class MBConv(_Residual):
    """Mobile inverted bottleneck (MobileNetV2 / MnasNet), as in EfficientNet.

    expand 1x1 (skipped when expand_ratio == 1, i.e. the depthwise-separable 'MBConv1')
    -> depthwise kxk (carries the stride) -> SE (ratio of the block's *input* channels)
    -> project 1x1 without activation -> identity residual with drop path when the
    shape allows it (stride 1, in == out) and the spec asks for a skip.
    """

    BRANCH_END = "project"  # the ConvBnAct that ends the residual branch

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        expand_ratio: float = 6.0,
        se_ratio: float = 0.25,
        skip: bool = True,
        activation: str = "swish",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.01,
        padding: str = "symmetric",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        norm = {"bn_eps": bn_eps, "bn_momentum": bn_momentum, "padding": padding}
        mid = expanded_channels(in_channels, expand_ratio)
        self.expand = ConvBnAct(in_channels, mid, 1, activation=activation, **norm) if expand_ratio != 1 else nn.Identity()
        self.dw = ConvBnAct(mid, mid, kernel, stride, groups=mid, activation=activation, **norm)
        self.se = SqueezeExcite(mid, se_channels(in_channels, se_ratio), activation) if se_ratio > 0 else nn.Identity()
        self.project = ConvBnAct(mid, out_channels, 1, activation=None, **norm)
        self._init_residual(has_identity_skip(skip, stride, in_channels, out_channels), drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out


class FusedMBConv(_Residual):
    """Fused-MBConv (EfficientNetV2): MBConv's expand 1x1 and depthwise kxk fused into one regular kxk conv.

    expand kxk (carries the stride) -> SE (ratio of the block's input channels) -> project 1x1
    without activation -> identity residual with drop path, as MBConv. With expand_ratio == 1
    there is no expansion: SE (if any) on the input, then `project` is the single kxk
    conv-BN-activation (TF's FusedMBConvBlock; torchvision's FusedMBConv and timm's ConvBnAct
    block without SE are the same network).
    """

    BRANCH_END = "project"  # the ConvBnAct that ends the residual branch

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        expand_ratio: float = 4.0,
        se_ratio: float = 0.0,
        skip: bool = True,
        activation: str = "swish",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.01,
        padding: str = "symmetric",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        norm = {"bn_eps": bn_eps, "bn_momentum": bn_momentum, "padding": padding}
        squeezed = se_channels(in_channels, se_ratio)
        if expand_ratio == 1:
            self.expand = nn.Identity()
            self.se = SqueezeExcite(in_channels, squeezed, activation) if se_ratio > 0 else nn.Identity()
            self.project = ConvBnAct(in_channels, out_channels, kernel, stride, activation=activation, **norm)
        else:
            mid = expanded_channels(in_channels, expand_ratio)
            self.expand = ConvBnAct(in_channels, mid, kernel, stride, activation=activation, **norm)
            self.se = SqueezeExcite(mid, squeezed, activation) if se_ratio > 0 else nn.Identity()
            self.project = ConvBnAct(mid, out_channels, 1, activation=None, **norm)
        self._init_residual(has_identity_skip(skip, stride, in_channels, out_channels), drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.expand(x)))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out


class ConvBlock(_Residual):
    """A regular kxk conv-BN-activation (MnasNet's "regular conv"), optional SE and identity skip."""

    BRANCH_END = "conv"  # the ConvBnAct that ends the residual branch

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
        skip: bool = True,
        activation: str = "swish",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.01,
        padding: str = "symmetric",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv = ConvBnAct(in_channels, out_channels, kernel, stride, activation=activation, bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding)
        self.se = SqueezeExcite(out_channels, se_channels(in_channels, se_ratio), activation) if se_ratio > 0 else nn.Identity()
        self._init_residual(has_identity_skip(skip, stride, in_channels, out_channels), drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.conv(x))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out


class SeparableConv(_Residual):
    """MobileNetV1's depthwise-separable conv: depthwise kxk-BN-act, then pointwise 1x1-BN-act.

    Unlike MBConv1 (`ds`), the pointwise conv has an activation; MobileNetV1 has no
    residuals, so its specs say `noskip`.
    """

    BRANCH_END = "pw"  # the ConvBnAct that ends the residual branch

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
        skip: bool = True,
        activation: str = "relu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.01,
        padding: str = "symmetric",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        norm = {"bn_eps": bn_eps, "bn_momentum": bn_momentum, "padding": padding}
        self.dw = ConvBnAct(in_channels, in_channels, kernel, stride, groups=in_channels, activation=activation, **norm)
        self.se = SqueezeExcite(in_channels, se_channels(in_channels, se_ratio), activation) if se_ratio > 0 else nn.Identity()
        self.pw = ConvBnAct(in_channels, out_channels, 1, activation=activation, **norm)
        self._init_residual(has_identity_skip(skip, stride, in_channels, out_channels), drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pw(self.se(self.dw(x)))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out


class Bottleneck(_Residual):
    """ResNet's bottleneck (v1.5, as torchvision: the stride sits on the kxk conv).

    1x1 reduce to out/expansion (torchvision's name; the spec's `reduction`) -> kxk (stride) -> optional SE -> 1x1 restore (no activation),
    plus the identity, or a 1x1 projection shortcut where the shape changes; activation
    after the sum. `skip=False` drops the shortcut entirely (a plain network).
    """

    BRANCH_END = "restore"  # the ConvBnAct that ends the residual branch

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        expansion: float = 4.0,
        se_ratio: float = 0.0,
        skip: bool = True,
        activation: str = "relu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.01,
        padding: str = "symmetric",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        norm = {"bn_eps": bn_eps, "bn_momentum": bn_momentum, "padding": padding}
        mid = bottleneck_channels(out_channels, expansion)
        self.reduce = ConvBnAct(in_channels, mid, 1, activation=activation, **norm)
        self.spatial = ConvBnAct(mid, mid, kernel, stride, activation=activation, **norm)
        self.se = SqueezeExcite(mid, se_channels(in_channels, se_ratio), activation) if se_ratio > 0 else nn.Identity()
        self.restore = ConvBnAct(mid, out_channels, 1, activation=None, **norm)
        projection = skip and not has_identity_skip(skip, stride, in_channels, out_channels)
        self.shortcut = ConvBnAct(in_channels, out_channels, 1, stride, activation=None, **norm) if projection else nn.Identity()
        self.act = make_activation(activation)
        self._init_residual(skip, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.restore(self.se(self.spatial(self.reduce(x))))
        if self.has_skip:
            out = self.drop_path(out) + self.shortcut(x)
        return self.act(out)


def make_block(
    kind: str,
    in_channels: int,
    out_channels: int,
    *,
    kernel: int,
    stride: int,
    expand_ratio: float,
    se_ratio: float,
    skip: bool,
    activation: str,
    drop_path: float,
    bn_eps: float,
    bn_momentum: float,
    padding: str,
) -> nn.Module:
    """The block module for a spec's block kind."""
    common = {
        "kernel": kernel,
        "stride": stride,
        "se_ratio": se_ratio,
        "skip": skip,
        "activation": activation,
        "drop_path": drop_path,
        "bn_eps": bn_eps,
        "bn_momentum": bn_momentum,
        "padding": padding,
    }
    if kind in ("ir", "ds"):
        return MBConv(in_channels, out_channels, expand_ratio=expand_ratio, **common)
    if kind == "fused":
        return FusedMBConv(in_channels, out_channels, expand_ratio=expand_ratio, **common)
    if kind == "cv":
        return ConvBlock(in_channels, out_channels, **common)
    if kind == "sep":
        return SeparableConv(in_channels, out_channels, **common)
    if kind == "bt":
        return Bottleneck(in_channels, out_channels, expansion=expand_ratio, **common)
    raise ValueError(f"unknown block kind {kind!r}")
