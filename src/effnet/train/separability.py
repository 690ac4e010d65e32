"""How well a pretrained network's features already separate a dataset's classes, before any training.

Fine-tuning chooses its BatchNorm mode from this number (`effnet.train.finetune`): where the
pretrained features already separate the classes (photos of things like ImageNet's), training with
batch statistics generalises better; where the backbone has far to go (fine-grained or unlike
classes), batch statistics slow it down by many points and frozen statistics win. The measure is
the leave-one-out accuracy of a nearest-class-mean classifier (cosine) on the pooled features of
the training images, with test-time preprocessing: one forward pass, no labels of the validation
split, no training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

MAX_IMAGES = 400  # an evenly spaced subset of larger training sets: enough for the estimate, a few seconds on 2 cores
# ... but never fewer than this many per class where the folder has them: class means of 3-4 images read many classes
# as far less separable than they are (Flowers-102, benchmarks/results/transfer/), and the 90% line was fitted on
# estimates with 25 or more per class (benchmarks/results/finetune_real/bn_choice/). One forward pass over the images
# measured costs a few percent of a fine-tune over all of them.
MIN_IMAGES_PER_CLASS = 25


@dataclass(frozen=True)
class Separability:
    """Leave-one-out nearest-class-mean accuracy (0-1) of pretrained features on `images` training images."""

    accuracy: float
    images: int
    classes: int

    def describe(self) -> str:
        return f"pretrained features separate the classes {100 * self.accuracy:.1f}% (nearest class mean, {self.images} training images)"


def nearest_class_mean_accuracy(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Leave-one-out accuracy of the nearest class mean by cosine similarity: each sample against the means of the
    other samples (its own class's mean without it). Samples alone in their class have no such mean and are left out."""
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"expected features [N, D] and labels [N], got {tuple(features.shape)} and {tuple(labels.shape)}")
    x = F.normalize(features.double(), dim=1)
    labels = labels.long()
    classes = int(labels.max()) + 1
    sums = torch.zeros(classes, x.shape[1], dtype=x.dtype).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=classes).to(x.dtype)
    present = counts > 0
    means = torch.zeros_like(sums)
    means[present] = sums[present] / counts[present, None]
    scores = F.normalize(means, dim=1) @ x.T  # [classes, N]
    scores[~present] = -torch.inf
    own_count = counts[labels] - 1
    usable = own_count > 0
    own_mean = (sums[labels] - x) / own_count.clamp(min=1)[:, None]
    scores[labels, torch.arange(len(labels))] = (F.normalize(own_mean, dim=1) * x).sum(1)
    if not bool(usable.any()):
        raise ValueError("every class has a single sample: leave-one-out needs at least two samples in some class")
    correct = scores.argmax(0) == labels
    return float(correct[usable].double().mean())


def images_to_measure(images: int, classes: int, max_images: int = MAX_IMAGES) -> int:
    """How many of `images` training images to measure: `max_images`, raised to MIN_IMAGES_PER_CLASS per class."""
    return min(images, max(max_images, MIN_IMAGES_PER_CLASS * classes))


def pretrained_separability(run: Any, max_images: int = MAX_IMAGES, batch_size: int = 32) -> Separability | None:
    """`nearest_class_mean_accuracy` of the pretrained network of a prepared run (`effnet.train.prepared.PreparedRun`)
    on its labelled training images (an evenly spaced subset of `images_to_measure` of them); None when no class has
    two readable images (nothing to measure). The network is the run's own (`PreparedRun.model`), which the trainer
    then trains."""
    from torch.utils.data import DataLoader, Subset

    from effnet.data import TransformedDataset
    from effnet.data.folders import collate_skip_bad

    images: Any = TransformedDataset(run.labelled_train, run.data.val.transform)  # the training images as evaluation sees them
    measured = images_to_measure(len(images), run.num_classes, max_images)
    if len(images) > measured:
        images = Subset(images, torch.linspace(0, len(images) - 1, measured).long().tolist())
    model = run.model().eval()
    features, labels = [], []
    with torch.inference_mode():
        for batch in DataLoader(images, batch_size=batch_size, collate_fn=collate_skip_bad):
            x, y = batch[0], batch[1]
            if len(y) == 0:
                continue
            features.append(model.forward_head(model.forward_features(x), pre_logits=True))
            labels.append(y)
    if not labels or int(torch.bincount(torch.cat(labels)).max()) < 2:
        return None
    y = torch.cat(labels)
    return Separability(nearest_class_mean_accuracy(torch.cat(features), y), len(y), run.num_classes)
