"""Fetch the battery's image sets and lay them out as DATA_ROOT/NAME/{train,val}/CLASS/*.jpg (never committed).

    python benchmarks/battery/fetch.py --data-root ~/battery-data                   # every set (downloads GBs)
    python benchmarks/battery/fetch.py --data-root ~/battery-data --half tuning
    python benchmarks/battery/fetch.py --data-root ~/battery-data --sets dtd --from-dir dtd=~/Downloads/dtd/images

Downloads go to --cache (torchvision's downloaders where torchvision has the set, the public archive otherwise);
`--from-dir NAME=PATH` lays a set out from a folder already on disk instead: PATH holds CLASS/* image folders, or
train/CLASS/* and val/CLASS/* (or training/, test/, testing/; a derived set uses its source set's folder). The subset is fixed by --seed: the
classes of the registry entry, at most registry.TRAIN_CAP training images with the entry's per-class counts, at
most registry.VAL_PER_CLASS validation images per class (held out of the training pool, disjoint, when the set
has no validation pool of its own). NAME/battery.json records what was laid out; a set laid out with the same
entry and seed is skipped, so a rerun only adds what is missing. Each set is written to NAME.partial first and
renamed when complete.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from registry import SETS, TRAIN_CAP, VAL_CAP, VAL_PER_CLASS, BatterySet, get, source_of  # noqa: E402

MANIFEST = "battery.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
TRAIN_FOLDERS = ("train", "training")
VAL_FOLDERS = ("val", "validation", "valid", "test", "testing")  # a set's own held-out split, whatever its name


@dataclass
class Pool:
    """Images of one split of a source: class names in label order, and per image its label and a loader of its PIL image."""

    classes: list[str]
    labels: list[int]
    load: Callable[[int], Any]


# ---------------------------------------------------------------------------- sources


def _labels_of(dataset: Any) -> list[int]:
    """Every image's label without decoding the images where the torchvision class keeps them."""
    for name in ("targets", "_labels", "y", "labels"):
        values = getattr(dataset, name, None)
        if values is not None and len(values) == len(dataset):
            return [int(v) for v in values]
    samples = getattr(dataset, "_samples", None)
    if samples is not None:
        return [int(s[1]) for s in samples]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def _class_names(dataset: Any, labels: list[int]) -> list[str]:
    names = getattr(dataset, "classes", None) or getattr(dataset, "categories", None)
    if names is None:
        return [f"class_{i:03d}" for i in range(max(labels) + 1)]
    return [(n[0] if isinstance(n, (tuple, list)) else str(n)) for n in names]


def torchvision_pool(entry: BatterySet, kwargs: dict[str, Any], cache: Path) -> Pool:
    import torchvision.datasets as tvd

    dataset = getattr(tvd, entry.torchvision)(root=str(cache / entry.name), download=True, **kwargs)
    labels = _labels_of(dataset)
    return Pool(_class_names(dataset, labels), labels, lambda i: dataset[i][0])


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _class_folders(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and _images_in(d))


def find_class_root(root: Path) -> tuple[Path, Path | None]:
    """(train root, val root or None): the shallowest folder under `root` with train/ + val/ class folders (or training/,
    test/, testing/, validation/: the names sets ship), or >= 2 class folders."""
    queue = [root]
    while queue:
        folder = queue.pop(0)
        split = {d.name.lower(): d for d in folder.iterdir() if d.is_dir()}
        train = next((split[n] for n in TRAIN_FOLDERS if n in split), None)
        val = next((split[n] for n in VAL_FOLDERS if n in split), None)
        if train is not None and val is not None and _class_folders(train) and _class_folders(val):  # an unlabelled test/ is no split
            return train, val
        if len(_class_folders(folder)) >= 2:
            return folder, None
        queue += sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    raise SystemExit(f"{root} holds no image folders: expected CLASS/*.jpg folders, or train/CLASS and val/CLASS (or test/CLASS), somewhere under it")


def folder_pool(root: Path, classes: list[str] | None = None) -> Pool:
    from PIL import Image

    names = classes or [d.name for d in _class_folders(root)]
    paths, labels = [], []
    for label, name in enumerate(names):
        found = _images_in(root / name) if (root / name).is_dir() else []
        paths += found
        labels += [label] * len(found)
    return Pool(names, labels, lambda i: Image.open(paths[i]))


