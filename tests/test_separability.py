"""Fine-tuning chooses its BatchNorm mode from how well the pretrained features already separate the classes:
the measure (leave-one-out nearest class mean) against a brute-force loop, the choice, and the measure on real
photos against the synthetic shapes task."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from effnet.data.shapes import ShapesTask
from effnet.train.config import TrainConfig
from effnet.train.finetune import BN_TRAINING, BN_TRAINING_MIN_SEPARABILITY, FINETUNE_RECIPE, chooses_bn_mode, describe, finetune_values
from effnet.train.prepared import prepare_run
from effnet.train.separability import Separability, nearest_class_mean_accuracy, pretrained_separability


def _brute_force_loo_ncm(features: torch.Tensor, labels: torch.Tensor) -> float:
    """The definition, one sample at a time: cosine to each class's mean of unit vectors, itself left out."""
    unit = F.normalize(features.double(), dim=1)
    correct = counted = 0
    for i in range(len(labels)):
        if int((labels == labels[i]).sum()) < 2:
            continue
        best_class, best = -1, -2.0
        for c in labels.unique().tolist():
            members = labels == c
            members[i] = False
            if not bool(members.any()):
                continue
            score = F.cosine_similarity(unit[members].mean(0), unit[i], dim=0).item()
            if score > best:
                best_class, best = c, score
        correct += best_class == int(labels[i])
        counted += 1
    return correct / counted


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nearest_class_mean_accuracy_equals_the_definition(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (80,), generator=generator)
    features = torch.randn(80, 16, generator=generator) + 1.5 * F.one_hot(labels, 16).float()
    labels[0] = 4  # a class of one sample: no leave-one-out mean of its own, left out
    expected = _brute_force_loo_ncm(features, labels)
    assert 0.3 < expected < 1.0  # neither trivial nor hopeless, so a wrong leave-one-out would show
    assert nearest_class_mean_accuracy(features, labels) == pytest.approx(expected, abs=1e-12)


def test_leaving_the_sample_out_matters_and_separated_classes_score_one() -> None:
    # Two samples of class 0, one far from the other; with itself in its class mean, the far one would be right.
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0], [0.0, 1.1]])
    labels = torch.tensor([0, 0, 1, 1])
    assert nearest_class_mean_accuracy(features, labels) == pytest.approx(0.5)  # sample 1 is nearer class 1's mean
    assert nearest_class_mean_accuracy(torch.eye(4)[[0, 0, 1, 1, 2, 2]] + 0.01, torch.tensor([0, 0, 1, 1, 2, 2])) == 1.0
    with pytest.raises(ValueError, match="single sample"):
        nearest_class_mean_accuracy(torch.eye(3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="features"):
        nearest_class_mean_accuracy(torch.zeros(3, 2), torch.zeros(4))


def test_the_batchnorm_mode_follows_the_separability_and_the_user_wins() -> None:
    high = Separability(BN_TRAINING_MIN_SEPARABILITY, 240, 2)
    low = Separability(BN_TRAINING_MIN_SEPARABILITY - 0.01, 240, 2)
    trained, plan = finetune_values(244, {"epochs": 3}, separability=high)
    assert {k: trained[k] for k in BN_TRAINING} == BN_TRAINING and plan.separability == high
    frozen, _ = finetune_values(244, {"epochs": 3}, separability=low)
    assert (frozen["freeze_bn"], frozen["backbone_lr_scale"]) == (FINETUNE_RECIPE["freeze_bn"], FINETUNE_RECIPE["backbone_lr_scale"])
    assert finetune_values(244, {"freeze_bn": True}, separability=high)[0]["freeze_bn"] is True
    assert finetune_values(244, {"backbone_lr_scale": 0.5}, separability=high)[0]["backbone_lr_scale"] == 0.5
    assert finetune_values(244, {}, separability=None)[0]["freeze_bn"] == FINETUNE_RECIPE["freeze_bn"]
    assert chooses_bn_mode({}) and not chooses_bn_mode({"freeze_bn": False}) and not chooses_bn_mode({"pretrained": "none"})
    line = describe(plan, TrainConfig.from_dict(trained))
    assert f"separate the classes {100 * high.accuracy:.1f}%" in line and "BN statistics trained" in line
    assert "backbone x" not in line  # one rate for the whole network


def _shapes_folder(root: Path) -> Path:
    for split, count in (("train", 64), ("val", 16)):
        ShapesTask(split, num_samples=count, num_classes=16, seed=0).write_folder(root)
    return root


def test_pretrained_features_separate_photos_of_distinct_objects_but_not_the_shapes_task(tiny_photos: Path, tmp_path: Path) -> None:
    def measured(folder: Path) -> Separability:
        return pretrained_separability(prepare_run(TrainConfig.from_dict({**FINETUNE_RECIPE, "dataset": "folder", "data_dir": str(folder), "resolution": 128})))

    photos = measured(tiny_photos)  # crops of three CC0 photos: a cat, a coffee cup, a rocket
    shapes = measured(_shapes_folder(tmp_path / "shapes"))  # 16 classes by relation x stripes x shape, unlike ImageNet's
    assert (photos.images, photos.classes, shapes.images, shapes.classes) == (48, 3, 64, 16)
    assert photos.accuracy >= BN_TRAINING_MIN_SEPARABILITY > shapes.accuracy


def test_many_classes_are_measured_on_enough_images_per_class() -> None:
    from effnet.train.separability import MAX_IMAGES, MIN_IMAGES_PER_CLASS, images_to_measure

    assert images_to_measure(500, 10) == MAX_IMAGES  # few classes: the evenly spaced subset, as before
    assert images_to_measure(100, 2) == 100  # a small folder: all of it
    assert images_to_measure(2040, 102) == 2040  # Flowers-102's training split: all, not 4 per class
    assert images_to_measure(50_000, 1000) == MIN_IMAGES_PER_CLASS * 1000
    # why: with class means of 3 other images, separable clusters read as much less separable than they are
    torch.manual_seed(0)
    centres = torch.randn(102, 64)
    labels = torch.arange(102).repeat_interleave(20)
    features = centres[labels] + 1.5 * torch.randn(len(labels), 64)
    subset = torch.linspace(0, len(labels) - 1, 400).long()
    few, every = nearest_class_mean_accuracy(features[subset], labels[subset]), nearest_class_mean_accuracy(features, labels)
    assert few < BN_TRAINING_MIN_SEPARABILITY <= every  # 400 images would freeze BN statistics that all 2,040 train


def test_a_folder_with_one_image_per_class_leaves_the_recipe_as_it_is(tiny_photos: Path, tmp_path: Path) -> None:
    import shutil

    for split in ("train", "val"):
        for folder in sorted((tiny_photos / split).iterdir()):
            (tmp_path / split / folder.name).mkdir(parents=True)
            shutil.copy(sorted(folder.iterdir())[0], tmp_path / split / folder.name / "only.jpg")
    config = TrainConfig.from_dict({**FINETUNE_RECIPE, "dataset": "folder", "data_dir": str(tmp_path), "resolution": 64})
    assert pretrained_separability(prepare_run(config)) is None
    values, plan = finetune_values(3, {}, separability=None)
    assert values["freeze_bn"] == FINETUNE_RECIPE["freeze_bn"] and plan.separability is None
