"""Memory-lean training ops: activations recomputed in backward instead of kept, swapped into a built model.

In an MBConv block plain autograd keeps seven tensors of the expanded width alive until
backward: expand conv output (for BN), expand BN output (for the activation), activation
output (for the depthwise conv), depthwise conv output, its BN output, its activation output
(for the SE multiply) and the SE output (for the project conv). Custom autograd
functions drop five of them, keeping only the two conv outputs:

- `BnActFunction`: train-mode BatchNorm and the activation in one op that saves only its
  input (the conv output, which plain BN keeps anyway) and the per-channel batch statistics;
  backward recomputes the normalised values and the activation's derivative. Saves the BN
  output of every conv -> BN -> activation.
- `GateFunction`: the SE gate ``x * sigmoid(z)``. It saves its *output* (which the next
  conv keeps anyway, so it costs nothing) and the tiny ``z``: ``d/dx = sigmoid(z)`` needs no
  ``x``, and ``d/dz = sum(grad * x) * s * (1 - s) = sum(grad * out) * (1 - s)``, so ``x``
  is never needed. Saves the activation output that the gate multiplies.
- Recipes (`RecomputedInputConvFunction`): the output of a lean op carries how to rebuild
  it, ``act(y * scale + shift) [* sigmoid(z)]``, from tensors that are kept anyway (the BN
  input ``y``, the batch's per-channel affine, the SE logits ``z``). The conv that consumes
  it (depthwise after expand, project after SE) and the SE gate keep that recipe instead of
  the activation and rebuild it in backward, two elementwise passes. Saves the activation
  output fed to the depthwise conv and the SE output. A recipe is ignored -- the tensor kept
  as usual -- when the tensor was changed in place since, under AMP autocast and inside
  ``torch.compile`` (whose partitioner picks its own recomputation).

Measured on B0 at 224 px, batch 4: autograd keeps 337 MB plain, 109 MB lean (0.32x).

`SwishFunction` (swish / SiLU that saves its input and recomputes the sigmoid) is the
classic "memory-efficient swish"; PyTorch's native SiLU already saves only its input, so
on its own it saves nothing over ``nn.SiLU`` and is used only where no fused op applies.

`use_memory_efficient_ops(model)` swaps these in by changing the class of effnet's
``ConvBnAct``, ``SqueezeExcite`` and ``nn.SiLU`` modules to subclasses: parameters, buffers
and state-dict keys are untouched, and `revert_memory_efficient_ops` undoes it. The lean
path runs only when training with autograd on; in eval mode, under ``torch.no_grad``,
TorchScript scripting and tracing (ONNX export) the modules run the plain ops, so
exported and scripted models are the same as without the swap.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effnet.models.nn.layers import ConvBnAct, SqueezeExcite

ACTIVATIONS = ("swish", "relu", "relu6", "identity")


# ------------------------------------------------------------------ autograd functions
def _act_forward_(y: torch.Tensor, act: str) -> torch.Tensor:
    """The activation, in place on a temporary."""
    if act == "swish":
        return F.silu(y, inplace=True)
    if act == "relu":
        return F.relu(y, inplace=True)
    if act == "relu6":
        return F.hardtanh(y, 0.0, 6.0, inplace=True)
    return y


def _act_grad(grad: torch.Tensor, y: torch.Tensor, act: str, into_y: bool = False) -> torch.Tensor:
    """grad * act'(y), each one fused ATen backward kernel (one pass over memory).

    `into_y` writes the result over `y` (a recomputed temporary) instead of a new tensor:
    elementwise, so reading and writing the same element is safe, and a fresh tensor costs
    page faults when the allocator hands memory back to the OS (`effnet.models.allocator`).
    """
    if act == "identity":
        return grad
    out = {"grad_input": y} if into_y else {}
    if act == "swish":
        return torch.ops.aten.silu_backward(grad, y, **out)
    if act == "relu":
        return torch.ops.aten.threshold_backward(grad, y, 0, **out)
    return torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0, **out)


# ------------------------------------------------------------------ recomputable activations
# A lean op's output carries a recipe to rebuild it from tensors that are kept for backward anyway
# (the BN input, the per-channel affine, the SE logits). Its consumers -- the next conv and the
# SE gate -- keep the recipe instead of the output, so the activation is freed after forward.
_RECIPE_ATTR = "_effnet_recipe"
_RECOMPUTE_DTYPES = (torch.float32, torch.float64)  # bf16/fp16 activations keep the plain lean ops: a rebuild would change dtypes


class _Scratch(threading.local):
    """Per-thread buffers that the backward recomputations write into instead of fresh tensors.

    Why: every rebuilt activation lives only inside one backward function (the ATen backward
    kernel it feeds returns new tensors), so one buffer per dtype and device, grown to the
    largest one, serves them all in turn; a fresh tensor per recomputation costs page faults
    when freed memory goes back to the OS (`effnet.models.allocator`). Dropped by the next forward
    of any lean module (training or eval), so it never adds to a forward's peak.
    """

    def __init__(self) -> None:
        self.buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


_scratch = _Scratch()


def _scratch_like(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Uninitialised memory shaped and laid out like `t` (dense: contiguous or channels-last), valid until the next call."""
    if not (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)):
        return torch.empty_like(t, dtype=dtype)
    key = (t.device, dtype)
    buffer = _scratch.buffers.get(key)
    if buffer is None or buffer.numel() < t.numel():
        _scratch.buffers.pop(key, None)  # free the old one before allocating the bigger one
        buffer = _scratch.buffers[key] = torch.empty(t.numel(), dtype=dtype, device=t.device)
    return buffer.as_strided(t.shape, t.stride())


