"""Evaluation: top-1 / top-5 accuracy, loss and per-class accuracy of a classifier on a loader."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class EvalResult:
    top1: float  # percent
    top5: float  # percent
    loss: float  # mean cross-entropy (no label smoothing)
    count: int
    per_class: list[float] = field(default_factory=list)  # percent per class (nan where absent)
    bad_images: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on the device, or nothing."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(images, labels, bad-image count) from a batch of either collate form."""
    if len(batch) == 3:
        return batch[0], batch[1], int(batch[2])
    return batch[0], batch[1], 0


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, device: torch.device, num_classes: int, *, amp: str = "none", channels_last: bool = False) -> EvalResult:
    """Accuracy and loss of `model` over every batch of `loader` (eval mode; restores the mode after)."""
    was_training = model.training
    model.eval()
    correct1 = correct5 = seen = bad = 0
    loss_sum = 0.0
    hits = torch.zeros(num_classes, dtype=torch.long)
    totals = torch.zeros(num_classes, dtype=torch.long)
    for batch in loader:
        images, labels, n_bad = unpack(batch)
        bad += n_bad
        if images.numel() == 0:
            continue
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device)
        with autocast(device, amp):
            logits = model(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        match = top == labels[:, None]
        correct1 += match[:, 0].sum().item()
        correct5 += match.any(dim=1).sum().item()
        seen += labels.numel()
        labels_cpu = labels.cpu()
        totals += torch.bincount(labels_cpu, minlength=num_classes)
        hits += torch.bincount(labels_cpu[match[:, 0].cpu()], minlength=num_classes)
    model.train(was_training)
    if seen == 0:
        raise ValueError("the evaluation data yielded no readable images")
    per_class = [(100.0 * h / t) if t else float("nan") for h, t in zip(hits.tolist(), totals.tolist(), strict=True)]
    return EvalResult(100.0 * correct1 / seen, 100.0 * correct5 / seen, loss_sum / seen, seen, per_class, bad)
