"""The synthetic proxy task: a fast, deterministic, resolution-sensitive image classification set.

What it is
    Procedurally generated 128x128 (``native_resolution``) RGB images in up to 60 classes.
    Each class is a combination of three *fine-detail* factors:

    * a texture band: a grating whose period (2.4 to 12 px at native resolution) is the
      class's, at a random orientation, phase, contrast and colour tint;
    * a mark kind: small 5x5 px marks ("plus", "cross", "ring", "triangle", randomly
      rotated by multiples of 90 degrees);
    * an arrangement: the marks come in tight clusters of 1, 2 or 3 (2 px apart), with
      the number of clusters chosen so the total count of marks overlaps between classes.

    Class c has band c % 5, mark c % 4 and cluster size c % 3 (distinct for c < 60), so
    no single factor names a class. Nuisance shared by all classes: background colour and
    gradient, soft blobs, a low-frequency distractor grating, small distractor marks (dots
    and bars), pixel noise, random positions. Sample i of a split is a pure function of
    (seed, split, i), generated on the fly; train and val draw from disjoint seed streams.
    Labels are balanced (label = i % num_classes).

    The two highest bands (period 2.4, 3.6 px) are above the Nyquist limit of a 64 px
    rendering and the 5 px marks blur into alike blobs below ~64 px, so accuracy depends
    on input resolution; telling marks and bands apart needs both receptive field (depth)
    and filters (width).

What it is not
    It is not ImageNet, nor a natural-image set: no objects, no semantics, no long tail.
    It is a cheap, reproducible stand-in for smoke tests, scaling studies and architecture
    search on CPU; rankings and scaling curves measured on it are hypotheses about real
    data, not results, and do not transfer automatically. Augmentations that rescale the
    image (RandomResizedCrop with small `scale`) shift the texture bands and can cut marks
    out of the crop, so a milder crop scale than ImageNet's 0.08 suits it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

BAND_PERIODS = (2.4, 3.6, 5.4, 8.1, 12.2)  # grating period in native pixels, one per band
MARK_KINDS = ("plus", "cross", "ring", "triangle")
CLUSTER_SIZES = (1, 2, 3)
MAX_CLASSES = len(BAND_PERIODS) * len(MARK_KINDS) * len(CLUSTER_SIZES)  # 60: CRT of pairwise coprime 5, 4, 3
SPLITS = ("train", "val")


def set_task_fields(
    task_object: Any,
    split: str,
    num_samples: int | None,
    num_classes: int,
    native_resolution: int,
    seed: int,
    transform: Any,
    *,
    max_classes: int,
    min_resolution: int,
    task: str,
) -> None:
    """Check and set the fields every generated task has (split, sizes, seed, transform); 10000/2000 samples by default."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if not 2 <= num_classes <= max_classes:
        raise ValueError(f"num_classes must be in 2..{max_classes} for the {task} task, got {num_classes}")
    if native_resolution < min_resolution:
        raise ValueError(
            f"native_resolution must be at least {min_resolution} px (the {task} task's details are sized in native pixels), got {native_resolution}"
        )
    if num_samples is None:
        num_samples = 10000 if split == "train" else 2000
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    task_object.split = split
    task_object.num_samples = int(num_samples)
    task_object.num_classes = int(num_classes)
    task_object.native_resolution = int(native_resolution)
    task_object.seed = int(seed)
    task_object.transform = transform


_REFERENCE_SIZE = 128  # counts of marks and blobs are set for a 128 px canvas and scale with area

_MARKS = {
    "plus": ["..#..", "..#..", "#####", "..#..", "..#.."],
    "cross": ["#...#", ".#.#.", "..#..", ".#.#.", "#...#"],
    "ring": [".###.", "#...#", "#...#", "#...#", ".###."],
    "triangle": ["..#..", ".#.#.", ".#.#.", "#...#", "#####"],
}
_MARK_MASKS = {k: np.array([[c == "#" for c in row] for row in rows], dtype=np.float32) for k, rows in _MARKS.items()}
_MARK_SIZE = 5
_MARK_GAP = 2  # px between marks of a cluster: they merge when the image is downsampled 2-3x
_DOT = np.ones((2, 2), dtype=np.float32)
_BAR = np.ones((1, 6), dtype=np.float32)


