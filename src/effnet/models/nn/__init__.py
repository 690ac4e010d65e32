"""Layers and blocks that `effnet.build` assembles from a `NetSpec`."""

from effnet.models.nn.blocks import MBConv
from effnet.models.nn.layers import Conv2dSame, ConvBnAct, SqueezeExcite, make_activation

__all__ = ["Conv2dSame", "ConvBnAct", "MBConv", "SqueezeExcite", "make_activation"]
