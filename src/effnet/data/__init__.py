"""Training data: the built-in synthetic proxy tasks, image folders, CIFAR, and their transforms.

`build_datasets` returns a `DataBundle`: train and validation datasets whose samples are
already transformed (train augmentation seeded per sample by `SeededTransform`, so it
does not depend on worker count, order or resume), the class count and names, and the
collate function that drops unreadable images and counts them. With `pseudo_labels`, the
training images are joined by pseudo-labelled ones (`effnet.data.mixed`): labels are then
distributions, and `DataBundle.sources` gives the two sources' sizes for a `SourceMix` order.

>>> from torch.utils.data import DataLoader
>>> data = build_datasets("synthetic", resolution=96, train_samples=64)
>>> data.train.set_epoch(0)                      # before each epoch's loader iterator
>>> images, labels, num_bad = next(iter(DataLoader(data.train, batch_size=8, collate_fn=data.collate_fn)))
>>> tuple(images.shape), num_bad
((8, 3, 96, 96), 0)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from effnet.core.preprocessing import Preprocessing
from effnet.data.folders import DataError, ImageFolderSplit, collate_skip_bad, find_images, image_folder_splits, load_image
from effnet.data.mixed import MixedSources, OneHot, PseudoLabelled, SourceMix, batch_split
from effnet.data.shapes import ShapesTask
from effnet.data.synthetic import SyntheticProxy
from effnet.data.transforms import AUTO_AUGMENT, SeededTransform, eval_transform, stable_seed, train_transform

DATASETS = ("synthetic", "shapes", "folder", "cifar10", "cifar100")
# The generated tasks: their dataset class and class count when none is given.
SYNTHETIC_TASKS: dict[str, tuple[type, int]] = {"synthetic": (SyntheticProxy, 10), "shapes": (ShapesTask, 16)}
# Smallest RandomResizedCrop area per dataset. The synthetic task's marks are 5 px and its
# texture bands 1.5x apart: crops under half the image would cut marks out and zoom one
# band onto the next (linear zoom <= 1/sqrt(0.5) = 1.41; the eval crop's zoom 1.25 is inside).
# The shapes task keeps its objects in the central 3/4, which crops of 60% of the area mostly keep.
TRAIN_MIN_AREA = {"synthetic": 0.5, "shapes": 0.6, "folder": 0.08, "cifar10": 0.08, "cifar100": 0.08}


class TransformedDataset(Dataset):
    """Another dataset with a transform applied to its images, aware of the sample index.

    With `seed`, the transform runs under `SeededTransform` (random augmentation is a
    function of seed, epoch and index); without, it is applied as is (eval). A `None`
    image (unreadable file) passes through as ``(None, label)`` for `collate_skip_bad`.
    """

    def __init__(self, base: Dataset, transform: Any, seed: int | None = None) -> None:
        self.base = base
        self.transform = transform
        self.seeded = SeededTransform(transform, seed) if seed is not None else None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation is drawn; call before creating each epoch's loader iterator."""
        if self.seeded is not None:
            self.seeded.set_epoch(epoch)

    @property
    def classes(self) -> list[str]:
        return list(getattr(self.base, "classes", []))

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, label = self.base[index]
        label = plain_label(label)
        if image is None:
            return None, label
        image = self.seeded(image, index) if self.seeded is not None else self.transform(image)
        return image, label

    def __repr__(self) -> str:
        return f"TransformedDataset({self.base!r}, seeded={self.seeded is not None})"


def plain_label(label: Any) -> Any:
    """A class index as an int; a label distribution (pseudo labels) stays a tensor."""
    return label if isinstance(label, torch.Tensor) and label.ndim == 1 else int(label)


