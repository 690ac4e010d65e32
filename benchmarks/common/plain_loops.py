"""The plain PyTorch training loops the benchmarks compare effnet with: a few lines each, as a user would write them.

`plain_loop`: fine-tuning (or from scratch) on an image folder with effnet's transforms (finetune_real, noisy_student,
the battery), and `plain_epoch` its images/s (finetune_speed);
`folder_adamw_loop`: from scratch with torchvision's ImageFolder and transforms, AdamW and a cosine schedule
(progressive_learning, scratch_ablation).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import effnet
from effnet.core.profile import profile_spec
from effnet.core.zoo import get_preprocessing
from effnet.data import build_datasets
from effnet.train.evaluate import evaluate as evaluate_model

MODEL = "efficientnet_lite0"


# The plain loops: fine-tuning as in issue 11's report (SGD 0.01, momentum 0.9, batch 16, pretrained, zero head);
# from scratch the same loop with Adam at 1e-3 and batch 32, the other common plain choice; and issue 28's second
# fine-tuning anchor: AdamW 1e-3, weight decay 0.05, cosine over the run's steps, batch 16, zero head, BN training.
PLAIN = {
    "finetune": {"pretrained": True, "optimizer": "sgd", "lr": 0.01, "batch": 16},
    "scratch": {"pretrained": False, "optimizer": "adam", "lr": 1e-3, "batch": 32},
    "finetune_adamw": {"pretrained": True, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "cosine": True, "batch": 16},
}


def plain_loop(
    data_dir: Path,
    *,
    mode: str,
    epochs: int,
    seed: int,
    train_cap: int | None,
    val_cap: int | None,
    workers: int,
    resolution: int | None = None,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """The 20-line baseline (PLAIN[mode]), BN in training mode, effnet's transforms without AutoAugment (per-step cosine for AdamW).

    `max_steps` ends training after that many optimizer steps (evaluated there), for budgets counted in steps."""
    plain = PLAIN[mode]
    torch.manual_seed(seed)
    prep = get_preprocessing(MODEL)
    prep = prep.replace(resolution=resolution or prep.resolution)
    data = build_datasets(
        "folder",
        data_dir=data_dir,
        resolution=prep.resolution,
        preprocessing=prep,
        auto_augment="none",
        seed=seed,
        train_samples=train_cap,
        val_samples=val_cap,
    )
    model = effnet.create_model(MODEL, pretrained=plain["pretrained"], num_classes=data.num_classes)
    if plain["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=plain["lr"], momentum=0.9)
    elif plain["optimizer"] == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=plain["lr"], weight_decay=plain["weight_decay"])
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=plain["lr"])
    total_steps = min(max_steps or math.inf, epochs * (len(data.train) // plain["batch"]))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(total_steps))) if plain.get("cosine") else None
    generator = torch.Generator().manual_seed(seed)
    val_loader = DataLoader(data.val, batch_size=32, num_workers=workers, collate_fn=data.collate_fn)
    history, started, steps = [], time.perf_counter(), 0
    for epoch in range(epochs):
        data.train.set_epoch(epoch)
        model.train()
        loader = DataLoader(
            data.train, batch_size=plain["batch"], shuffle=True, drop_last=True, num_workers=workers, collate_fn=data.collate_fn, generator=generator
        )
        for images, labels, _ in loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            steps += 1
            if steps == max_steps:
                break
        result = evaluate_model(model, val_loader, torch.device("cpu"), data.num_classes)
        history.append({"epoch": epoch + 1, "steps": steps, "val_top1": result.top1, "val_loss": result.loss, "seconds": time.perf_counter() - started})
        if steps == max_steps:
            break
    return {"history": history, "train_images": len(data.train), "val_images": len(data.val), "classes": data.num_classes}


def plain_epoch(data_dir: Path, *, batch: int, workers: int, channels_last: bool, train_cap: int) -> float:
    """Images/s of one epoch of `plain_loop`'s fine-tuning (SGD, BN training), no evaluation (finetune_speed)."""
    prep = get_preprocessing(MODEL)
    data = build_datasets("folder", data_dir=data_dir, resolution=prep.resolution, preprocessing=prep, auto_augment="none", train_samples=train_cap or None)
    model = effnet.create_model(MODEL, pretrained=True, num_classes=data.num_classes).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=PLAIN["finetune"]["lr"], momentum=0.9)
    data.train.set_epoch(0)
    loader = DataLoader(data.train, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers, collate_fn=data.collate_fn)
    seen, started = 0, time.perf_counter()
    for images, labels, _ in loader:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += labels.numel()
    return seen / (time.perf_counter() - started)


def folder_adamw_loop(
    model: torch.nn.Module,
    data_dir: str | Path,
    *,
    resolution: int,
    lr: float,
    batch_size: int,
    epochs: int,
    seed: int,
    crop_min_area: float,
    weight_decay: float = 0.01,
) -> dict[str, Any]:
    """`model` trained from scratch on DATA/train, evaluated on DATA/val after every epoch: torchvision's ImageFolder and
    transforms (random-resized crop, flip; eval resize and centre crop as effnet's eval transform), AdamW at `lr` (and
    `weight_decay` on every parameter; 0.01 is torch's default) with a cosine schedule over all steps, cross entropy. Its clock counts the training steps and their data loading.
    The caller seeds torch before it builds `model`."""
    from torchvision import datasets
    from torchvision import transforms as T

    res = resolution
    classes = datasets.ImageFolder(str(Path(data_dir) / "train")).classes
    prep = model.preprocessing.replace(resolution=res)
    normalize = [T.ToTensor(), T.Normalize(prep.mean, prep.std)]
    crop = T.RandomResizedCrop(res, scale=(crop_min_area or 0.08, 1.0))
    train_set = datasets.ImageFolder(str(Path(data_dir) / "train"), T.Compose([crop, T.RandomHorizontalFlip(), *normalize]))
    eval_tf = T.Compose([T.Resize(prep.resize_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(res), *normalize])
    val_set = datasets.ImageFolder(str(Path(data_dir) / "val"), eval_tf)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    macs = profile_spec(model.spec, res).macs
    history: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    wall, cpu, seconds = time.perf_counter(), time.process_time(), 0.0
    for epoch in range(epochs):
        model.train()
        started, losses = time.perf_counter(), []
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        seconds += time.perf_counter() - started
        evaluation = evaluate_model(model, DataLoader(val_set, batch_size=64), torch.device("cpu"), len(classes))
        images_seen = (epoch + 1) * len(loader) * batch_size
        history.append(
            {
                "epoch": epoch + 1,
                "stage": 0,
                "resolution": res,
                "images": len(loader) * batch_size,
                "seconds": seconds,
                "calibrated_seconds": None,  # the calibration times the trainer's steps, not this loop's
                "image_macs": images_seen * macs,
                "train_loss": statistics.fmean(losses),
                "val_top1": evaluation.top1,
                "val_loss": evaluation.loss,
            }
        )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "history": history,
        "train_seconds": seconds,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "load_average": [round(x, 2) for x in (*load_before, *os.getloadavg())],
        "params": sum(p.numel() for p in model.parameters()),
        "macs_per_image": {str(res): macs},
    }
