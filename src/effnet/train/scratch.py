"""Training from scratch on a small image folder: the recipe `effnet train --data-dir` uses instead of the paper's.

The paper's recipe (RMSProp at 0.016 per 256 images, exponential decay, AutoAugment, EMA 0.9999, 350 epochs) is
made for the 1.28M images of ImageNet. On a folder of a few hundred or thousand images a plain AdamW loop beats it:
RandAugment/AutoAugment keep a small network at chance for most of a short run, and EMA 0.9999 averages over more
steps than the run has (benchmarks/results/scratch_ablation/, benchmarks/results/battery/scratch/). So a folder of
at most `SMALL_FOLDER_MAX_IMAGES` training images, trained without --preset and without pretrained weights, gets
`SCRATCH_RECIPE`: AdamW with a cosine schedule, no auto-augment, milder crops, BatchNorm at momentum 0.1, and the
residual branches starting at zero (measured to help); batch size and warm-up come from the image count as in
fine-tuning (`effnet.train.finetune.plan_finetune`). Every choice is printed at start and saved in config.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from effnet.train.finetune import FinetunePlan, batch_for, plan_finetune

# Explicit options (command line, --config file, keyword arguments) win over these.
SCRATCH_RECIPE: dict[str, Any] = {
    "optimizer": "adamw",
    "lr": 3e-3,  # the proxy preset's rate; a fixed rate suits Adam's scale-free steps at batch 8-64
    "weight_decay": 0.01,  # torch.optim.AdamW's default (decoupled; not on BN parameters and biases)
    "schedule": "cosine",
    "label_smoothing": 0.1,
    "bn_momentum": 0.1,  # running statistics that converge within a few hundred steps
    "ema_decay": 0.0,  # a cosine schedule ends at zero LR: an average of the last weights adds little
    "drop_path_rate": 0.0,
    "auto_augment": "none",
    "crop_min_area": 0.25,
    "zero_init_residual": True,
    "channels_last": True,
    "head_init": "zeros",
    "epochs": 30,
}
# From scratch every step counts: at most this batch (fine-tuning's plan allows 64), as a plain loop's usual 32.
SCRATCH_MAX_BATCH = 32
# Above this many training images the folder is ImageNet-sized and the paper's recipe is the default again.
SMALL_FOLDER_MAX_IMAGES = 50_000


def uses_scratch_recipe(given: Mapping[str, Any]) -> bool:
    """Whether `effnet train` with these options may take the small-folder recipe: image folders, no pretrained weights."""
    from effnet.train.config import dataset_for

    pretrained = str(given.get("pretrained") or "").lower()
    return dataset_for(given.get("dataset"), given.get("data_dir")) == "folder" and pretrained in ("", "none", "false", "0")


def scratch_values(images: int, given: Mapping[str, Any], world_size: int = 1) -> tuple[dict[str, Any], FinetunePlan]:
    """TrainConfig values for training from scratch on `images` training images: the recipe, the plan (batch size,
    warm-up), then `given` on top."""
    values = {**SCRATCH_RECIPE, **given}
    grad_accum = int(values.get("grad_accum", 1))
    batch = given.get("batch_size") or min(SCRATCH_MAX_BATCH, batch_for(images, world_size, grad_accum))
    plan = plan_finetune(images, epochs=int(values["epochs"]), world_size=world_size, grad_accum=grad_accum, batch_size=batch)
    values["batch_size"] = plan.batch_size
    if "warmup_epochs" not in given:
        values["warmup_epochs"] = plan.warmup_epochs
    return values, plan


def prepare_scratch(given: Mapping[str, Any], world_size: int = 1) -> tuple[Any, FinetunePlan | None]:
    """The run `effnet train` `given` options ask for on an image folder, prepared once (`effnet.train.prepared`): the
    small-folder recipe adapted to the image count, or (plan None) the paper's recipe for a folder of more than
    `SMALL_FOLDER_MAX_IMAGES` training images. The folder is scanned once, here.

    >>> run, plan = prepare_scratch({"data_dir": "my_photos", "model": "efficientnet_b0"})  # doctest: +SKIP
    """
    from effnet.data import image_folder_splits
    from effnet.train.config import TrainConfig
    from effnet.train.prepared import prepare_run

    val_fraction = float(given.get("val_fraction", TrainConfig.val_fraction))
    splits = image_folder_splits(given["data_dir"], val_fraction=val_fraction)
    images = len(splits[0])
    if given.get("train_samples"):
        images = min(images, int(given["train_samples"]))
    if images > SMALL_FOLDER_MAX_IMAGES:
        return prepare_run(TrainConfig.from_dict(dict(given)), splits=splits), None
    values, plan = scratch_values(images, given, world_size)
    return prepare_run(TrainConfig.from_dict(values), splits=splits), plan


def describe_scratch(plan: FinetunePlan | None, config: Any) -> str:
    """One line: which recipe, and for the small-folder one every adaptive choice (printed at start)."""
    from effnet.train.finetune import describe

    if plan is None:
        return f"more than {SMALL_FOLDER_MAX_IMAGES} training images -> the paper's ImageNet recipe ({config.optimizer}, {config.epochs} epochs)"
    zero = ", residual branches start at zero" if config.zero_init_residual else ""
    return f"small-folder recipe from scratch: {describe(plan, config)}{zero} (--preset paper for the paper's ImageNet recipe)"