@dataclass
class DataBundle:
    """What a trainer needs from the data: the two splits, the classes and the collate function.

    `train` and `val` yield ``(float tensor (3, res, res), label)`` or ``(None, label)``
    for an unreadable image; `collate_fn` turns a batch into ``(images, labels, num_bad)``.
    """

    train: TransformedDataset
    val: TransformedDataset
    num_classes: int
    class_names: list[str]
    collate_fn: Any = field(default=collate_skip_bad)
    description: str = ""
    sources: tuple[int, ...] = ()  # with pseudo labels: (labelled, pseudo-labelled) training images, in that order

    def set_epoch(self, epoch: int) -> None:
        """`train.set_epoch(epoch)` (validation is not random)."""
        self.train.set_epoch(epoch)


class _Subset(Dataset):
    """The first `n` images of a fixed, seed-independent shuffle of `base` (for quick runs on big data)."""

    def __init__(self, base: Dataset, n: int, key: str) -> None:
        size = len(base)  # type: ignore[arg-type]
        order = torch.randperm(size, generator=torch.Generator().manual_seed(stable_seed("subset", key, size)))
        self.base, self.indices = base, sorted(order[:n].tolist())
        self.classes = list(getattr(base, "classes", []))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.base[self.indices[index]]


def _limit(base: Dataset, n: int | None, key: str) -> Dataset:
    if n is None or n >= len(base):  # type: ignore[arg-type]
        return base
    if n < 1:
        raise DataError(f"the number of {key} samples must be positive, got {n}")
    return _Subset(base, n, key)


def build_datasets(
    dataset: str = "synthetic",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    resolution: int = 224,
    preprocessing: Preprocessing | None = None,
    auto_augment: str = "autoaugment",
    seed: int = 0,
    num_classes: int | None = None,
    train_samples: int | None = None,
    val_samples: int | None = None,
    val_fraction: float = 0.1,
    train_scale: tuple[float, float] | None = None,
    randaugment_magnitude: float = 9,
    pseudo_labels: str | os.PathLike[str] | None = None,
    splits: tuple[Dataset, Dataset] | None = None,
) -> DataBundle:
    """Train and validation data for training at `resolution`.

    `dataset`: "synthetic" (the first built-in proxy task, generated at 128 px; `num_classes`
    default 10, `train_samples`/`val_samples` default 10000/2000), "shapes" (the learnable
    proxy task of `effnet.data.shapes`, 128 px, 16 classes by default), "folder" (image folders
    under `data_dir`, see `image_folder_splits`; `val_fraction` held out when there is no
    val folder) or "cifar10"/"cifar100" (torchvision, downloaded into `data_dir`, default
    ``~/.cache/effnet/<name>``). For real data `train_samples`/`val_samples` take a fixed
    subset. Train: `train_transform` with `auto_augment` and crop area `train_scale`
    (default per dataset, `TRAIN_MIN_AREA`), seeded per sample by `seed`. Val: the eval
    `preprocessing` (default `Preprocessing.for_resolution`) at `resolution`. `pseudo_labels`: a
    pseudo-label file (`effnet.data.mixed.read_pseudo_labels`) whose images join the training set,
    after its own images; every training label is then a distribution over the classes. `splits`: for "folder", the
    train and validation images `image_folder_splits` found already (so that a folder is scanned once per run).

    Raises DataError (a ValueError) for an unknown dataset, unusable folders, a class count
    that does not match the data, or a download that failed.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if auto_augment not in AUTO_AUGMENT:
        raise DataError(f"unknown auto_augment {auto_augment!r}; expected one of {AUTO_AUGMENT}")
    prep = (preprocessing or Preprocessing.for_resolution(resolution)).replace(resolution=resolution)
    train_tf = dataset_train_transform(dataset, resolution, prep, auto_augment, train_scale, randaugment_magnitude)
    eval_tf = eval_transform(prep)
    if dataset in SYNTHETIC_TASKS:
        task, default_classes = SYNTHETIC_TASKS[dataset]
        classes = num_classes or default_classes
        train: Dataset = task("train", num_samples=train_samples, num_classes=classes, seed=seed)
        val: Dataset = task("val", num_samples=val_samples, num_classes=classes, seed=seed)
        names, description = list(train.classes), train.describe()
    else:
        if dataset == "folder":
            if data_dir is None:
                raise DataError("dataset 'folder' needs a data directory (data_dir / --data-dir) holding train/CLASS/*.jpg and val/CLASS/*.jpg, or CLASS/*.jpg")
            train, val = splits if splits is not None else image_folder_splits(data_dir, val_fraction=val_fraction)
            source = f"image folders under {data_dir}"
        else:
            train, val = _torchvision_dataset(dataset, data_dir)
            source = f"torchvision {dataset}"
        names = list(train.classes)
        if num_classes and num_classes != len(names):
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise DataError(f"num_classes is {num_classes} but {source} has {len(names)} classes ({shown}); drop the option or fix the data")
        train, val = _limit(train, train_samples, "train"), _limit(val, val_samples, "val")
        description = f"{source}: {len(train)} train, {len(val)} val images, {len(names)} classes"
    sources: tuple[int, ...] = ()
    if pseudo_labels:
        pseudo = PseudoLabelled(pseudo_labels, len(names))
        sources = (len(train), len(pseudo))  # type: ignore[arg-type]
        train = MixedSources([OneHot(train, len(names)), pseudo], names)
        description += f", {len(pseudo)} pseudo-labelled ({pseudo_labels})"
    return DataBundle(TransformedDataset(train, train_tf, seed), TransformedDataset(val, eval_tf), len(names), names, collate_skip_bad, description, sources)


def train_crop_scale(dataset: str, train_scale: tuple[float, float] | None = None) -> tuple[float, float]:
    """The random-resized-crop area range: `train_scale` when given, else the dataset's (`TRAIN_MIN_AREA`) up to the whole image."""
    return train_scale or (TRAIN_MIN_AREA[dataset], 1.0)


