"""Memory-lean training ops: activations recomputed in backward instead of kept, swapped into a built model.

In an MBConv block plain autograd keeps seven tensors of the expanded width alive until
backward: expand conv output (for BN), expand BN output (for the activation), activation
output (for the depthwise conv), depthwise conv output, its BN output, its activation output
(for the SE multiply) and the SE output (for the project conv). Two custom autograd
functions drop three of them:

- `BnActFunction`: train-mode BatchNorm and the activation in one op that saves only its
  input (the conv output, which plain BN keeps anyway) and the per-channel batch statistics;
  backward recomputes the normalised values and the activation's derivative. Saves the BN
  output of every conv -> BN -> activation.
- `GateFunction`: the SE gate ``x * sigmoid(z)``. It saves its *output* (which the next
  conv keeps anyway, so it costs nothing) and the tiny ``z``: ``d/dx = sigmoid(z)`` needs no
  ``x``, and ``d/dz = sum(grad * x) * s * (1 - s) = sum(grad * out) * (1 - s)``, so ``x``
  is never needed. Saves the activation output that the gate multiplies.

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

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effnet.nn.layers import ConvBnAct, SqueezeExcite

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


def _act_grad(grad: torch.Tensor, y: torch.Tensor, act: str) -> torch.Tensor:
    """grad * act'(y), each one fused ATen backward kernel (one pass over memory, one new tensor)."""
    if act == "swish":
        return torch.ops.aten.silu_backward(grad, y)
    if act == "relu":
        return torch.ops.aten.threshold_backward(grad, y, 0)
    if act == "relu6":
        return torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)
    return grad


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
        return _act_forward_(out, act)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, bias, mean, invstd = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x.dim() - 2)
        acc = torch.promote_types(x.dtype, torch.float32)  # recompute in float32 at least (bf16/fp16 activations under AMP)
        scale = invstd.to(acc) if weight is None else invstd.to(acc) * weight.to(acc)
        shift = -mean.to(acc) * scale + (0.0 if bias is None else bias.to(acc))
        y = torch.addcmul(shift.view(shape).to(acc), x.to(acc), scale.view(shape))  # the BN output, recomputed in one pass
        grad_y = _act_grad(grad.to(acc), y, ctx.act).to(x.dtype)
        del y
        mask = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[2]]
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(grad_y, x, weight, None, None, mean, invstd, True, ctx.eps, mask)
        return grad_x, grad_w, grad_b, None, None, None, None, None


class GateFunction(torch.autograd.Function):
    """out = x * sigmoid(z) (the SE gate), saving out and z but not x (see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = x * torch.sigmoid(z)
        ctx.save_for_backward(out, z)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, z = ctx.saved_tensors
        s = torch.sigmoid(z)
        grad_x = grad * s
        # d out / d z = x * s * (1 - s) = out * (1 - s): x cancels
        reduce_dims = [d for d in range(grad.dim()) if z.shape[d] == 1 and grad.shape[d] != 1]
        acc = torch.promote_types(z.dtype, torch.float32)
        grad_z = (grad * out).sum(reduce_dims, keepdim=True, dtype=acc) * (1.0 - s.to(acc))
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
        x = self.conv(x)
        if not torch.jit.is_scripting() and not torch.jit.is_tracing() and self.training and self.bn.training and torch.is_grad_enabled():
            return self._lean(x)
        return self.act(self.bn(x))

    @torch.jit.unused
    def _lean(self, x: torch.Tensor) -> torch.Tensor:
        return bn_act(x, self.bn, self.act_kind)


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


def use_memory_efficient_ops(model: nn.Module) -> dict[str, int]:
    """Swap the memory-lean ops into `model` in place; returns how many modules of each kind were swapped.

    Every ``ConvBnAct`` (any block kind) with a BatchNorm2d and a swish, ReLU, ReLU6 or no
    activation becomes a `LeanConvBnAct`, every ``SqueezeExcite`` a `LeanSqueezeExcite`, and
    every other ``nn.SiLU`` a `MemoryEfficientSwish`. Parameters, buffers, state-dict keys
    and eval-mode outputs are unchanged; training gives the same gradients (to float32
    rounding) with less activation memory, at the price of recomputing BN and the
    activation in backward.
    """
    counts = {"conv_bn_act": 0, "squeeze_excite": 0, "swish": 0}
    for module in model.modules():
        if type(module) is ConvBnAct and isinstance(module.bn, nn.BatchNorm2d) and _act_kind(module.act) is not None:
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
