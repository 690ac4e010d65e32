"""Image-folder datasets: ``root/train/CLASS/*`` + ``root/val/CLASS/*``, or ``root/CLASS/*`` with a held-out split.

Images are read by `effnet.core.images.read_image` (PIL, EXIF orientation, RGB), as prediction reads them. A file that cannot be
read (truncated, corrupt, not an image) does not stop training: the dataset returns
``(None, label)`` for it and `collate_skip_bad` drops it from the batch and counts it.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate
from torchvision.datasets import ImageFolder

from effnet.core.images import IMAGE_SUFFIXES, ImageReadError, is_image_file, read_image
from effnet.data.transforms import stable_seed

logger = logging.getLogger(__name__)

VAL_DIR_NAMES = ("val", "validation", "valid")
MIN_IMAGES_PER_CLASS = 5  # a class with fewer training images gets a warning: too few to learn it, or to measure it
LAYOUT_HELP = "expected root/train/CLASS/*.jpg and root/val/CLASS/*.jpg, or root/CLASS/*.jpg (a validation fraction is then held out)"


class DataError(ValueError):
    """A dataset cannot be used as given; the message says what was found, what was expected and how to fix it."""


def load_image(path: str | os.PathLike[str]) -> Image.Image | None:
    """`read_image` (RGB, upright, fully decoded); None (and a logged warning) when the file cannot be read."""
    try:
        return read_image(path)
    except ImageReadError as error:
        logger.warning("skipping unreadable image %s: %s", path, error)
        return None


class _VisibleImageFolder(ImageFolder):
    """ImageFolder that ignores hidden folders (.ipynb_checkpoints, .git), which are not classes."""

    def find_classes(self, directory: str | os.PathLike[str]) -> tuple[list[str], dict[str, int]]:
        classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and not entry.name.startswith("."))
        return classes, {name: i for i, name in enumerate(classes)}


def _class_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _discover(root: Path, role: str) -> _VisibleImageFolder:
    """Scan one split folder; DataError when it has no class folders or no images."""
    if not root.is_dir():
        raise DataError(f"{role} folder {str(root)!r} does not exist or is not a directory; {LAYOUT_HELP}")
    classes = _class_dirs(root)
    if not classes:
        loose = [p.name for p in root.iterdir() if p.is_file() and is_image_file(str(p))]
        found = f"{len(loose)} image files directly in it" if loose else "nothing usable in it"
        raise DataError(
            f"{role} folder {str(root)!r} has no class subfolders ({found}); {LAYOUT_HELP}: move each class's images into a subfolder named after the class"
        )
    folder = _VisibleImageFolder(str(root), loader=load_image, is_valid_file=is_image_file, allow_empty=True)
    if not folder.samples:
        raise DataError(
            f"{role} folder {str(root)!r} has class subfolders {classes[:5]}{' ...' if len(classes) > 5 else ''} but no image files "
            f"(looked for {', '.join(IMAGE_SUFFIXES)}); {LAYOUT_HELP}"
        )
    counts = [0] * len(folder.classes)
    for _, label in folder.samples:
        counts[label] += 1
    empty = [name for name, n in zip(folder.classes, counts, strict=True) if n == 0]
    if empty:
        logger.warning("%s folder %s: classes without images: %s", role, root, ", ".join(empty))
    return folder


class ImageFolderSplit(Dataset):
    """A list of (path, label) images; `__getitem__` returns (RGB PIL image or None if unreadable, label)."""

    def __init__(self, samples: Sequence[tuple[str, int]], classes: Sequence[str], root: str = "") -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        self.targets = [label for _, label in self.samples]
        self.root = root

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image | None, int]:
        path, label = self.samples[index]
        return load_image(path), label

    def __repr__(self) -> str:
        return f"ImageFolderSplit(root={self.root!r}, images={len(self.samples)}, classes={len(self.classes)})"


def _held_out(samples: list[tuple[str, int]], root: Path, val_fraction: float) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Per class, the files ranked first by a hash of their relative path go to val.

    Independent of the training seed (every run validates on the same images) and stable
    when files are added (a file's rank key never changes).
    """
    by_class: dict[int, list[tuple[str, int]]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    train, val = [], []
    for label in sorted(by_class):
        items = sorted(by_class[label], key=lambda s: stable_seed("holdout", Path(s[0]).relative_to(root).as_posix()))
        n_val = round(len(items) * val_fraction)
        if len(items) >= 2:  # both splits get at least one image of each class that has two
            n_val = min(max(n_val, 1), len(items) - 1)
        val += items[:n_val]
        train += items[n_val:]
    return sorted(train), sorted(val)


def image_folder_splits(data_dir: str | os.PathLike[str], *, val_fraction: float = 0.1) -> tuple[ImageFolderSplit, ImageFolderSplit]:
    """(train, val) datasets from an image folder tree.

    ``root/train/CLASS`` and ``root/val/CLASS`` (``validation``/``valid`` also accepted) are
    used as they are; a lone ``root/train`` or a flat ``root/CLASS`` tree has `val_fraction`
    of each class held out for validation, deterministically.
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1) to hold out a validation split, got {val_fraction!r}")
    if data_dir is None:
        raise DataError(f"the image-folder dataset needs a data directory; {LAYOUT_HELP}")
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataError(f"data directory {str(root)!r} does not exist; check the path ({LAYOUT_HELP})")
    if not root.is_dir():
        raise DataError(f"data directory {str(root)!r} is a file, not a directory; {LAYOUT_HELP}")
    if not any(True for _ in root.iterdir()):
        raise DataError(f"data directory {str(root)!r} is empty; {LAYOUT_HELP}")
    val_dir = next((root / name for name in VAL_DIR_NAMES if (root / name).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        train = _discover(root / "train", "train")
        val = _discover(val_dir, "validation")
        if train.classes != val.classes:
            only_train = sorted(set(train.classes) - set(val.classes))
            only_val = sorted(set(val.classes) - set(train.classes))
            raise DataError(
                f"train and validation folders under {str(root)!r} have different classes "
                f"(only in train: {only_train or 'none'}; only in {val_dir.name}: {only_val or 'none'}); "
                "labels are assigned by sorted class-folder name, so both must have the same class subfolders (an empty one is fine)"
            )
        return _checked(ImageFolderSplit(train.samples, train.classes, str(train.root)), ImageFolderSplit(val.samples, val.classes, str(val.root)))
    if val_dir is not None:
        raise DataError(f"{str(root)!r} has a {val_dir.name!r} folder but no 'train' folder; {LAYOUT_HELP}")
    source = root / "train" if (root / "train").is_dir() else root
    if source != root:
        logger.info("no validation folder under %s: holding out %.0f%% of train/ for validation", root, 100 * val_fraction)
    folder = _discover(source, "data")
    train_samples, val_samples = _held_out(folder.samples, source, val_fraction)
    return _checked(ImageFolderSplit(train_samples, folder.classes, str(source)), ImageFolderSplit(val_samples, folder.classes, str(source)))


_warned: set[str] = set()  # a folder is scanned more than once per run (plan, separability, training): warn once


def _checked(train: ImageFolderSplit, val: ImageFolderSplit) -> tuple[ImageFolderSplit, ImageFolderSplit]:
    """The splits, once the training split has two classes or more (DataError otherwise); a warning names classes with few images."""
    counts = Counter(label for _, label in train.samples)
    present = [name for index, name in enumerate(train.classes) if counts[index]]
    if len(present) < 2:
        raise DataError(
            f"{train.root!r} has training images of {len(present)} class ({', '.join(map(repr, present)) or 'none'}): a classifier needs two classes or more; "
            f"put each class's images in a subfolder of its own ({LAYOUT_HELP})"
        )
    few = [f"{name!r} ({counts[index]})" for index, name in enumerate(train.classes) if 0 < counts[index] < MIN_IMAGES_PER_CLASS]
    message = (
        f"{train.root}: class(es) with fewer than {MIN_IMAGES_PER_CLASS} training images: {', '.join(few)}; "
        "too few to learn a class or to measure it: add images, or merge or drop the class"
    )
    if few and message not in _warned:
        _warned.add(message)
        logger.warning(message)
    return train, val


def find_images(root: str | os.PathLike[str], role: str = "image") -> list[Path]:
    """Every image file under `root`, recursively (hidden files and folders left out), sorted by relative path.

    DataError when `root` is not a directory or holds no image files (`role` names the folder in the message).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{role} folder {str(root)!r} does not exist or is not a directory")
    found = []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found += [Path(folder) / name for name in files if is_image_file(name)]
    if not found:
        raise DataError(
            f"{role} folder {str(root)!r} holds no image files (looked recursively for {', '.join(IMAGE_SUFFIXES)}); point it at a folder of images"
        )
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


def collate_skip_bad(batch: Sequence[tuple[Any, int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Collate (image, label) pairs, dropping those whose image is None: (images, labels, num_bad).

    When every item is bad, images and labels are empty tensors; skip such a batch.
    """
    good = [item for item in batch if item[0] is not None]
    num_bad = len(batch) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.int64), num_bad
    images, labels = default_collate(good)
    return images, labels, num_bad