def dataset_train_transform(
    dataset: str, resolution: int, preprocessing: Preprocessing, auto_augment: str, train_scale: tuple[float, float] | None = None, magnitude: float = 9
) -> Any:
    """The training augmentation `build_datasets` uses for `dataset` at `resolution` (also per stage of progressive learning)."""
    return train_transform(
        resolution,
        auto_augment=auto_augment,
        magnitude=magnitude,
        scale=train_crop_scale(dataset, train_scale),
        mean=preprocessing.mean,
        std=preprocessing.std,
        interpolation=preprocessing.interpolation,
    )


def _torchvision_dataset(name: str, data_dir: str | os.PathLike[str] | None) -> tuple[Dataset, Dataset]:
    """CIFAR-10/100 through torchvision, downloaded into `data_dir` when not already there."""
    from torchvision import datasets

    root = Path(data_dir).expanduser() if data_dir is not None else Path.home() / ".cache" / "effnet" / name
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    try:
        train = cls(str(root), train=True, download=True)
        val = cls(str(root), train=False, download=True)
    except Exception as error:  # urllib's URLError, OSError, RuntimeError (checksum) ...: all mean "not available"
        raise DataError(
            f"could not load or download {name} into {str(root)!r} ({type(error).__name__}: {error}); "
            f"without internet, fetch {cls.url} elsewhere and put {archive} (or its extracted folder) in that directory, "
            "or use the 'folder' dataset"
        ) from error
    return train, val


__all__ = [
    "AUTO_AUGMENT",
    "DATASETS",
    "DataBundle",
    "DataError",
    "ImageFolderSplit",
    "MixedSources",
    "OneHot",
    "PseudoLabelled",
    "SYNTHETIC_TASKS",
    "SourceMix",
    "SeededTransform",
    "ShapesTask",
    "SyntheticProxy",
    "TransformedDataset",
    "batch_split",
    "build_datasets",
    "dataset_train_transform",
    "collate_skip_bad",
    "eval_transform",
    "find_images",
    "image_folder_splits",
    "load_image",
    "plain_label",
    "stable_seed",
    "train_crop_scale",
    "train_transform",
]
