"""The inference fast path: one call makes a model fast, and a compiled model can be saved and reloaded.

>>> fast = effnet.optimize(model)                    # eval, BN folded, no dropout, channels-last
>>> fast = effnet.optimize(model, compile=True)      # + torch.compile (static shapes; CUDA graphs on GPU)
>>> logits = fast(images)                            # same outputs as model.eval()(images)

`optimize` works on any network built from ``nn.Sequential`` conv -> BatchNorm pairs (effnet's
``ConvBnAct`` of every block kind, torchvision's ``Conv2dNormActivation``); it never changes
the model you pass in unless ``inplace=True``.

Compile once, start fast: `save_compiled` exports the optimized model with ``torch.export``
and compiles it ahead of time with AOTInductor into one ``.pt2`` package; `load_compiled`
loads it in a new process in about 2 s, first batch included (no tracing or code generation).
`compile_cached` does both through a cache directory, so the first process pays the compile
and later ones load.

Where artifacts live and when they are invalid: `compile_cached` writes to ``cache_dir``
(default ``$EFFNET_CACHE_DIR/compiled``, else ``~/.cache/effnet/compiled``) one
``<model>-<key>.pt2`` and a ``.json`` sidecar beside it. The key hashes everything the
compiled code depends on: the weights and buffers (so fine-tuning gives a new key), the
model's class and spec, the input shape (batch size and resolution are compiled in), the
dtype and device, channels-last, and the torch and effnet versions. Any change gives a new
file; stale files are never used and can be deleted at any time (``rm -r`` the directory).
`load_compiled` refuses a package made by another torch version or for another device.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effnet._io import atomic_write, atomic_write_text
from effnet._version import __version__
from effnet.nn.blocks import MBConv
from effnet.nn.layers import ConvBnAct, SqueezeExcite

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
_DROP_CLASS_NAMES = ("StochasticDepth", "DropPath")  # torchvision's and timm's drop path modules
CACHE_ENV = "EFFNET_CACHE_DIR"
CPU_MICRO_BATCH = 8  # images per pass through a compiled graph on the CPU (optimize(compile=True)): see optimize


class CompiledModelError(RuntimeError):
    """A compiled package cannot be used here (other torch version or device, wrong input shape, missing file)."""


# ------------------------------------------------------------------ graph surgery
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


# ------------------------------------------------------------------ eager CPU kernels
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


# ------------------------------------------------------------------ the optimized model
class OptimizedModel(nn.Module):
    """An inference-only wrapper made by `optimize`: converts the input, runs under autocast, returns float32.

    ``module`` is the folded network. Calling runs without autograd (``torch.no_grad``),
    turns the input channels-last when the model is, and on CUDA autocasts to ``dtype``.
    """

    def __init__(self, module: nn.Module, *, channels_last: bool, dtype: torch.dtype | None, device_type: str) -> None:
        super().__init__()
        self.module = module
        self.channels_last = channels_last
        self.dtype = dtype
        self.device_type = device_type
        self.compiled: Any = None  # set by optimize(compile=True); not a submodule (it shares module's parameters)
        self.compile_options: dict[str, Any] = {}
        self.micro_batch: int | None = None  # set by optimize(compile=True): larger batches run through the compiled graph in chunks
        self.spec = getattr(module, "spec", None)
        self.preprocessing = getattr(module, "preprocessing", None)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The uncompiled computation (what gets compiled or exported)."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.dtype is not None and self.dtype != torch.float32:
            with torch.autocast(self.device_type, dtype=self.dtype):
                out = self.module(x)
            return out.float()
        return self.module(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # no autograd graph: a compiled model gets an inference-only graph
        with torch.no_grad():
            if self.compiled is not None:
                chunk = self.micro_batch
                if chunk and x.dim() > 0 and x.shape[0] > chunk:
                    return torch.cat([self.forward(part) for part in x.split(chunk)])
                out = self.compiled(x)
                # CUDA graphs reuse their output buffers on the next call: hand out a copy the caller owns
                return out.clone() if self.compile_options.get("triton.cudagraphs") else out
            return self.run(x)


class _Runner(nn.Module):
    """OptimizedModel.run as a module's forward, for torch.compile and torch.export."""

    def __init__(self, owner: OptimizedModel) -> None:
        super().__init__()
        self.owner = owner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.owner.run(x)