def _affine(y: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``y * scale + shift`` per channel (dim 1), in one pass, into the scratch buffer (in scale's dtype)."""
    shape = (1, -1) + (1,) * (y.dim() - 2)
    return torch.addcmul(shift.view(shape), y.to(scale.dtype), scale.view(shape), out=_scratch_like(y, scale.dtype))


class _Recipe:
    """``act(y * scale + shift) [* sigmoid(gate)]``: how to rebuild an activation that was not kept."""

    __slots__ = ("act", "gate", "scale", "shift", "version", "y")

    def __init__(self, act: str, y: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, gate: torch.Tensor | None = None) -> None:
        self.act, self.y, self.scale, self.shift, self.gate = act, y, scale, shift, gate
        self.version = -1

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.y, self.scale, self.shift) + (() if self.gate is None else (self.gate,))

    @staticmethod
    def compute(act: str, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The activation again, from `tensors()` as saved (in backward)."""
        y, scale, shift, *gate = tensors
        out = _act_forward_(_affine(y, scale, shift), act)
        return out.mul_(torch.sigmoid(gate[0])) if gate else out

    def with_gate(self, gate: torch.Tensor) -> _Recipe:
        return _Recipe(self.act, self.y, self.scale, self.shift, gate.detach())


def _scale_shift(
    weight: torch.Tensor | None, bias: torch.Tensor | None, mean: torch.Tensor, invstd: torch.Tensor, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train-mode BN as a per-channel affine: ``bn(x) = x * scale + shift`` for this batch's statistics."""
    dtype = dtype or mean.dtype
    scale = invstd.to(dtype) if weight is None else invstd.to(dtype) * weight.detach().to(dtype)
    shift = -mean.to(dtype) * scale + (0.0 if bias is None else bias.detach().to(dtype))
    return scale, shift


def _attach_recipe(out: torch.Tensor, recipe: _Recipe) -> None:
    if torch.compiler.is_compiling():  # compiled graphs choose their own recomputation
        return
    recipe.version = out._version
    setattr(out, _RECIPE_ATTR, recipe)


def _recipe_of(x: torch.Tensor) -> _Recipe | None:
    """The recipe of a lean op's output, unless the tensor was changed in place since (then it must be kept)."""
    recipe = getattr(x, _RECIPE_ATTR, None)
    if recipe is None or recipe.version != x._version or torch.compiler.is_compiling() or torch.is_autocast_enabled(x.device.type):
        return None
    return recipe


class RecomputedInputConvFunction(torch.autograd.Function):
    """A conv whose input is rebuilt from its `_Recipe` in backward instead of being kept.

    Forward is ``F.conv2d``; backward recomputes the input (two elementwise passes) and
    hands it to ATen's ``convolution_backward``, the kernel plain autograd would call.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
        recipe: _Recipe,
    ) -> torch.Tensor:
        ctx.save_for_backward(weight, *recipe.tensors())
        ctx.conv = (list(stride), list(padding), list(dilation), groups)
        ctx.act, ctx.bias_sizes = recipe.act, None if bias is None else [bias.shape[0]]
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, *recipe = ctx.saved_tensors
        x = _Recipe.compute(ctx.act, tuple(recipe))
        stride, padding, dilation, groups = ctx.conv
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.bias_sizes is not None and ctx.needs_input_grad[2]]
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, x, weight, ctx.bias_sizes, stride, padding, dilation, False, [0] * len(stride), groups, mask
        )
        return grad_x, grad_w, grad_b, None, None, None, None, None


def conv(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``, keeping `x`'s recipe instead of `x` for backward when `x` came from a lean op."""
    recipe = _recipe_of(x)
    if recipe is None or type(layer) is not nn.Conv2d or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        return layer(x)
    return RecomputedInputConvFunction.apply(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups, recipe)


class SwishFunction(torch.autograd.Function):
    """swish(x) = x * sigmoid(x), saving only x; backward recomputes sigmoid(x)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return F.silu(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return _act_grad(grad, x, "swish")


class BnActFunction(torch.autograd.Function):
    """Train-mode BatchNorm2d followed by an activation, saving only the input and the batch statistics.

    Forward updates the running statistics exactly like ``F.batch_norm(training=True)``.
    Backward recomputes ``y = (x - mean) * invstd * weight + bias`` (in float32), applies the
    activation's derivative and hands the result to ATen's BatchNorm backward.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        momentum: float,
        eps: float,
        act: str,
    ) -> torch.Tensor:
        out, mean, invstd = torch.ops.aten.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.eps, ctx.act = eps, act
        out = _act_forward_(out, act)
        if x.dtype in _RECOMPUTE_DTYPES:  # the consumer may keep x (saved here anyway) instead of `out`
            scale, shift = _scale_shift(weight, bias, mean, invstd)
            _attach_recipe(out, _Recipe(act, x.detach(), scale, shift))
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, bias, mean, invstd = ctx.saved_tensors
        if ctx.act == "identity":  # no activation: BN's backward needs no recomputed output
            grad_y = grad
        else:
            acc = torch.promote_types(x.dtype, torch.float32)  # recompute in float32 at least (bf16/fp16 activations under AMP)
            scale, shift = _scale_shift(weight, bias, mean, invstd, acc)
            y = _affine(x, scale, shift)  # the BN output, recomputed in one pass
            grad_y = _act_grad(grad.to(acc), y, ctx.act, into_y=True).to(x.dtype)  # y is scratch: overwrite it
            del y
        mask = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[2]]
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(grad_y, x, weight, None, None, mean, invstd, True, ctx.eps, mask)
        return grad_x, grad_w, grad_b, None, None, None, None, None


