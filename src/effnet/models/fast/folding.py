"""Graph surgery for inference: BatchNorm folded into the convs, dropout and drop path removed, SE as matrix products."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from effnet.models.nn.layers import SqueezeExcite

_DROP_CLASS_NAMES = ("StochasticDepth", "DropPath")  # torchvision's and timm's drop path modules


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d inside an ``nn.Sequential`` into the conv; returns how many.

    The BN is replaced by ``nn.Identity`` and the conv gets ``w * g / sqrt(var + eps)`` and
    ``(b - mean) * g / sqrt(var + eps) + beta`` (computed in float64, so the folded conv
    equals conv -> BN in eval mode up to float32 rounding). This matches effnet's
    ``ConvBnAct`` of every block kind and torchvision's ``Conv2dNormActivation``. Only
    valid for inference: the folded model uses the running statistics, never batch ones.
    """
    folded = 0
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, bn = module._modules[first], module._modules[second]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if bn.running_mean is None or bn.running_var is None:
                continue  # BN without running statistics normalises with batch statistics even in eval: not foldable
            _fold_into(conv, bn)
            module._modules[second] = nn.Identity()
            folded += 1
    return folded


def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    dtype = conv.weight.dtype
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
    weight = conv.weight.double() * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(((bias - mean) * scale + beta).to(dtype), requires_grad=conv.weight.requires_grad)


class MatmulSqueezeExcite(SqueezeExcite):
    """SqueezeExcite whose two 1x1 convs run as matrix products on the pooled (N, C) vector (inference).

    Same weights and keys; a 1x1 conv on a 1x1 map still goes through the conv machinery,
    a visible share of folded B0's time at batch 1 on the CPU. Only the fast path uses it:
    the reassociated sums differ from the conv's in the last bits, which deep nets with
    random BN amplify past the 1e-4 parity bound with timm (``cpu_bound.md`` has the numbers).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean((2, 3))
        hidden = self.act(F.linear(pooled, self.reduce.weight.flatten(1), self.reduce.bias))
        logits = F.linear(hidden, self.expand.weight.flatten(1), self.expand.bias)
        return x * logits.sigmoid()[:, :, None, None]


def squeeze_excite_as_matmul(model: nn.Module) -> int:
    """Swap every effnet ``SqueezeExcite`` in `model` for `MatmulSqueezeExcite` in place; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is SqueezeExcite:
            module.__class__ = MatmulSqueezeExcite
            count += 1
    return count


def strip_regularisation(model: nn.Module) -> int:
    """Replace dropout and drop-path (stochastic depth) modules by ``nn.Identity``; returns how many.

    They are no-ops in eval mode already; removing them saves a Python call each and
    keeps them out of compiled and exported graphs.
    """
    removed = 0
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            if isinstance(child, nn.modules.dropout._DropoutNd | nn.Dropout) or type(child).__name__ in _DROP_CLASS_NAMES:
                parent._modules[name] = nn.Identity()
                removed += 1
    return removed
