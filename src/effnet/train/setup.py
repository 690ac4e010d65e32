"""A trainer's set-up from a prepared run: the network as it trains (frozen parts, memory savers, format, sync BN,
EMA, compile, DDP), the data on the device where asked, and the optimizer with its schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from effnet.train import distributed as D
from effnet.train.ema import ModelEMA
from effnet.train.network import freeze_backbone
from effnet.train.optim import make_optimizer, make_scheduler


@dataclass
class TrainedModel:
    model: nn.Module  # the network (its state is what is saved)
    trained: nn.Module  # what the step calls: the network, compiled and/or wrapped in DDP
    ema: ModelEMA | None


@dataclass
class Optimization:
    steps_per_epoch: int
    peak_lr: float
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler


def on_device_data(run: Any, device: torch.device, verbose: bool = False) -> Any:
    """--data-on-device: the generated images as one tensor on the training device, augmented there by batch; else None."""
    config = run.config
    if not config.data_on_device:
        return None
    from effnet.data import train_crop_scale
    from effnet.data.on_device import on_device_data as build

    scale = train_crop_scale(config.dataset, config.crop_scale())
    data = build(run.data, run.preprocessing, device, scale, config.seed)
    if verbose:
        print(data.describe(), flush=True)
    return data


def source_mix(run: Any, verbose: bool = False) -> Any:
    """With --pseudo-labels: the order that puts --pseudo-label-ratio pseudo-labelled images per labelled one in each batch."""
    if not run.data.sources:
        return None
    from effnet.data import SourceMix, batch_split

    mix = SourceMix(run.data.sources, batch_split(run.config.batch_size, run.config.pseudo_label_ratio), run.config.seed)
    if verbose:
        print(f"pseudo labels: {mix.describe()}", flush=True)
    return mix


def set_up_model(run: Any, device: torch.device, dist: D.DistInfo) -> TrainedModel:
    """The prepared run's network (`PreparedRun.take_model`) on `device`, with the options of how it trains."""
    config = run.config
    model = run.take_model()
    if config.freeze_backbone:
        freeze_backbone(model)
    if config.activation_checkpointing:
        model.grad_checkpointing = True
    if config.memory_efficient_ops and not config.compile:  # compiled: the compiler's memory budget instead (Trainer._train_step)
        from effnet.models.nn.lean import use_memory_efficient_ops

        use_memory_efficient_ops(model)  # same parameters and state-dict keys: checkpoints stay interchangeable
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if config.sync_bn and dist.enabled and device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm is GPU-only); on CPU each process keeps its own BN statistics")
    if config.sync_bn and dist.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ema = ModelEMA(model, config.ema_decay) if config.ema_decay > 0 else None
    trained: nn.Module = torch.compile(model) if config.compile else model
    if dist.enabled:
        trained = nn.parallel.DistributedDataParallel(trained, device_ids=[device.index] if device.type == "cuda" else None)
    return TrainedModel(model, trained, ema)


def set_up_optimization(run: Any, model: nn.Module, mix: Any, device: torch.device, dist: D.DistInfo) -> Optimization:
    """Steps per epoch (for this process's share of the data), the optimizer, its schedule and the loss scaler."""
    config, train_images = run.config, len(run.data.train)
    per_process = mix.samples_per_process(dist.world_size) if mix else train_images // dist.world_size
    steps = per_process // (config.batch_size * config.grad_accum)
    if steps < 1:
        raise ValueError(
            f"the training set ({train_images} images over {dist.world_size} process(es)) is smaller than one step "
            f"of {config.batch_size} x {config.grad_accum} images; lower --batch-size"
        )
    steps_per_epoch = min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch else steps
    peak_lr = config.peak_lr(dist.world_size)
    optimizer = make_optimizer(model, config, peak_lr)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    return Optimization(steps_per_epoch, peak_lr, optimizer, scheduler, scaler)
