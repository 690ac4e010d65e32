"""The eager CPU kernels of the fast path: conv + activation as one oneDNN primitive with its weight packed once.

`InferenceMBConv` / `InferenceConvBnAct` are effnet's blocks with a forward of fewer, cheaper calls
(`use_inference_kernels`); `FusedConvAct` does the same for other libraries' ``nn.Sequential`` layers
(`fuse_conv_activation`). CPU, float32, eager, after `effnet.models.fast.folding.fold_batchnorm`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effnet.models.fast.folding import MatmulSqueezeExcite
from effnet.models.nn.blocks import MBConv
from effnet.models.nn.layers import ConvBnAct, SqueezeExcite


class FusedConvAct(nn.Module):
    """A (BN-folded) Conv2d and its activation as one oneDNN primitive (``torch.ops.mkldnn._convolution_pointwise``).

    CPU, float32, eager only: saves the separate pass over memory that the activation
    (and, before folding, the BN) costs in eager PyTorch. Made by `fuse_conv_activation`.
    """

    _ATTRS = {nn.SiLU: ("swish", []), nn.ReLU: ("relu", []), nn.ReLU6: ("hardtanh", [0.0, 6.0])}

    def __init__(self, conv: nn.Conv2d, activation: nn.Module | None) -> None:
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.padding, self.stride, self.dilation, self.groups = list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups
        self.attr, self.scalars = self._ATTRS[type(activation)] if activation is not None else ("none", [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups, self.attr, self.scalars, ""
        )


def fuse_conv_activation(model: nn.Module) -> int:
    """Replace each plain ``nn.Conv2d`` in an ``nn.Sequential`` (and the SiLU / ReLU / ReLU6 after it) by a `FusedConvAct`; returns how many.

    For CPU float32 inference after `fold_batchnorm` (the BN between conv and activation is
    then an ``nn.Identity``, skipped here). Convs with TF 'same' padding (``Conv2dSame``) or
    a non-zero padding mode stay as they are. Needs PyTorch's oneDNN (mkldnn) backend.
    """
    if not torch.backends.mkldnn.is_available():
        return 0
    fused = 0
    for module in _modules_outside_inference_kernels(model):
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for index, name in enumerate(names):
            conv = module._modules[name]
            if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
                continue
            following = [n for n in names[index + 1 :] if not isinstance(module._modules[n], nn.Identity)]
            act_name = following[0] if following and type(module._modules[following[0]]) in FusedConvAct._ATTRS else None
            module._modules[name] = FusedConvAct(conv, module._modules[act_name] if act_name else None)
            if act_name:
                module._modules[act_name] = nn.Identity()
            fused += 1
    return fused


def _modules_outside_inference_kernels(model: nn.Module) -> list[nn.Module]:
    """`model`'s modules, less those run by an `InferenceMBConv` / `InferenceConvBnAct` (their forward reads their convs)."""
    found: list[nn.Module] = []

    def walk(module: nn.Module) -> None:
        if isinstance(module, _InferenceKernels):
            return
        found.append(module)
        for child in module.children():
            walk(child)

    walk(model)
    return found


_ONEDNN_ATTRS = FusedConvAct._ATTRS


