"""Turn the battery's offline copies that are not CLASS/ image folders into folders `fetch.py --from-dir` reads.

    python benchmarks/battery/offline_sources.py sprite fashion-mnist-sprite.png OUT   # Fashion-MNIST's sample sprite
    python benchmarks/battery/offline_sources.py gtsrb GTSRB OUT                       # GTSRB's Final_Training + Final_Test
    python benchmarks/battery/offline_sources.py idx t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz OUT

For machines without the downloads (README.md, "Laid out offline"): the Fashion-MNIST repository's sprite of 900
samples (doc/img/fashion-mnist-sprite.png: 28 px tiles, each class three rows of 30, in label order), GTSRB as its archives unpack
(training images in one folder per class, test images in one folder labelled by GT-final_test.csv), and MNIST-format
idx files. Every image is written losslessly as PNG; fetch.py draws the seeded subset from OUT.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
from pathlib import Path

FASHION_CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]
TILE = 28  # Fashion-MNIST's images are 28 x 28
ROWS_PER_CLASS = 3  # the sprite's layout, as the Fashion-MNIST README states it


def split_sprite(sprite: Path, out: Path) -> int:
    """OUT/CLASS/*.png from the sprite's tiles: row r holds class r // 3."""
    from PIL import Image

    image = Image.open(sprite).convert("L")
    columns, rows = image.width // TILE, image.height // TILE
    if (columns * TILE, rows * TILE) != image.size or rows != ROWS_PER_CLASS * len(FASHION_CLASSES):
        raise SystemExit(f"{sprite} is {image.size[0]}x{image.size[1]} px: expected {ROWS_PER_CLASS * len(FASHION_CLASSES)} rows of {TILE} px tiles")
    for row in range(rows):
        folder = out / FASHION_CLASSES[row // ROWS_PER_CLASS]
        folder.mkdir(parents=True, exist_ok=True)
        for col in range(columns):
            image.crop((col * TILE, row * TILE, (col + 1) * TILE, (row + 1) * TILE)).save(folder / f"sprite_r{row:02d}_c{col:02d}.png")
    return rows * columns


def split_gtsrb(root: Path, out: Path) -> int:
    """OUT/train/CLASS/*.png from Final_Training/Images/CLASS/*.ppm, OUT/val/CLASS/*.png from Final_Test by its ground truth."""
    from PIL import Image

    count = 0
    for folder in sorted((root / "Final_Training" / "Images").iterdir()):
        if folder.is_dir():
            (out / "train" / folder.name).mkdir(parents=True, exist_ok=True)
            for image in sorted(folder.glob("*.ppm")):
                Image.open(image).save(out / "train" / folder.name / f"{image.stem}.png")
                count += 1
    truth = root / "Final_Test" / "GT-final_test.csv"
    if not truth.is_file():
        raise SystemExit(f"{truth} is missing: GTSRB's test labels come in GT-final_test.csv (the GTSRB_Final_Test_GT archive)")
    with truth.open(newline="") as handle:
        for row in csv.DictReader(handle, delimiter=";"):
            folder = out / "val" / f"{int(row['ClassId']):05d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.open(root / "Final_Test" / "Images" / row["Filename"]).save(folder / f"{Path(row['Filename']).stem}.png")
            count += 1
    return count


def split_idx(images: Path, labels: Path, out: Path) -> int:
    """OUT/LABEL/*.png from MNIST-format idx files (gzipped or not)."""
    import numpy as np
    from PIL import Image

    def read(path: Path, header: int) -> np.ndarray:
        data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
        return np.frombuffer(data, np.uint8, offset=header)

    labels_ = read(labels, 8)
    pixels = read(images, 16)
    if pixels.size != labels_.size * TILE * TILE:
        raise SystemExit(f"{images} holds {pixels.size} pixels, not {labels_.size} images of {TILE}x{TILE} as {labels} says")
    for i, (image, label) in enumerate(zip(pixels.reshape(-1, TILE, TILE), labels_, strict=True)):
        folder = out / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(folder / f"{i:05d}.png")
    return int(labels_.size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="kind", required=True)
    kinds.add_parser("sprite").add_argument("paths", nargs=2, type=Path, metavar="SPRITE OUT")
    kinds.add_parser("gtsrb").add_argument("paths", nargs=2, type=Path, metavar="GTSRB OUT")
    kinds.add_parser("idx").add_argument("paths", nargs=3, type=Path, metavar="IMAGES LABELS OUT")
    args = parser.parse_args(argv)
    count = {"sprite": split_sprite, "gtsrb": split_gtsrb, "idx": split_idx}[args.kind](*args.paths)
    print(f"{count} images under {args.paths[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
