"""Exponential moving average of the weights, as in the TF reference.

TF's ExponentialMovingAverage is built there with num_updates=global_step, which makes
the effective decay min(decay, (1 + t) / (10 + t)): early averages follow the weights
closely instead of staying near the random initialisation. torch.optim.swa_utils has no
such warm-up, hence this small class. BN running statistics are averaged too.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of a model whose floating-point tensors track an EMA of the live model's."""

    def __init__(self, model: nn.Module, decay: float = 0.9999) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model` (call after each optimizer step)."""
        decay = self.current_decay()
        self.updates += 1
        ours = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = ours[name]
            if target.is_floating_point():
                target.lerp_(value.detach().to(target.dtype), 1.0 - decay)
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
