"""Blocks: MBConv, the inverted bottleneck with depthwise conv and squeeze-excitation (paper Table 1)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from effnet.nn.layers import ConvBnAct, SqueezeExcite


class MBConv(nn.Module):
    """Mobile inverted bottleneck (MobileNetV2 / MnasNet), as in EfficientNet.

    expand 1x1 (skipped when expand_ratio == 1, i.e. the depthwise-separable 'MBConv1')
    -> depthwise kxk (carries the stride) -> SE (ratio of the block's *input* channels)
    -> project 1x1 without activation -> identity residual with drop path when the
    shape allows it (stride 1, in == out) and the spec asks for a skip.
    """

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
        self.has_skip = skip and stride == 1 and in_channels == out_channels
        self.drop_path = StochasticDepth(drop_path, "row") if self.has_skip and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out


def expanded_channels(in_channels: int, expand_ratio: float) -> int:
    """Width inside the bottleneck: in_channels * expand_ratio (as in the TF reference)."""
    return int(round(in_channels * expand_ratio))


def se_channels(in_channels: int, se_ratio: float) -> int:
    """Squeezed width of SE: se_ratio of the block's input channels, at least 1."""
    return max(1, int(in_channels * se_ratio))