def class_factors(label: int) -> tuple[int, int, int]:
    """(band index, mark-kind index, cluster-size index) of a class."""
    return label % len(BAND_PERIODS), label % len(MARK_KINDS), label % len(CLUSTER_SIZES)


class SyntheticProxy(Dataset):
    """The synthetic proxy task (see the module docstring): `(image, label)` pairs.

    `image` is a uint8 tensor (3, native_resolution, native_resolution), or
    `transform(image)` when a transform is given. `num_samples` defaults to 10000 for
    "train" and 2000 for "val".
    """

    def __init__(
        self,
        split: str = "train",
        num_samples: int | None = None,
        num_classes: int = 10,
        native_resolution: int = 128,
        seed: int = 0,
        transform: Any = None,
    ) -> None:
        set_task_fields(self, split, num_samples, num_classes, native_resolution, seed, transform, max_classes=MAX_CLASSES, min_resolution=64, task="synthetic")
        self.classes = [f"class{c:02d}" for c in range(self.num_classes)]
        # numpy's SeedSequence mixes these words into independent streams; the split id keeps train and val disjoint
        self._split_id = SPLITS.index(split)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        label = index % self.num_classes
        image = torch.from_numpy(self.render(index))
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def generator(self, index: int) -> np.random.Generator:
        """The RNG that draws sample `index`: a function of (seed, split, index) only."""
        return np.random.default_rng(np.random.SeedSequence([0x5EED, self.seed, self._split_id, int(index)]))

    def render(self, index: int) -> np.ndarray:
        """Sample `index` as a uint8 array (3, H, W) (no transform)."""
        return render(self.generator(index), index % self.num_classes, self.native_resolution)

    def class_descriptions(self) -> list[str]:
        """One line per class: its band, mark kind and arrangement."""
        lines = []
        for c in range(self.num_classes):
            band, mark, cluster = class_factors(c)
            period = BAND_PERIODS[band]
            size = CLUSTER_SIZES[cluster]
            lines.append(f"{self.classes[c]}: grating period {period} px ({1 / period:.2f} cycles/px), {MARK_KINDS[mark]} marks in clusters of {size}")
        return lines

    def describe(self) -> str:
        """A short summary of the task and its classes."""
        head = (
            f"synthetic proxy task, split {self.split!r}: {self.num_samples} images of "
            f"{self.native_resolution}x{self.native_resolution}, {self.num_classes} balanced classes, seed {self.seed}; "
            "classes differ in fine detail (texture band x mark kind x cluster size), "
            "a stand-in for scaling studies, not a substitute for real data"
        )
        return "\n".join([head, *("  " + line for line in self.class_descriptions())])

    def __repr__(self) -> str:
        return f"SyntheticProxy(split={self.split!r}, num_samples={self.num_samples}, num_classes={self.num_classes}, native_resolution={self.native_resolution}, seed={self.seed})"


def _stamp(canvas: np.ndarray, mask: np.ndarray, y: int, x: int, color: np.ndarray, alpha: float = 1.0) -> None:
    """Alpha-blend `color` into canvas (3, H, W) where `mask` is set, top-left at (y, x), clipped at the borders."""
    _, h, w = canvas.shape
    mh, mw = mask.shape
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + mh, h), min(x + mw, w)
    if y0 >= y1 or x0 >= x1:
        return
    m = mask[y0 - y : y1 - y, x0 - x : x1 - x] * alpha
    region = canvas[:, y0:y1, x0:x1]
    region += (color[:, None, None] - region) * m


