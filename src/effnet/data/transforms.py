"""Training and eval transforms, and per-sample seeding of random augmentation.

`train_transform` is the usual ImageNet recipe (RandomResizedCrop, horizontal flip,
AutoAugment or RandAugment, normalise); `eval_transform` is a model's `Preprocessing`.
Both accept PIL images of any mode and uint8 tensors (C, H, W) with 1, 3 or 4 channels.

`SeededTransform` makes the random augmentation of sample i in epoch e a pure function
of (seed, e, i), so a resumed run or a different number of loader workers sees exactly
the same augmented images.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2 as T

from effnet.core.preprocessing import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, Preprocessing, _interpolation, _to_rgb

AUTO_AUGMENT = ("randaugment", "autoaugment", "none")


def stable_seed(*parts: int | str) -> int:
    """A 63-bit seed from `parts` that is the same in every process and Python run.

    (Python's `hash` of a str is salted per process, so it cannot be used across workers.)
    """
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(f"{type(part).__name__}:{part}\x1f".encode())
    return int.from_bytes(digest.digest(), "little") >> 1


def to_rgb(image: Any) -> Any:
    """PIL image of any mode or uint8/float tensor (C, H, W) with C in 1, 3, 4 -> 3-channel RGB.

    Alpha is composited on white, as `Preprocessing` does for PIL images; anything else
    passes through unchanged.
    """
    if not isinstance(image, torch.Tensor):
        return _to_rgb(image)
    if image.ndim != 3 or image.shape[0] == 3:
        return image
    if image.shape[0] == 1:
        return image.expand(3, -1, -1).clone()
    if image.shape[0] in (2, 4):  # gray+alpha or RGBA
        white = 255.0 if image.dtype == torch.uint8 else 1.0
        color = image[:1].expand(3, -1, -1) if image.shape[0] == 2 else image[:3]
        alpha = image[-1:].float() / white
        out = color.float() * alpha + white * (1 - alpha)
        return out.round().to(image.dtype) if image.dtype == torch.uint8 else out.to(image.dtype)
    raise ValueError(f"cannot convert an image with {image.shape[0]} channels to RGB; expected 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)")


def _plain_tensor(image: Any) -> torch.Tensor:
    # tv_tensors.Image -> torch.Tensor, so batches and model inputs are ordinary tensors
    return image.as_subclass(torch.Tensor) if isinstance(image, torch.Tensor) else image


def train_transform(
    resolution: int,
    *,
    auto_augment: str = "randaugment",
    magnitude: float = 9,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    interpolation: str = "bicubic",
) -> T.Compose:
    """The training augmentation: image -> normalised float tensor (3, resolution, resolution).

    RandomResizedCrop(`scale`, `ratio`) -> horizontal flip with probability `hflip` ->
    `auto_augment` ("randaugment": 2 ops at `magnitude`, torchvision's scale of 0-30; "autoaugment": the ImageNet
    policy; "none"; their warps resample bilinearly, as tensors allow no bicubic there)
    -> float in [0, 1] -> normalise by `mean`, `std`. Every random choice draws from
    torch's global RNG (wrap in `SeededTransform` for per-sample determinism).
    """
    if auto_augment not in AUTO_AUGMENT:
        raise ValueError(f"unknown auto_augment {auto_augment!r}; expected one of {AUTO_AUGMENT}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {INTERPOLATIONS}")
    if int(resolution) != resolution or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1 (fractions of the image area), got {scale!r}")
    if not 0 <= hflip <= 1:
        raise ValueError(f"hflip is a probability in [0, 1], got {hflip!r}")
    mode = _interpolation(interpolation)
    # Areas uncovered by rotate/shear/translate are filled with the mean colour, not black.
    fill = [round(255 * m) for m in mean]
    steps: list[Any] = [
        T.Lambda(to_rgb),
        T.ToImage(),  # work on tensors, so PIL and tensor inputs take the same code path
        T.RandomResizedCrop(resolution, scale=scale, ratio=ratio, interpolation=mode, antialias=True),
    ]
    if hflip > 0:
        steps.append(T.RandomHorizontalFlip(hflip))
    # rotate/shear/translate on tensors support only nearest and bilinear resampling
    warp = _interpolation("bilinear")
    if auto_augment == "randaugment":
        steps.append(T.RandAugment(num_ops=2, magnitude=int(round(magnitude)), interpolation=warp, fill=fill))
    elif auto_augment == "autoaugment":
        steps.append(T.AutoAugment(T.AutoAugmentPolicy.IMAGENET, interpolation=warp, fill=fill))
    steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(list(mean), list(std)), T.Lambda(_plain_tensor)]
    return T.Compose(steps)


def eval_transform(preprocessing: Preprocessing) -> T.Compose:
    """`preprocessing.eval_transform()` that also takes uint8 tensors with 1, 3 or 4 channels.

    Resize short side, centre-crop, scale, normalise, exactly as `Preprocessing` defines
    it; returns a plain float tensor (3, res, res).
    """
    return T.Compose([T.Lambda(to_rgb), preprocessing.eval_transform(), T.Lambda(_plain_tensor)])


class SeededTransform:
    """Runs a random `transform` with the RNGs seeded from (seed, epoch, index).

    Call it as ``seeded(image, index)``. The global torch CPU RNG, Python's `random` and
    NumPy's legacy global RNG are seeded for the call and restored afterwards, so the
    augmentation of sample `index` in epoch `epoch` is the same in any worker process,
    in any order, and after a resume, and calls do not disturb the caller's RNG streams.
    (torchvision v2's crops, flips, AutoAugment and RandAugment draw from torch only;
    `random` and NumPy are seeded too for user transforms that use them.)

    `set_epoch(e)` must be called before each epoch's loader iterator is created.
    """

    def __init__(self, transform: Callable[[Any], Any], seed: int = 0) -> None:
        self.transform = transform
        self.seed = int(seed)
        # In shared memory, so DataLoader workers (persistent ones included) see set_epoch
        # made in the main process after they were started.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation the next calls reproduce."""
        self._epoch.fill_(int(epoch))

    def sample_seed(self, index: int) -> int:
        """The seed used for sample `index` in the current epoch."""
        return stable_seed("augment", self.seed, self.epoch, int(index))

    def __call__(self, image: Any, index: int) -> Any:
        seed = self.sample_seed(index)
        py_state = random.getstate()
        np_state = np.random.get_state()
        # devices=[]: only the CPU generator is forked; transforms here run on CPU
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            try:
                return self.transform(image)
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)

    def __repr__(self) -> str:
        return f"SeededTransform(seed={self.seed}, epoch={self.epoch}, transform={self.transform!r})"