def folder_pools(root: Path, dropped: tuple[str, ...] = ()) -> tuple[Pool, Pool | None]:
    train_root, val_root = find_class_root(root)
    train = folder_pool(train_root, [d.name for d in _class_folders(train_root) if d.name not in dropped])
    return train, (folder_pool(val_root, train.classes) if val_root else None)


def archive_pools(entry: BatterySet, cache: Path) -> tuple[Pool, Pool | None]:
    from torchvision.datasets.utils import download_and_extract_archive

    target = cache / entry.name
    if not (target / ".extracted").is_file():
        download_and_extract_archive(entry.archive, download_root=str(target), extract_root=str(target / "files"))
        (target / ".extracted").write_text("")
    return folder_pools(target / "files", entry.dropped_classes)


def source_pools(entry: BatterySet, cache: Path, from_dirs: dict[str, Path]) -> tuple[Pool, Pool | None]:
    """The training pool and validation pool (None: to be held out of the training pool) of `entry`'s source."""
    source = source_of(entry)
    if source.name in from_dirs or entry.name in from_dirs:
        return folder_pools(from_dirs.get(entry.name) or from_dirs[source.name], source.dropped_classes)
    if source.torchvision:
        train = torchvision_pool(source, source.train_pool, cache)
        return train, (torchvision_pool(source, source.val_pool, cache) if source.val_pool is not None else None)
    if source.archive:
        return archive_pools(source, cache)
    raise SystemExit(f"{entry.name} has no downloadable source; lay it out with --from-dir {entry.name}=PATH")


# ---------------------------------------------------------------------------- the fixed subset