class GateFunction(torch.autograd.Function):
    """out = x * sigmoid(z) (the SE gate), saving out and z but not x (see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = x * torch.sigmoid(z)
        recipe = _recipe_of(x)
        if recipe is None:
            ctx.save_for_backward(z, out)
            ctx.act = None
        else:  # keep how to rebuild `out`, not `out`; so does the conv that consumes it
            recipe = recipe.with_gate(z)
            ctx.save_for_backward(z, *recipe.tensors())
            ctx.act = recipe.act
            _attach_recipe(out, recipe)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, *kept = ctx.saved_tensors
        s = torch.sigmoid(z)
        grad_x = grad * s
        # d out / d z = x * s * (1 - s) = out * (1 - s): x cancels
        # a rebuilt `out` is scratch: multiply in place
        product = grad * kept[0] if ctx.act is None else _Recipe.compute(ctx.act, tuple(kept)).mul_(grad)
        reduce_dims = [d for d in range(grad.dim()) if z.shape[d] == 1 and grad.shape[d] != 1]
        acc = torch.promote_types(z.dtype, torch.float32)
        grad_z = product.sum(reduce_dims, keepdim=True, dtype=acc) * (1.0 - s.to(acc))
        return grad_x, grad_z.to(z.dtype)


def swish(x: torch.Tensor) -> torch.Tensor:
    """Memory-efficient swish when autograd records, plain ``F.silu`` otherwise."""
    if torch.is_grad_enabled() and x.requires_grad:
        return SwishFunction.apply(x)
    return F.silu(x)


def bn_act(x: torch.Tensor, bn: nn.BatchNorm2d, act: str) -> torch.Tensor:
    """``act(bn(x))`` for a BatchNorm in training mode, through `BnActFunction` (running statistics updated as by ``bn(x)``)."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average, as nn.BatchNorm2d does
            momentum = 1.0 / float(bn.num_batches_tracked)
    return BnActFunction.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, momentum, bn.eps, act)


