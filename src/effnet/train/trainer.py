"""The training loop: the paper's recipe, resumable bit for bit, on one process or many (torchrun).

Exact resume rests on three choices: every sample's augmentation is seeded by
(seed, epoch, index) rather than by a shared RNG stream; the data order of an epoch is a
seeded permutation (DistributedSampler), so a resumed epoch skips exactly the batches
already consumed; and the checkpoint holds every RNG state taken at a step boundary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from effnet._io import atomic_write_text
from effnet._lock import lock_directory
from effnet.train import distributed as D
from effnet.train.checkpoint import (
    CHECKPOINT_NAME,
    PREVIOUS_NAME,
    CheckpointError,
    check_compatible,
    check_space,
    load_newest,
    rng_state,
    save_checkpoint,
    set_rng_state,
    state_bytes,
)
from effnet.train.config import TrainConfig
from effnet.train.ema import ModelEMA
from effnet.train.evaluate import EvalResult, autocast, evaluate, unpack
from effnet.train.fixres import run_fixres
from effnet.train.metrics import plot_history, repair_history, write_history
from effnet.train.network import batchnorm_eval, freeze_backbone, make_model, network_of, train_only_classifier_mode
from effnet.train.optim import make_optimizer, make_scheduler
from effnet.train.progressive import Stage, config_schedule, stage_of
from effnet.train.rundir import CLASSES_NAME, PREPROCESSING_NAME, SPEC_NAME, config_preprocessing
from effnet.train.timing import StepTimer, epoch_estimate


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C or SIGTERM: a checkpoint was saved, --resume continues."""


@dataclass
class TrainResult:
    out_dir: Path
    best_top1: float
    best_ema_top1: float | None
    final: dict[str, Any]
    history: list[dict[str, Any]] = field(repr=False)
    seconds: float = 0.0
    images_per_second: float = 0.0
    fixres: Any = None  # FixResResult when --fixres was asked for
    # what was built: the network as trained (classifier sized for the task), its input size, and its analytic cost there
    spec: Any = field(default=None, repr=False)
    resolution: int = 0
    params: int = 0
    macs: int = 0  # multiply-adds at `resolution` (effnet.profile)

    def summary(self) -> str:
        ema = f", EMA {self.best_ema_top1:.2f}%" if self.best_ema_top1 is not None else ""
        final = f"final top-1 {self.final['val_top1']:.2f}%, " if "val_top1" in self.final else ""
        fixres = f"; FixRes at {self.fixres.resolution} px {self.fixres.before.top1:.2f}% -> {self.fixres.after.top1:.2f}%" if self.fixres else ""
        return f"{final}best top-1 {self.best_top1:.2f}%{ema}{fixres}; {self.seconds:.0f} s, {self.images_per_second:.1f} images/s; run in {self.out_dir}"