def optimize(
    model: nn.Module,
    *,
    compile: bool = False,
    channels_last: bool = True,
    dtype: str | torch.dtype | None = "auto",
    fold_bn: bool = True,
    inplace: bool = False,
    cudagraphs: bool | None = None,
    dynamic: bool = False,
    fuse_cpu: bool | None = None,
    micro_batch: int | None = 0,
) -> OptimizedModel:
    """Make `model` fast for inference; returns an `OptimizedModel` giving the same outputs as ``model.eval()``.

    Steps: a copy of the model (unless `inplace`) in eval mode; BatchNorm folded into the
    preceding convs (`fold_batchnorm`); dropout and drop path removed; squeeze-excitation
    as matrix products on the pooled vector (`MatmulSqueezeExcite`); weights and input
    channels-last (faster for depthwise and 1x1 convs on CPU and on GPU tensor cores);
    on CUDA, autocast to `dtype` ("auto": bfloat16 where supported, else float16; None or
    "float32": no autocast; ignored on CPU, where float32 is fastest here); and with
    `compile`, ``torch.compile`` with inference settings: static shapes unless `dynamic`
    (one specialised graph per input shape), and CUDA graphs
    on CUDA (`cudagraphs` None: on for CUDA). The first call of each new input shape
    compiles (tens of seconds on a small CPU); `compile_cached` / `save_compiled` avoid
    paying that in every process.

    On the CPU in float32 without `compile` (`fuse_cpu` None: automatic), effnet's MBConv
    blocks and conv-BN-activation layers run through `use_inference_kernels`: the 1x1 convs
    as matrix products on the channels-last view, each depthwise / stem / head conv and its
    activation as one oneDNN primitive with its weight packed once, the SE gate folded into
    the project conv's weight; fewer and cheaper calls per block, faster at batch 1 and 32.
    `fuse_cpu=True` also fuses the conv and activation of other libraries' ``nn.Sequential``
    layers (`fuse_conv_activation`, weights not packed: no faster on its own); False keeps
    the plain folded modules. Measurements: ``benchmarks/results/cpu_bound.md``.

    On the CPU a compiled model runs a batch larger than `micro_batch` (0: automatic,
    `CPU_MICRO_BATCH` on the CPU, off on CUDA; None: off) as chunks of that size through
    one compiled graph and concatenates the outputs: each chunk's activations stay in the
    caches between layers, where a whole batch of 32 at 224 px streams every layer through
    main memory. Outputs are the same per image; a last, smaller chunk compiles its own graph
    once (static shapes), so batch sizes that are multiples of `micro_batch` compile once.

    Inductor's ``freezing`` (weights as constants, oneDNN-prepacked convs with fused
    activations) is not used by `compile`: passed through ``torch.compile(options=...)`` it
    never reaches the freezing pass (the weights stay graph inputs), and forced on through
    the global config it was no faster on B0 on 2 CPU threads, with a longer first compile.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize() needs a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, OptimizedModel):
        raise ValueError("this model is already optimized; pass the original model (OptimizedModel.module is the folded network)")
    module = model if inplace else copy.deepcopy(model)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    if fold_bn:
        fold_batchnorm(module)
    strip_regularisation(module)
    squeeze_excite_as_matmul(module)
    if hasattr(module, "grad_checkpointing"):
        module.grad_checkpointing = False
    param = next(module.parameters(), None)
    device_type = param.device.type if param is not None else "cpu"
    if channels_last:
        module.to(memory_format=torch.channels_last)
    resolved = _resolve_dtype(dtype, device_type)
    eager_cpu = not compile and device_type == "cpu" and resolved in (None, torch.float32)
    if fuse_cpu and not eager_cpu:
        raise ValueError("fuse_cpu is for eager float32 inference on the CPU (torch.compile fuses by itself); drop fuse_cpu=True")
    if fuse_cpu or (fuse_cpu is None and eager_cpu):
        use_inference_kernels(module)
        if fuse_cpu:
            fuse_conv_activation(module)
    fast = OptimizedModel(module, channels_last=channels_last, dtype=resolved, device_type=device_type)
    if compile:
        options: dict[str, Any] = {}
        if cudagraphs if cudagraphs is not None else device_type == "cuda":
            options["triton.cudagraphs"] = True
        fast.compile_options = options
        fast.compiled = torch.compile(_Runner(fast), dynamic=dynamic, options=options)
        if micro_batch is not None and micro_batch < 0:
            raise ValueError(f"micro_batch must be a batch size >= 1, 0 (automatic) or None (off), got {micro_batch}")
        fast.micro_batch = (CPU_MICRO_BATCH if device_type == "cpu" else None) if micro_batch == 0 else micro_batch
    return fast


def _resolve_dtype(dtype: str | torch.dtype | None, device_type: str) -> torch.dtype | None:
    if dtype == "auto":
        if device_type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected 'auto', None or one of {sorted(_DTYPES)}")
    resolved = _DTYPES[dtype]
    if resolved != torch.float32 and device_type == "cpu":
        warnings.warn(f"autocast to {resolved} on CPU is often slower than float32 and changes the outputs; it was asked for, so it is used", stacklevel=3)
    return resolved


# ------------------------------------------------------------------ compile once, start fast
@dataclass(frozen=True)
class ArtifactInfo:
    """What a compiled package was made for (the ``.json`` sidecar beside the ``.pt2``)."""

    key: str
    model: str
    input_shape: tuple[int, ...]
    dtype: str
    device: str
    channels_last: bool
    torch_version: str
    effnet_version: str
    compile_seconds: float
    created: str

    def to_json(self) -> str:
        data = dict(self.__dict__)
        data["input_shape"] = list(self.input_shape)
        return json.dumps(data, indent=2) + "\n"


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's class, spec and every parameter and buffer (values, shapes, dtypes)."""
    digest = hashlib.blake2b(digest_size=16)
    inner = model.module if isinstance(model, OptimizedModel) else model
    digest.update(type(inner).__qualname__.encode())
    spec = getattr(inner, "spec", None)
    if spec is not None and hasattr(spec, "to_string"):
        digest.update(spec.to_string().encode())
    for name, tensor in inner.state_dict().items():
        digest.update(name.encode())
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
        if tensor.numel():
            flat = tensor.detach().cpu().clone(memory_format=torch.contiguous_format).reshape(-1)
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def artifact_key(model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype | None, device: str, channels_last: bool) -> str:
    """The cache key of a compiled package: everything its code depends on (see the module docstring)."""
    parts = [model_fingerprint(model), str(tuple(input_shape)), str(dtype), device, str(channels_last), torch.__version__, __version__, platform.machine()]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=10).hexdigest()


