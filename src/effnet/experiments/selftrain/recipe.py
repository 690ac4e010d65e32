"""The two trainings of Noisy Student, as TrainConfigs: the teacher on the labelled images, the noised student on both.

Both start from the fine-tune recipe (`effnet.train.finetune`: SGD, cosine, batch size from the image
count, BatchNorm statistics kept from pretraining). The student adds the paper's noise (Xie et al. 2020,
Section 3): RandAugment on its input, dropout 0.5 before the classifier and stochastic depth with
survival 0.8 at the last block (drop path 0.2), and it sees `pseudo_label_ratio` pseudo-labelled images per labelled
one in every batch (the paper: 3 for most students, 14 for L2).

The paper's RandAugment magnitude, 27, is on TF's scale, where 10 is AutoAugment's strongest setting and
larger values extrapolate (27 rotates by up to 81 degrees). torchvision's scale, which TrainConfig uses,
ends at that strongest setting (30 there = 10 in TF). `PAPER_NOISE` is 27 on torchvision's scale: 90%
of the strongest setting torchvision can express; the paper's own noise was stronger still.

The default noise scales with the labelled set (`default_noise`): the paper's noise was tuned for ImageNet's
1.28M labelled images; on the project's small sets (benchmarks/results/noisy_student*/) it made the student
worse than its teacher, and the milder `SMALL_SET_NOISE` tied it (within the interval). Below `SMALL_SET_IMAGES` labelled
images the default is the milder noise. That boundary is a choice, not a measurement: no set between the
measured ~200 images and ImageNet has been run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from effnet.data import SourceMix, batch_split
from effnet.train.config import TrainConfig
from effnet.train.distributed import world_size
from effnet.train.finetune import FINETUNE_RECIPE, WARMUP_FRACTION, batch_for, plan_finetune

PAPER_RATIO = 3.0
# Options the pipeline owns: a --train-config file may not set them.
OWNED = frozenset({"dataset", "data_dir", "pseudo_labels", "pseudo_label_ratio", "out_dir", "resume", "model", "spec", "pretrained"})


@dataclass(frozen=True)
class Noise:
    """The student's noise: RandAugment magnitude (torchvision's 0-30; 0 turns it off), dropout, drop path of the last block.

    A setting left None takes the default for the labelled set's size (`resolved`, `default_noise`).
    """

    randaugment_magnitude: float | None = None
    dropout: float | None = None
    drop_path_rate: float | None = None

    def resolved(self, labeled_images: int) -> Noise:
        """Every setting left None filled from `default_noise(labeled_images)`."""
        default = default_noise(labeled_images)
        return Noise(*(default_value if value is None else value for value, default_value in zip(self._values(), default._values(), strict=True)))

    def _values(self) -> tuple[float | None, float | None, float | None]:
        return (self.randaugment_magnitude, self.dropout, self.drop_path_rate)

    def _check_resolved(self) -> None:
        if None in self._values():
            raise ValueError(f"{self} has settings left to the data's default: call .resolved(labelled images) first")

    def train_values(self) -> dict[str, Any]:
        self._check_resolved()
        return {
            "auto_augment": "randaugment" if self.randaugment_magnitude > 0 else "none",
            "randaugment_magnitude": self.randaugment_magnitude,
            "dropout": self.dropout,
            "drop_path_rate": self.drop_path_rate,
        }

    @property
    def off(self) -> bool:
        return self.randaugment_magnitude == 0 and self.dropout == 0 and self.drop_path_rate == 0

    def describe(self) -> str:
        self._check_resolved()
        if self.off:
            return "no noise (crops and flips only)"
        augment = f"RandAugment {self.randaugment_magnitude:g}" if self.randaugment_magnitude > 0 else "no RandAugment"
        return f"{augment}, dropout {self.dropout:g}, drop path {self.drop_path_rate:g}"


PAPER_NOISE = Noise(27.0, 0.5, 0.2)
# The milder noise measured in benchmarks/results/noisy_student/ (flowers5) and noisy_student_shapes/ (run (d)).
SMALL_SET_NOISE = Noise(9.0, 0.2, 0.1)
SMALL_SET_IMAGES = 100_000


def default_noise(labeled_images: int) -> Noise:
    """The student's noise for a labelled set of this size: the milder noise below `SMALL_SET_IMAGES`, the paper's above."""
    return SMALL_SET_NOISE if labeled_images < SMALL_SET_IMAGES else PAPER_NOISE


# The student trains this many times the teacher's epochs unless told otherwise: the paper's student trains far
# longer than its teacher, and on the battery's tuning half twice the epochs beat equal ones
# (benchmarks/results/battery/ns_tuning/).
STUDENT_EPOCH_FACTOR = 2


@dataclass(frozen=True)
class Budget:
    """How long each training runs: `epochs` for the teacher and `student_epochs` for each student (0: twice
    `epochs`), or `steps` optimizer steps for every training (equal budgets for unequal data)."""

    epochs: int = 10
    steps: int = 0
    batch_size: int = 0  # 0: from the image count, as fine-tuning does
    student_epochs: int = 0  # 0: STUDENT_EPOCH_FACTOR x epochs

    def student(self) -> Budget:
        """The student's budget: its own epochs; a `steps` budget stays the same for every training."""
        return Budget(self.student_epochs or STUDENT_EPOCH_FACTOR * self.epochs, self.steps, self.batch_size, self.student_epochs)

    def values(self, steps_per_epoch: int) -> dict[str, Any]:
        """epochs (and a per-epoch cap) giving `steps` steps, evaluated once at the end; or `epochs` as they are.

        Epochs are equally long, so `steps` is split into the longest epochs that divide it (20 steps at 7 per
        epoch: 4 x 5, not 3 x 7 = 21). Where that would take more than twice the fewest epochs (a prime count
        of steps), the nearest total of equal epochs is used; the plan line says the total.
        """
        if not self.steps:
            return {"epochs": self.epochs}
        fewest = math.ceil(self.steps / steps_per_epoch)
        per_epoch = next(p for p in range(min(steps_per_epoch, self.steps), 0, -1) if self.steps % p == 0)
        epochs = self.steps // per_epoch
        if epochs > 2 * fewest:
            epochs, per_epoch = fewest, round(self.steps / fewest)
        return {"epochs": epochs, "max_steps_per_epoch": per_epoch if per_epoch < steps_per_epoch else 0, "eval_every": epochs}


