"""From scratch on the shapes task: which element of the trainer's recipe costs it against a plain AdamW loop (issue 28).

The trainer's recipe is the fixed-size run of `progressive_learning.py` (its `base_config`: the proxy preset with
RandAugment, label smoothing 0.1, warm-up, zero-initialised residual branches, EMA off); the plain loop is that
script's `run_plain` (torchvision transforms, AdamW 3e-3 with its default weight decay 0.01, cosine, cross entropy).
Each variant moves one element of the trainer's recipe to the plain loop's value; "all" moves them all at once.
Every run is stored in OUT/trials.json (common/run_log.py); a rerun skips the (variant, seed) pairs already there and rewrites
`table.md` from all of them.

    python benchmarks/scratch_ablation.py --variants trainer plain no-randaugment --seeds 0
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

import effnet.data
from effnet._io import atomic_write_text
from effnet.experiments.study.stats import mean_ci, paired_difference
from effnet.train.config import preset
from effnet.train.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common.run_log import RunLog  # noqa: E402
from progressive_learning import base_config, network, run_plain, shapes_folder  # noqa: E402

# One element of the trainer's recipe set to the plain loop's value (the trainer's own value in the comment).
VARIANTS: dict[str, dict[str, Any]] = {
    "trainer": {},
    "no-randaugment": {"auto_augment": "none"},  # RandAugment, 2 ops at --magnitude
    "no-label-smoothing": {"label_smoothing": 0.0},  # 0.1
    "no-warmup": {"warmup_epochs": 0.0},  # 0.2 epochs
    "weight-decay-0.01": {"weight_decay": 0.01},  # 1e-5 (the paper's)
    "no-zero-init-residual": {"zero_init_residual": False},  # on in the proxy preset
    "bilinear-crop": {"_crop_interpolation": "bilinear"},  # bicubic (the model's preprocessing)
    "no-channels-last": {"channels_last": False},  # on in the proxy preset; speed only, a control
}
VARIANTS["all"] = {k: v for changes in VARIANTS.values() for k, v in changes.items() if k != "channels_last"}
# "all", with each image's augmentation drawn from the global RNG stream as torchvision's loop draws it, instead of
# the trainer's per-(seed, epoch, image) seeded draws (effnet.data.transforms.SeededTransform)
VARIANTS["all-global-rng-augment"] = {**VARIANTS["all"], "_global_rng_augment": True}
PLAIN = "plain"
PROXY = "proxy-preset"  # `effnet train --preset proxy` with only data, size, epochs and batch given, as a user runs it


def crop_interpolation(mode: str | None) -> None:
    """Make the trainer's training crops resample with `mode` (None: the model's own), evaluation unchanged."""
    original = getattr(effnet.data, "_original_train_transform", effnet.data.train_transform)
    effnet.data._original_train_transform = original
    if mode is None:
        effnet.data.train_transform = original
    else:
        effnet.data.train_transform = lambda *a, **k: original(*a, **{**k, "interpolation": mode})


def global_rng_augment(on: bool) -> None:
    """Make SeededTransform draw from the caller's RNG (on) or from its per-image seeds (off, the trainer's own)."""
    from effnet.data.transforms import SeededTransform

    original = getattr(SeededTransform, "_original_call", SeededTransform.__call__)
    SeededTransform._original_call = original
    SeededTransform.__call__ = (lambda self, image, index: self.transform(image)) if on else original


def run_trainer(args: argparse.Namespace, variant: str, seed: int) -> dict[str, Any]:
    spec = network(args)
    changes = dict(VARIANTS.get(variant, {}))
    crop_interpolation(changes.pop("_crop_interpolation", None))
    global_rng_augment(changes.pop("_global_rng_augment", False))
    out_dir = args.work / f"{variant}-s{seed}"
    if variant == PROXY:
        given = {"dataset": "folder", "data_dir": str(args.data_dir), "resolution": args.resolution, "epochs": args.epochs, "batch_size": args.batch_size}
        config = preset("proxy", **given, seed=seed, out_dir=str(out_dir), progress=False, verbose=False, checkpoint_minutes=0.0)
    else:
        config = base_config(args, spec, seed=seed, out_dir=out_dir, **changes)
    started = time.perf_counter()
    result = train(config, spec=spec)
    wall = time.perf_counter() - started
    crop_interpolation(None)
    global_rng_augment(False)
    shutil.rmtree(out_dir, ignore_errors=True)
    top1 = [row["val_top1"] for row in result.history]
    ema = [row["ema_val_top1"] for row in result.history if "ema_val_top1" in row]
    loss = [row["train_loss"] for row in result.history]
    return {"top1_by_epoch": top1, "ema_top1_by_epoch": ema, "train_loss_by_epoch": loss, "train_seconds": result.seconds, "wall_seconds": wall}


def run_plain_loop(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    run = run_plain(args, network(args), seed, args.epochs)
    history = run["history"]
    return {
        "top1_by_epoch": [h["val_top1"] for h in history],
        "train_loss_by_epoch": [h["train_loss"] for h in history],
        "train_seconds": run["train_seconds"],
        "wall_seconds": time.perf_counter() - started,
    }


def setup_of(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("shapes", "shapes_val", "model", "width", "depth", "resolution", "epochs", "batch_size", "crop_min_area", "magnitude", "dropout", "threads")
    return {k: getattr(args, k) for k in keys}


def interval_text(values: dict[int, float], baseline: dict[int, float] | None = None) -> str:
    """Mean ± 95% t-interval of `values` over seeds, or of their paired differences from `baseline` (signed)."""
    if baseline is not None:
        if not set(values) & set(baseline):
            return "—"
        ci = paired_difference(values, baseline)
        return f"{ci.mean:+.1f} ± {ci.half_width:.1f}" if ci.n > 1 else f"{ci.mean:+.1f}"
    ci = mean_ci([values[s] for s in sorted(values)])
    return f"{ci.mean:.1f} ± {ci.half_width:.1f}" if ci.n > 1 else f"{ci.mean:.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    """Final val top-1 per variant (mean ± 95% t-interval over seeds) and its paired differences from the trainer and
    from the plain loop."""
    by: dict[str, dict[int, float]] = {}
    for r in rows:
        by.setdefault(r["variant"], {})[r["seed"]] = r["top1_by_epoch"][-1]
    lines = [
        "| variant | seeds | final val top-1 per seed | mean ± 95% interval | minus trainer (paired) | minus plain loop (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for variant in [v for v in [*VARIANTS, PROXY, PLAIN] if v in by]:
        finals = by[variant]
        seeds = sorted(finals)
        per_seed = ", ".join(f"{finals[s]:.1f}" for s in seeds)
        minus_trainer = interval_text(finals, by.get("trainer", {})) if variant != "trainer" else "—"
        minus_plain = interval_text(finals, by.get(PLAIN, {})) if variant != PLAIN else "—"
        lines.append(f"| {variant} | {', '.join(map(str, seeds))} | {per_seed} | {interval_text(finals)} | {minus_trainer} | {minus_plain} |")
    return "\n".join(lines) + "\n"


def per_epoch(rows: list[dict[str, Any]]) -> str:
    """Val top-1 after each epoch, run by run."""
    lines = ["| variant | seed | val top-1 by epoch | wall s |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: ([*VARIANTS, PROXY, PLAIN].index(r["variant"]), r["seed"])):
        lines.append(f"| {r['variant']} | {r['seed']} | {' '.join(f'{t:.1f}' for t in r['top1_by_epoch'])} | {r['wall_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=[*VARIANTS, PROXY, PLAIN], choices=[*VARIANTS, PROXY, PLAIN])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--shapes", type=int, default=1000, help="training images of the shapes task (4 classes)")
    parser.add_argument("--shapes-val", type=int, default=250, help="validation images")
    parser.add_argument("--model", default="efficientnetv2_b0")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--depth", type=float, default=0.5)
    parser.add_argument("--resolution", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--crop-min-area", type=float, default=0.6)
    parser.add_argument("--magnitude", type=float, default=9.0, help="RandAugment magnitude of the trainer's recipe")
    parser.add_argument("--dropout", type=float, default=-1.0, help="dropout of both (-1: the model's own)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("out/scratch_ablation/work"), help="the shapes folders and run directories")
    parser.add_argument("--out", type=Path, default=Path("out/scratch_ablation"))
    args = parser.parse_args(argv)
    # what progressive_learning's helpers read besides the options above
    args.shapes_classes, args.train_cap, args.val_cap, args.mixup = 4, 0, 0, 0.0
    torch.set_num_threads(args.threads)
    args.data_dir = shapes_folder(args)
    args.out.mkdir(parents=True, exist_ok=True)
    log, setup = RunLog(args.out, "scratch_ablation", ("variant", "seed", "setup")), setup_of(args)
    for seed in args.seeds:
        for variant in args.variants:
            if {"variant": variant, "seed": seed, "setup": setup} in log:
                continue
            load = os.getloadavg()[0]
            run = run_plain_loop(args, seed) if variant == PLAIN else run_trainer(args, variant, seed)
            row = {"variant": variant, "seed": seed, "setup": setup, "load_before": round(load, 2), **run}
            log.add(row)
            print(f"{variant} seed {seed}: " + " ".join(f"{t:.1f}" for t in run["top1_by_epoch"]) + f" ({run['wall_seconds']:.0f} s)", flush=True)
    rows = [r for r in log.rows() if r["setup"] == setup]
    note = f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, {args.threads} torch thread(s)\n\n"
    atomic_write_text(args.out / "table.md", note + table(rows) + "\n" + per_epoch(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
