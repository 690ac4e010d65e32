"""Difficulty curves of the generated proxy tasks: validation top-1 against training steps, for a few networks.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/proxy_task.py --out benchmarks/results/proxy_pairs/archive/proxy_task
    python benchmarks/proxy_task.py --runs mini-64px mini-128px --seeds 0 1 --epochs 6

Each run trains one network with the "proxy" recipe (`effnet.experiments.proxy`'s options: AdamW, cosine, batch 32)
and evaluates after every epoch. On the "shapes" task it also scores each factor of the predicted
class against the true one (relation: the marker's side; texture: the stripes; shape), which is
where resolution, depth and width show. Results are appended to proxy_task.json after every run
(a killed run resumes) and summarised in proxy_task.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from effnet._io import atomic_write_text

# name: (description, B0 width, B0 depth, input px). The first is the mini study's baseline; the others
# scale it the way the study's Table 3 rows do (4x its MACs) or shrink it.
RUNS: dict[str, tuple[str, float, float, int]] = {
    "mini-64px": ("the mini study's baseline: B0 x0.5 width, x0.75 depth at 64 px", 0.5, 0.75, 64),
    "mini-128px": ("the same network at 128 px (resolution only, ~4x MACs)", 0.5, 0.75, 128),
    "mini-compound": ("compound phi=2 (d 1.44, w 1.21, r 1.32): 85 px", 0.5 * 1.21, 0.75 * 1.44, 85),
    "mini-wide": ("width only x2 at 64 px (~3.6x MACs)", 1.0, 0.75, 64),
    "mini-deep": ("depth only x2.6 at 64 px (~3.3x MACs)", 0.5, 0.75 * 2.6, 64),
    "small-64px": ("a smaller net: B0 x0.25 width, x0.5 depth at 64 px", 0.25, 0.5, 64),
}


def factor_accuracy(run_dir: Path, dataset: str, classes: int, resolution: int, val_samples: int, seed: int) -> dict[str, float]:
    """Top-1 and per-factor accuracy (percent) of a run's model on the validation split."""
    import torch

    from effnet.data import build_datasets
    from effnet.data.shapes import class_factors
    from effnet.train.rundir import load_run_model

    model = load_run_model(run_dir)
    # the run's own eval preprocessing (the trainer's crop fraction), not build_datasets' default for the resolution
    data = build_datasets(
        dataset, resolution=resolution, preprocessing=model.preprocessing, num_classes=classes, val_samples=val_samples, train_samples=1, seed=seed
    )
    loader = torch.utils.data.DataLoader(data.val, batch_size=100, collate_fn=data.collate_fn)
    predicted, true = [], []
    with torch.no_grad():
        for images, labels, _ in loader:
            predicted += model(images).argmax(1).tolist()
            true += labels.tolist()
    scores = {"top1": 100 * sum(p == t for p, t in zip(predicted, true, strict=True)) / len(true)}
    if dataset == "shapes":
        for index, name in enumerate(("relation", "texture", "shape")):
            scores[name] = 100 * sum(class_factors(p)[index] == class_factors(t)[index] for p, t in zip(predicted, true, strict=True)) / len(true)
    return scores