def default_cache_dir() -> Path:
    """``$EFFNET_CACHE_DIR/compiled``, else ``~/.cache/effnet/compiled``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) / "compiled" if root else Path.home() / ".cache" / "effnet" / "compiled"


def save_compiled(
    model: nn.Module,
    path: str | Path,
    example_input: torch.Tensor,
    *,
    channels_last: bool = True,
    dtype: str | torch.dtype | None = "auto",
) -> ArtifactInfo:
    """Compile `model` ahead of time (torch.export + AOTInductor) for inputs shaped like `example_input`; write it to `path`.

    `model` is optimized first (`optimize`, BN folded, channels-last, CUDA autocast) unless
    it already is an `OptimizedModel`. The package (``.pt2``) is written atomically, with a
    ``.json`` sidecar (`ArtifactInfo`) beside it. The shape is static: a package serves
    exactly ``example_input.shape`` (make one per batch size). Compiling B0 takes about a
    minute on a 2-core CPU (B0 batch 32: 14 s measured); loading it and running a first batch about 2 s.
    """
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"a compiled package must end in .pt2, got {path}")
    fast = model if isinstance(model, OptimizedModel) else optimize(model, channels_last=channels_last, dtype=dtype, fuse_cpu=False)
    runner = _Runner(fast).eval()
    device = example_input.device.type
    start = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(runner, (example_input,), strict=False)

        def write(tmp: str) -> None:
            # the temporary name must end in .pt2 for the packager
            target = tmp + ".pt2"
            try:
                torch._inductor.aoti_compile_and_package(program, package_path=target, inductor_configs={"freezing": True})
                os.replace(target, tmp)
            finally:
                if os.path.exists(target):
                    os.unlink(target)

        atomic_write(path, write)
    info = ArtifactInfo(
        key=artifact_key(fast, tuple(example_input.shape), fast.dtype, device, fast.channels_last),
        model=_model_name(fast.module),
        input_shape=tuple(example_input.shape),
        dtype=str(fast.dtype or example_input.dtype).replace("torch.", ""),
        device=device,
        channels_last=fast.channels_last,
        torch_version=torch.__version__,
        effnet_version=__version__,
        compile_seconds=round(time.perf_counter() - start, 2),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    atomic_write_text(_sidecar(path), info.to_json())
    return info


class CompiledModel:
    """A loaded AOTInductor package: call it with a tensor of the shape it was compiled for."""

    def __init__(self, runner: Any, info: ArtifactInfo, path: Path) -> None:
        self._runner = runner
        self.info = info
        self.path = path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) != self.info.input_shape:
            raise CompiledModelError(
                f"{self.path.name} was compiled for inputs shaped {list(self.info.input_shape)}, got {list(x.shape)}; "
                "compile one package per batch size and resolution (effnet.fast.compile_cached does this)"
            )
        with torch.no_grad():
            return self._runner(x)

    def __repr__(self) -> str:
        return f"CompiledModel({self.info.model}, input {list(self.info.input_shape)}, {self.info.dtype}, {self.info.device}, {self.path})"


def load_compiled(path: str | Path, *, device_index: int = -1) -> CompiledModel:
    """Load a package written by `save_compiled`; raises `CompiledModelError` if it was made for another torch or device."""
    path = Path(path)
    sidecar = _sidecar(path)
    if not path.is_file() or not sidecar.is_file():
        raise CompiledModelError(f"no compiled package at {path} (need both {path.name} and {sidecar.name}); make one with effnet.fast.save_compiled")
    data = json.loads(sidecar.read_text())
    info = ArtifactInfo(**{**data, "input_shape": tuple(data["input_shape"])})
    if info.torch_version != torch.__version__:
        raise CompiledModelError(
            f"{path} was compiled by torch {info.torch_version}, this is torch {torch.__version__}: recompile it (or delete it from the cache)"
        )
    if info.device == "cuda" and not torch.cuda.is_available():
        raise CompiledModelError(f"{path} was compiled for CUDA, which is not available here; compile a CPU package")
    runner = torch._inductor.aoti_load_package(str(path), device_index=device_index)
    return CompiledModel(runner, info, path)


def compile_cached(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    cache_dir: str | Path | None = None,
    channels_last: bool = True,
    dtype: str | torch.dtype | None = "auto",
) -> CompiledModel:
    """The compiled package for (model, input shape, dtype, device, versions) from `cache_dir`, compiling it on a miss.

    The first process pays the ahead-of-time compile; every later one (same weights, shape,
    dtype, device and versions) loads the package in about 2 s.
    """
    fast = model if isinstance(model, OptimizedModel) else optimize(model, channels_last=channels_last, dtype=dtype, fuse_cpu=False)
    device = example_input.device.type
    key = artifact_key(fast, tuple(example_input.shape), fast.dtype, device, fast.channels_last)
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = directory / f"{_model_name(fast.module)}-{key}.pt2"
    if not (path.is_file() and _sidecar(path).is_file()):
        save_compiled(fast, path, example_input)
    return load_compiled(path)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _model_name(module: nn.Module) -> str:
    spec = getattr(module, "spec", None)
    name = getattr(spec, "name", None) or type(module).__name__
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))
