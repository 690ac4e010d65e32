"""The "shapes" proxy task: a learnable synthetic set where resolution, depth and width each matter in a way one can show.

What it is
    Procedurally generated 128x128 (``native_resolution``) RGB images. Each shows one large
    *figure* (radius 11-16 px) and one small *marker* disc (radius 3.5-5 px) above or below it,
    28-44 px away, on a smooth background with pixel noise. A class is the product of three factors,
    each of which one scaling dimension controls:

    * relation (2 levels): the marker sits above or below the figure. Telling which needs a
      receptive field that spans both objects (depth); a horizontal flip keeps it;
    * texture (2 levels): the figure is filled with stripes, horizontal or vertical, of a period
      drawn per image from 2.2-6.6 native px. An input at resolution r keeps the stripes whose
      period stays above ~2 px there (the Nyquist limit) and averages the finer ones out, so the
      share of images whose texture can be seen grows smoothly with resolution (about two
      thirds at 64 px, all at 128 px). Enough images show it at every resolution that each
      training run learns it, instead of some runs finding it and others not;
    * shape (up to 8 levels): disc, square, diamond, triangle up or down, plus, ring, wide ellipse
      (all mirror-symmetric, so a horizontal flip keeps them). More classes means more shapes: capacity (width).

    Class c has relation c % 2, texture (c // 2) % 2 and shape c // 4, so 4 classes are
    relation x texture and every further 4 classes add a shape (up to 32). Labels are balanced
    (label = i % num_classes). Sample i of a split is a pure function of (seed, split, i): each
    image draws from its own seeded torch generator, so the first n samples of any split size are
    the same images.

Generated as tensors
    Images are rendered `CHUNK` at a time with tensor operations, on any device: `ShapesTask.tensors(device=...)` returns the whole split as one uint8 tensor,
    which is what an on-device data path (a GPU preset) uses; item access reads the same cache.

What it is not
    Not natural images; a stand-in on which small networks learn within minutes, so scaling
    differences show. Conclusions drawn on it are hypotheses about real data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from effnet.data.synthetic import set_task_fields

SHAPES = ("disc", "square", "diamond", "triangle_up", "triangle_down", "plus", "ring", "ellipse")
RELATIONS = ("marker above", "marker below")
TEXTURES = ("horizontal stripes", "vertical stripes")
MAX_CLASSES = len(RELATIONS) * len(TEXTURES) * len(SHAPES)  # 32
SPLITS = ("train", "val")
CHUNK = 256  # images rendered at once: the unit of generation and of the cache
STRIPE_PERIOD = (2.2, 6.6)  # native px, per image: visible where the input keeps the period above ~2 px
_REFERENCE_SIZE = 128  # geometry below is in px of a 128 px canvas and scales with native_resolution


def class_factors(label: int) -> tuple[int, int, int]:
    """(relation index, texture index, shape index) of a class."""
    return label % 2, (label // 2) % 2, label // 4


def _shape_mask(kind: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside-mask of shape `kind` in coordinates (u, v) normalised by the figure's radius."""
    name = SHAPES[kind]
    if name == "disc":
        return u**2 + v**2 <= 1
    if name == "square":
        return torch.maximum(u.abs(), v.abs()) <= 0.85
    if name == "diamond":
        return u.abs() + v.abs() <= 1.15
    if name in ("triangle_up", "triangle_down"):
        w = v if name == "triangle_up" else -v
        return (w <= 0.8) & (u.abs() <= (w + 1) / 1.8 * 1.1)
    if name == "plus":
        return ((u.abs() <= 0.33) & (v.abs() <= 1)) | ((v.abs() <= 0.33) & (u.abs() <= 1))
    if name == "ring":
        d2 = u**2 + v**2
        return (d2 <= 1) & (d2 >= 0.3)
    return (u / 1.15) ** 2 + (v / 0.55) ** 2 <= 1  # ellipse


_UNIFORMS = 25  # uniform draws per image (its geometry, colours, stripes, noise level), before its noise image