def default_ratio(labeled: int, pseudo: int) -> float:
    """The paper's 3 pseudo-labelled images per labelled one, or the sources' own proportion when that is smaller."""
    return min(PAPER_RATIO, pseudo / labeled)


@dataclass(frozen=True)
class Network:
    """A teacher's or student's network, resolved once: TrainConfig's model/spec/pretrained values, and its NetSpec."""

    values: dict[str, Any]
    spec: Any

    @property
    def name(self) -> str:
        return self.values["spec"] or self.values["model"]


def resolve_network(network: str, pretrained: str = "auto") -> Network:
    """A model name or a spec (file or block string), resolved once (`effnet.core.zoo.resolve_spec`), with the weights it
    starts from; `pretrained`: auto, default, none or a file."""
    from effnet.core.zoo import UnknownModelError, get_info, resolve_spec

    try:
        info = get_info(network)
    except UnknownModelError:
        spec = resolve_spec(network)  # a spec file or block string, or a clear error naming the closest models
        if pretrained not in ("auto", "none", ""):
            raise ValueError(f"pretrained weights ({pretrained!r}) apply to named models, not to the spec {network!r}; drop the option") from None
        return Network({"model": FINETUNE_RECIPE["model"], "spec": network, "pretrained": ""}, spec)
    weights = {"auto": "default" if info.weights else "", "none": "", "": ""}.get(pretrained, pretrained)
    if weights == "default" and not info.weights:
        raise ValueError(f"{info.name} has no pretrained weights to start from; use --student-pretrained none (train from scratch) or a weights file")
    return Network({"model": info.name, "spec": "", "pretrained": weights}, resolve_spec(info.name))


def _base(network: dict[str, Any], labeled: str, out_dir: str, seed: int, resolution: int, extra: dict[str, Any]) -> dict[str, Any]:
    owned = sorted(OWNED & set(extra))
    if owned:
        raise ValueError(f"the --train-config file sets {', '.join(owned)}, which noisy-student sets itself; remove them from the file")
    values = {k: v for k, v in FINETUNE_RECIPE.items() if k not in ("model", "pretrained", "out_dir", "epochs")}
    values.update(network, dataset="folder", data_dir=str(labeled), out_dir=str(out_dir), seed=seed, resolution=resolution)
    if not network["pretrained"]:  # from scratch: BatchNorm learns its statistics, quickly (see the 'proxy' preset)
        values.update(freeze_bn=False, bn_momentum=0.1)
    return values