class Trainer:
    """Runs one training job described by a TrainConfig. `run()` returns a TrainResult."""

    def __init__(self, config: TrainConfig, spec: Any = None) -> None:
        """`spec` (a NetSpec), when given, is the network to train instead of config.model / config.spec; the
        config then names the run's spec.json, so that the run directory alone describes (and resumes) the run."""
        from effnet.data import build_datasets

        if spec is not None:
            config = dataclasses.replace(config, spec=str(Path(config.out_dir) / SPEC_NAME))
        self.config = config
        self.device = D.resolve_device(config.device)
        self.workers = config.loader_workers(self.device.type)
        allocator = None
        if config.memory_efficient_ops and self.device.type == "cpu":
            from effnet.allocator import tune_cpu_allocator

            # before anything allocates (process group, data, model): PyTorch reads its huge-page setting once
            allocator = tune_cpu_allocator()
        self.dist = D.init_distributed(self.device)
        self.out_dir = Path(config.out_dir)
        self.main = self.dist.is_main
        # one process per run directory, taken before anything is built (rank 0 only); released at the end of run()
        self.lock = lock_directory(self.out_dir, "training run")
        if allocator is not None and self.main:
            print(allocator.describe())
        torch.manual_seed(config.seed)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False

        spec = spec if spec is not None else network_of(config)
        self.resolution = config.resolution or spec.resolution
        self.preprocessing = config_preprocessing(config, self.resolution)
        self.data = build_datasets(
            config.dataset,
            data_dir=config.data_dir or None,
            resolution=self.resolution,
            preprocessing=self.preprocessing,
            auto_augment=config.auto_augment,
            seed=config.seed,
            num_classes=config.num_classes or None,
            train_samples=config.sample_counts()[0],
            val_samples=config.sample_counts()[1],
            val_fraction=config.val_fraction,
            train_scale=config.crop_scale(),
            randaugment_magnitude=config.randaugment_magnitude,
            pseudo_labels=config.pseudo_labels or None,
        )
        self.num_classes = self.data.num_classes
        self.on_device = None
        if config.data_on_device:
            from effnet.data import train_crop_scale
            from effnet.data.on_device import on_device_data

            scale = train_crop_scale(config.dataset, config.crop_scale())
            self.on_device = on_device_data(self.data, self.preprocessing, self.device, scale, config.seed)
            if self.main and config.verbose:
                print(self.on_device.describe(), flush=True)
        # labelled and pseudo-labelled images at a fixed share of every batch (effnet.data.mixed), or one shuffled pass
        self.mix = self._source_mix()
        torch.manual_seed(config.seed)
        model = make_model(config, self.num_classes, spec)
        if config.freeze_backbone:
            freeze_backbone(model)
        if config.activation_checkpointing:
            model.grad_checkpointing = True
        if config.memory_efficient_ops and not config.compile:  # compiled: the compiler's memory budget instead (_train_step)
            from effnet.nn.lean import use_memory_efficient_ops

            use_memory_efficient_ops(model)  # same parameters and state-dict keys: checkpoints stay interchangeable
        model.to(self.device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        if config.sync_bn and self.dist.enabled and self.device.type != "cuda":
            raise ValueError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm is GPU-only); on CPU each process keeps its own BN statistics")
        if config.sync_bn and self.dist.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.stages = config_schedule(config, self.resolution, float(getattr(model, "dropout", nn.Dropout(0.0)).p))
        self.stage: Stage | None = None
        self.mixup = _mixup(config.mixup, self.num_classes)
        self.ema = ModelEMA(model, config.ema_decay) if config.ema_decay > 0 else None
        trained: nn.Module = torch.compile(model) if config.compile else model
        if self.dist.enabled:
            trained = nn.parallel.DistributedDataParallel(trained, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.trained = trained

        per_process = self.mix.samples_per_process(self.dist.world_size) if self.mix else len(self.data.train) // self.dist.world_size
        steps = per_process // (config.batch_size * config.grad_accum)
        if steps < 1:
            raise ValueError(
                f"the training set ({len(self.data.train)} images over {self.dist.world_size} process(es)) is smaller than one step "
                f"of {config.batch_size} x {config.grad_accum} images; lower --batch-size"
            )
        self.steps_per_epoch = min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch else steps
        self.peak_lr = config.peak_lr(self.dist.world_size)
        self.optimizer = make_optimizer(model, config, self.peak_lr)
        self.scheduler = make_scheduler(self.optimizer, config, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")

        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.epoch_stats = [0.0, 0.0, 0.0, 0.0]  # loss sum, correct, seen, bad images
        self.history: list[dict[str, Any]] = []
        self.best = {"top1": -1.0, "ema_top1": -1.0}
        self.images_seen = 0
        self.train_seconds = 0.0
        self._rng_at_step = rng_state()
        self._last_save = time.monotonic()
        self._timing: StepTimer | None = StepTimer()
        self._epoch_estimate_due = True  # refreshed once, after the first epoch this process runs
        self._epoch_start: tuple[float, int] = (0.0, 0)  # when the epoch in progress started here, and at which step

    # ------------------------------------------------------------------ state
    def _payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "epoch_stats": list(self.epoch_stats),
            "history": json.dumps(self.history),
            # progressive learning: the stage of the epoch in progress (-1: off); it follows from the epoch, kept to check
            "progressive_stage": stage_of(self.stages, self.epoch).index if self.stages else -1,
            "best": dict(self.best),
            "images_seen": self.images_seen,
            "train_seconds": self.train_seconds,
            "config": self.config.to_json(),
            "spec": self.model.spec.to_json(),
        }

    def save(self) -> None:
        """Checkpoint the state at the last step boundary (rank 0 writes; everyone waits)."""
        if self.main:
            save_checkpoint(self.out_dir / CHECKPOINT_NAME, self._payload(), rng=self._rng_at_step)
        D.barrier(self.dist)
        self._last_save = time.monotonic()

    def _checkpoint_due(self) -> bool:
        """A mid-epoch checkpoint every --checkpoint-every steps and/or --checkpoint-minutes minutes (one decision for all processes)."""
        cfg = self.config
        by_steps = bool(cfg.checkpoint_every) and self.global_step % cfg.checkpoint_every == 0
        by_time = bool(cfg.checkpoint_minutes) and time.monotonic() - self._last_save >= 60 * cfg.checkpoint_minutes
        if cfg.checkpoint_minutes and self.dist.enabled:
            by_time = not D.all_true(not by_time, self.dist, self.device)  # any process's clock decides for all
        return by_steps or by_time

    def load(self, path: Path) -> Path:
        """Restore the checkpoint at `path`, or its previous generation where that one is unreadable; the file used."""
        data, used = load_newest(path, set_aside=self.main)
        path = used
        check_compatible(data, self.config.to_dict(), path, self.model.spec.to_json())
        try:
            self.model.load_state_dict(data["model"])
            if self.ema is not None and data["ema"] is not None:
                self.ema.load_state_dict(data["ema"])
        except RuntimeError as err:
            raise CheckpointError(f"checkpoint {path} does not fit this model: {str(err).splitlines()[0]}") from None
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.scaler.load_state_dict(data["scaler"])
        self.epoch, self.step_in_epoch, self.global_step = data["epoch"], data["step_in_epoch"], data["global_step"]
        self.epoch_stats = list(data["epoch_stats"])
        self.history = json.loads(data["history"])
        self.best = dict(data["best"])
        self.images_seen, self.train_seconds = data["images_seen"], data["train_seconds"]
        expected = stage_of(self.stages, self.epoch).index if self.stages else -1
        if data.get("progressive_stage", -1) != expected:
            raise CheckpointError(
                f"checkpoint {path} was in progressive stage {data.get('progressive_stage', -1)} at epoch {self.epoch + 1}, but this "
                f"config puts that epoch in stage {expected}; resume with the run's own options (--resume RUN_DIR)"
            )
        set_rng_state(data["rng"])
        self._rng_at_step = data["rng"]
        return used

    # ------------------------------------------------------------------ data
    def _source_mix(self) -> Any:
        """With --pseudo-labels: the order that puts --pseudo-label-ratio pseudo-labelled images per labelled one in each batch."""
        if not self.data.sources:
            return None
        from effnet.data import SourceMix, batch_split

        mix = SourceMix(self.data.sources, batch_split(self.config.batch_size, self.config.pseudo_label_ratio), self.config.seed)
        if self.main and self.config.verbose:
            print(f"pseudo labels: {mix.describe()}", flush=True)
        return mix

    def _enter_stage(self) -> None:
        """Progressive learning: the image size, RandAugment magnitude, mixup and dropout of this epoch's stage."""
        if self.stages is None:
            return
        stage = stage_of(self.stages, self.epoch)
        if stage == self.stage:
            return
        from effnet.data import TransformedDataset, dataset_train_transform

        cfg = self.config
        transform = dataset_train_transform(cfg.dataset, stage.resolution, self.preprocessing, cfg.auto_augment, cfg.crop_scale(), stage.randaugment_magnitude)
        self.data.train = TransformedDataset(self.data.train.base, transform, cfg.seed)
        if isinstance(getattr(self.model, "dropout", None), nn.Dropout):
            self.model.dropout.p = stage.dropout
        self.mixup = _mixup(stage.mixup, self.num_classes)
        self.stage = stage
        if self.main and cfg.verbose:
            print(f"progressive learning, {stage.describe()}", flush=True)

    def _train_loader(self) -> tuple[DataLoader, int]:
        cfg = self.config
        self._enter_stage()
        self.data.train.set_epoch(self.epoch)
        if self.mix is not None:
            epoch_order = self.mix.order(self.epoch, self.dist.rank, self.dist.world_size)
        else:
            sampler = DistributedSampler(self.data.train, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=True, seed=cfg.seed, drop_last=True)
            sampler.set_epoch(self.epoch)
            epoch_order = list(sampler)
        per_step = cfg.batch_size * cfg.grad_accum
        order = epoch_order[self.step_in_epoch * per_step : self.steps_per_epoch * per_step]
        if self.on_device is not None:
            batches = self.on_device.train_batches(order, cfg.batch_size, self.epoch, self.step_in_epoch * cfg.grad_accum)
            return batches, self.steps_per_epoch - self.step_in_epoch  # type: ignore[return-value]
        loader = DataLoader(
            self.data.train,
            batch_size=cfg.batch_size,
            sampler=order,
            num_workers=self.workers,
            collate_fn=self.data.collate_fn,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            # a private generator: creating the iterator must not consume the global RNG (exact resume)
            generator=torch.Generator().manual_seed(cfg.seed * 1000 + self.epoch),
        )
        return loader, self.steps_per_epoch - self.step_in_epoch

    def _val_loader(self, dataset: Any = None) -> DataLoader:
        return DataLoader(
            dataset if dataset is not None else self.data.val,
            batch_size=self.config.batch_size,
            shuffle=False,
            num_workers=self.workers,
            collate_fn=self.data.collate_fn,
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    # ------------------------------------------------------------------ loop
    def _train_step(self, micro_batches: list) -> tuple[float, int, int, int]:
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, correct, seen, bad = 0.0, 0, 0, 0
        for images, labels, n_bad in micro_batches:
            bad += n_bad
            if labels.numel() == 0:  # every image of this batch was unreadable
                continue
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = labels
            if self.mixup is not None:  # soft targets; accuracy is counted against the larger share
                images, targets = self.mixup(images, labels)
                labels = targets.argmax(1)
            elif labels.ndim == 2:  # label distributions (pseudo labels): accuracy against the most likely class
                labels = labels.argmax(1)
            with autocast(self.device, cfg.amp), self._memory_budget():
                logits = self.trained(images)
                loss = F.cross_entropy(logits.float(), targets, label_smoothing=cfg.label_smoothing)
            finite = D.all_true(bool(torch.isfinite(loss).item()), self.dist, self.device)
            if not finite:
                last = self.out_dir / CHECKPOINT_NAME
                kept = f"the last good checkpoint {last} is intact" if last.exists() else "no checkpoint had been written yet"
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}; {kept}. "
                    "Lower --lr (or --lr-per-256), use --amp none, or check the data."
                )
            self.scaler.scale(loss / len(micro_batches)).backward()
            loss_sum += loss.item() * labels.numel()
            correct += (logits.argmax(1) == labels).sum().item()
            seen += labels.numel()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss_sum, correct, seen, bad

    def _batches(self, loader: DataLoader):
        """Group loader batches into optimizer steps of grad_accum micro-batches."""
        group = []
        for batch in loader:
            group.append(unpack(batch))
            if len(group) == self.config.grad_accum:
                yield group
                group = []

    def _memory_budget(self) -> Any:
        """--memory-efficient-ops with --compile: the compiler's activation memory budget around the training forward."""
        if self.config.memory_efficient_ops and self.config.compile:
            from effnet.nn.lean import compiled_memory_budget

            return compiled_memory_budget()
        return contextlib.nullcontext()

    def _run_epoch(self) -> None:
        cfg = self.config
        self._epoch_start = (time.perf_counter(), self.step_in_epoch)
        self.trained.train()
        if cfg.freeze_backbone:
            train_only_classifier_mode(self.model)
        if cfg.freeze_bn:
            batchnorm_eval(self.model)
        loader, remaining = self._train_loader()
        bar = None
        if self.main and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="step", dynamic_ncols=True)
        started = time.perf_counter()
        for micro_batches in self._batches(loader):
            if self._timing is not None:
                self._timing.step_started()
            loss_sum, correct, seen, bad = self._train_step(micro_batches)
            self.epoch_stats = [a + b for a, b in zip(self.epoch_stats, (loss_sum, correct, seen, bad), strict=True)]
            self.step_in_epoch += 1
            self.global_step += 1
            self.images_seen += seen * self.dist.world_size
            elapsed = time.perf_counter() - started
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{self.epoch_stats[0] / max(1, self.epoch_stats[2]):.3f}",
                    lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                    img_s=f"{self.images_seen / max(1e-9, self.train_seconds + elapsed):.1f}",
                )
            # RNG state at this step boundary: what any checkpoint (periodic, Ctrl-C mid-next-step) restores
            self._rng_at_step = rng_state()
            if self._timing is not None and self._timing.ready():
                if self.main and cfg.verbose:
                    _say(self._timing.estimate(self), bar)  # a line of its own, not inside the progress bar's
                self._timing = None
            if self.step_in_epoch < self.steps_per_epoch and self._checkpoint_due():
                self.train_seconds += elapsed
                started = time.perf_counter()
                self.save()
        self.train_seconds += time.perf_counter() - started
        if bar is not None:
            bar.close()
        if self.step_in_epoch < self.steps_per_epoch and remaining > 0:
            raise RuntimeError(f"the data loader stopped after {self.step_in_epoch} of {self.steps_per_epoch} steps")

    def _end_epoch(self) -> None:
        cfg = self.config
        loss_sum, correct, seen, bad = D.sum_across(self.epoch_stats, self.dist, self.device)
        row: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.global_step,
            "lr": self.scheduler.get_last_lr()[0],
            "train_loss": loss_sum / max(1, seen),
            "train_top1": 100.0 * correct / max(1, seen),
            "bad_images": int(bad),
            "seconds": round(self.train_seconds, 2),
        }
        last_epoch = self.epoch + 1 == cfg.epochs
        eval_seconds = None
        if (self.epoch + 1) % cfg.eval_every == 0 or last_epoch:
            eval_started = time.perf_counter()
            raw, ema = self.evaluate()
            eval_seconds = time.perf_counter() - eval_started
            row.update({"val_loss": raw.loss, "val_top1": raw.top1, "val_top5": raw.top5, "val_per_class": raw.per_class})
            self.best["top1"] = max(self.best["top1"], raw.top1)
            if ema is not None:
                row.update({"ema_val_loss": ema.loss, "ema_val_top1": ema.top1, "ema_val_top5": ema.top5})
                self.best["ema_top1"] = max(self.best["ema_top1"], ema.top1)
        if bad and self.main:
            print(f"epoch {self.epoch + 1}: skipped {int(bad)} unreadable image(s)")
        self.history.append(row)
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_stats = [0.0, 0.0, 0.0, 0.0]
        self._rng_at_step = rng_state()
        self.save()
        if self.main:
            write_history(self.history, self.out_dir)
            plot_history(self.history, self.out_dir)
            if cfg.verbose:
                shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if not isinstance(v, list)}
                print(json.dumps(shown), flush=True)
        if self._epoch_estimate_due and self.epoch < cfg.epochs:
            # the first steps' estimate misses what a whole epoch shows (a busy machine, loader starts, checkpoints): again, measured
            self._epoch_estimate_due = False
            started, first_step = self._epoch_start
            seconds = time.perf_counter() - started - (eval_seconds or 0.0)
            if self.main and cfg.verbose:
                print(epoch_estimate(self, seconds, self.steps_per_epoch - first_step, eval_seconds), flush=True)

    def evaluate(self) -> tuple[EvalResult, EvalResult | None]:
        """Raw and EMA weights on the validation set (every process evaluates the whole set: simple, and val is small)."""
        loader: Any = self._val_loader() if self.on_device is None else list(self.on_device.val_batches(self.config.batch_size))
        raw = evaluate(self.model, loader, self.device, self.num_classes, amp=self.config.amp, channels_last=self.config.channels_last)
        ema = None
        if self.ema is not None:
            ema = evaluate(self.ema.module, loader, self.device, self.num_classes, amp=self.config.amp, channels_last=self.config.channels_last)
        return raw, ema

    def run(self) -> TrainResult:
        """Train to the configured number of epochs (resuming if asked); write weights and a summary."""
        try:
            return self._run()
        finally:
            self.lock.release()

    def _run(self) -> TrainResult:
        cfg = self.config
        last = self.out_dir / CHECKPOINT_NAME
        if cfg.resume:
            used = self.load(last)
            if self.main:
                print(f"resumed from {used}: epoch {self.epoch + 1}, step {self.step_in_epoch} of {self.steps_per_epoch}")
                repair_history(self.out_dir, self.history)
        elif last.exists() or (self.out_dir / PREVIOUS_NAME).exists():
            raise CheckpointError(f"{self.out_dir} already holds a run ({last}); pass --resume to continue it or choose another --out-dir")
        if self.main:
            self._warn_if_short_of_space()
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out_dir / "config.json", cfg.to_json() + "\n")
            self.model.spec.save(self.out_dir / "spec.json")
            atomic_write_text(self.out_dir / PREPROCESSING_NAME, json.dumps(self.preprocessing.to_dict(), indent=2) + "\n")
            atomic_write_text(self.out_dir / CLASSES_NAME, json.dumps(self.data.class_names) + "\n")
        previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _in_main_thread() else None
        try:
            while self.epoch < cfg.epochs:
                self._run_epoch()
                self._end_epoch()
        except KeyboardInterrupt:
            self.save()
            raise TrainingInterrupted(
                f"interrupted at epoch {self.epoch + 1}, step {self.step_in_epoch}; checkpoint saved to {last}; continue with --resume"
            ) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return self._finish()

    def _warn_if_short_of_space(self) -> None:
        """Before the first checkpoint: say so when the disk cannot hold two of them (model, EMA and two optimizer slots per weight)."""
        model = state_bytes(self.model.state_dict())
        warning = check_space(self.out_dir, model * (2 if self.ema is not None else 1) + 2 * state_bytes(list(self.model.parameters())))
        if warning:
            warnings.warn(warning, stacklevel=3)

    def _finish(self) -> TrainResult:
        from effnet.profile import profile_spec
        from effnet.weights import save_file

        final = self.history[-1] if self.history else {}
        cost = profile_spec(self.model.spec, self.resolution)
        result = TrainResult(
            out_dir=self.out_dir,
            best_top1=self.best["top1"],
            best_ema_top1=self.best["ema_top1"] if self.ema is not None else None,
            final={k: v for k, v in final.items() if not isinstance(v, list)},
            history=self.history,
            seconds=self.train_seconds,
            images_per_second=self.images_seen / max(1e-9, self.train_seconds),
            spec=self.model.spec,
            resolution=self.resolution,
            params=cost.params,
            macs=cost.macs,
        )
        if self.main:
            save_file(self.model.state_dict(), self.out_dir / "model.safetensors", metadata={"spec": self.model.spec.to_json()})
            if self.ema is not None:
                save_file(self.ema.module.state_dict(), self.out_dir / "ema.safetensors", metadata={"spec": self.model.spec.to_json()})
            summary = {
                "best_top1": result.best_top1,
                "best_ema_top1": result.best_ema_top1,
                "final": result.final,
                "seconds": result.seconds,
                "images_per_second": result.images_per_second,
            }
            atomic_write_text(self.out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        if self.config.fixres:
            result.fixres = run_fixres(self)
        return result


def _mixup(alpha: float, num_classes: int) -> Any:
    """torchvision's MixUp (it draws from torch's global RNG, which checkpoints hold), or None for alpha 0."""
    if alpha <= 0:
        return None
    from torchvision.transforms import v2

    return v2.MixUp(alpha=alpha, num_classes=num_classes)


def _say(line: str, bar: Any) -> None:
    """Print a line of its own while a progress bar may be drawn (tqdm clears the bar's line, prints, draws it again)."""
    if bar is not None:
        bar.write(line)
        sys.stdout.flush()
    else:
        print(line, flush=True)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(config: TrainConfig, spec: Any = None) -> TrainResult:
    """Train as `config` says (see TrainConfig for every option); `spec`, a NetSpec, is the network to train instead of
    config.model / config.spec. The result carries what was built: the spec, its params and MACs."""
    trainer = Trainer(config, spec)
    try:
        return trainer.run()
    finally:
        D.cleanup(trainer.dist)
