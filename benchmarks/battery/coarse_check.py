"""Issue 28's own held-out check, stood in: 4 coarse groups, imbalanced 83 / 41 / 25 / 14 training images, 70 validation.

    python benchmarks/battery/coarse_check.py --caltech101 101_ObjectCategories --out /tmp/coarse --epochs 3 --seeds 0 1 2

The issue's set (coarse groups of ImageNet photos) is held back. This lays out one of the same shape from Caltech-101
(a confirmation-half source): each group pools the Caltech-101 categories of one kind of animal, and a seeded draw
takes the issue's counts from the pool, disjoint between training and validation. Then it trains what `run.py` trains
on a battery set (effnet finetune's defaults and the two plain loops) and writes OUT/trials.json and OUT/coarse.md
(the same table as `run.py`'s battery.md). Images are never committed: the folder comes from a Caltech-101 download.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import run  # noqa: E402

NAME = "coarse_animals"
KIND = "issue 28's held-out check, stood in: 4 coarse animal groups from Caltech-101, imbalanced 83/41/25/14"
TUNING_KIND = "the same shape from Imagenette ({} groups, 83/41/25/14)"
# group: (source categories pooled into it, training images, validation images)
GROUPS = {
    "mammal": (
        ("beaver", "cougar_body", "dalmatian", "elephant", "gerenuk", "hedgehog", "kangaroo", "llama", "okapi", "panda", "platypus", "rhino", "wild_cat"),
        83,
        18,
    ),
    "bird": (("emu", "flamingo", "ibis", "pigeon", "rooster"), 41, 18),
    "reptile": (("crocodile", "crocodile_head", "hawksbill"), 25, 17),
    "insect": (("ant", "butterfly", "dragonfly", "mayfly"), 14, 17),
}
# The same shape from the tuning half's Imagenette (train/ and val/ class folders pooled), for probing what the
# stand-in shows without tuning on it. "coarse": Imagenette's 10 classes pooled into 4 groups, the rarest pooling the
# most classes, as the stand-in's insects do; "classes": 4 single classes (a first try: no group to learn).
TUNING_SHAPES = {
    "coarse": {
        "church": (("train/church", "val/church"), 83, 18),
        "animal": (("train/tench", "val/tench", "train/English_springer", "val/English_springer"), 41, 18),
        "thing": (("train/French_horn", "val/French_horn", "train/golf_ball", "val/golf_ball", "train/parachute", "val/parachute"), 25, 17),
        "machine": (
            tuple(f"{split}/{c}" for c in ("cassette_player", "chain_saw", "garbage_truck", "gas_pump") for split in ("train", "val")),
            14,
            17,
        ),
    },
    "classes": {
        "English_springer": (("train/English_springer", "val/English_springer"), 83, 18),
        "church": (("train/church", "val/church"), 41, 18),
        "golf_ball": (("train/golf_ball", "val/golf_ball"), 25, 17),
        "tench": (("train/tench", "val/tench"), 14, 17),
    },
}


def lay_out(source: Path, target: Path, seed: int = 0, groups: dict = GROUPS) -> dict[str, dict[str, int]]:
    """TARGET/{train,val}/GROUP/*.jpg drawn from the pooled categories (folders under `source`) by `seed`; returns the counts."""
    rng = random.Random(seed)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    counts: dict[str, dict[str, int]] = {"train": {}, "val": {}}
    for group, (categories, n_train, n_val) in groups.items():
        missing = [c for c in categories if not (source / c).is_dir()]
        if missing:
            raise SystemExit(f"{source} has no folder {missing[0]!r}: give Caltech-101's 101_ObjectCategories folder (or Imagenette's root)")
        pool = sorted(p for c in categories for p in (source / c).glob("*.[jJ][pP]*[gG]"))
        if len(pool) < n_train + n_val:
            raise SystemExit(f"{group}: {len(pool)} images in {', '.join(categories)}, fewer than the {n_train + n_val} it draws")
        rng.shuffle(pool)
        for split, picks in (("train", pool[:n_train]), ("val", pool[n_train : n_train + n_val])):
            (partial / split / group).mkdir(parents=True, exist_ok=True)
            for p in picks:
                shutil.copy(p, partial / split / group / f"{p.parent.parent.name}_{p.parent.name}_{p.name}")
            counts[split][group] = len(picks)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--caltech101", type=Path, help="Caltech-101's 101_ObjectCategories folder (the stand-in)")
    parser.add_argument("--imagenette", type=Path, help="or Imagenette's root (train/, val/): the tuning half's shape-alike")
    parser.add_argument("--groups", choices=list(TUNING_SHAPES), default="coarse", help="with --imagenette: which shape-alike")
    parser.add_argument("--out", type=Path, required=True, help="the laid-out set, trials.json, coarse.md")
    parser.add_argument("--epochs", type=int, nargs="+", default=[3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(run.METHODS), choices=list(run.METHODS), metavar="METHOD")
    parser.add_argument("--effnet-option", nargs="*", default=[], metavar="KEY=JSON", help="a TrainConfig value on top of effnet's defaults (a variant)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if bool(args.caltech101) == bool(args.imagenette):
        parser.error("give --caltech101 (the stand-in) or --imagenette (its tuning-half shape-alike)")
    if args.caltech101:
        name, half, kind, groups = NAME, "confirmation", KIND, GROUPS
    else:
        name, half, kind, groups = f"imagenette_{args.groups}_imbalanced", "tuning", TUNING_KIND.format(args.groups), TUNING_SHAPES[args.groups]
    data = args.out / name
    if not (data / "train").is_dir():
        print(lay_out(args.caltech101 or args.imagenette, data, groups=groups))
    from common.run_log import RunLog

    log = RunLog(args.out, "coarse check", ("set", "method", "seed", "epochs"))
    rows = log.rows()
    options = run.parse_options(args.effnet_option)
    for epochs in args.epochs:
        for seed in args.seeds:
            for method in args.methods:
                row = {"set": name, "half": half, "kind": kind, "method": run.variant_name(method, options), "seed": seed, "epochs": epochs}
                done = run.run_and_record(log, data, args.out, row=row, options=options, workers=args.workers, threads=args.threads)
                if done is not None:
                    rows.append(done)
    table = run.summarise(rows, run.default_epochs())
    (args.out / "coarse.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
