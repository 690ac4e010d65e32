"""Calibration images for INT8: read from a folder with the project's image reader, preprocessed as the model evaluates.

`calibration_tensors` accepts a folder (searched recursively), a list of image files, or a
ready tensor (N, C, H, W). Unreadable files are skipped with a warning; a folder with no
readable image, or images whose channels the model does not take, is a `QuantizeError`.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

DEFAULT_COUNT = 300  # calibration images used at most (a random sample of a larger folder)


class QuantizeError(ValueError):
    """A model or calibration set that cannot be quantized; the message says what was wrong and how to fix it."""


def calibration_tensors(
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | torch.Tensor,
    preprocessing: Any,
    in_chans: int,
    *,
    count: int = DEFAULT_COUNT,
    seed: int = 0,
) -> torch.Tensor:
    """At most `count` calibration inputs (N, in_chans, H, W), float32, preprocessed with `preprocessing.eval_transform()`."""
    if count < 1:
        raise QuantizeError(f"the calibration count must be at least 1, got {count}")
    if isinstance(images, torch.Tensor):
        batch = images
        if batch.dim() != 4 or batch.shape[0] == 0:
            raise QuantizeError(f"calibration tensor must be shaped (N, C, H, W) with N >= 1, got {tuple(batch.shape)}")
        batch = batch[:count]
    else:
        batch = _read(images, preprocessing, count, seed)
    if batch.shape[1] != in_chans:
        raise QuantizeError(
            f"the calibration images have {batch.shape[1]} channels but the model takes {in_chans}; "
            f"calibrate with images of {in_chans} channels (a {in_chans}-channel model needs its own input pipeline)"
        )
    return batch.float().contiguous()


def _read(images: Any, preprocessing: Any, count: int, seed: int) -> torch.Tensor:
    from effnet.data.folders import DataError, find_images, load_image

    if preprocessing is None:
        raise QuantizeError("the model has no .preprocessing to prepare calibration images with; pass preprocessing=effnet.get_preprocessing(NAME)")
    if isinstance(images, (str, os.PathLike)):
        try:
            paths = find_images(images, "calibration")
        except DataError as err:
            raise QuantizeError(str(err)) from None
        where = f"calibration folder {str(images)!r}"
    else:
        paths = [Path(p) for p in images]
        where = "the calibration files"
    if len(paths) > count:  # a sample of the whole folder, not its first classes
        paths = sorted(random.Random(seed).sample(paths, count), key=str)
    transform = preprocessing.eval_transform()
    tensors = []
    for path in paths:
        image = load_image(path)  # None (and a logged warning) when unreadable
        if image is not None:
            tensors.append(transform(image))
    if not tensors:
        raise QuantizeError(f"none of the {len(paths)} images in {where} could be read (all truncated, corrupt or not images); give readable photos")
    skipped = len(paths) - len(tensors)
    if skipped:
        logger.warning("calibration: skipped %d unreadable of %d images", skipped, len(paths))
    return torch.stack(tensors)


class TensorReader:
    """An onnxruntime `CalibrationDataReader` over a tensor, in batches (ORT quantization calls get_next until None)."""

    def __init__(self, inputs: torch.Tensor, input_name: str, batch_size: int = 16) -> None:
        self._batches = [{input_name: np.ascontiguousarray(part.numpy())} for part in inputs.split(batch_size)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return self._batches[self._next - 1]