def run_one(name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from effnet.core.scaling import scale
    from effnet.core.zoo import get_spec
    from effnet.train import preset, train

    description, width, depth, resolution = RUNS[name]
    spec = scale(get_spec("efficientnet_b0"), width=width, depth=depth, image_size=resolution, name=name).replace(num_classes=args.classes)
    options = {
        "workers": 0,
        "progress": False,
        "verbose": False,
        "ema_decay": 0.0,
        "dataset": args.dataset,
        "num_classes": args.classes,
        "epochs": args.epochs,
        "train_samples": args.train_samples,
        "val_samples": args.val_samples,
        "batch_size": args.batch_size,
        "eval_every": 1,
        "seed": seed,
    }
    with tempfile.TemporaryDirectory(prefix="effnet-proxy-task-") as tmp:
        result = train(preset("proxy", **options, out_dir=str(Path(tmp) / "run"), resume=False), spec)
        factors = factor_accuracy(result.out_dir, args.dataset, args.classes, resolution, args.val_samples, seed)
    steps_per_epoch = -(-args.train_samples // args.batch_size)
    return {
        "run": name,
        "description": description,
        "seed": seed,
        "dataset": args.dataset,
        "classes": args.classes,
        "resolution": resolution,
        "macs": int(result.macs),
        "params": int(result.params),
        "steps": [steps_per_epoch * (i + 1) for i in range(len(result.history))],
        "val_top1": [row.get("val_top1") for row in result.history],
        "train_top1": result.final.get("train_top1"),
        "final": factors,
        "seconds": round(float(result.seconds), 1),
        "images_per_second": round(float(result.images_per_second), 1),
    }


def write_markdown(rows: list[dict[str, Any]], out: Path, meta: dict[str, Any]) -> None:
    lines = [
        "# Difficulty curves of the proxy task",
        "",
        f"Task `{meta['dataset']}`, {meta['classes']} classes (chance {100 / meta['classes']:.1f}%), {meta['train_samples']} training images, "
        f"{meta['val_samples']} validation images, batch {meta['batch_size']}, recipe `proxy` (AdamW 3e-3, cosine). Machine: {meta['machine']}.",
        "Validation top-1 (%) after each epoch; last columns: the final model's accuracy on each factor of the class",
        "(relation: marker above or below, 2 levels; texture: stripe direction, 2 levels; shape: 1 of classes/4).",
        "",
        "| run | seed | MACs | steps: top-1 % | final top-1 | relation | texture | shape | s | img/s |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        curve = ", ".join(f"{s}: {v:.0f}" for s, v in zip(r["steps"], r["val_top1"], strict=True) if v is not None)
        f = r["final"]
        lines.append(
            f"| {r['run']} | {r['seed']} | {r['macs'] / 1e6:.1f}M | {curve} | {f['top1']:.1f} | {f.get('relation', float('nan')):.1f} | "
            f"{f.get('texture', float('nan')):.1f} | {f.get('shape', float('nan')):.1f} | {r['seconds']:.0f} | {r['images_per_second']:.0f} |"
        )
    lines += ["", "Runs:", ""] + [f"- `{name}`: {RUNS[name][0]}" for name in dict.fromkeys(r["run"] for r in rows)]
    atomic_write_text(out / "proxy_task.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["mini-64px", "mini-128px", "small-64px"], choices=sorted(RUNS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--dataset", default="shapes", choices=("shapes", "synthetic"))
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-samples", type=int, default=1000)
    parser.add_argument("--val-samples", type=int, default=400)
    # 32, not 16: at batch 16 the mini baseline stays near chance for hundreds of steps (README, ablations)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("out/proxy_task"), help="output directory (default: a scratch folder)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "proxy_task.json"
    meta = {k: getattr(args, k) for k in ("dataset", "classes", "epochs", "train_samples", "val_samples", "batch_size")}
    meta["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    stored = json.loads(path.read_text()) if path.exists() else {"runs": []}
    rows = stored["runs"]
    done = {(r["run"], r["seed"], r["dataset"], r["classes"], len(r["steps"]), r["steps"][-1]) for r in rows}
    steps_total = args.epochs * -(-args.train_samples // args.batch_size)
    for name in args.runs:
        for seed in args.seeds:
            if (name, seed, args.dataset, args.classes, args.epochs, steps_total) in done:
                continue
            started = time.perf_counter()
            row = run_one(name, seed, args)
            rows.append(row)
            atomic_write_text(path, json.dumps({"meta": meta, "runs": rows}, indent=1) + "\n")
            print(f"{name} seed {seed}: top-1 {row['final']} in {time.perf_counter() - started:.0f} s", flush=True)
    write_markdown([r for r in rows if r["dataset"] == args.dataset and r["classes"] == args.classes], args.out, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
