"""Ablations of the proxy training path on the shapes task: one change at a time, top-1 against steps.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/proxy_ablation.py --variants library batch32 no-aug
    python benchmarks/proxy_ablation.py --list

Every variant trains the mini study's baseline (B0 x0.5 width, x0.75 depth, 64 px) through `effnet.train` with
the "proxy" preset and the options below, evaluates after every epoch and records validation top-1, training
top-1 of the last epoch and the per-factor accuracy (relation, texture, shape) of the final model. `BASE` is the
path of `benchmarks/results/proxy_pairs/archive/proxy_task/README.md`'s first table as it was (crops, flips, batch 16, 1000 images,
the model's dropout 0.2, label smoothing 0.1); each variant names what it changes. Results are appended to
proxy_ablation.json (a finished variant is skipped when the script runs again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_task import factor_accuracy  # noqa: E402

from effnet._io import atomic_write_text  # noqa: E402

# The library path before the fix (README's first table), pinned so that the ablations stay comparable when the
# preset's defaults change. Epochs are set per variant so that every variant trains `--steps` optimizer steps.
BASE: dict[str, Any] = {
    "dataset": "shapes",
    "num_classes": 16,
    "train_samples": 1000,
    "val_samples": 400,
    "batch_size": 16,
    "crop_min_area": 0.6,
    "hflip": 0.5,
    "dropout": 0.2,
    "label_smoothing": 0.1,
    "warmup_epochs": 0.2,
    "weight_decay": 1e-5,
    "drop_path_rate": 0.0,
    "head_init": "zeros",
}

# name: (what it changes, the options it sets on top of BASE)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "library": ("the library path as measured (README's first table)", {}),
    "no-flip": ("no horizontal flip", {"hflip": 0.0}),
    "no-crop": ("no random crop (the whole image, resized)", {"crop_min_area": 1.0}),
    "no-aug": ("no crop, no flip", {"crop_min_area": 1.0, "hflip": 0.0}),
    "batch32": ("batch 32 (same steps, twice the images per step)", {"batch_size": 32}),
    "b16-accum2": ("batch 16 with 2 accumulated per step: 32 images per step, BN statistics over 16", {"grad_accum": 2}),
    "dropout0": ("dropout 0 before the classifier", {"dropout": 0.0}),
    "smooth0": ("label smoothing 0", {"label_smoothing": 0.0}),
    "head-tf": ("TF's uniform head init instead of zeros", {"head_init": "tf"}),
    "no-warmup": ("no warm-up", {"warmup_epochs": 0.0}),
    "warmup30": ("warm-up over 30% of the steps (as a one-cycle schedule)", {"warmup_epochs": 1.2}),
    "wd0.05": ("weight decay 0.05 (AdamW's usual)", {"weight_decay": 0.05}),
    "4000img": ("4000 training images", {"train_samples": 4000}),
    "lr1e-3": ("peak LR 1e-3", {"lr": 1e-3}),
    "bn-0.01": ("BN momentum 0.01 (the paper's)", {"bn_momentum": 0.01}),
    "plain-like": (
        "the plain loop's data and batch: no crop, no flip, batch 32, 4000 images, no label smoothing",
        {"crop_min_area": 1.0, "hflip": 0.0, "batch_size": 32, "train_samples": 4000, "label_smoothing": 0.0},
    ),
}


def run_variant(name: str, options: dict[str, Any], steps: int, seed: int) -> dict[str, Any]:
    import effnet.data as data_module
    from effnet.core.scaling import scale
    from effnet.core.zoo import get_spec
    from effnet.train import preset, train

    settings = {**BASE, **options}
    hflip = settings.pop("hflip")
    steps_per_epoch = settings["train_samples"] // (settings["batch_size"] * settings.get("grad_accum", 1))
    epochs = max(1, round(steps / steps_per_epoch))
    spec = scale(get_spec("efficientnet_b0"), width=0.5, depth=0.75, image_size=64, name="mini-64px").replace(num_classes=settings["num_classes"])
    # TrainConfig has no flip option: the ablation swaps the flip probability into the transform effnet.data builds
    original = data_module.train_transform

    def with_flip(resolution: int, **kwargs: Any) -> Any:
        return original(resolution, **{**kwargs, "hflip": hflip})

    data_module.train_transform = with_flip
    try:
        config = {"workers": 0, "progress": False, "verbose": False, "ema_decay": 0.0, "eval_every": 1, "seed": seed, "epochs": epochs, **settings}
        with tempfile.TemporaryDirectory(prefix="effnet-ablation-") as tmp:
            result = train(preset("proxy", **config, out_dir=str(Path(tmp) / "run"), resume=False), spec)
            factors = factor_accuracy(result.out_dir, "shapes", settings["num_classes"], 64, settings["val_samples"], seed)
    finally:
        data_module.train_transform = original
    return {
        "variant": name,
        "changes": options,
        "seed": seed,
        "steps": [steps_per_epoch * (i + 1) for i in range(len(result.history))],
        "val_top1": [row.get("val_top1") for row in result.history],
        "train_top1": result.final.get("train_top1"),
        "final": factors,
        "seconds": round(float(result.seconds), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=sorted(VARIANTS))
    parser.add_argument("--steps", type=int, default=248, help="optimizer steps per run (rounded to whole epochs)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", type=Path, default=Path("out/proxy_task"), help="output directory (default: a scratch folder)")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for name, (what, options) in VARIANTS.items():
            print(f"{name}: {what} {options}")
        return 0
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "proxy_ablation.json"
    stored = json.loads(path.read_text()) if path.exists() else {"base": BASE, "runs": []}
    for name in args.variants:
        for seed in args.seeds:
            if any(r["variant"] == name and r["seed"] == seed and r["steps"][-1] >= args.steps * 0.9 for r in stored["runs"]):
                continue
            started = time.perf_counter()
            row = run_variant(name, VARIANTS[name][1], args.steps, seed)
            stored["runs"].append(row)
            atomic_write_text(path, json.dumps(stored, indent=1) + "\n")
            curve = ", ".join(f"{s}: {v:.1f}" for s, v in zip(row["steps"], row["val_top1"], strict=True) if v is not None)
            print(f"{name} seed {seed}: {curve}; train {row['train_top1']:.1f}; {row['final']} ({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