def teacher_config(
    model: str | Network, *, labeled: str, images: int, out_dir: str, budget: Budget, seed: int = 0, resolution: int = 0, extra: dict[str, Any] | None = None
) -> tuple[TrainConfig, str]:
    """Step 1, "train a teacher on the labelled images": the fine-tune recipe and plan (`plan_finetune`) from `model`'s
    pretrained weights (a model name, or a `Network` resolved already)."""
    world = world_size()
    network = model if isinstance(model, Network) else resolve_network(model, "default")
    values = _base(network.values, labeled, out_dir, seed, resolution, extra or {})
    plan = plan_finetune(images, epochs=budget.epochs, world_size=world, batch_size=budget.batch_size or None)
    steps_per_epoch, length = plan.steps_per_epoch, budget.values(plan.steps_per_epoch)
    plan = plan_finetune(
        images, epochs=length["epochs"], world_size=world, batch_size=plan.batch_size, max_steps_per_epoch=length.get("max_steps_per_epoch", 0)
    )
    values.update(batch_size=plan.batch_size, warmup_epochs=plan.warmup_epochs, **length)
    values.update(extra or {})
    config = TrainConfig.from_dict(values)
    line = f"teacher {config.model} (pretrained): {images} labelled images -> batch {config.batch_size}, {steps_per_epoch} steps/epoch, {_length(config, steps_per_epoch)}"
    return config, line


def student_config(
    network: str | Network,
    *,
    labeled: str,
    labeled_images: int,
    pseudo_file: str,
    pseudo_images: int,
    out_dir: str,
    budget: Budget,
    noise: Noise = PAPER_NOISE,
    pseudo_label_ratio: float = 0.0,
    pretrained: str = "auto",
    seed: int = 0,
    resolution: int = 0,
    extra: dict[str, Any] | None = None,
) -> tuple[TrainConfig, str]:
    """Step 3: the student on labelled + pseudo-labelled images with `noise`, `pseudo_label_ratio` pseudo-labelled per labelled image (0: `default_ratio`),
    for `budget.student()` (twice the teacher's epochs unless `budget.student_epochs` says otherwise).
    `network`: a model name or spec, or a `Network` resolved already (then `pretrained` is its own)."""
    world = world_size()
    resolved = network if isinstance(network, Network) else resolve_network(network, pretrained)
    values = _base(resolved.values, labeled, out_dir, seed, resolution, extra or {})
    noise = noise.resolved(labeled_images)
    ratio = pseudo_label_ratio or default_ratio(labeled_images, pseudo_images)
    batch = max(2, budget.batch_size or batch_for(labeled_images + pseudo_images, world))
    split = batch_split(batch, ratio)
    mix = SourceMix((labeled_images, pseudo_images), split)
    steps_per_epoch = max(1, mix.batches_per_epoch // world)
    length = budget.student().values(steps_per_epoch)
    values.update(noise.train_values(), pseudo_labels=str(pseudo_file), pseudo_label_ratio=ratio, batch_size=batch, **length)
    values["warmup_epochs"] = WARMUP_FRACTION * values["epochs"]
    values.update(extra or {})
    config = TrainConfig.from_dict(values)
    start = "pretrained" if config.pretrained else "from scratch"
    name = config.spec or config.model
    line = (
        f"student {name} ({start}): {labeled_images} labelled + {pseudo_images} pseudo-labelled images -> batch {batch} "
        f"({split[0]} labelled + {split[1]} pseudo-labelled), {steps_per_epoch} steps/epoch, {_length(config, steps_per_epoch)}; noise: {noise.describe()}"
    )
    return config, line


def _length(config: TrainConfig, steps_per_epoch: int) -> str:
    per_epoch = min(config.max_steps_per_epoch or steps_per_epoch, steps_per_epoch)
    return f"{config.epochs} epochs x {per_epoch} steps = {config.epochs * per_epoch} optimizer steps"
