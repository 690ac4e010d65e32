"""The one image reader: training folders, evaluation, pseudo-labelling and prediction all open files here.

`read_image` opens a file with PIL, decodes it fully (a truncated file fails now, not inside a
transform), turns it the way its EXIF orientation says (phone photos store their rotation there,
and an image viewer applies it) and converts it to RGB. `IMAGE_SUFFIXES` are the files every path
picks up. Torch-free: PIL only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from effnet.core.preprocessing import _to_rgb

# torchvision's IMG_EXTENSIONS (what ImageFolder accepts) and the other formats PIL reads that photos come in
IMAGE_SUFFIXES: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".pnm", ".ppm", ".tif", ".tiff", ".webp")


class ImageReadError(ValueError):
    """A file could not be read as an image; the message is the short reason."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a visible file name with one of `IMAGE_SUFFIXES` (any case); hidden files (.DS_Store, ._IMG.jpg) are not images."""
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def read_image(path: str | os.PathLike[str]) -> Any:
    """An image file as an RGB PIL image, upright as its EXIF orientation says.

    Raises `ImageReadError` with a short reason: file not found, not an image file, truncated or
    corrupt image, permission denied, a directory, image too large.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        if path.is_dir():
            raise ImageReadError(f"directory holds no image files (looked for {', '.join(IMAGE_SUFFIXES)})")
        if path.is_file() and path.stat().st_size == 0:
            raise ImageReadError("empty file")
        with Image.open(path) as image:
            image.load()
            try:
                upright = ImageOps.exif_transpose(image)
            except Exception:  # a broken EXIF block should not cost us the pixels
                upright = image
            rgb = _to_rgb(upright)
            # closing the file releases the decoded pixels too, so an image still backed by it is copied out
            return rgb.copy() if rgb is image else rgb
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except IsADirectoryError:
        raise ImageReadError("is a directory") from None
    except PermissionError:
        raise ImageReadError("permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError("not an image file (no known image format)") from None
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"image too large ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:  # PIL reports broken data as any of these
        raise ImageReadError(f"truncated or corrupt image ({err})") from None
