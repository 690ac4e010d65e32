"""The on-device data path of generated tasks: the same validation images as the loader path, crops drawn as
RandomResizedCrop draws them, an exact box resize, per-step determinism (what exact resume needs) and the trainer on it."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2 as T

from effnet.core.preprocessing import Preprocessing
from effnet.core.spec import NetSpec
from effnet.data import build_datasets
from effnet.data.on_device import crop_boxes, on_device_data
from effnet.train import preset, train


@pytest.fixture(scope="module")
def shapes_on_cpu():
    prep = Preprocessing.for_resolution(64)
    data = build_datasets("shapes", resolution=64, preprocessing=prep, auto_augment="none", num_classes=4, train_samples=96, val_samples=40)
    return data, on_device_data(data, prep, "cpu", (0.6, 1.0), seed=3)


def test_validation_batches_equal_the_loader_paths_images(shapes_on_cpu) -> None:
    data, on_device = shapes_on_cpu
    batches = list(on_device.val_batches(16))
    assert [len(labels) for _, labels, _ in batches] == [16, 16, 8]
    expected = torch.stack([data.val[i][0] for i in range(40)])
    assert torch.equal(torch.cat([images for images, _, _ in batches]), expected)
    assert torch.cat([labels for _, labels, _ in batches]).tolist() == [data.val[i][1] for i in range(40)]


def test_a_box_and_flip_give_the_loader_paths_training_image(shapes_on_cpu) -> None:
    data, on_device = shapes_on_cpu
    generator = torch.Generator().manual_seed(5)
    images = on_device.train_images[:6]
    ours = on_device.augment(images, torch.Generator().manual_seed(5))
    boxes = crop_boxes(6, 128, 128, (0.6, 1.0), generator)
    flips = torch.rand(6, generator=generator) < 0.5
    # the loader path's transform with its random draws replaced by these boxes and flips
    for i, ((x0, y0, x1, y1), flip) in enumerate(zip(boxes.long().tolist(), flips.tolist(), strict=True)):
        crop = T.functional.resized_crop(images[i], y0, x0, y1 - y0, x1 - x0, [64, 64], interpolation=T.InterpolationMode.BICUBIC, antialias=True)
        crop = crop.flip(-1) if flip else crop
        expected = T.functional.normalize(crop.float() / 255, list(on_device.preprocessing.mean), list(on_device.preprocessing.std))
        assert torch.allclose(ours[i], expected, atol=1e-6), i
    assert (data.train.base[0][0] == on_device.train_images[0]).all()  # the images are the dataset's own


def test_crop_boxes_follow_random_resized_crops_distribution() -> None:
    generator = torch.Generator().manual_seed(0)
    boxes = crop_boxes(20000, 128, 96, (0.3, 1.0), generator)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 96 + 1e-4).all() and (boxes[:, 3] <= 128 + 1e-4).all()
    torch.manual_seed(0)
    reference = torch.tensor(
        [T.RandomResizedCrop.get_params(torch.zeros(1, 128, 96), [0.3, 1.0], [3 / 4, 4 / 3])[2:] for _ in range(20000)], dtype=torch.float32
    )
    ours_area, their_area = (width * height / (128 * 96)).mean(), (reference[:, 0] * reference[:, 1] / (128 * 96)).mean()
    assert math.isclose(ours_area, their_area, abs_tol=0.01), (ours_area, their_area)
    ours_aspect, their_aspect = (width / height).log().mean(), (reference[:, 1] / reference[:, 0]).log().mean()
    assert math.isclose(ours_aspect, their_aspect, abs_tol=0.02), (ours_aspect, their_aspect)
    # centres spread over the image as RandomResizedCrop's do
    assert math.isclose(((boxes[:, 0] + boxes[:, 2]) / 2).mean(), 48, abs_tol=0.5)
    # where no draw fits (a strip 4x wider than high, large crops), the centred whole image with its ratio clamped
    strip = crop_boxes(100, 16, 64, (0.95, 1.0), generator)
    torch.manual_seed(0)
    assert T.RandomResizedCrop.get_params(torch.zeros(1, 16, 64), [0.95, 1.0], [3 / 4, 4 / 3]) == (0, 21, 16, 21)
    assert (strip == torch.tensor([21.0, 0.0, 42.0, 16.0])).all()  # (x0, y0, x1, y1) of its (i, j, h, w)


def test_a_step_draws_the_same_batch_whichever_step_the_pass_starts_at(shapes_on_cpu) -> None:
    _, on_device = shapes_on_cpu
    order = torch.randperm(96, generator=torch.Generator().manual_seed(1)).tolist()
    whole = list(on_device.train_batches(order, 16, epoch=2))
    resumed = list(on_device.train_batches(order[2 * 16 :], 16, epoch=2, first_step=2))
    assert len(whole) == 6 and len(resumed) == 4
    for (a, la, _), (b, lb, _) in zip(whole[2:], resumed, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    other_epoch = next(iter(on_device.train_batches(order, 16, epoch=3)))
    assert not torch.equal(other_epoch[0], whole[0][0])  # new crops each epoch
    images, labels, bad = whole[0]
    assert images.shape == (16, 3, 64, 64) and images.dtype == torch.float32 and bad == 0
    assert labels.tolist() == [i % 4 for i in order[:16]]


def test_trainer_runs_on_device_data_and_rejects_it_for_folders(tmp_path) -> None:
    spec = tmp_path / "tiny.json"
    NetSpec.from_string("ds_r1_k3_s1_e1_c8-ir_r1_k3_s2_e3_c16", stem_channels=8, head_channels=32, resolution=32, name="tiny").save(spec)
    common = {"spec": str(spec), "resolution": 32, "num_classes": 4, "train_samples": 64, "val_samples": 32}
    common |= {"epochs": 1, "batch_size": 16, "progress": False, "verbose": False, "ema_decay": 0.0}
    result = train(preset("proxy", data_on_device=True, dataset="shapes", out_dir=str(tmp_path / "run"), **common))
    assert result.history[-1]["step"] == 4 and math.isfinite(result.history[-1]["val_loss"])
    assert len(result.history[-1]["val_per_class"]) == 4
    with pytest.raises(ValueError, match="generated tasks"):
        preset("proxy", data_on_device=True, dataset="folder", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="crops and flips only"):
        preset("proxy", data_on_device=True, dataset="shapes", auto_augment="randaugment")
