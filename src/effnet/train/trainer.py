"""The training loop: the paper's recipe, resumable bit for bit, on one process or many (torchrun).

Exact resume rests on three choices: every sample's augmentation is seeded by
(seed, epoch, index) rather than by a shared RNG stream; the data order of an epoch is a
seeded permutation (DistributedSampler), so a resumed epoch skips exactly the batches
already consumed; and the checkpoint holds every RNG state taken at a step boundary.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from effnet._lock import lock_directory
from effnet.train import distributed as D
from effnet.train.checkpoint import CheckpointError, check_compatible, load_newest, rng_state, set_rng_state
from effnet.train.config import TrainConfig
from effnet.train.evaluate import EvalResult, autocast, evaluate, unpack
from effnet.train.fixres import run_fixres
from effnet.train.interrupts import InterruptGuard
from effnet.train.metrics import repair_history
from effnet.train.network import batchnorm_eval, train_only_classifier_mode
from effnet.train.prepared import PreparedRun, prepare_run
from effnet.train.progressive import Stage, config_schedule, stage_of
from effnet.train.result import TrainingDiverged, TrainingInterrupted, TrainResult, at_chance_warning
from effnet.train.setup import on_device_data, set_up_model, set_up_optimization, source_mix
from effnet.train.timing import Progress, StepTimer, epoch_estimate
from effnet.train.writer import RunWriter


class Trainer:
    """Runs one training job: `run()` returns a TrainResult.

    Its parts: the run prepared once (`effnet.train.prepared`: spec, datasets, preprocessing, run directory), the
    network and optimizer set up here, the step and epoch loop, and what is written (`effnet.train.writer`).
    """

    def __init__(self, run: TrainConfig | PreparedRun, spec: Any = None) -> None:
        """`run`: a TrainConfig, or a run prepared already (`prepare_run`, `effnet.train.finetune.prepare_finetune`).
        `spec` (a NetSpec), with a TrainConfig, is the network to train instead of config.model / config.spec."""
        config = run.config if isinstance(run, PreparedRun) else run
        self.device = D.resolve_device(config.device)
        self.workers = config.loader_workers(self.device.type)
        allocator = None
        if config.memory_efficient_ops and self.device.type == "cpu":
            from effnet.models.allocator import tune_cpu_allocator

            # before anything allocates (process group, data, model): PyTorch reads its huge-page setting once
            allocator = tune_cpu_allocator()
        self.dist = D.init_distributed(self.device)
        self.out_dir = Path(config.out_dir)
        self.main = self.dist.is_main
        # one process per run directory, taken before anything is built (rank 0 only); released at the end of run()
        self.lock = lock_directory(self.out_dir, "training run", main_process=D.is_main_process())
        if allocator is not None and self.main:
            print(allocator.describe())
        torch.manual_seed(config.seed)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.prepared = run if isinstance(run, PreparedRun) else prepare_run(config, spec)
        self.config = config = self.prepared.config  # a spec given in memory: the config names the run's spec.json
        self.writer = RunWriter(self.prepared.layout, self.dist, self.device)
        self.resolution = self.prepared.resolution
        self.preprocessing = self.prepared.preprocessing
        self.data = self.prepared.data
        self.num_classes = self.prepared.num_classes
        self.on_device = on_device_data(self.prepared, self.device, verbose=self.main and config.verbose)
        # labelled and pseudo-labelled images at a fixed share of every batch (effnet.data.mixed), or one shuffled pass
        self.mix = source_mix(self.prepared, verbose=self.main and config.verbose)
        model = set_up_model(self.prepared, self.device, self.dist)
        self.model, self.trained, self.ema = model.model, model.trained, model.ema
        self.stages = config_schedule(config, self.resolution, float(getattr(self.model, "dropout", nn.Dropout(0.0)).p))
        self.stage: Stage | None = None
        self.mixup = _mixup(config.mixup, self.num_classes)
        optimization = set_up_optimization(self.prepared, self.model, self.mix, self.device, self.dist)
        self.steps_per_epoch, self.peak_lr = optimization.steps_per_epoch, optimization.peak_lr
        self.optimizer, self.scheduler, self.scaler = optimization.optimizer, optimization.scheduler, optimization.scaler

        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.epoch_stats = [0.0, 0.0, 0.0, 0.0]  # loss sum, correct, seen, bad images
        self.history: list[dict[str, Any]] = []
        self.best = {"top1": -1.0, "ema_top1": -1.0}
        self.images_seen = 0
        self.train_seconds = 0.0
        self._rng_at_step = rng_state()
        self._timing: StepTimer | None = StepTimer()
        self._epoch_estimate_due = True  # refreshed once, after the first epoch this process runs
        self._epoch_start: tuple[float, int] = (0.0, 0)  # when the epoch in progress started here, and at which step
        self.interrupts = InterruptGuard()  # Ctrl-C waits for the step, checkpoint or plot in progress

    def _progress(self) -> Progress:
        cfg = self.config
        return Progress(
            self.epoch,
            self.global_step,
            self.steps_per_epoch,
            cfg.epochs,
            cfg.eval_every,
            cfg.batch_size * cfg.grad_accum,
            len(self.data.val),
            self.ema is not None,
        )

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
        with self.interrupts.critical():
            self.writer.checkpoint(self._payload() if self.main else {}, self._rng_at_step)

    def _checkpoint_due(self) -> bool:
        """A mid-epoch checkpoint every --checkpoint-every steps and/or --checkpoint-minutes minutes."""
        return self.writer.checkpoint_due(self.global_step, self.config.checkpoint_every, self.config.checkpoint_minutes)

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
                last = self.prepared.layout.checkpoint
                kept = f"the last good checkpoint {last} is intact" if last.exists() else "no checkpoint had been written yet"
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}; {kept}. "
                    "Lower --lr (or --lr-per-256), use --amp none, or check the data."
                )
            self.scaler.scale(loss / len(micro_batches)).backward()
            loss_sum += loss.item() * labels.numel()
            correct += (logits.argmax(1) == labels).sum().item()
            seen += labels.numel()
        if cfg.clip_grad_norm > 0:  # one spike of SGD on frozen BN statistics can kill a layer's units for good
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
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
            from effnet.models.nn.lean import compiled_memory_budget

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
            with self.interrupts.critical():  # the weights and the step counter change together
                loss_sum, correct, seen, bad = self._train_step(micro_batches)
                self.epoch_stats = [a + b for a, b in zip(self.epoch_stats, (loss_sum, correct, seen, bad), strict=True)]
                self.step_in_epoch += 1
                self.global_step += 1
                self.images_seen += seen * self.dist.world_size
                # RNG state at this step boundary: what any checkpoint (periodic, Ctrl-C mid-next-step) restores
                self._rng_at_step = rng_state()
            elapsed = time.perf_counter() - started
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{self.epoch_stats[0] / max(1, self.epoch_stats[2]):.3f}",
                    lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                    img_s=f"{self.images_seen / max(1e-9, self.train_seconds + elapsed):.1f}",
                )
            if self._timing is not None and self._timing.ready():
                if self.main and cfg.verbose:
                    _say(self._timing.estimate(self._progress()), bar)  # a line of its own, not inside the progress bar's
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
        with self.interrupts.critical():  # the epoch's row, checkpoint, metrics files and plot (a first matplotlib import)
            self.history.append(row)
            self.epoch += 1
            self.step_in_epoch = 0
            self.epoch_stats = [0.0, 0.0, 0.0, 0.0]
            self._rng_at_step = rng_state()
            self.save()
            self.writer.epoch_done(self.history)
            if self.main and cfg.verbose:
                shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if not isinstance(v, list)}
                print(json.dumps(shown), flush=True)
        if self._epoch_estimate_due and self.epoch < cfg.epochs:
            # the first steps' estimate misses what a whole epoch shows (a busy machine, loader starts, checkpoints): again, measured
            self._epoch_estimate_due = False
            started, first_step = self._epoch_start
            seconds = time.perf_counter() - started - (eval_seconds or 0.0)
            if self.main and cfg.verbose:
                print(epoch_estimate(self._progress(), seconds, self.steps_per_epoch - first_step, eval_seconds), flush=True)

    def evaluate(self) -> tuple[EvalResult, EvalResult | None]:
        """Raw and EMA weights on the validation set (every process evaluates the whole set: simple, and val is small)."""
        loader: Any = self.prepared.val_loader(self.workers) if self.on_device is None else list(self.on_device.val_batches(self.config.batch_size))
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
        last = self.prepared.layout.checkpoint
        if cfg.resume:
            used = self.load(last)
            if self.main:
                print(f"resumed from {used}: epoch {self.epoch + 1}, step {self.step_in_epoch} of {self.steps_per_epoch}")
                repair_history(self.out_dir, self.history)
        else:
            self.writer.check_new()
        self.writer.begin(self.prepared, self.model, self.ema)
        self.interrupts.install()
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
            self.interrupts.restore()
        return self._finish()

    def _finish(self) -> TrainResult:
        from effnet.core.profile import profile_spec

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
        summary = {
            "best_top1": result.best_top1,
            "best_ema_top1": result.best_ema_top1,
            "final": result.final,
            "seconds": result.seconds,
            "images_per_second": result.images_per_second,
        }
        result.warning = at_chance_warning(result.final, self.prepared.num_classes)
        if result.warning:
            summary["warning"] = result.warning
            if self.main:
                print(f"warning: {result.warning}", file=sys.stderr, flush=True)
        self.writer.finish(self.model, self.ema, summary)
        if self.config.fixres:
            adapted, result.fixres = run_fixres(self.model, self.prepared, device=self.device, workers=self.workers)
            self.writer.fixres(adapted, self.model.spec, result.fixres)
            if self.main and self.config.verbose:
                print(result.fixres.summary(), flush=True)
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


def train(run: TrainConfig | PreparedRun, spec: Any = None) -> TrainResult:
    """Train as `run` says: a TrainConfig (see it for every option) or a prepared run (`prepare_run`); `spec`, a
    NetSpec, is the network to train instead of config.model / config.spec. The result carries what was built: the
    spec, its params and MACs."""
    trainer = Trainer(run, spec)
    try:
        return trainer.run()
    finally:
        D.cleanup(trainer.dist)
