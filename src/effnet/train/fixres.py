"""FixRes: adapt a trained classifier to a larger test resolution (Touvron et al., NeurIPS 2019).

Random-resized crops make objects look larger in training than in the centre crops of the
test; a test resolution above the training one undoes that, but then the feature statistics
after the last layers no longer match what the classifier saw. FixRes fixes that cheaply:
(1) re-estimate every BatchNorm's running statistics on training images at the test
resolution, with test-time preprocessing (resize, centre crop) and horizontal flips, and
(2) fine-tune the classifier and the BatchNorm before global pooling (the head's) on the
same images. The backbone's convolutions are not touched.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from effnet.train.evaluate import EvalResult, evaluate, unpack


@dataclass
class FixResResult:
    """Accuracy at the test resolution before and after FixRes (and, for reference, at the training resolution)."""

    resolution: int
    train_resolution: int
    at_train_resolution: EvalResult
    before: EvalResult
    after: EvalResult
    images: int

    def summary(self) -> str:
        return (
            f"FixRes at {self.resolution} px ({self.images} training images): val top-1 {self.before.top1:.2f}% -> {self.after.top1:.2f}%, "
            f"loss {self.before.loss:.4f} -> {self.after.loss:.4f} (at the training resolution {self.train_resolution} px: {self.at_train_resolution.top1:.2f}%)"
        )

    def to_dict(self) -> dict[str, Any]:
        def short(result: EvalResult) -> dict[str, Any]:
            return {"top1": result.top1, "top5": result.top5, "loss": result.loss, "count": result.count}

        return {
            "resolution": self.resolution,
            "train_resolution": self.train_resolution,
            "images": self.images,
            "at_train_resolution": short(self.at_train_resolution),
            "before": short(self.before),
            "after": short(self.after),
        }


@torch.no_grad()
def recompute_batchnorm_statistics(
    model: nn.Module, loader: Any, device: torch.device, channels_last: bool = False, only: list[nn.Module] | None = None
) -> int:
    """Replace every BatchNorm's running statistics (or those of `only`) by their average over `loader` (dropout and drop
    path off); returns images seen."""
    norms = [m for m in (only if only is not None else model.modules()) if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m, m.momentum) for m in norms]
    was_training = model.training
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    seen = 0
    try:
        for batch in loader:
            images, _, _ = unpack(batch)
            if images.numel() == 0:
                continue
            images = images.to(device)
            model(images.contiguous(memory_format=torch.channels_last) if channels_last else images)
            seen += images.shape[0]
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
        for m in norms:
            m.train(was_training)
    return seen


def head_norm(model: nn.Module) -> nn.Module | None:
    """The BatchNorm before global pooling (the head conv's; without a head conv, the last stage's last one)."""
    norm = getattr(getattr(model, "head", None), "bn", None)
    if norm is None:
        norms = [m for m in model.stages.modules() if isinstance(m, nn.BatchNorm2d)]
        norm = norms[-1] if norms else None
    return norm


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The classifier and the BatchNorm before global pooling: what FixRes fine-tunes."""
    norm = head_norm(model)
    return list(model.classifier.parameters()) + (list(norm.parameters()) if norm is not None else [])


def finetune_head(
    model: nn.Module, loader: Any, device: torch.device, *, epochs: int, lr: float, label_smoothing: float = 0.0, channels_last: bool = False
) -> None:
    """SGD (momentum 0.9, cosine to 0) on `head_parameters`, with the network in eval mode (BN statistics fixed)."""
    params = head_parameters(model)
    trainable = {id(p) for p in params}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
    total = max(1, epochs * len(loader))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    was_training = model.training
    model.eval()
    try:
        for _ in range(epochs):
            for batch in loader:
                images, labels, _ = unpack(batch)
                if labels.numel() == 0:
                    continue
                images, labels = images.to(device), labels.to(device)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                loss = F.cross_entropy(model(images), labels, label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def fixres(
    model: nn.Module,
    *,
    train_base: Dataset,
    val_at_test: DataLoader,
    val_at_train: DataLoader,
    test_transform: Any,
    resolution: int,
    train_resolution: int,
    num_classes: int,
    device: torch.device,
    collate_fn: Any,
    batch_size: int = 32,
    epochs: int = 1,
    lr: float = 0.01,
    label_smoothing: float = 0.0,
    seed: int = 0,
    workers: int = 0,
    channels_last: bool = False,
    all_statistics: bool = True,
) -> tuple[nn.Module, FixResResult]:
    """A FixRes copy of `model` for `resolution` (the input is not changed), and its accuracy before and after.

    `train_base` yields untransformed training images; `test_transform` is the eval preprocessing at `resolution`.
    `all_statistics`: re-estimate every BatchNorm's statistics at `resolution`; else only the one before pooling (for
    a network trained with frozen statistics, whose other layers expect the statistics they were trained with).
    """
    adapted = copy.deepcopy(model).to(device)
    options = {"amp": "none", "channels_last": channels_last}
    at_train = evaluate(model, val_at_train, device, num_classes, **options)
    before = evaluate(model, val_at_test, device, num_classes, **options)
    from torchvision.transforms import v2

    from effnet.data import TransformedDataset

    # FixRes trains on what the test sees, flipped at random (seeded per image, as all augmentation here)
    images = TransformedDataset(train_base, v2.Compose([test_transform, v2.RandomHorizontalFlip(0.5)]), seed)
    images.set_epoch(0)
    loader = DataLoader(images, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate_fn, generator=torch.Generator().manual_seed(seed))
    only = None if all_statistics else [head_norm(adapted)]
    seen = recompute_batchnorm_statistics(adapted, loader, device, channels_last, only=only)
    finetune_head(adapted, loader, device, epochs=epochs, lr=lr, label_smoothing=label_smoothing, channels_last=channels_last)
    after = evaluate(adapted, val_at_test, device, num_classes, **options)
    return adapted, FixResResult(resolution, train_resolution, at_train, before, after, seen)


def run_fixres(model: nn.Module, run: Any, *, device: torch.device, workers: int = 0) -> tuple[nn.Module, FixResResult]:
    """FixRes at --fixres pixels for `model`, trained in the prepared run `run` (`effnet.train.prepared.PreparedRun`):
    its training images, validation split, preprocessing and options. The adapted copy and the accuracies before/after."""
    from effnet.data import TransformedDataset, eval_transform

    cfg = run.config
    at_test = eval_transform(run.preprocessing.replace(resolution=cfg.fixres))
    adapted, outcome = fixres(
        model,
        train_base=run.data.train.base,
        val_at_test=run.val_loader(workers, TransformedDataset(run.data.val.base, at_test)),
        val_at_train=run.val_loader(workers),
        test_transform=at_test,
        resolution=cfg.fixres,
        train_resolution=run.resolution,
        num_classes=run.num_classes,
        device=device,
        collate_fn=run.data.collate_fn,
        batch_size=cfg.batch_size,
        epochs=cfg.fixres_epochs,
        lr=0.16 * cfg.batch_size / 256,
        label_smoothing=cfg.label_smoothing,
        seed=cfg.seed,
        workers=workers,
        channels_last=cfg.channels_last,
        all_statistics=not cfg.freeze_bn,
    )
    return adapted, outcome