def _contrasting(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """A colour whose brightness differs from `base` by 0.18-0.4 (randomly brighter or darker)."""
    level = float(base.mean())
    delta = rng.uniform(0.18, 0.4)
    sign = 1.0 if (level + delta <= 1 and (level - delta < 0 or rng.random() < 0.5)) else -1.0
    tint = rng.uniform(-0.12, 0.12, size=3)
    return np.clip(level + sign * delta + tint, 0, 1)


def render(rng: np.random.Generator, label: int, size: int = 128) -> np.ndarray:
    """Draw one image of class `label` with `rng`: uint8 array (3, size, size)."""
    band, mark_index, cluster_index = class_factors(label)
    area = (size / _REFERENCE_SIZE) ** 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    # Background: a base colour with a linear gradient and a few soft blobs (all nuisance).
    base = rng.uniform(0.25, 0.75, size=3).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx - size / 2) + np.sin(angle) * (yy - size / 2)) / size
    canvas = base[:, None, None] + rng.uniform(0.0, 0.25) * ramp[None] * rng.uniform(0.5, 1.0, size=3)[:, None, None]
    for _ in range(int(rng.integers(2, 6) * area)):
        cy, cx = rng.uniform(0, size, size=2)
        radius = rng.uniform(6, 18)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        canvas += (rng.uniform(0, 1, size=3)[:, None, None] - canvas) * (rng.uniform(0.2, 0.5) * blob)[None]

    # The class's texture band, plus a low-frequency distractor grating every class has.
    for period, amplitude in ((BAND_PERIODS[band] * rng.uniform(0.96, 1.04), rng.uniform(0.04, 0.1)), (rng.uniform(24, 48), rng.uniform(0.03, 0.08))):
        theta = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.cos(2 * np.pi * (np.cos(theta) * xx + np.sin(theta) * yy) / period + phase)
        env_angle = rng.uniform(0, 2 * np.pi)
        envelope = np.clip(0.65 + 0.7 * (np.cos(env_angle) * (xx - size / 2) + np.sin(env_angle) * (yy - size / 2)) / size, 0.3, 1.0)
        tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
        canvas += amplitude * tint[:, None, None] * (wave * envelope)[None]

    # Class marks in clusters; the total count overlaps between cluster sizes.
    occupied = np.zeros((size, size), dtype=bool)
    cluster = CLUSTER_SIZES[cluster_index]
    low, high = {1: (4, 8), 2: (2, 5), 3: (2, 4)}[cluster]
    n_clusters = int(round(rng.integers(low, high) * area))
    mask = _MARK_MASKS[MARK_KINDS[mark_index]]
    step = _MARK_SIZE + _MARK_GAP
    for _ in range(max(n_clusters, 1)):
        horizontal = rng.random() < 0.5
        h = _MARK_SIZE + (0 if horizontal else step * (cluster - 1))
        w = _MARK_SIZE + (step * (cluster - 1) if horizontal else 0)
        for _attempt in range(20):  # rejection sampling: clusters do not overlap (1 px margin)
            y, x = int(rng.integers(2, size - h - 2)), int(rng.integers(2, size - w - 2))
            if not occupied[y - 2 : y + h + 2, x - 2 : x + w + 2].any():
                break
        occupied[y - 1 : y + h + 1, x - 1 : x + w + 1] = True
        for j in range(cluster):
            my, mx = (y, x + j * step) if horizontal else (y + j * step, x)
            local = canvas[:, my : my + _MARK_SIZE, mx : mx + _MARK_SIZE].mean(axis=(1, 2))
            _stamp(canvas, np.rot90(mask, int(rng.integers(4))), my, mx, _contrasting(rng, local).astype(np.float32))

    # Distractor marks shared by every class: 2x2 dots and 6 px bars.
    for _ in range(int(rng.integers(3, 9) * area)):
        shape = _DOT if rng.random() < 0.5 else (_BAR if rng.random() < 0.5 else _BAR.T)
        y, x = int(rng.integers(0, size - shape.shape[0])), int(rng.integers(0, size - shape.shape[1]))
        if occupied[y : y + shape.shape[0], x : x + shape.shape[1]].any():
            continue
        local = canvas[:, y : y + shape.shape[0], x : x + shape.shape[1]].mean(axis=(1, 2))
        _stamp(canvas, shape, y, x, _contrasting(rng, local).astype(np.float32))

    canvas += rng.normal(0, rng.uniform(0.03, 0.07), size=canvas.shape).astype(np.float32)
    return (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)