def _contrasting(draw: Any, base: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Colours (N, 3) whose mean brightness differs from `base`'s (N, 3) by `low`-`high`, darker or brighter."""
    level = base.mean(dim=1, keepdim=True)
    delta = draw(low, high)[:, None]
    up = (level + delta <= 1) & ((level - delta < 0) | (draw(0, 1)[:, None] < 0.5))
    target = torch.where(up, level + delta, level - delta)
    return (target + 0.1 * (draw(0, 1, 3) - 0.5)).clamp(0, 1)


def render(labels: torch.Tensor, seeds: list[int], size: int = 128, device: torch.device | str = "cpu", *, details: dict | None = None) -> torch.Tensor:
    """Images of classes `labels` (N,), image i drawn from a generator seeded with `seeds[i]`: uint8 (N, 3, size, size) on `device`.

    Each image's random draws come from its own generator, so an image does not depend on which others are
    rendered with it; the drawing itself runs on all of them at once. `details`, when given, receives each
    image's geometry as (N,) tensors: stripe period, figure and marker centres and radii.
    """
    n = labels.shape[0]
    k = size / _REFERENCE_SIZE
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    uniforms = torch.stack([torch.rand(_UNIFORMS, generator=g) for g in generators])
    noise = torch.stack([torch.randn(3, size, size, generator=g) for g in generators])
    column = iter(range(_UNIFORMS))

    def draw(low: float, high: float, count: int = 0) -> torch.Tensor:
        """The next `count` (or 1, squeezed) uniform columns, scaled to [low, high)."""
        taken = torch.stack([uniforms[:, next(column)] for _ in range(max(count, 1))], dim=1)
        return low + (high - low) * (taken if count else taken[:, 0])

    relation, texture, shape = labels % 2, (labels // 2) % 2, labels // 4
    # geometry (native px): the pair lies in the central 3/4 of the canvas, which a centre crop keeps
    radius, marker_radius, gap = draw(11, 16) * k, draw(3.5, 5) * k, draw(28, 44) * k
    span = gap + radius + marker_radius
    lo, hi = 0.14 * size, 0.86 * size
    top = lo + (hi - lo - span) * draw(0, 1)
    figure_y = torch.where(relation == 0, top + span - radius, top + radius)  # marker above: figure at the bottom of the pair
    marker_y = torch.where(relation == 0, figure_y - gap, figure_y + gap)
    figure_x = lo + radius + (hi - lo - 2 * radius) * draw(0, 1)
    marker_x = (figure_x + draw(-10, 10) * k).clamp(lo, hi)
    # colours: background with a gentle gradient; figure and marker contrast with it
    background = draw(0.2, 0.8, 3)
    figure_colour = _contrasting(draw, background, 0.22, 0.45)
    marker_colour = _contrasting(draw, background, 0.3, 0.5)
    angle, slope = draw(0, 2 * math.pi), draw(0, 0.2)
    period, phase, amplitude = draw(*STRIPE_PERIOD) * k, draw(0, 2 * math.pi), draw(0.15, 0.25)
    noise_level = draw(0.02, 0.05)
    if details is not None:
        details.update(period=period, figure_y=figure_y, figure_x=figure_x, radius=radius, marker_y=marker_y, marker_x=marker_x, marker_radius=marker_radius)

    def on(t: torch.Tensor) -> torch.Tensor:
        return t.to(device)

    yy, xx = torch.meshgrid(torch.arange(size, device=device, dtype=torch.float32), torch.arange(size, device=device, dtype=torch.float32), indexing="ij")
    yy, xx = yy + 0.5, xx + 0.5
    ramp = (on(angle.cos())[:, None, None] * (xx - size / 2) + on(angle.sin())[:, None, None] * (yy - size / 2)) / size
    canvas = on(background)[:, :, None, None] + (on(slope)[:, None, None] * ramp)[:, None]
    u = (xx - on(figure_x)[:, None, None]) / on(radius)[:, None, None]
    v = (yy - on(figure_y)[:, None, None]) / on(radius)[:, None, None]
    inside = torch.zeros(n, size, size, dtype=torch.bool, device=device)
    shape_d = on(shape)
    for kind in range(len(SHAPES)):
        chosen = (shape_d == kind).nonzero().flatten()
        if chosen.numel():
            inside[chosen] = _shape_mask(kind, u[chosen], v[chosen])
    coordinate = torch.where(on(texture)[:, None, None] == 0, yy, xx)  # horizontal stripes vary along y
    stripes = torch.cos(2 * math.pi * coordinate / on(period)[:, None, None] + on(phase)[:, None, None])
    figure = on(figure_colour)[:, :, None, None] + (on(amplitude)[:, None, None] * stripes)[:, None]
    canvas = torch.where(inside[:, None], figure, canvas)
    marker = (xx - on(marker_x)[:, None, None]) ** 2 + (yy - on(marker_y)[:, None, None]) ** 2 <= on(marker_radius)[:, None, None] ** 2
    canvas = torch.where(marker[:, None], on(marker_colour)[:, :, None, None], canvas)
    canvas = canvas + on(noise_level)[:, None, None, None] * on(noise)
    return (canvas.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


class ShapesTask(Dataset):
    """The shapes proxy task (see the module docstring): `(image, label)` pairs.

    `image` is a uint8 tensor (3, native_resolution, native_resolution), or `transform(image)`
    when a transform is given. `num_samples` defaults to 10000 for "train" and 2000 for "val".
    Chunks are generated on first use and kept in memory (`tensors()` returns them all at once).
    """

    def __init__(
        self,
        split: str = "train",
        num_samples: int | None = None,
        num_classes: int = 16,
        native_resolution: int = 128,
        seed: int = 0,
        transform: Any = None,
    ) -> None:
        task = "shapes (relation x texture x up to 8 shapes)"
        set_task_fields(self, split, num_samples, num_classes, native_resolution, seed, transform, max_classes=MAX_CLASSES, min_resolution=96, task=task)
        self.classes = [self.class_name(c) for c in range(self.num_classes)]
        self._chunks: dict[int, torch.Tensor] = {}

    @staticmethod
    def class_name(label: int) -> str:
        relation, texture, shape = class_factors(label)
        return f"{SHAPES[shape]}-{TEXTURES[texture].split()[0]}-{RELATIONS[relation].split()[1]}"

    def __len__(self) -> int:
        return self.num_samples

    def chunk(self, index: int) -> torch.Tensor:
        """Chunk `index` (samples index*CHUNK ...) as uint8 (n, 3, H, W), generated once."""
        if index not in self._chunks:
            from effnet.data.transforms import stable_seed

            samples = range(index * CHUNK, min((index + 1) * CHUNK, self.num_samples))
            labels = torch.tensor([i % self.num_classes for i in samples])
            seeds = [stable_seed("shapes", self.seed, self.split, i) for i in samples]
            self._chunks[index] = render(labels, seeds, self.native_resolution)
        return self._chunks[index]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        image = self.chunk(index // CHUNK)[index % CHUNK].clone()  # a copy: a transform working in place must not change the cache
        if self.transform is not None:
            image = self.transform(image)
        return image, index % self.num_classes

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split: images uint8 (N, 3, H, W) and labels int64 (N,), on `device`."""
        images = torch.cat([self.chunk(i) for i in range(math.ceil(self.num_samples / CHUNK))])
        return images.to(device), (torch.arange(self.num_samples) % self.num_classes).to(device)

    def describe(self) -> str:
        """A short summary of the task and its classes."""
        shapes = math.ceil(self.num_classes / 4)
        return (
            f"shapes proxy task, split {self.split!r}: {self.num_samples} images of {self.native_resolution}x{self.native_resolution}, "
            f"{self.num_classes} balanced classes ({len(RELATIONS)} relations x {len(TEXTURES)} textures x {shapes} shape(s)), seed {self.seed}; "
            "the stripes need resolution, the marker's side needs receptive field, the shapes need capacity; "
            "a stand-in for scaling studies, not a substitute for real data"
        )

    def write_folder(self, root: str | Path) -> Path:
        """Writes the split as PNG files in `root/<split>/<class name>/`, the image-folder layout every command reads.

        For trying folder-based commands (`finetune`, `noisy-student`, progressive training) on a task with
        known structure; files are named by sample index, so a rerun overwrites the same files."""
        from PIL import Image

        folder = Path(root) / self.split
        for name in self.classes:
            (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(self.num_samples):
            image = self.chunk(index // CHUNK)[index % CHUNK]
            name = self.classes[index % self.num_classes]
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / name / f"{index:05d}.png")
        return folder

    def __repr__(self) -> str:
        return f"ShapesTask(split={self.split!r}, num_samples={self.num_samples}, num_classes={self.num_classes}, native_resolution={self.native_resolution}, seed={self.seed})"
