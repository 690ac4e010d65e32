"""Fine-tuning on real photo folders: `effnet finetune`'s defaults against a plain PyTorch loop, with seeds.

The plain loop is the simplest honest baseline (issue 11): effnet's pretrained Lite0 with a
zero-initialised k-class head, effnet's own train/val transforms without AutoAugment, SGD at
lr 0.01 with momentum 0.9, batch 16, BatchNorm in train mode, cross-entropy. Both sides use
the same images, epochs, threads and loader workers. Runs are stored in OUT/trials.json (common/run_log.py) as
they finish (a rerun skips finished ones); OUT/finetune_real.md summarises them.

    python benchmarks/finetune_real.py --data-root /path/to/datasets --datasets ants_bees flowers \\
        --seeds 0 1 2 --epochs 3 --train-cap 400 --val-cap 300 --out benchmarks/results/finetune_real

Each dataset is a folder DATA_ROOT/NAME with train/CLASS/*.jpg and val/CLASS/*.jpg.
`--variant key=value ...` runs effnet with changed options instead (for recipe experiments).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import effnet
from effnet.experiments.study.stats import mean_ci
from effnet.train.config import preset
from effnet.train.finetune import describe, prepare_finetune
from effnet.train.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common.plain_loops import MODEL, plain_loop  # noqa: E402
from common.run_log import RunLog  # noqa: E402


def effnet_run(
    data_dir: Path,
    out_dir: Path,
    *,
    mode: str,
    epochs: int,
    seed: int,
    train_cap: int | None,
    val_cap: int | None,
    workers: int,
    variant: dict,
    resolution: int | None = None,
) -> dict:
    """finetune: `effnet finetune --dataset folder --data-dir DIR --epochs E --seed S` through the Python API;
    scratch: `effnet train --preset proxy --model efficientnet_lite0 ...` with the same data; `variant` on top."""
    given = {"dataset": "folder", "data_dir": str(data_dir), "epochs": epochs, "seed": seed, "out_dir": str(out_dir), "progress": False, "workers": workers}
    given.update({"train_samples": train_cap or 0, "val_samples": val_cap or 0, "resolution": resolution or 0, **variant})
    if mode == "finetune":
        run, plan = prepare_finetune(given)  # the prepared run: its folder scanned once, for the plan and the training
        line, images = describe(plan, run.config), plan.images
    else:
        run, line, images = preset("proxy", model=MODEL, **given), "effnet train --preset proxy", None
    started = time.perf_counter()
    result = train(run)
    history = [
        {"epoch": row["epoch"], "val_top1": row["val_top1"], "val_loss": row["val_loss"], "ema_val_top1": row.get("ema_val_top1")} for row in result.history
    ]
    return {"history": history, "plan": line, "seconds": time.perf_counter() - started, "train_images": images}


def summarise(rows: list[dict[str, Any]]) -> str:
    """Markdown: per dataset and method, val top-1 per epoch (mean +- 95% CI over seeds), and the paired difference."""
    lines = ["| dataset | method | seeds | " + " | ".join(f"epoch {e}" for e in _epochs(rows)) + " | s/run (wall, machine shared) |", ""]
    lines[1] = "|" + "---|" * (len(_epochs(rows)) + 4)
    for dataset in sorted({r["dataset"] for r in rows}):
        for method in sorted({r["method"] for r in rows if r["dataset"] == dataset}):
            runs = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
            cells = []
            for epoch in _epochs(rows):
                values = [h["val_top1"] for r in runs for h in r["history"] if h["epoch"] == epoch]
                cells.append(mean_ci(values).text(1) if values else "")
            seconds = statistics.fmean(r["history"][-1].get("seconds", r.get("seconds", 0)) or r.get("seconds", 0) for r in runs)
            lines.append(f"| {dataset} | {method} | {len(runs)} | " + " | ".join(cells) + f" | {seconds:.0f} |")
    return "\n".join(lines + ["", paired_differences(rows)])


def paired_differences(rows: list[dict[str, Any]]) -> str:
    """Markdown: each method minus the plain loop at the last epoch, paired by seed (mean +- 95% CI)."""
    last = {(r["dataset"], r["method"], r["seed"]): r["history"][-1]["val_top1"] for r in rows}
    lines = ["| dataset | method | minus | seeds | paired difference, last epoch |", "|---|---|---|---|---|"]
    for dataset, method in sorted({(d, m) for d, m, _ in last if not m.startswith("plain")}):
        for baseline in sorted({m for d, m, _ in last if d == dataset and m.startswith("plain")}):
            seeds = sorted(s for d, m, s in last if d == dataset and m == method and (d, baseline, s) in last)
            if seeds:
                difference = mean_ci([last[dataset, method, s] - last[dataset, baseline, s] for s in seeds])
                lines.append(f"| {dataset} | {method} | {baseline} | {', '.join(map(str, seeds))} | {difference.text(1)} |")
    return "\n".join(lines)


def _epochs(rows: list[dict[str, Any]]) -> list[int]:
    return sorted({h["epoch"] for r in rows for h in r["history"]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--mode", choices=("finetune", "scratch"), default="finetune", help="fine-tune pretrained Lite0, or train it from scratch")
    parser.add_argument("--resolution", type=int, default=0, help="training resolution (0: the model's, 224)")
    parser.add_argument("--train-cap", type=int, default=0, help="at most this many training images per dataset (a fixed subset; 0: all)")
    parser.add_argument("--val-cap", type=int, default=0, help="at most this many validation images (0: all)")
    parser.add_argument("--methods", nargs="+", default=["effnet", "plain"], help="effnet (finetune defaults) and/or plain (the baseline loop)")
    parser.add_argument("--variant", nargs="*", default=[], metavar="KEY=VALUE", help="options changed on the effnet side (JSON values)")
    parser.add_argument("--label", default="", help="method name for the effnet side (default: effnet, or effnet+variant)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variant = {k: json.loads(v) if v[:1] in '0123456789-[{tfn"' else v for k, v in (item.split("=", 1) for item in args.variant)}
    label = args.label or ("effnet" + "".join(f" {k}={v}" for k, v in variant.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    log = RunLog(args.out, "finetune_real", ("dataset", "method", "seed", "epochs"))
    for dataset in args.datasets:
        for seed in args.seeds:
            for method in args.methods:
                name = label if method == "effnet" else ("plain SGD loop" if args.mode == "finetune" else "plain Adam loop")
                if {"dataset": dataset, "method": name, "seed": seed, "epochs": args.epochs} in log:
                    continue
                caps = {
                    "train_cap": args.train_cap or None,
                    "val_cap": args.val_cap or None,
                    "workers": args.workers,
                    "mode": args.mode,
                    "resolution": args.resolution or None,
                }
                started = time.perf_counter()
                if method == "plain":
                    run = plain_loop(args.data_root / dataset, epochs=args.epochs, seed=seed, **caps)
                else:
                    out_dir = args.out / "runs" / f"{dataset}-{effnet.data.stable_seed(name) % 10**8}-s{seed}-e{args.epochs}"
                    if out_dir.exists():
                        import shutil

                        shutil.rmtree(out_dir)
                    run = effnet_run(args.data_root / dataset, out_dir, epochs=args.epochs, seed=seed, variant=variant, **caps)
                run.update(dataset=dataset, method=name, seed=seed, epochs=args.epochs, wall_seconds=time.perf_counter() - started)
                log.add(run)
                top = " ".join(f"{h['val_top1']:.1f}" for h in run["history"])
                print(f"{dataset} seed {seed} {name}: val top-1 by epoch {top} ({run['wall_seconds']:.0f} s)", flush=True)
    summary = summarise([r for r in log.rows() if r["epochs"] == args.epochs])
    (args.out / "finetune_real.md").write_text(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
