"""The training recipe as one dataclass: the paper's (and TF reference's) values are the defaults.

Every field is a command-line option (`effnet train --help`), can come from a YAML or JSON
config file, and the resolved config is saved beside each run (`config.json`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet._fields import reject_unknown
from effnet._io import absolute_path

OPTIMIZERS = ("rmsprop_tf", "sgd", "adamw")
SCHEDULES = ("exponential", "cosine", "constant")
AMP_MODES = ("none", "bf16", "fp16")
AUTO_AUGMENTS = ("autoaugment", "randaugment", "none")
HEAD_INITS = ("zeros", "tf")
SYNTHETIC_SAMPLES = (2000, 500)  # train, val images of a generated task unless set
GENERATED_DATASETS = ("synthetic", "shapes")  # effnet.data.SYNTHETIC_TASKS
# Fields that name paths, recorded absolute and resolved (config.json, resume): None, always a path; else which values are
# paths (a model name, block string or 'default' stays as it is)
PATH_FIELDS: dict[str, Any] = {"data_dir": None, "out_dir": None, "pseudo_labels": None, "spec": Path.is_file, "pretrained": Path.is_file}


# Named starting points; explicit options override them.
# "paper": the recipe above, tuned for 350 epochs of ImageNet on TPUs.
# "proxy": minutes-long CPU runs (tests, scaling studies, architecture search). Measured on the
# synthetic task with a tiny net, 4 epochs x 1000 images: the paper's RMSProp (momentum 0.9,
# lr 0.001-0.004) and BN momentum 0.01 stayed at chance (running BN statistics had not
# converged after ~120 steps), while AdamW 3e-3 with cosine decay and BN momentum 0.1 reached
# 42-52% on 4 classes (chance 25%).
# Zero-initialised residual branches: a depth-scaled network then starts as a shallow one; without them the
# scaling study's deepest networks never left chance within the proxy's few hundred steps. Channels-last: the same
# training in about two thirds of the time on the CPU (benchmarks/results/proxy_pairs/).
PRESETS: dict[str, dict[str, object]] = {
    "paper": {},
    "proxy": {
        "optimizer": "adamw",
        "lr": 3e-3,
        "schedule": "cosine",
        "warmup_epochs": 0.2,
        "bn_momentum": 0.1,
        "ema_decay": 0.999,
        "drop_path_rate": 0.0,
        "auto_augment": "none",
        "zero_init_residual": True,
        "channels_last": True,
        "epochs": 5,
        "batch_size": 32,
    },
}


def preset(name: str, **changes: object) -> TrainConfig:
    """A TrainConfig from a named preset ('paper' or 'proxy'), with `changes` on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    return TrainConfig(**{**PRESETS[name], **changes})  # type: ignore[arg-type]


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None, **kwargs: Any) -> Any:
    meta = {"help": help}
    if choices:
        meta["choices"] = choices
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta, **kwargs)
    return field(default=default, metadata=meta, **kwargs)


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults follow the paper / TF reference recipe."""

    # what to train
    model: str = _f("efficientnet_b0", "model name (effnet models) to train")
    spec: str = _f("", "a NetSpec file (JSON or block string) to train instead of a named model")
    pretrained: str = _f("", "start from weights: 'default' for the model's pretrained weights, or a file of any supported layout")
    num_classes: int = _f(0, "classes of the task (0: taken from the dataset)")
    resolution: int = _f(0, "training resolution in pixels (0: the model's native one)")
    # data
    dataset: str = _f("", "synthetic or shapes (built-in proxy tasks), folder (image folders under --data-dir), cifar10 or cifar100")
    data_dir: str = _f("", "dataset root: train/CLASS/*.jpg and val/CLASS/*.jpg, or CLASS/*.jpg with a held-out split")
    train_samples: int = _f(0, "training images: the synthetic task's count, a fixed subset of a real dataset (0: 2000 synthetic, all real)")
    val_samples: int = _f(0, "validation images, likewise (0: 500 synthetic, all real)")
    val_fraction: float = _f(0.1, "folder without val/: fraction of images held out for validation")
    auto_augment: str = _f("autoaugment", "train-time augmentation policy (the paper uses AutoAugment)", AUTO_AUGMENTS)
    randaugment_magnitude: float = _f(9.0, "RandAugment magnitude on torchvision's scale of 0-30 (the last stage's, with --progressive-stages)")
    mixup: float = _f(0.0, "mixup alpha (0: off; the last stage's, with --progressive-stages)")
    pseudo_labels: str = _f(
        "", "a JSON-lines file of pseudo-labelled images (image path and label distribution per line, as `effnet noisy-student` writes) to train on too"
    )
    pseudo_label_ratio: float = _f(3.0, "with --pseudo-labels: pseudo-labelled images per labelled image in each batch (Noisy Student's batch ratio)")
    crop_min_area: float = _f(0.0, "smallest random-resized-crop area, as a fraction of the image (0: the dataset's default, 0.08 for photos)")
    data_on_device: bool = _f(
        False,
        "generated tasks (synthetic, shapes): keep the images as one tensor on the training device and crop, flip and normalise "
        "whole batches there instead of in loader processes (what keeps a GPU busy with small proxy networks)",
    )
    workers: int = _f(-1, "data-loader worker processes (-1: 0 on a CPU with <= 2 cores, where workers compete with the compute threads; else up to 8)")
    # optimisation (paper Section 5.2 and the TF reference)
    epochs: int = _f(350, "training epochs (the paper trains 350 on ImageNet)")
    batch_size: int = _f(128, "images per process per step (global batch = batch-size x processes x grad-accum)")
    grad_accum: int = _f(1, "accumulate gradients over this many batches per optimizer step")
    optimizer: str = _f("rmsprop_tf", "rmsprop_tf (TF semantics, the paper's), sgd or adamw", OPTIMIZERS)
    lr: float = _f(0.0, "peak learning rate (0: lr-per-256 x global batch / 256)")
    lr_per_256: float = _f(0.016, "learning rate per 256 images of global batch (paper: 0.256 at batch 4096)")
    momentum: float = _f(0.9, "momentum (RMSProp and SGD)")
    rmsprop_decay: float = _f(0.9, "RMSProp decay of the squared-gradient average")
    rmsprop_eps: float = _f(1e-3, "RMSProp epsilon, inside the square root as in TF")
    weight_decay: float = _f(1e-5, "L2 weight decay, not applied to BN parameters and biases")
    clip_grad_norm: float = _f(0.0, "scale the gradients down to this global norm when they exceed it, before each step (0: off)")
    schedule: str = _f("exponential", "exponential (x decay-rate every decay-epochs, the paper's), cosine or constant", SCHEDULES)
    cosine_min_steps: int = _f(
        0,
        "cosine: the schedule spans at least this many optimizer steps; a shorter run stops part-way down, at a higher learning rate (0: the run's own steps)",
    )
    decay_rate: float = _f(0.97, "exponential schedule: multiply the LR by this ...")
    decay_epochs: float = _f(2.4, "... every this many epochs (staircase)")
    warmup_epochs: float = _f(5.0, "linear warm-up from 0 over this many epochs")
    label_smoothing: float = _f(0.1, "label smoothing of the cross-entropy loss")
    bn_momentum: float = _f(0.01, "BatchNorm momentum in PyTorch's sense (TF's decay 0.99)")
    ema_decay: float = _f(0.9999, "exponential moving average of the weights (0 disables); evaluated beside the raw weights")
    drop_path_rate: float = _f(-1.0, "stochastic depth rate of the last block, rising linearly from 0 (-1: the model's own, 0.2 for EfficientNets)")
    dropout: float = _f(-1.0, "dropout before the classifier (-1: the variant's own, 0.2 for B0 ... 0.5 for B7)")
    zero_init_residual: bool = _f(
        False, "from scratch: start each residual block as its shortcut (its branch's last BN scale 0); deep networks then train from the first steps"
    )
    head_init: str = _f("zeros", "a new classifier starts at zero (uniform predictions) or with TF's uniform(1/sqrt(classes)) init", HEAD_INITS)
    freeze_backbone: bool = _f(False, "fine-tuning: train only the classifier")
    freeze_bn: bool = _f(False, "BatchNorm normalises with its running statistics and keeps them (its scale and shift still train): for small batches")
    progressive_stages: int = _f(0, "progressive learning (EfficientNetV2): this many stages, image size and regularization growing together (0: off)")
    progressive_start_resolution: int = _f(0, "progressive learning: the first stage's image size (0: half the final --resolution)")
    progressive_start_magnitude: float = _f(5.0, "progressive learning: the first stage's RandAugment magnitude")
    progressive_start_mixup: float = _f(0.0, "progressive learning: the first stage's mixup alpha")
    progressive_start_dropout: float = _f(0.1, "progressive learning: the first stage's dropout (the last stage's: --dropout or the model's)")
    fixres: int = _f(0, "after training, adapt BN statistics and the classifier to this test resolution in pixels (FixRes; 0: off)")
    fixres_epochs: int = _f(1, "FixRes: epochs of classifier fine-tuning at the test resolution")
    backbone_lr_scale: float = _f(1.0, "fine-tuning: learning-rate multiplier for everything but the classifier")
    linear_probe_epochs: float = _f(
        0.0, "fine-tuning: train only the classifier for this many epochs, then everything (LP-FT); the backbone's schedule starts then"
    )
    # speed and scale
    amp: str = _f("none", "mixed precision: bf16, fp16 (with loss scaling) or none", AMP_MODES)
    channels_last: bool = _f(False, "channels-last memory format (faster on most hardware)")
    compile: bool = _f(False, "torch.compile the model")
    activation_checkpointing: bool = _f(False, "recompute each stage's activations in backward (less memory, more compute)")
    memory_efficient_ops: bool = _f(
        False,
        "lean ops: activations rebuilt in backward from the conv outputs instead of kept (about a third of the activation memory); "
        "with --compile, torch.compile's activation memory budget instead (the compiler picks what to recompute); "
        "on CPU also tunes the allocator so that freed memory goes back to the OS (effnet.models.allocator)",
    )
    sync_bn: bool = _f(False, "synchronise BatchNorm statistics across processes (torchrun)")
    device: str = _f("auto", "cpu, cuda, cuda:N or auto")
    # bookkeeping
    seed: int = _f(0, "random seed (data order, augmentation, initialisation)")
    deterministic: bool = _f(False, "use deterministic algorithms (bitwise-reproducible runs, slower)")
    out_dir: str = _f("runs/train", "run directory: checkpoints, metrics, plots, config")
    resume: bool = _f(False, "continue the run in --out-dir from its last checkpoint")
    checkpoint_minutes: float = _f(10.0, "also checkpoint mid-epoch when this many minutes have passed since the last checkpoint (0: off)")
    checkpoint_every: int = _f(0, "also checkpoint every this many optimizer steps (0: off)")
    eval_every: int = _f(1, "evaluate every this many epochs (and always after the last)")
    max_steps_per_epoch: int = _f(0, "cap optimizer steps per epoch (0: the whole dataset); for quick runs")
    progress: bool = _f(True, "show a progress bar")
    verbose: bool = _f(True, "print the start-up lines (plan, time estimate) and one line of metrics per epoch")

    def __post_init__(self) -> None:
        choices = (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("amp", AMP_MODES), ("auto_augment", AUTO_AUGMENTS), ("head_init", HEAD_INITS))
        for name, allowed in choices:
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")
        positive = ("epochs", "batch_size", "grad_accum", "eval_every", "fixres_epochs")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not (0 <= self.drop_path_rate < 1 or self.drop_path_rate == -1):
            raise ValueError(f"drop-path-rate must be in [0, 1), or -1 for the model's own; got {self.drop_path_rate}")
        if self.workers < -1:
            raise ValueError(f"workers must be >= 0, or -1 for automatic; got {self.workers}")
        for name in ("train_samples", "val_samples", "fixres", "checkpoint_every", "max_steps_per_epoch", "progressive_stages", "progressive_start_resolution"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.checkpoint_minutes < 0:
            raise ValueError(f"checkpoint-minutes must be >= 0 (0: off), got {self.checkpoint_minutes}")
        if self.progressive_stages > 1 and self.auto_augment == "autoaugment":
            raise ValueError(
                "--progressive-stages grows the RandAugment magnitude, but --auto-augment is autoaugment; "
                "use --auto-augment randaugment (EfficientNetV2's setting) or none"
            )
        if self.mixup < 0 or self.progressive_start_mixup < 0:
            raise ValueError(f"mixup alphas must be >= 0 (0: off), got {self.mixup} and {self.progressive_start_mixup}")
        if not 0 <= self.randaugment_magnitude <= 30 or not 0 <= self.progressive_start_magnitude <= 30:
            raise ValueError("RandAugment magnitudes are on torchvision's scale of 0-30")
        if self.pseudo_labels and self.pseudo_label_ratio <= 0:
            raise ValueError(f"pseudo-label-ratio must be > 0 (pseudo-labelled images per labelled one), got {self.pseudo_label_ratio}")
        if self.pseudo_labels and (self.mixup > 0 or self.progressive_start_mixup > 0):
            raise ValueError("mixup needs class indices, but --pseudo-labels gives label distributions; drop --mixup or the pseudo labels")
        if not 0 <= self.crop_min_area <= 1:
            raise ValueError(f"crop-min-area is a fraction of the image area in [0, 1] (0: the dataset's default), got {self.crop_min_area}")
        self.dataset = dataset_for(self.dataset, self.data_dir)
        for name, value in absolute_paths({name: getattr(self, name) for name in PATH_FIELDS}).items():
            setattr(self, name, value)  # the same run from any working directory, and in config.json as such
        if self.data_on_device and self.dataset not in GENERATED_DATASETS:
            raise ValueError(f"--data-on-device is for the generated tasks ({', '.join(GENERATED_DATASETS)}); {self.dataset} images go through the loader")
        if self.data_on_device and (self.auto_augment != "none" or self.pseudo_labels or self.progressive_stages):
            raise ValueError(
                "--data-on-device augments with crops and flips only; it needs --auto-augment none, no --pseudo-labels and no --progressive-stages"
            )
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.dataset == "folder" and not self.data_dir:
            raise ValueError("dataset 'folder' needs --data-dir pointing at train/CLASS/*.jpg (and val/CLASS/*.jpg)")
        if self.compile and self.activation_checkpointing:
            # the recompute keeps BN statistics frozen through a checkpoint context_fn, which torch.compile cannot trace
            raise ValueError(
                "--activation-checkpointing does not work with --compile yet; drop one "
                "(--memory-efficient-ops with --compile is the compiled way to save activation memory)"
            )

    # -- I/O -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        normalised = {k.replace("-", "_"): v for k, v in data.items()}
        reject_unknown(normalised, cls, "config key(s)", hint="see `effnet train --help` for the options")
        return cls(**normalised)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a YAML or JSON config file (keys are option names, with - or _)."""
        return cls.from_dict(read_config_file(path))

    def sample_counts(self) -> tuple[int | None, int | None]:
        """(train, val) image counts for build_datasets: 0 means the synthetic task's default, or all images of a real dataset."""
        if self.dataset in GENERATED_DATASETS:
            return self.train_samples or SYNTHETIC_SAMPLES[0], self.val_samples or SYNTHETIC_SAMPLES[1]
        return self.train_samples or None, self.val_samples or None

    def crop_scale(self) -> tuple[float, float] | None:
        """The random-resized-crop area range --crop-min-area asks for, or None for the dataset's default."""
        return (self.crop_min_area, 1.0) if self.crop_min_area > 0 else None

    def global_batch(self, world_size: int) -> int:
        return self.batch_size * world_size * self.grad_accum

    def loader_workers(self, device_type: str) -> int:
        """--workers, or for -1 what measured fastest: none on a CPU with <= 2 cores (the loader's processes take cores
        from the compute threads), otherwise enough to keep the device fed."""
        if self.workers >= 0:
            return self.workers
        cpus = os.cpu_count() or 1
        if device_type == "cpu":
            return 0 if cpus <= 2 else min(4, cpus // 4)
        return min(8, max(1, cpus - 1))

    def peak_lr(self, world_size: int) -> float:
        """The paper's rule: 0.016 per 256 images of global batch, unless --lr is given."""
        return self.lr if self.lr > 0 else self.lr_per_256 * self.global_batch(world_size) / 256


DATASET_DEFAULT_HELP = "folder with --data-dir, else synthetic"


def absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig options with the paths among them absolute and resolved (`PATH_FIELDS`): `photos` and `/home/me/photos` compare equal."""
    return {k: absolute_path(v, PATH_FIELDS[k]) if k in PATH_FIELDS and isinstance(v, str) else v for k, v in values.items()}


def dataset_for(dataset: str | None, data_dir: str | os.PathLike[str] | None, default: str = "synthetic") -> str:
    """The dataset a run uses: the one named; with only a data directory, the image folders there; with neither, `default`.

    A generated task named together with a data directory is a contradiction (the task reads no files): ValueError.
    """
    if not dataset:
        return "folder" if data_dir else default
    if dataset in GENERATED_DATASETS and data_dir:
        raise ValueError(
            f"--data-dir {str(data_dir)!r} names image folders, but --dataset {dataset} is a generated task that reads no files; "
            "drop --dataset to train on the folders (a data directory means --dataset folder), or drop --data-dir"
        )
    return dataset


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The options a YAML or JSON config file sets, keys normalised to field names (unchecked)."""
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of option names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}