def _activate_(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`act` applied in place (SiLU, ReLU, ReLU6: the kinds in `_ONEDNN_ATTRS`)."""
    if type(act) is nn.SiLU:
        return F.silu(x, inplace=True)
    if type(act) is nn.ReLU:
        return F.relu_(x)
    return F.hardtanh_(x, 0.0, 6.0)


class _PackedWeight:
    """A conv weight reordered once into oneDNN's blocked layout, re-made when the weight changes.

    The packed tensor is an opaque oneDNN tensor, which can be neither copied nor pickled:
    `_InferenceKernels` drops it from copies and pickles and the next call re-packs.
    """

    def __init__(self) -> None:
        self.key: tuple[int, int] | None = None
        self.packed: torch.Tensor | None = None

    def get(self, conv: nn.Conv2d) -> torch.Tensor:
        weight = conv.weight
        key = (weight._version if not weight.is_inference() else -1, weight.data_ptr())  # inference tensors have no version counter
        if key != self.key:
            self.packed = torch.ops.mkldnn._reorder_convolution_weight(
                weight.contiguous(), list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups, None
            )
            self.key = key
        return self.packed


class _InferenceKernels(nn.Module):
    """Shared by the inference-kernel classes: a cache of packed weights that copies and pickles leave behind."""

    def _packed(self, name: str, conv: nn.Conv2d) -> torch.Tensor:
        cache = self.__dict__.setdefault("_packed_weights", {})
        if name not in cache:
            cache[name] = _PackedWeight()
        return cache[name].get(conv)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_packed_weights", None)
        return state


def _fused_conv(module: _InferenceKernels, name: str, conv: nn.Conv2d, x: torch.Tensor, act: nn.Module) -> torch.Tensor:
    if torch.compiler.is_compiling():  # traced: the plain ops, which the compiler fuses itself (a packed weight cannot be traced)
        y = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        return y if isinstance(act, nn.Identity) else _activate_(act, y)
    attr, scalars = _ONEDNN_ATTRS.get(type(act), ("none", []))
    return torch.ops.mkldnn._convolution_pointwise(
        x, module._packed(name, conv), conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups, attr, scalars, ""
    )


class InferenceConvBnAct(ConvBnAct, _InferenceKernels):
    """A BN-folded `ConvBnAct` (stem, head, the convs of non-MBConv blocks) as one oneDNN conv with its activation fused.

    Same submodules, parameters and state-dict keys as the `ConvBnAct` it was made from
    (`use_inference_kernels` swaps the class); the weight is packed into oneDNN's layout on
    the first call. CPU, float32, eager inference only.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _fused_conv(self, "conv", self.conv, x, self.act)


class InferenceMBConv(MBConv, _InferenceKernels):
    """A BN-folded `MBConv` as few ATen calls as possible, for channels-last CPU float32 eager inference.

    - the expansion 1x1 conv is a matrix product on the channels-last (N*H*W, C) view of
      the input, with the activation applied in place;
    - the depthwise conv and its activation are one oneDNN primitive with the weight packed once;
    - the SE pool is a sum whose 1/(H*W) rides on the reduce matmul, and the SE gate scales
      the project conv's weight per image (``(y * g) @ W^T = y @ (W * g)^T``), a
      C_mid x C_out product instead of a pass over the expanded map, where the map has at
      least as many pixels as the weight has columns (else the map is scaled in place);
    - the project 1x1 conv is a (batched) matrix product, and the residual is added in place.

    Same submodules, parameters and state-dict keys as the `MBConv` it was made from
    (`use_inference_kernels` swaps the class). Outputs equal the plain block's up to float32
    reassociation.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        n, c, h, w = x.shape
        y = x
        if not isinstance(self.expand, nn.Identity):
            conv = self.expand.conv
            y = torch.addmm(conv.bias, x.permute(0, 2, 3, 1).reshape(n * h * w, c), conv.weight.flatten(1).t())
            y = _activate_(self.expand.act, y).view(n, h, w, -1).permute(0, 3, 1, 2)
        y = _fused_conv(self, "dw", self.dw.conv, y, self.dw.act)
        mid, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
        rows = y.permute(0, 2, 3, 1).reshape(n, out_h * out_w, mid)
        project = self.project.conv
        weight = project.weight.flatten(1).t()  # (C_mid, C_out)
        se = self.se
        if isinstance(se, nn.Identity):
            out = torch.addmm(project.bias, rows.reshape(n * out_h * out_w, mid), weight)
        else:
            hidden = torch.addmm(se.reduce.bias, rows.sum(1), se.reduce.weight.flatten(1).t(), alpha=1.0 / (out_h * out_w))
            gate = torch.addmm(se.expand.bias, _activate_(se.act, hidden), se.expand.weight.flatten(1).t()).sigmoid_()
            if out_h * out_w >= weight.shape[1]:  # the map has more pixels than the weight has columns: scale the weight
                scaled = weight.unsqueeze(0) * gate.unsqueeze(2)  # (N, C_mid, C_out): the gate folded into the weight, per image
                out = torch.addmm(project.bias, rows[0], scaled[0]) if n == 1 else torch.baddbmm(project.bias, rows, scaled)
            else:  # scale the (smaller) map, in place: it is this block's own depthwise output
                out = torch.addmm(project.bias, rows.mul_(gate.unsqueeze(1)).reshape(n * out_h * out_w, mid), weight)
        out = out.view(n, out_h, out_w, -1).permute(0, 3, 1, 2)
        if self.has_skip:
            out.add_(x)
        return out


def _plain_folded(block: nn.Module, *, pointwise: bool = False, act: bool = True) -> bool:
    """Whether `block` is a BN-folded effnet ConvBnAct with a plain zero-padded Conv2d (1x1 stride 1 when `pointwise`)."""
    if type(block) is not ConvBnAct or not isinstance(block.bn, nn.Identity):
        return False
    conv = block.conv
    if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str) or conv.bias is None:
        return False
    if pointwise and (conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1):
        return False
    return isinstance(block.act, nn.Identity) or (act and type(block.act) in _ONEDNN_ATTRS)


def _mbconv_supported(block: nn.Module) -> bool:
    se = block.se
    se_ok = isinstance(se, nn.Identity) or (type(se) in (SqueezeExcite, MatmulSqueezeExcite) and type(se.act) in _ONEDNN_ATTRS)
    return (
        (isinstance(block.expand, nn.Identity) or _plain_folded(block.expand, pointwise=True))
        and _plain_folded(block.dw)
        and se_ok
        and _plain_folded(block.project, pointwise=True, act=False)
        and isinstance(block.project.act, nn.Identity)
        and isinstance(block.drop_path, nn.Identity)
    )


def use_inference_kernels(model: nn.Module) -> int:
    """Swap BN-folded effnet `MBConv` blocks and `ConvBnAct` layers for `InferenceMBConv` / `InferenceConvBnAct` in place; returns how many.

    For CPU float32 eager inference of a channels-last model after `fold_batchnorm` and
    `strip_regularisation` (what `optimize` does first). Only the classes change: modules,
    parameters and state-dict keys stay. Blocks it cannot run (TF 'same' padding, other
    activations, unfolded BN) keep their own forward. Needs PyTorch's oneDNN (mkldnn) backend.
    """
    if not torch.backends.mkldnn.is_available():
        return 0
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()):
        return 0

    def swap(module: nn.Module) -> int:
        if type(module) is MBConv and _mbconv_supported(module):
            module.__class__ = InferenceMBConv
            return 1  # its convs run inside its forward: leave them as they are
        if _plain_folded(module):
            module.__class__ = InferenceConvBnAct
            return 1
        return sum(swap(child) for child in module.children())

    return swap(model)
