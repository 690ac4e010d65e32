"""Which pseudo-labelled images the student trains on: a confidence threshold, then class balancing.

The paper (Section 3, "data filtering and balancing") drops images whose label confidence is below 0.3,
then makes every class hold the same number of images: rare classes have their images duplicated,
common ones keep only their most confident images (130K per class on ImageNet). Here the per-class
target defaults to the mean per-class count after filtering. Everything is deterministic: within a
class, images rank by confidence (ties by path); duplicates repeat the whole class first, then its
most confident images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet._io import atomic_write_text
from effnet.experiments.selftrain.labels import LabelRecord

PAPER_THRESHOLD = 0.3


@dataclass(frozen=True)
class Selection:
    """The student's pseudo-labelled training images (duplicates included), and the counts behind them."""

    records: list[LabelRecord] = field(repr=False)
    available: list[int]  # per class: images at or above the threshold
    counts: list[int]  # per class: images selected (duplicates counted)
    target: int | None  # per-class target of balancing (None: not balanced)
    threshold: float
    soft: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": len(self.records),
            "available": self.available,
            "counts": self.counts,
            "target_per_class": self.target,
            "threshold": self.threshold,
            "soft": self.soft,
        }


def balanced_counts(available: Sequence[int], target: int) -> list[int]:
    """The per-class counts balancing to `target` gives: `target` for every class with an image, 0 for a class without."""
    if target < 1:
        raise ValueError(f"the per-class target must be >= 1, got {target}")
    return [target if n > 0 else 0 for n in available]


def default_target(available: Sequence[int]) -> int:
    """The mean per-class count after filtering (at least 1)."""
    return max(1, round(sum(available) / len(available)))


def _take(ranked: list[LabelRecord], count: int) -> list[LabelRecord]:
    """`count` images from a class ranked by confidence: the best ones, or every one repeated and then the best ones."""
    if count <= len(ranked):
        return ranked[:count]
    whole, rest = divmod(count, len(ranked))
    return ranked * whole + ranked[:rest]


def select(
    records: Sequence[LabelRecord], num_classes: int, *, threshold: float = PAPER_THRESHOLD, balance: bool = True, per_class: int = 0, soft: bool = True
) -> Selection:
    """Keep records with confidence >= `threshold`; with `balance`, make each class hold `per_class` images (0: `default_target`)."""
    if not 0 <= threshold < 1:
        raise ValueError(f"the confidence threshold is a probability in [0, 1), got {threshold}")
    if per_class < 0:
        raise ValueError(f"the per-class target must be >= 0 (0: the mean per-class count after filtering), got {per_class}")
    by_class: list[list[LabelRecord]] = [[] for _ in range(num_classes)]
    for record in records:
        if record.confidence >= threshold:
            by_class[record.label].append(record)
    available = [len(group) for group in by_class]
    if not sum(available):
        best = max((r.confidence for r in records), default=0.0)
        raise ValueError(f"no pseudo label reaches the confidence threshold {threshold:g} (the most confident is {best:.3f}); lower --confidence-threshold")
    for group in by_class:
        group.sort(key=lambda r: (-r.confidence, r.image))
    target = (per_class or default_target(available)) if balance else None
    counts = balanced_counts(available, target) if target is not None else available
    chosen = [record for group, count in zip(by_class, counts, strict=True) for record in _take(group, count)]
    return Selection(chosen, available, counts, target, threshold, soft)


def write_selection(selection: Selection, path: str | Path, classes: list[str]) -> None:
    """The student's pseudo-label file (one line per training image, `effnet.data.mixed` reads it) and its counts beside it."""
    path = Path(path)
    atomic_write_text(path, "".join(record.line(classes, selection.soft) + "\n" for record in selection.records))
    atomic_write_text(path.with_suffix(".json"), json.dumps({**selection.to_dict(), "classes": classes}, indent=1) + "\n")