def train_counts(entry: BatterySet, available: list[int], rng: random.Random) -> list[int]:
    """Training images per kept class: balanced to TRAIN_CAP, imbalanced geometrically (most/fewest = ratio, rarest classes
    drawn by the seed), 5-10 each (fewshot), or proportional to the source's own frequencies (natural)."""
    k = len(available)
    if entry.counts == "balanced":
        wanted = [TRAIN_CAP // k] * k
    elif entry.counts == "fewshot":
        wanted = [rng.randint(5, 10) for _ in range(k)]
    elif entry.counts == "natural":
        total = sum(available)
        wanted = [max(1, int(a * TRAIN_CAP / total)) for a in available]
    elif entry.counts == "imbalanced":
        factors = [entry.ratio ** (-i / max(1, k - 1)) for i in range(k)]
        top = min(max(available), int(TRAIN_CAP / sum(factors)))
        order = list(range(k))
        rng.shuffle(order)  # which classes are rare: drawn, not the last in label order
        wanted = [0] * k
        for rank, c in enumerate(order):
            wanted[c] = max(1, round(top * factors[rank]))
    else:
        raise SystemExit(f"{entry.name}: unknown counts {entry.counts!r}")
    return [min(w, a) for w, a in zip(wanted, available, strict=True)]


def choose(entry: BatterySet, train: Pool, val: Pool | None, seed: int) -> tuple[list[str], dict[int, list[int]], dict[int, list[int]]]:
    """(class names, training indices per class, validation indices per class), fixed by `seed`."""
    rng = random.Random(f"{entry.name}:{seed}")
    last = len(train.classes) if not entry.classes else min(len(train.classes), entry.first_class + entry.classes)
    kept = list(range(entry.first_class, last))
    if len(kept) < 2:
        raise SystemExit(f"{entry.name}: its source has {len(train.classes)} classes, fewer than the {entry.first_class + 2} it needs")
    per_class_val = max(1, min(VAL_PER_CLASS, VAL_CAP // len(kept)))

    def by_class(pool: Pool) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {c: [] for c in kept}
        for i, label in enumerate(pool.labels):
            if label in groups:
                groups[label].append(i)
        for members in groups.values():
            rng.shuffle(members)
        return groups

    train_groups = by_class(train)
    if val is None:  # hold validation images out of the training pool: a third at most, so rare classes keep some to train on
        val_groups = {c: m[: min(per_class_val, len(m) // 3)] for c, m in train_groups.items()}
        train_groups = {c: m[len(val_groups[c]) :] for c, m in train_groups.items()}
    else:
        val_groups = {c: m[:per_class_val] for c, m in by_class(val).items()}
    counts = train_counts(entry, [len(train_groups[c]) for c in kept], rng)
    train_pick = {c: train_groups[c][:n] for c, n in zip(kept, counts, strict=True)}
    empty = [train.classes[c] for c in kept if not train_pick[c] or not val_groups[c]]
    if empty:
        raise SystemExit(f"{entry.name}: classes without training or validation images: {', '.join(empty[:5])}")
    return [train.classes[c] for c in kept], train_pick, val_groups


def _folder_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name.strip()) or "class"


def _json_defaults() -> dict[str, Any]:
    """The registry's field defaults, as a manifest stores them."""
    return json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(BatterySet) if f.default is not dataclasses.MISSING}))


def lay_out(entry: BatterySet, data_root: Path, cache: Path, from_dirs: dict[str, Path], seed: int) -> dict[str, Any]:
    """DATA_ROOT/NAME/{train,val}/CLASS/*.jpg and NAME/battery.json; skipped when laid out before with the same entry and seed."""
    target = data_root / entry.name
    from_dir = str(from_dirs.get(entry.name) or from_dirs.get(source_of(entry).name) or "")
    identity = json.loads(json.dumps({"entry": dataclasses.asdict(entry), "seed": seed, "from_dir": from_dir}))  # as stored
    if (target / MANIFEST).is_file():
        manifest = json.loads((target / MANIFEST).read_text())
        # a field added to the registry since the layout was made is read at its default
        stored_entry = {**_json_defaults(), **manifest.get("entry", {})}
        if {**{k: manifest.get(k) for k in identity}, "entry": stored_entry} == identity:
            return manifest
        raise SystemExit(f"{target} was laid out with another entry, seed or source; remove it to lay it out again")
    train, val = source_pools(entry, cache, from_dirs)
    names, train_pick, val_pick = choose(entry, train, val, seed)
    partial = data_root / f"{entry.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    for split, pool, picks in (("train", train, train_pick), ("val", val or train, val_pick)):
        for name, (_, indices) in zip(names, sorted(picks.items()), strict=True):
            folder = partial / split / _folder_name(name)
            folder.mkdir(parents=True, exist_ok=True)
            for i in indices:
                pool.load(i).convert("RGB").save(folder / f"{i:06d}.jpg", quality=95)
    counts = {split: {n: len(p) for n, (_, p) in zip(names, sorted(picks.items()), strict=True)} for split, picks in (("train", train_pick), ("val", val_pick))}
    manifest = {**identity, "classes": names, "counts": counts, "train_images": sum(counts["train"].values()), "val_images": sum(counts["val"].values())}
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if target.exists():
        shutil.rmtree(target)
    os.replace(partial, target)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="where the sets are laid out (outside the repository)")
    parser.add_argument("--sets", nargs="+", default=[], help="set names (default: every set of --half, or all)")
    parser.add_argument("--half", choices=("tuning", "confirmation"), help="only this half's sets")
    parser.add_argument("--from-dir", nargs="*", default=[], metavar="NAME=PATH", help="lay set NAME out from a folder on disk instead of downloading")
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/effnet/battery").expanduser(), help="downloads")
    parser.add_argument("--seed", type=int, default=0, help="the subset's seed (the battery's: 0)")
    parser.add_argument("--list", action="store_true", help="print the registry and exit")
    args = parser.parse_args(argv)
    if args.list:
        for s in SETS:
            print(f"{s.half:12} {s.name:22} {s.kind} | {s.licence} | {s.source}")
        return 0
    from_dirs = {}
    for item in args.from_dir:
        name, _, path = item.partition("=")
        get(name)
        from_dirs[name] = Path(path).expanduser().resolve()
    chosen = [get(n) for n in args.sets] or [s for s in SETS if args.half in (None, s.half)]
    args.data_root.mkdir(parents=True, exist_ok=True)
    failed = []
    for entry in chosen:
        try:
            m = lay_out(entry, args.data_root, args.cache, from_dirs, args.seed)
        except (OSError, RuntimeError, SystemExit) as err:  # one set's failed download must not stop the others
            failed.append(entry.name)
            print(f"{entry.name}: not laid out: {err}", file=sys.stderr, flush=True)
            continue
        print(f"{entry.name}: {len(m['classes'])} classes, {m['train_images']} train / {m['val_images']} val images", flush=True)
    if failed:
        print(f"not laid out: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
