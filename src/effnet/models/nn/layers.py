"""Small building blocks: activation by name, conv-BN-activation, TF 'same' padding, squeeze-excitation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_activation(name: str) -> nn.Module:
    """The activation a spec names: swish (= SiLU, the paper's), relu6 (Lite) or relu."""
    if name == "swish":
        return nn.SiLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"unknown activation {name!r}; expected 'swish', 'relu6' or 'relu'")


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's 'SAME' padding: output size ceil(input / stride).

    TF pads the extra pixel at the bottom/right when the total padding is odd, which
    PyTorch's symmetric `padding=` cannot express. Weights trained in TF need this for
    stride-2 convs; stride-1 odd kernels pad symmetrically and use plain Conv2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_h, in_w = x.shape[-2], x.shape[-1]
        pad_h = _same_pad(in_h, self.kernel_size[0], self.stride[0], self.dilation[0])
        pad_w = _same_pad(in_w, self.kernel_size[1], self.stride[1], self.dilation[1])
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> int:
    out = (size + stride - 1) // stride
    return max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def make_conv(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
    padding: str = "symmetric",
) -> nn.Conv2d:
    """A conv with symmetric padding k//2, or TF 'same' padding where that differs (stride > 1)."""
    if padding == "tf_same" and stride > 1:
        return Conv2dSame(in_channels, out_channels, kernel, stride, padding=0, groups=groups, bias=bias)
    return nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=bias)


class ConvBnAct(nn.Sequential):
    """conv -> BatchNorm -> activation (activation None: conv -> BN only).

    A Sequential with the fixed names conv/bn/act, so state-dict keys are readable
    (``stages.1.0.dw.conv.weight``) and BN folding can find its conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = "swish",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.01,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        self.conv = make_conv(in_channels, out_channels, kernel, stride, groups, padding=padding)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = make_activation(activation) if activation else nn.Identity()


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al.): global pool -> 1x1 reduce -> act -> 1x1 expand -> sigmoid gate."""

    def __init__(self, channels: int, squeezed: int, activation: str = "swish") -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1, bias=True)
        self.act = make_activation(activation)
        self.expand = nn.Conv2d(squeezed, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.expand(self.act(self.reduce(scale)))
        return x * scale.sigmoid()
