"""Training data: the built-in synthetic proxy task, image folders, torchvision datasets, and transforms.

`build_datasets` returns a `DataBundle`: train and validation datasets whose samples are
already transformed (train augmentation seeded per sample, see `SeededTransform`), the
class count and names, and the collate function that skips unreadable images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from effnet.data.folders import collate_skip_bad, folder_datasets
from effnet.data.synthetic import SyntheticProxy
from effnet.data.transforms import SeededTransform, eval_transform, train_transform
from effnet.preprocessing import Preprocessing

DATASETS = ("synthetic", "folder", "cifar10", "cifar100")


class TransformedDataset(Dataset):
    """Applies a transform to another dataset's images; random train transforms are seeded by
    (seed, epoch, index) through `SeededTransform`, so augmentation does not depend on worker or resume."""

    def __init__(self, base: Dataset, transform: Any, seed: int | None = None) -> None:
        self.base = base
        self.seeded = SeededTransform(transform, seed) if seed is not None else None
        self.transform = transform

    def set_epoch(self, epoch: int) -> None:
        if self.seeded is not None:
            self.seeded.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.base[index]
        if image is None:  # unreadable file: collate_skip_bad drops and counts it
            return None, label
        image = self.seeded(image, index) if self.seeded is not None else self.transform(image)
        return image, int(label)


@dataclass
class DataBundle:
    train: TransformedDataset
    val: TransformedDataset
    num_classes: int
    class_names: list[str]
    collate_fn: Any = collate_skip_bad
    description: str = ""


def build_datasets(
    dataset: str = "synthetic",
    *,
    data_dir: str | Path | None = None,
    resolution: int = 224,
    preprocessing: Preprocessing | None = None,
    auto_augment: str = "autoaugment",
    seed: int = 0,
    num_classes: int | None = None,
    train_samples: int | None = None,
    val_samples: int | None = None,
    val_fraction: float = 0.1,
) -> DataBundle:
    """Train and validation data at `resolution`, with the paper's train augmentation and the
    model's eval preprocessing (`preprocessing`, default: TF crop fraction, ImageNet statistics)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    prep = (preprocessing or Preprocessing.for_resolution(resolution)).replace(resolution=resolution)
    # the synthetic task's marks are a few pixels: ImageNet's 8%-area crops would cut most of them out
    min_area = 0.25 if dataset == "synthetic" else 0.08
    train_tf = train_transform(resolution, auto_augment=auto_augment, scale=(min_area, 1.0), mean=prep.mean, std=prep.std, interpolation=prep.interpolation)
    eval_tf = eval_transform(prep)
    if dataset == "synthetic":
        classes = num_classes or 10
        train = SyntheticProxy("train", num_samples=train_samples, num_classes=classes, seed=seed)
        val = SyntheticProxy("val", num_samples=val_samples, num_classes=classes, seed=seed)
        names, description = train.classes, train.describe()
    elif dataset == "folder":
        if not data_dir:
            raise ValueError("dataset 'folder' needs data_dir (train/CLASS/*.jpg and val/CLASS/*.jpg, or CLASS/*.jpg)")
        train, val, names = folder_datasets(data_dir, val_fraction, seed)
        description = f"image folders under {data_dir}: {len(train)} train, {len(val)} val images, {len(names)} classes"
    else:
        train, val, names = _torchvision_dataset(dataset, data_dir)
        description = f"torchvision {dataset}: {len(train)} train, {len(val)} val images"
    if num_classes and dataset != "synthetic" and num_classes != len(names):
        raise ValueError(f"--num-classes {num_classes} but the data has {len(names)} classes ({', '.join(names[:5])}, ...)")
    return DataBundle(TransformedDataset(train, train_tf, seed), TransformedDataset(val, eval_tf), len(names), list(names), collate_skip_bad, description)


def _torchvision_dataset(name: str, data_dir: str | Path | None) -> tuple[Dataset, Dataset, list[str]]:
    """CIFAR-10/100 through torchvision (downloaded into data_dir for users with internet)."""
    from torchvision import datasets

    root = Path(data_dir or Path.home() / ".cache" / "effnet" / name)
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        train = cls(str(root), train=True, download=True)
        val = cls(str(root), train=False, download=True)
    except Exception as err:  # torchvision raises URLError, RuntimeError, ... for a failed download
        raise ValueError(
            f"could not load or download {name} into {root} ({type(err).__name__}: {err}); without internet, "
            f"download it elsewhere into {root}, or use --dataset folder"
        ) from None
    return train, val, list(train.classes)


__all__ = [
    "DATASETS",
    "DataBundle",
    "SeededTransform",
    "SyntheticProxy",
    "TransformedDataset",
    "build_datasets",
    "collate_skip_bad",
    "eval_transform",
    "train_transform",
]
