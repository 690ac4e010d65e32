"""`optimize`: one call that makes a model fast for inference, and the `OptimizedModel` it returns."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn

from effnet.models.fast.folding import fold_batchnorm, squeeze_excite_as_matmul, strip_regularisation
from effnet.models.fast.kernels import fuse_conv_activation, use_inference_kernels

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
CPU_MICRO_BATCH = 8  # images per pass through a compiled graph on the CPU (optimize(compile=True)): see optimize


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
    the plain folded modules. Measurements: ``benchmarks/results/cpu_bound/cpu_bound.md``.

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
    module = _inference_graph(model if inplace else copy.deepcopy(model), fold_bn)
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
        _compile(fast, cudagraphs=cudagraphs, dynamic=dynamic, micro_batch=micro_batch)
    return fast


def _inference_graph(module: nn.Module, fold_bn: bool) -> nn.Module:
    """`module` in eval mode without gradients, BN folded (with `fold_bn`), no dropout or drop path, SE as matmuls."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    if fold_bn:
        fold_batchnorm(module)
    strip_regularisation(module)
    squeeze_excite_as_matmul(module)
    if hasattr(module, "grad_checkpointing"):
        module.grad_checkpointing = False
    return module


def _compile(fast: OptimizedModel, *, cudagraphs: bool | None, dynamic: bool, micro_batch: int | None) -> None:
    """Give `fast` its torch.compile'd runner and micro-batch size (optimize's `compile=True`)."""
    options: dict[str, Any] = {}
    if cudagraphs if cudagraphs is not None else fast.device_type == "cuda":
        options["triton.cudagraphs"] = True
    fast.compile_options = options
    fast.compiled = torch.compile(_Runner(fast), dynamic=dynamic, options=options)
    if micro_batch is not None and micro_batch < 0:
        raise ValueError(f"micro_batch must be a batch size >= 1, 0 (automatic) or None (off), got {micro_batch}")
    fast.micro_batch = (CPU_MICRO_BATCH if fast.device_type == "cpu" else None) if micro_batch == 0 else micro_batch


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
