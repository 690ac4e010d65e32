"""Optimiser and learning-rate schedule of the paper's recipe.

PyTorch's RMSprop differs from TensorFlow's in three ways that matter for this recipe,
so the TF variant is written here: epsilon sits inside the square root, the squared-
gradient average starts at 1 (not 0), and the learning rate is applied inside the
momentum buffer (so a changing LR does not rescale past momentum).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from effnet.train.config import TrainConfig


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp with TensorFlow semantics (tf.compat.v1.train.RMSPropOptimizer):

        ms  <- decay * ms + (1 - decay) * g^2          (ms starts at 1)
        mom <- momentum * mom + lr * g / sqrt(ms + eps)
        p   <- p - mom

    `weight_decay` is L2 added to the gradient (TF adds it to the loss).
    """

    def __init__(self, params: Iterable, lr: float = 0.016, decay: float = 0.9, momentum: float = 0.9, eps: float = 1e-3, weight_decay: float = 0.0) -> None:
        if lr < 0 or not 0 <= decay < 1 or momentum < 0 or eps <= 0 or weight_decay < 0:
            raise ValueError(f"invalid RMSpropTF settings: lr={lr}, decay={decay}, momentum={momentum}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p)
                    state["momentum_buffer"] = torch.zeros_like(p)
                square_avg, buf = state["square_avg"], state["momentum_buffer"]
                square_avg.mul_(group["decay"]).addcmul_(grad, grad, value=1 - group["decay"])
                update = grad / (square_avg + group["eps"]).sqrt()
                if group["momentum"] > 0:
                    buf.mul_(group["momentum"]).add_(update, alpha=group["lr"])
                    p.sub_(buf)
                else:
                    p.sub_(update, alpha=group["lr"])
        return loss


def parameter_groups(model: nn.Module, weight_decay: float, backbone_lr_scale: float = 1.0, classifier_prefix: str = "classifier") -> list[dict]:
    """Split parameters: no weight decay on BN parameters and biases (1-D tensors); the classifier
    may get a different LR from the backbone (fine-tuning)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = name.split(".")[0] == classifier_prefix or name.startswith(f"module.{classifier_prefix}")
        decays = param.ndim > 1
        groups.setdefault((decays, is_head), []).append(param)
    out = []
    for (decays, is_head), params in sorted(groups.items()):
        out.append({"params": params, "weight_decay": weight_decay if decays else 0.0, "lr_scale": 1.0 if is_head else backbone_lr_scale, "is_head": is_head})
    return out


def make_optimizer(model: nn.Module, config: TrainConfig, peak_lr: float) -> torch.optim.Optimizer:
    """The configured optimiser over `parameter_groups(model)`."""
    groups = parameter_groups(model, config.weight_decay, config.backbone_lr_scale)
    if not groups:
        raise ValueError("no trainable parameters (is everything frozen?)")
    for group in groups:
        group["lr"] = peak_lr * group["lr_scale"]
    if config.optimizer == "rmsprop_tf":
        return RMSpropTF(groups, lr=peak_lr, decay=config.rmsprop_decay, momentum=config.momentum, eps=config.rmsprop_eps)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=peak_lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=peak_lr)


def lr_factor(
    step: int, *, steps_per_epoch: int, total_steps: int, schedule: str, warmup_epochs: float, decay_rate: float = 0.97, decay_epochs: float = 2.4
) -> float:
    """Multiplier of the peak LR at optimizer step `step` (closed form).

    exponential (TF reference): decay_rate ** floor(step / (decay_epochs * steps_per_epoch)),
    with a linear warm-up step / warmup_steps replacing it during the first warmup_epochs.
    cosine: linear warm-up, then half a cosine from 1 to 0 over the remaining steps.
    """
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    if schedule == "exponential":
        return decay_rate ** math.floor(step / (decay_epochs * steps_per_epoch))
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))
    return 1.0


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR over `lr_factor` (its state is just the step count, so resume is exact).

    With `linear_probe_epochs` (LP-FT, Kumar et al. 2022), the backbone's groups stay at zero LR while the
    classifier learns alone, then run the same schedule compressed into the remaining steps."""
    total = steps_per_epoch * config.epochs
    probe = min(total, int(round(config.linear_probe_epochs * steps_per_epoch)))
    span = max(total, config.cosine_min_steps)  # the cosine's length: a short run stops part-way down it
    options = {"steps_per_epoch": steps_per_epoch, "schedule": config.schedule, "decay_rate": config.decay_rate, "decay_epochs": config.decay_epochs}

    def factor(step: int) -> float:
        return lr_factor(step, total_steps=span, warmup_epochs=config.warmup_epochs, **options)

    def backbone_factor(step: int) -> float:
        if step < probe:
            return 0.0
        warmup = config.warmup_epochs * (total - probe) / total
        return lr_factor(step - probe, total_steps=span - probe, warmup_epochs=warmup, **options)

    if probe == 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor if group.get("is_head", True) else backbone_factor for group in optimizer.param_groups])
