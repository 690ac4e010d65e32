"""Generated proxy data kept on the training device: the data path of the GPU-speed proxy presets.

The loader path augments image by image in worker processes; on a GPU a small proxy network then waits for its
data. Here a generated task (shapes, synthetic) is rendered once into one uint8 tensor on the training device and
every batch is cropped, resized, flipped and normalised there, with no loader process and no per-image dataset call:

- the crop box of each image is drawn as `RandomResizedCrop` draws it (area fraction uniform in `scale`, aspect
  ratio log-uniform in 3/4..4/3, redrawn up to 10 times until it fits, position uniform), all images at once;
- each box is resized by torchvision's `resized_crop`, the operation `RandomResizedCrop` itself applies, on the
  uint8 image as the loader path does: for the same box and flip, the same training image;
- validation batches go through `Preprocessing.eval_transform()` itself, which takes batched tensors.

Each batch's random draws come from a generator seeded by (seed, epoch, step), so a resumed run draws the same
crops. The order of images is the trainer's, shared with the loader path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from effnet.core.preprocessing import Preprocessing
from effnet.data.transforms import stable_seed


def split_tensors(dataset: Dataset, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """A generated split as (uint8 images (N, 3, H, W), int64 labels (N,)) on `device`."""
    if hasattr(dataset, "tensors"):
        return dataset.tensors(device)
    images, labels = zip(*(dataset[i] for i in range(len(dataset))), strict=True)  # type: ignore[arg-type]
    return torch.stack(list(images)).to(device), torch.tensor(labels, device=device)


def crop_boxes(
    count: int, height: int, width: int, scale: tuple[float, float], generator: torch.Generator, ratio: tuple[float, float] = (3 / 4, 4 / 3), tries: int = 10
) -> torch.Tensor:
    """`count` crop boxes (x0, y0, x1, y1) in whole pixels, drawn as `RandomResizedCrop.get_params` draws them.

    Per image: up to `tries` candidates of area fraction uniform in `scale` and aspect ratio log-uniform in
    `ratio`, the first that fits the image taken at a uniform position; none fits: the centred crop of the whole
    image with its aspect ratio clamped into `ratio`.
    """
    device = generator.device
    draws = torch.rand(count, tries, 2, generator=generator, device=device)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * draws[..., 0])
    aspect = (math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * draws[..., 1]).exp()
    box_w, box_h = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = fits.float().argmax(dim=1, keepdim=True)  # the first candidate that fits (0 when none does)
    box_w, box_h, found = box_w.gather(1, first)[:, 0], box_h.gather(1, first)[:, 0], fits.any(dim=1)
    image_ratio = width / height
    whole_w = width if image_ratio <= ratio[1] else round(height * ratio[1])
    whole_h = height if image_ratio >= ratio[0] else round(width / ratio[0])
    box_w = torch.where(found, box_w, torch.full_like(box_w, whole_w))
    box_h = torch.where(found, box_h, torch.full_like(box_h, whole_h))
    position = torch.rand(count, 2, generator=generator, device=device)
    x0 = torch.where(found, (position[:, 0] * (width - box_w + 1)).floor(), ((width - box_w) / 2).floor())
    y0 = torch.where(found, (position[:, 1] * (height - box_h + 1)).floor(), ((height - box_h) / 2).floor())
    return torch.stack([x0, y0, x0 + box_w, y0 + box_h], dim=1)


def crop_and_resize(images: torch.Tensor, boxes: torch.Tensor, size: int, interpolation: str = "bicubic") -> torch.Tensor:
    """Box i of `boxes` (N, 4: x0, y0, x1, y1 in whole pixels) cut from image i and resized to `size` x `size` by
    torchvision's `resized_crop` (antialiased), the very operation `RandomResizedCrop` applies: same dtype as `images`."""
    from torchvision.transforms.v2 import functional as TF

    from effnet.core.preprocessing import _interpolation

    mode = _interpolation(interpolation)
    corners = boxes.round().long().tolist()  # one transfer: each crop's geometry is host-side arithmetic
    crops = [
        TF.resized_crop(image, y0, x0, y1 - y0, x1 - x0, [size, size], interpolation=mode, antialias=True)
        for image, (x0, y0, x1, y1) in zip(images, corners, strict=True)
    ]
    return torch.stack(crops)


class OnDeviceData:
    """A generated task's train and validation splits as tensors on `device`, with batched augmentation there.

    `train_batches(order, batch_size, epoch, first_step)` and `val_batches(batch_size)` yield
    ``(images, labels, 0)`` as the loaders' collate function does (generated images are never unreadable).
    """

    def __init__(
        self,
        train: Dataset,
        val: Dataset,
        preprocessing: Preprocessing,
        device: torch.device | str,
        *,
        scale: tuple[float, float],
        hflip: float = 0.5,
        seed: int = 0,
    ) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1 (fractions of the image area), got {scale!r}")
        self.device = torch.device(device)
        self.train_images, self.train_labels = split_tensors(train, self.device)
        self.val_images, self.val_labels = split_tensors(val, self.device)
        self.preprocessing = preprocessing
        self.eval_transform = preprocessing.eval_transform()
        self.scale, self.hflip, self.seed = scale, hflip, seed
        self.mean = torch.tensor(preprocessing.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(preprocessing.std, device=self.device).view(1, 3, 1, 1)

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> normalised float (N, 3, res, res): a random resized crop and flip per image."""
        n, _, height, width = images.shape
        boxes = crop_boxes(n, height, width, self.scale, generator)
        crops = crop_and_resize(images, boxes, self.preprocessing.resolution, self.preprocessing.interpolation)
        flip = torch.rand(n, generator=generator, device=images.device) < self.hflip
        crops = torch.where(flip[:, None, None, None], crops.flip(-1), crops)
        return (crops.float() / 255.0 - self.mean) / self.std

    def train_batches(self, order: Sequence[int], batch_size: int, epoch: int, first_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """Batches of the images `order` lists (full batches only), augmented; step numbers count from `first_step`."""
        index = torch.as_tensor(list(order), dtype=torch.long, device=self.device)
        for k in range(len(order) // batch_size):
            chosen = index[k * batch_size : (k + 1) * batch_size]
            generator = torch.Generator(device=self.device).manual_seed(stable_seed("on-device", self.seed, epoch, first_step + k))
            yield self.augment(self.train_images[chosen], generator), self.train_labels[chosen], 0

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """The validation split in order, through the evaluation preprocessing."""
        for start in range(0, len(self.val_labels), batch_size):
            images = self.eval_transform(self.val_images[start : start + batch_size])
            yield images.as_subclass(torch.Tensor), self.val_labels[start : start + batch_size], 0

    def describe(self) -> str:
        """One line for the run's log."""
        megabytes = (self.train_images.numel() + self.val_images.numel()) / 2**20
        return (
            f"data on {self.device}: {len(self.train_labels)} train and {len(self.val_labels)} val images as uint8 tensors ({megabytes:.0f} MB), "
            f"crops of {self.scale[0]:g}-{self.scale[1]:g} of the area and flips drawn per batch there"
        )


def on_device_data(data: Any, preprocessing: Preprocessing, device: torch.device | str, scale: tuple[float, float], seed: int) -> OnDeviceData:
    """`OnDeviceData` from a `DataBundle` of a generated task (its datasets' untransformed bases)."""
    return OnDeviceData(data.train.base, data.val.base, preprocessing, device, scale=scale, seed=seed)
