"""Classify image files with a model: reading, preprocessing, batching and top-k labels.

Bad inputs (missing, unreadable, not an image, truncated) never stop a run: each becomes a
`Prediction` with `error` set, and the readable images are classified together.

>>> import effnet
>>> from effnet.models.predict import predict, sample_images
>>> model = effnet.create_model("efficientnet_lite0", pretrained=True)
>>> for p in predict(model, sample_images(), topk=1):
...     print(p.name, p.top[0][0])  # doctest: +SKIP
cat.jpg tiger cat
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet.core.images import IMAGE_SUFFIXES, ImageReadError, is_image_file, read_image

# the shared reader's names, re-exported: a directory given to `predict` yields its files with IMAGE_SUFFIXES, as a training folder does
__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "Prediction", "expand_inputs", "load_class_names", "predict", "read_image", "sample_images"]


@dataclass
class Prediction:
    """The result for one input: the top-k (label, class index, probability), or why it was skipped."""

    path: Path | None  # None for an in-memory PIL image without a file name
    top: list[tuple[str, int, float]] = field(default_factory=list)
    error: str | None = None
    name: str = ""  # what to call the input in messages (file name, or "<image N>")

    @property
    def ok(self) -> bool:
        """True if the image was classified."""
        return self.error is None

    @property
    def label(self) -> str | None:
        """The top-1 label, or None if the image was skipped."""
        return self.top[0][0] if self.top else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "path": str(self.path) if self.path is not None else None,
            "name": self.name,
            "top": [{"label": label, "index": index, "probability": prob} for label, index, prob in self.top],
            "error": self.error,
        }


@lru_cache(maxsize=1)
def _class_names() -> tuple[str, ...]:
    text = resources.files("effnet").joinpath("assets/imagenet_classes.json").read_text(encoding="utf-8")
    names = json.loads(text)
    if not isinstance(names, list) or len(names) != 1000:
        raise ValueError("the bundled imagenet_classes.json is damaged: expected a list of 1000 class names")
    return tuple(str(n) for n in names)


def load_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order (bundled with the package)."""
    return list(_class_names())


def default_class_names(num_classes: int) -> list[str] | None:
    """The labels of a model's outputs when nobody gave any: ImageNet's for 1000 outputs, else None."""
    return load_class_names() if num_classes == len(_class_names()) else None


def sample_images() -> list[Path]:
    """The bundled sample photos (cat.jpg, coffee.jpg, rocket.jpg), sorted by name."""
    folder = Path(str(resources.files("effnet").joinpath("assets/samples")))
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def sample_image(name: str = "cat") -> Path:
    """The path of one bundled sample photo by name ("cat", "coffee" or "rocket"): an image for examples, from anywhere."""
    photos = {path.stem: path for path in sample_images()}
    if name not in photos:
        raise ValueError(f"no bundled sample photo {name!r}; there are {', '.join(sorted(photos))}")
    return photos[name]


def expand_inputs(images: Iterable[str | Path | Any]) -> list[str | Path | Any]:
    """Replace each directory by the image files directly inside it (sorted); other inputs pass through.

    A directory without image files is kept as is, so that `predict` reports it.
    """
    out: list[str | Path | Any] = []
    for item in images:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            found = sorted(p for p in Path(item).iterdir() if p.is_file() and is_image_file(p))
            out.extend(found or [item])
        else:
            out.append(item)
    return out


def predict(
    model: nn.Module,
    images: Iterable[str | Path | Any] | str | Path | Any,
    topk: int = 5,
    class_names: Sequence[str] | None = None,
    *,
    batch_size: int = 32,
    preprocessing: Any = None,
) -> list[Prediction]:
    """Classify images (file paths, directories or PIL images) and return one `Prediction` per image.

    Uses `model.preprocessing.eval_transform()` (or `preprocessing`, if given). Unreadable
    inputs are returned with `error` set and skipped; the rest run through the model in
    batches of `batch_size` (eval mode, no gradients; the model's mode is restored after).
    `class_names` default to the ImageNet names for a 1000-class model, else "class N".
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    preprocessing = preprocessing if preprocessing is not None else getattr(model, "preprocessing", None)
    if preprocessing is None:
        raise ValueError("the model has no .preprocessing; pass preprocessing=effnet.get_preprocessing(name)")
    if isinstance(images, (str, Path)) or _is_pil(images):
        images = [images]
    transform = preprocessing.eval_transform()

    results: list[Prediction] = []
    batch: list[tuple[Prediction, torch.Tensor]] = []
    was_training = model.training
    model.eval()
    try:
        # images are read and preprocessed one batch at a time, so a large directory needs little memory
        for index, item in enumerate(expand_inputs(images)):
            result, tensor = _prepare(item, index, transform)
            results.append(result)
            if tensor is not None:
                batch.append((result, tensor))
            if len(batch) == batch_size:
                _classify(model, batch, topk, class_names)
                batch = []
        if batch:
            _classify(model, batch, topk, class_names)
    finally:
        model.train(was_training)
    return results


def _prepare(item: Any, index: int, transform: Any) -> tuple[Prediction, torch.Tensor | None]:
    """A Prediction for one input and its preprocessed tensor, or None with the error recorded."""
    if _is_pil(item):
        filename = getattr(item, "filename", "") or ""
        result = Prediction(Path(filename) if filename else None, name=Path(filename).name if filename else f"<image {index}>")
        image = item
    elif isinstance(item, (str, Path)):
        result = Prediction(Path(item), name=str(item))
        try:
            image = read_image(item)
        except ImageReadError as err:
            result.error = str(err)
            return result, None
    else:
        raise TypeError(f"images must be file paths, directories or PIL images, got {type(item).__name__}")
    try:
        return result, transform(image)
    except Exception as err:  # e.g. an exotic pixel mode the transforms cannot handle
        result.error = f"could not preprocess image ({type(err).__name__}: {err})"
        return result, None


def _classify(model: nn.Module, batch: list[tuple[Prediction, torch.Tensor]], topk: int, class_names: Sequence[str] | None) -> None:
    """Run one batch through the model (already in eval mode) and fill in each Prediction's top-k."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    with torch.inference_mode():
        inputs = torch.stack([tensor for _, tensor in batch]).to(device=device, dtype=dtype)
        probs = model(inputs).float().softmax(dim=-1).cpu()
    names = class_names if class_names is not None else (default_class_names(probs.shape[-1]) or ())
    values, indices = probs.topk(min(topk, probs.shape[-1]), dim=-1)
    for (result, _), vals, idxs in zip(batch, values.tolist(), indices.tolist(), strict=True):
        result.top = [(names[i] if i < len(names) else f"class {i}", i, v) for v, i in zip(vals, idxs, strict=True)]


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(obj, Image.Image)
