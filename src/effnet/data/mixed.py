"""Training on labelled images plus pseudo-labelled ones (soft labels), mixed at a fixed share per batch.

The Noisy Student recipe (Xie et al., CVPR 2020) trains on both sources at once, with more
pseudo-labelled images per batch than labelled ones. Here:

- `read_pseudo_labels` reads a JSON-lines file, one image per line: ``{"image": PATH, "probs": [...]}``
  (a label distribution in class order) or ``{"image": PATH, "label": K}`` (a hard label); relative
  paths are relative to the file's folder. A line may repeat an image (class balancing duplicates).
- `MixedSources` concatenates datasets whose labels all become distributions (`OneHot` turns class
  indices into them), so one batch can hold both kinds.
- `SourceMix` is the epoch's sample order: every batch holds a fixed number of images of each source
  (`batch_split`). An epoch lasts until every image of every source has been drawn at least once; a
  smaller source is drawn again, through fresh permutations, and each repeat gets its own augmentation
  (its index is offset by a multiple of the dataset length, which `MixedSources` folds back).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from effnet.data.folders import DataError, load_image
from effnet.data.transforms import stable_seed


def read_pseudo_labels(path: str | os.PathLike[str], num_classes: int) -> list[tuple[str, torch.Tensor]]:
    """(image path, label distribution over `num_classes`) per line of a pseudo-label file; DataError for a bad line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pseudo-label file {str(path)!r} does not exist; give the selected.jsonl an `effnet noisy-student` iteration wrote")
    samples = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f'{where} is not JSON ({err.msg}); each line is one image: {{"image": PATH, "probs": [...]}}') from None
        if "image" not in entry or ("probs" not in entry and "label" not in entry):
            raise DataError(f'{where} needs "image" and either "probs" (a label distribution) or "label" (a class index)')
        image = Path(entry["image"])
        image = image if image.is_absolute() else path.parent / image
        if "probs" in entry:
            probs = torch.tensor(entry["probs"], dtype=torch.float32)
            if probs.shape != (num_classes,) or bool((probs < 0).any()) or float(probs.sum()) <= 0:
                raise DataError(f'{where}: "probs" must be {num_classes} non-negative numbers (one per class of the labelled set), got {len(probs)}')
            target = probs / probs.sum()  # stored rounded: make it a distribution again
        else:
            label = int(entry["label"])
            if not 0 <= label < num_classes:
                raise DataError(f"{where}: label {label} is not a class index of the labelled set (0..{num_classes - 1})")
            target = torch.nn.functional.one_hot(torch.tensor(label), num_classes).float()
        samples.append((str(image), target))
    if not samples:
        raise DataError(f"pseudo-label file {str(path)!r} holds no images")
    return samples


class PseudoLabelled(Dataset):
    """Images of a pseudo-label file: (RGB PIL image or None if unreadable, label distribution)."""

    def __init__(self, path: str | os.PathLike[str], num_classes: int) -> None:
        self.samples = read_pseudo_labels(path, num_classes)
        self.path = str(path)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        image, target = self.samples[index]
        return load_image(image), target

    def __repr__(self) -> str:
        return f"PseudoLabelled({self.path!r}, images={len(self.samples)})"


class OneHot(Dataset):
    """A labelled dataset whose class indices become one-hot distributions (to batch with soft labels)."""

    def __init__(self, base: Dataset, num_classes: int) -> None:
        self.base, self.num_classes = base, num_classes
        self.classes = list(getattr(base, "classes", []))

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        image, label = self.base[index]
        return image, torch.nn.functional.one_hot(torch.tensor(int(label)), self.num_classes).float()


class MixedSources(Dataset):
    """Datasets one after another; an index past the end wraps around (`SourceMix` repeats that way)."""

    def __init__(self, sources: Sequence[Dataset], classes: Sequence[str]) -> None:
        self.sources = list(sources)
        self.sizes = [len(s) for s in self.sources]  # type: ignore[arg-type]
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.classes = list(classes)

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, index: int) -> Any:
        index %= len(self)
        source = max(i for i, offset in enumerate(self.offsets) if offset <= index and self.sizes[i])
        return self.sources[source][index - self.offsets[source]]


def batch_split(batch_size: int, ratio: float) -> tuple[int, int]:
    """(labelled, pseudo-labelled) images per batch for `ratio` pseudo-labelled images per labelled one; each at least 1."""
    if batch_size < 2:
        raise DataError(f"mixing labelled and pseudo-labelled images needs a batch of at least 2 images, got {batch_size}")
    if ratio <= 0:
        raise DataError(f"the pseudo-label ratio must be positive (pseudo-labelled images per labelled one), got {ratio}")
    pseudo = min(max(round(batch_size * ratio / (1 + ratio)), 1), batch_size - 1)
    return batch_size - pseudo, pseudo


class SourceMix:
    """The sample order of an epoch over `MixedSources`: each batch of `sum(per_batch)` holds `per_batch[i]` images of source i.

    The order is a pure function of (seed, epoch), so a resumed epoch skips exactly what was consumed.
    Under torchrun, process `rank` takes every `world_size`-th batch.
    """

    def __init__(self, sizes: Sequence[int], per_batch: Sequence[int], seed: int = 0) -> None:
        if len(sizes) != len(per_batch) or any(n < 1 for n in sizes) or any(k < 1 for k in per_batch):
            raise DataError(f"every source needs images and a share of each batch; got sizes {list(sizes)} and per-batch counts {list(per_batch)}")
        self.sizes, self.per_batch, self.seed = list(sizes), list(per_batch), int(seed)
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]

    @property
    def batch_size(self) -> int:
        return sum(self.per_batch)

    @property
    def batches_per_epoch(self) -> int:
        """Enough batches that every image of every source is drawn at least once (the largest source's pass)."""
        return max(math.ceil(n / k) for n, k in zip(self.sizes, self.per_batch, strict=True))

    def samples_per_process(self, world_size: int = 1) -> int:
        return self.batches_per_epoch // world_size * self.batch_size

    def _stream(self, source: int, epoch: int, length: int) -> list[int]:
        """`length` indices of `source`: fresh seeded permutations one after another, each repeat offset by the dataset length."""
        n, total = self.sizes[source], sum(self.sizes)
        out: list[int] = []
        repeat = 0
        while len(out) < length:
            generator = torch.Generator().manual_seed(stable_seed("mix", self.seed, epoch, source, repeat))
            out += (torch.randperm(n, generator=generator) + self.offsets[source] + repeat * total).tolist()
            repeat += 1
        return out[:length]

    def order(self, epoch: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """This process's indices for `epoch`, batch after batch."""
        batches = self.batches_per_epoch // world_size * world_size
        streams = [self._stream(i, epoch, batches * k) for i, k in enumerate(self.per_batch)]
        out: list[int] = []
        for b in range(rank, batches, world_size):
            for stream, k in zip(streams, self.per_batch, strict=True):
                out += stream[b * k : (b + 1) * k]
        return out

    def describe(self) -> str:
        shares = " + ".join(f"{k} of {n}" for k, n in zip(self.per_batch, self.sizes, strict=True))
        return f"batches of {shares} images, {self.batches_per_epoch} batches per epoch"
