"""The "shapes" proxy task: deterministic tensors, the class factors, and the properties that make each scaling dimension matter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.datasets import ImageFolder

from effnet.data import build_datasets
from effnet.data.shapes import CHUNK, MAX_CLASSES, ShapesTask, class_factors, render
from effnet.experiments.proxy import task_classes
from effnet.train.config import TrainConfig


def test_samples_are_a_function_of_seed_split_and_index() -> None:
    small, _ = ShapesTask("train", num_samples=5, num_classes=8).tensors()
    large, labels = ShapesTask("train", num_samples=CHUNK + 3, num_classes=8).tensors()
    assert small.dtype == torch.uint8 and small.shape == (5, 3, 128, 128) and large.shape[0] == CHUNK + 3
    assert torch.equal(small, large[:5])  # the first n images do not depend on the split's size
    assert labels.tolist()[:10] == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    image, label = ShapesTask("train", num_samples=CHUNK + 3, num_classes=8)[CHUNK + 1]
    assert torch.equal(image, large[CHUNK + 1]) and label == (CHUNK + 1) % 8
    assert not torch.equal(small, ShapesTask("val", num_samples=5, num_classes=8).tensors()[0])
    assert not torch.equal(small, ShapesTask("train", num_samples=5, num_classes=8, seed=1).tensors()[0])


def test_classes_are_relation_texture_and_shape() -> None:
    assert [class_factors(c) for c in (0, 1, 2, 3, 4, 31)] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 1, 7)]
    task = ShapesTask("val", num_samples=4, num_classes=MAX_CLASSES)
    assert task.classes[:5] == ["disc-horizontal-above", "disc-horizontal-below", "disc-vertical-above", "disc-vertical-below", "square-horizontal-above"]
    assert "16 balanced classes (2 relations x 2 textures x 4 shape(s))" in ShapesTask("val", num_samples=4).describe()
    with pytest.raises(ValueError, match="num_classes must be in 2..32"):
        ShapesTask(num_classes=33)
    with pytest.raises(ValueError, match="at least 96 px"):
        ShapesTask(native_resolution=64)


def test_the_marker_is_above_or_below_the_figure_inside_the_centre() -> None:
    labels = torch.arange(64) % 4
    details: dict = {}
    render(labels, list(range(64)), details=details)
    above = labels % 2 == 0
    gap = details["marker_y"] - details["figure_y"]
    assert bool((gap[above] <= -28).all()) and bool((gap[~above] >= 28).all())
    for key in ("figure_y", "marker_y", "figure_x", "marker_x"):
        assert bool(((details[key] >= 0.14 * 128) & (details[key] <= 0.86 * 128)).all()), key


def _stripe_contrast(images: torch.Tensor, texture: torch.Tensor, size: int) -> torch.Tensor:
    """Per image: summed |gradient| across the stripes over summed |gradient| along them (1: no stripes visible)."""
    gray = F.interpolate(images.float() / 255, size=size, mode="bicubic", antialias=True).mean(1)
    along_y = (gray[:, 1:] - gray[:, :-1]).abs().sum((1, 2))
    along_x = (gray[:, :, 1:] - gray[:, :, :-1]).abs().sum((1, 2))
    return torch.where(texture == 1, along_x / along_y, along_y / along_x)


def test_fine_stripes_vanish_at_low_resolution_and_coarse_ones_stay() -> None:
    labels = torch.arange(192) % 4  # one shape (disc): only the stripes are anisotropic
    details: dict = {}
    images = render(labels, list(range(1000, 1192)), details=details)
    texture, fine = (labels // 2) % 2, details["period"] < 2.9
    native, low = _stripe_contrast(images, texture, 128), _stripe_contrast(images, texture, 64)
    assert native[fine].mean() > 1.2 and native[~fine].mean() > 1.15  # every stripe shows at 128 px
    assert low[fine].mean() < 1.05  # periods under 2.9 px fall under 2 px at 64 px: averaged away
    assert low[details["period"] > 3.6].mean() > 1.2  # the coarsest stay: texture accuracy grows with resolution


def test_build_datasets_and_options_know_the_shapes_task() -> None:
    data = build_datasets("shapes", resolution=64, train_samples=8, val_samples=4)
    assert data.num_classes == 16 and len(data.train) == 8 and len(data.val) == 4
    image, label = data.val[3]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and label == 3
    assert task_classes({"dataset": "shapes"}) == 16 and task_classes({"dataset": "synthetic"}) == 10
    assert TrainConfig(dataset="shapes").sample_counts() == (2000, 500)


def test_a_split_written_as_folders_reads_back_as_the_same_images_and_labels(tmp_path) -> None:
    task = ShapesTask("val", num_samples=8, num_classes=4, seed=3)
    folder = task.write_folder(tmp_path)
    read = ImageFolder(str(folder))
    assert sorted(read.classes) == sorted(task.classes) and len(read) == 8
    for path, index in read.samples:
        sample = int(Path(path).stem)
        assert read.classes[index] == task.classes[sample % 4]
        pixels = torch.from_numpy(np.asarray(Image.open(path))).permute(2, 0, 1)
        assert torch.equal(pixels, task[sample][0])  # PNG is lossless: the very pixels
