"""Paired checks of the proxy recipe on the mini study's networks: one setting against another, same seeds.

    # zero-initialised residuals on and off, from scratch on real photos (an image-folder dataset)
    python benchmarks/proxy_pairs.py zero-init --data-dir DATA --networks "depth only" baseline --seeds 0 1 --epochs 6
    # the on-device data path against the loader path, on the shapes task at the mini preset's budget
    python benchmarks/proxy_pairs.py on-device --networks compound baseline --seeds 0 1 2
    # channels-last against contiguous tensors: the same training, how much faster
    python benchmarks/proxy_pairs.py channels-last --networks compound "depth only" --seeds 0 --epochs 2

Each training is one `effnet.experiments.proxy.proxy_train` call with one torch thread (run two of these side by side on 2
cores). One JSON line per training goes to --out as it finishes (appended, so a killed run keeps what it had);
the summary prints each network's paired difference (second setting minus first) with its 95% t-interval.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from effnet.experiments.proxy import proxy_train, task_classes
from effnet.experiments.study.scaling_study import PRESETS, baseline_of, plan
from effnet.experiments.study.stats import mean_ci

# the two settings each check compares: (name, TrainConfig options on top of the run's own)
SETTINGS: dict[str, tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]] = {
    "zero-init": (("residuals as in the TF reference", {"zero_init_residual": False}), ("zero-initialised residuals", {"zero_init_residual": True})),
    "on-device": (("loader", {"data_on_device": False}), ("on device", {"data_on_device": True})),
    "channels-last": (("contiguous", {"channels_last": False}), ("channels last", {"channels_last": True})),
}


def networks(classes: int) -> dict[str, Any]:
    """The mini preset's Table 3 networks (label -> NetSpec), the classifier sized for `classes`."""
    preset = PRESETS["mini"]
    return {p.label: p.spec for p in plan(preset, baseline_of(preset, None, classes), parts=("table3",))}


def train_options(check: str, data_dir: str, epochs: int | None) -> dict[str, Any]:
    """What every training of a check shares: real photos for zero-init (when given), the mini preset's task otherwise."""
    mini = PRESETS["mini"]
    if check == "zero-init" and data_dir:
        return {"dataset": "folder", "data_dir": data_dir, "batch_size": 32, "epochs": epochs or 6}
    return {"dataset": mini.dataset, "num_classes": mini.num_classes, **mini.train, **({"epochs": epochs} if epochs else {})}


def summary(rows: list[dict[str, Any]], check: str) -> str:
    """Per network: each setting's top-1 per seed and the paired difference (second - first) with its interval, and
    how many times faster the second setting trained (first's training seconds / second's, summed over the seeds)."""
    (first, _), (second, _) = SETTINGS[check]
    lines = []
    for label in dict.fromkeys(r["network"] for r in rows):
        by = {(r["setting"], r["seed"]): r["top1"] for r in rows if r["network"] == label}
        seeds = sorted({s for (_, s) in by if (first, s) in by and (second, s) in by})
        if not seeds:
            continue
        diff = mean_ci([by[(second, s)] - by[(first, s)] for s in seeds])
        seconds = {(r["setting"], r["seed"]): r["seconds"] for r in rows if r["network"] == label}
        speedup = sum(seconds[(first, s)] for s in seeds) / sum(seconds[(second, s)] for s in seeds)
        lines.append(
            f"{label}: {first} {[by[(first, s)] for s in seeds]}, {second} {[by[(second, s)] for s in seeds]} (seeds {seeds}); "
            f"{second} - {first}: {diff.mean:+.1f}"
            + (f" ± {diff.half_width:.1f} points" if len(seeds) > 1 else " points (one seed: no interval)")
            + f"; {second} trained {speedup:.2f}x as fast"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=sorted(SETTINGS))
    parser.add_argument("--data-dir", default="", help="zero-init: an image-folder dataset (train/CLASS, val/CLASS); else the shapes task")
    parser.add_argument("--networks", nargs="+", default=["baseline", "compound"], help="the mini study's Table 3 labels")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="default: 6 on photos, the mini preset's on the shapes task")
    parser.add_argument("--out", type=Path, default=Path("out/proxy_pairs.jsonl"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    options = train_options(args.check, args.data_dir, args.epochs)
    specs = networks(task_classes(options))
    unknown = [n for n in args.networks if n not in specs]
    if unknown:
        sys.exit(f"unknown network(s) {unknown}; the mini study's Table 3 has {list(specs)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    for seed in args.seeds:
        for label in args.networks:
            for setting, extra in SETTINGS[args.check]:
                if any(r["network"] == label and r["seed"] == seed and r["setting"] == setting for r in done):
                    continue
                result = proxy_train(specs[label], {**options, **extra}, seed=seed)
                row = {"check": args.check, "network": label, "setting": setting, "seed": seed, "top1": result.top1, "train_top1": result.train_top1}
                row.update(data=args.data_dir or options["dataset"], epochs=options["epochs"], seconds=result.seconds)
                done.append(row)
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print(summary(done, args.check))


if __name__ == "__main__":
    main()
