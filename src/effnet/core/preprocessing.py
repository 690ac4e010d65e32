"""What an input image must go through before a model sees it: resolution, crop, resampling, normalisation."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The TF EfficientNet-Lite (and EdgeTPU) preprocessing: (pixel - 127) / 128.
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def tf_crop_fraction(resolution: int) -> float:
    """The TF reference's eval crop: the centre res/(res+32) of the image (0.875 at 224)."""
    return resolution / (resolution + 32)


@dataclass(frozen=True)
class Preprocessing:
    """Eval preprocessing of a model or a set of weights.

    Resize the short side to round(resolution / crop_fraction) with `interpolation`,
    centre-crop `resolution`, scale to [0, 1], then normalise by `mean` and `std`.
    """

    resolution: int = 224
    crop_fraction: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; expected one of {INTERPOLATIONS}")
        if not 0 < self.crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction!r}")

    @classmethod
    def for_resolution(cls, resolution: int, **changes: Any) -> Preprocessing:
        """Defaults for a model at `resolution`: TF's crop fraction, bicubic, ImageNet statistics."""
        return cls(resolution=resolution, crop_fraction=tf_crop_fraction(resolution), **changes)

    @property
    def resize_size(self) -> int:
        """Short side after the resize that precedes the centre crop."""
        return int(round(self.resolution / self.crop_fraction))

    def replace(self, **changes: Any) -> Preprocessing:
        return replace(self, **changes)

    def eval_transform(self) -> Any:
        """A torchvision transform: PIL image (any mode) -> normalised float tensor (3, res, res)."""
        import torch
        from torchvision.transforms import v2 as T

        return T.Compose(
            [
                T.Lambda(_to_rgb),
                T.ToImage(),
                T.Resize(self.resize_size, interpolation=_interpolation(self.interpolation), antialias=True),
                T.CenterCrop(self.resolution),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(self.mean, self.std),
            ]
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """The inverse of `to_dict` (its derived `resize_size` is ignored)."""
        return cls(
            resolution=int(data["resolution"]),
            crop_fraction=float(data["crop_fraction"]),
            interpolation=str(data["interpolation"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "crop_fraction": self.crop_fraction,
            "resize_size": self.resize_size,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }


def _to_rgb(image: Any) -> Any:
    """Grayscale, palette, CMYK and RGBA images become RGB (alpha composited on white)."""
    from PIL import Image

    if not isinstance(image, Image.Image) or image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float grayscale: stretch to 8 bits (a plain convert would clip at 255)
        import numpy as np

        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(scaled.round().astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _interpolation(name: str) -> Any:
    from torchvision.transforms import InterpolationMode

    return {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR, "nearest": InterpolationMode.NEAREST}[name]
