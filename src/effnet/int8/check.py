"""The built-in accuracy check: float and INT8 top-1 side by side on the same labelled images.

Labelled images come from a folder of class folders (`labelled_folder`; the folder names must
be the model's class names, or class indices for an ImageNet model) or from a training run's
own validation split (`run_validation`). `compare` runs both models on every batch once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet.int8.calibration import QuantizeError

MAX_DROP = 1.0  # points of top-1 an INT8 model may lose before the check warns


@dataclass
class Comparison:
    """Top-1 (percent) of the float and the INT8 model on the same `images`, and how often their top-1 agree."""

    float_top1: float
    int8_top1: float
    agreement: float  # percent of images where both predict the same class
    images: int
    skipped: int = 0

    @property
    def drop(self) -> float:
        """Points of top-1 lost (negative: INT8 is better)."""
        return self.float_top1 - self.int8_top1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"drop": self.drop}


def labelled_folder(root: str | os.PathLike[str], preprocessing: Any, class_names: Sequence[str] | None, num_classes: int) -> list[tuple[Any, int]]:
    """(image path, label) pairs of ``root/CLASS/*``; CLASS is a class name of the model or, for an ImageNet model, an index 0..999."""
    from effnet.data.folders import DataError, find_images

    root = Path(root)
    if not root.is_dir():
        raise QuantizeError(f"validation folder {str(root)!r} does not exist or is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise QuantizeError(f"validation folder {str(root)!r} has no class folders; expected {root}/CLASS/*.jpg with CLASS a class name of the model")
    from effnet.models.predict import default_class_names

    names = list(class_names) if class_names else default_class_names(num_classes) or []
    index = {name: i for i, name in enumerate(names)}
    pairs = []
    for folder in classes:
        label = index.get(folder, int(folder) if folder.isdigit() and int(folder) < num_classes else None)
        if label is None:
            known = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise QuantizeError(f"validation class folder {folder!r} is not a class of the model (its classes: {known or f'0..{num_classes - 1}'})")
        try:
            pairs += [(path, label) for path in find_images(root / folder, "validation class")]
        except DataError:
            continue  # an empty class folder: nothing to check there
    if not pairs:
        raise QuantizeError(f"validation folder {str(root)!r} holds no images")
    return pairs


def run_validation(run: str | os.PathLike[str], preprocessing: Any) -> Any:
    """The validation split a training run evaluated on, preprocessed with `preprocessing` (a dataset of (tensor, label))."""
    from effnet.train import rundir

    config = rundir.read_config(run)
    return rundir.validation_data(config, preprocessing, preprocessing.resolution).val


@torch.no_grad()
def compare(float_model: nn.Module, int8_model: nn.Module, samples: Iterable[tuple[Any, int]], preprocessing: Any, batch_size: int = 32) -> Comparison:
    """Both models' top-1 on `samples`: (image path or preprocessed tensor or None, label) pairs. Unreadable images are counted as skipped."""
    from effnet.data.folders import load_image

    transform = preprocessing.eval_transform()
    float_model.eval()
    hits_float = hits_int8 = same = seen = skipped = 0
    batch: list[tuple[torch.Tensor, int]] = []

    def flush() -> None:
        nonlocal hits_float, hits_int8, same, seen
        inputs = torch.stack([t for t, _ in batch])
        labels = torch.tensor([label for _, label in batch])
        a, b = float_model(inputs).argmax(1), int8_model(inputs).argmax(1)
        hits_float += int((a == labels).sum())
        hits_int8 += int((b == labels).sum())
        same += int((a == b).sum())
        seen += len(batch)
        batch.clear()

    for item, label in samples:
        if isinstance(item, (str, os.PathLike)):
            image = load_image(item)
            item = transform(image) if image is not None else None
        if item is None:
            skipped += 1
            continue
        batch.append((item, int(label)))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if seen == 0:
        raise QuantizeError("no readable validation images: nothing to check the INT8 model on")
    return Comparison(100.0 * hits_float / seen, 100.0 * hits_int8 / seen, 100.0 * same / seen, seen, skipped)