def gate(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(z)`` that does not keep `x` for backward."""
    return GateFunction.apply(x, z)


# ------------------------------------------------------------------ modules swapped in
class MemoryEfficientSwish(nn.SiLU):
    """nn.SiLU whose training-time backward recomputes the sigmoid (plain SiLU when scripting, tracing or not training)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and not torch.jit.is_tracing() and self.training and torch.is_grad_enabled():
            return self._lean(x)
        return F.silu(x, inplace=self.inplace)

    @torch.jit.unused
    def _lean(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x)


class LeanConvBnAct(ConvBnAct):
    """ConvBnAct whose BN and activation run as one `BnActFunction` when training (same parameters and keys)."""

    act_kind = "swish"  # set per instance by use_memory_efficient_ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._release_scratch()
        if not torch.jit.is_scripting() and not torch.jit.is_tracing() and self.training and torch.is_grad_enabled():
            return self._lean(x)
        return self.act(self.bn(self.conv(x)))

    @torch.jit.unused
    def _release_scratch(self) -> None:
        """Any forward (training or eval) frees the last backward's scratch buffer: not needed until the next backward."""
        if _scratch.buffers and not torch.compiler.is_compiling():
            _scratch.buffers.clear()

    @torch.jit.unused
    def _lean(self, x: torch.Tensor) -> torch.Tensor:
        x = conv(self.conv, x)
        if self.bn.training:
            return bn_act(x, self.bn, self.act_kind)
        return self.act(self.bn(x))  # frozen BN (fine-tuning): plain ops


class LeanSqueezeExcite(SqueezeExcite):
    """SqueezeExcite whose gate multiply does not keep its input for backward when training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.expand(self.act(self.reduce(scale)))
        if not torch.jit.is_scripting() and not torch.jit.is_tracing() and self.training and torch.is_grad_enabled():
            return self._lean(x, scale)
        return x * scale.sigmoid()

    @torch.jit.unused
    def _lean(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return gate(x, scale)


def _act_kind(act: nn.Module) -> str | None:
    if type(act) in (nn.SiLU, MemoryEfficientSwish):
        return "swish"
    if type(act) is nn.ReLU:
        return "relu"
    if type(act) is nn.ReLU6:
        return "relu6"
    if type(act) is nn.Identity:
        return "identity"
    return None


# Under torch.compile the lean ops above hide their saving from the compiler, and a compiled graph with them kept more
# memory than plain compile (benchmarks/results/train_memory_compile/train_memory_compile.md). There the memory option is the compiler's
# own: its partitioner may keep this fraction of the activations and recomputes the rest in backward.
COMPILED_ACTIVATION_MEMORY_BUDGET = 0.5


def compiled_memory_budget(budget: float = COMPILED_ACTIVATION_MEMORY_BUDGET) -> Any:
    """Context for the forward passes of a ``torch.compile``d training model: the partitioner (which runs when the
    forward-backward graph is first compiled) keeps at most `budget` of the activations, recomputing the rest."""
    import torch._functorch.config as functorch_config

    return functorch_config.patch(activation_memory_budget=budget)


def use_memory_efficient_ops(model: nn.Module) -> dict[str, int]:
    """Swap the memory-lean ops into `model` in place; returns how many modules of each kind were swapped.

    Every ``ConvBnAct`` (any block kind) with a BatchNorm2d and a swish, ReLU, ReLU6 or no
    activation and nothing after it (not ResNet's stem, which ends in a max pool) becomes a
    `LeanConvBnAct`, every ``SqueezeExcite`` a `LeanSqueezeExcite`, and every other
    ``nn.SiLU`` a `MemoryEfficientSwish`. Parameters, buffers, state-dict keys
    and eval-mode outputs are unchanged; training gives the same gradients (to float32
    rounding) with less activation memory, at the price of recomputing BN and the
    activation in backward.
    """
    counts = {"conv_bn_act": 0, "squeeze_excite": 0, "swish": 0}
    for module in model.modules():
        if (
            type(module) is ConvBnAct
            and list(module._modules) == ["conv", "bn", "act"]
            and isinstance(module.bn, nn.BatchNorm2d)
            and _act_kind(module.act) is not None
        ):
            kind = _act_kind(module.act)
            module.__class__ = LeanConvBnAct
            module.act_kind = kind  # instance attribute: TorchScript sees it as a str constant of the module
            counts["conv_bn_act"] += 1
        elif type(module) is SqueezeExcite:
            module.__class__ = LeanSqueezeExcite
            counts["squeeze_excite"] += 1
        elif type(module) is nn.SiLU:
            module.__class__ = MemoryEfficientSwish
            counts["swish"] += 1
    return counts


def revert_memory_efficient_ops(model: nn.Module) -> int:
    """Undo `use_memory_efficient_ops` in place (the plain classes again); returns how many modules changed."""
    plain = {LeanConvBnAct: ConvBnAct, LeanSqueezeExcite: SqueezeExcite, MemoryEfficientSwish: nn.SiLU}
    changed = 0
    for module in model.modules():
        base = plain.get(type(module))
        if base is not None:
            module.__class__ = base
            if "act_kind" in module.__dict__:
                del module.act_kind
            changed += 1
    return changed
