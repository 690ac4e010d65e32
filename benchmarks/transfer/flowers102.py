"""Lay Oxford Flowers-102 out with its official split, for `effnet finetune` (issue 28, item 6: the seed's transfer claim).

    python benchmarks/transfer/flowers102.py --download ~/data/flowers-src OUT        # torchvision downloads the files
    python benchmarks/transfer/flowers102.py SRC OUT   # SRC holds jpg/image_NNNNN.jpg, setid.mat, imagelabels.mat

The official split (setid.mat, Nilsback & Zisserman 2008): `trnid` and `valid` (10 images per class each, 2,040 in
all) become OUT/train/CLASS/, the 6,149 `tstid` images OUT/val/CLASS/, so a run validates on the test set. Following
the EfficientNet paper's transfer protocol (as Kornblith et al. 2019 does), train and validation images train
together. CLASS is the label in imagelabels.mat, 001-102. The split files are checked against the md5 sums
torchvision checks, so a copy with another split is refused. Reading .mat files needs scipy (as torchvision's
Flowers102 does); images are hard-linked where the file system allows, else copied.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

OFFICIAL_MD5 = {"setid.mat": "a5357ecc9cb78c4bef273ce3793fc85c", "imagelabels.mat": "e0620be6f572b9609742df49c70aed4d"}
IMAGES = 8189
TRAIN_AND_VAL, TEST = 2040, 6149


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def read_split(src: Path) -> tuple[list[int], list[int], list[int]]:
    """(image ids to train on, image ids to test on, label of every image id - 1 indexed by id - 1)."""
    for name, expected in OFFICIAL_MD5.items():
        if not (src / name).is_file():
            raise SystemExit(f"{src / name} is missing: SRC must hold jpg/, setid.mat and imagelabels.mat (or use --download)")
        found = md5(src / name)
        if found != expected:
            raise SystemExit(f"{src / name} is not the official file (md5 {found}, expected {expected})")
    try:
        from scipy.io import loadmat
    except ImportError:
        raise SystemExit("reading Flowers-102's .mat files needs scipy: pip install scipy") from None
    setid = loadmat(src / "setid.mat")
    labels = [int(x) for x in loadmat(src / "imagelabels.mat")["labels"].ravel()]
    train = sorted(int(i) for key in ("trnid", "valid") for i in setid[key].ravel())
    test = sorted(int(i) for i in setid["tstid"].ravel())
    if (len(train), len(test), len(labels)) != (TRAIN_AND_VAL, TEST, IMAGES):
        raise SystemExit(f"unexpected split sizes {len(train)} / {len(test)} / {len(labels)} labels")
    return train, test, labels


def place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def lay_out(src: Path, out: Path) -> dict[str, int]:
    train, test, labels = read_split(src)
    missing = [i for i in train + test if not (src / "jpg" / f"image_{i:05d}.jpg").is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} images missing under {src / 'jpg'} (first: image_{missing[0]:05d}.jpg)")
    for folder, ids in (("train", train), ("val", test)):
        for i in ids:
            place(src / "jpg" / f"image_{i:05d}.jpg", out / folder / f"{labels[i - 1]:03d}" / f"image_{i:05d}.jpg")
    return {"train": len(train), "val": len(test), "classes": len(set(labels))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path, help="folder with jpg/, setid.mat, imagelabels.mat (with --download: where torchvision puts them)")
    parser.add_argument("out", type=Path, help="where OUT/train and OUT/val go")
    parser.add_argument("--download", action="store_true", help="download the official files with torchvision first")
    args = parser.parse_args(argv)
    src = args.src.expanduser()
    if args.download:
        from torchvision.datasets import Flowers102

        Flowers102(str(src), split="test", download=True)
        src = src / "flowers-102"
    counts = lay_out(src, args.out.expanduser())
    print(f"{args.out}: {counts['classes']} classes, {counts['train']} train (trnid + valid) / {counts['val']} val (tstid) images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
