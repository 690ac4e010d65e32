"""From scratch on the battery (issue 28, item 4): `effnet train`'s defaults on a folder against a plain AdamW loop.

    python benchmarks/battery/scratch.py --data-root ~/battery-data --sets shapes mnist sign_digits --seeds 0 1 2

Per set and seed, the same network (`--model`, random init, `--resolution`) trained for the same epochs by:

- **effnet train defaults**: `effnet train --data-dir SET --model M --resolution R --epochs E --seed S`, nothing
  else set: the small-folder recipe (`effnet.train.scratch`), as the command resolves it;
- **plain AdamW loop**: the loop of `benchmarks/results/scratch_ablation/` (`common/plain_loops.folder_adamw_loop`):
  torchvision's ImageFolder and transforms (random-resized crops of torchvision's default 0.08-1, flip),
  `torch.optim.AdamW(lr=3e-3)` (weight decay 0.01 on every parameter), cosine over all steps, batch 32, cross
  entropy, on `effnet.create_model(M, num_classes=..., bn_momentum=0.1, drop_path_rate=0)` (the network effnet's run
  trains, without its zero-initialised residual branches) as PyTorch initialises it;
- **plain AdamW loop, issue 28's anchor**: the same loop at the battery's fine-tuning anchor's settings (AdamW 1e-3,
  weight decay 0.05, cosine, batch 16), from scratch.

The bar is the better plain loop by mean over seeds.

`shapes` is the generated shapes task (4 classes: marker above/below x stripes horizontal/vertical) written once as
folders under OUT (`--shapes` training images, a quarter as many validation images) and trained at
`--shapes-resolution` (it needs >= 96 px). Runs go to OUT/trials.json (`common/run_log.py`); a rerun skips those done.
OUT/scratch.md is the table: mean +- 95% t-interval over seeds, effnet - plain paired by seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

EFFNET = "effnet train defaults"
PLAIN = "plain AdamW loop"
PLAIN_ANCHOR = "plain AdamW loop, issue 28's anchor"
# (lr, weight decay, batch): the scratch ablation's loop, and item 2's fine-tuning anchor run from scratch
PLAIN_LOOPS = {PLAIN: (3e-3, 0.01, 32), PLAIN_ANCHOR: (1e-3, 0.05, 16)}
SHAPES = "shapes"


def shapes_folder(out: Path, images: int) -> Path:
    """The 4-class shapes task as OUT/shapes-N/{train,val}/CLASS/*.png (seed 0), written on first use."""
    from effnet.data.shapes import ShapesTask

    root = out / f"{SHAPES}-{images}"
    if not (root / "written").exists():
        for split, count in (("train", images), ("val", images // 4)):
            ShapesTask(split, num_samples=count, num_classes=4, seed=0).write_folder(root)
        (root / "written").write_text("")
    return root


def effnet_run(data_dir: Path, run_dir: Path, *, model: str, resolution: int, epochs: int, seed: int, options: dict[str, Any]) -> dict[str, Any]:
    """`effnet train --data-dir DATA --model M --resolution R --epochs E --seed S` (+ `options`), resolved as the command does."""
    from effnet.train.scratch import describe_scratch, prepare_scratch
    from effnet.train.trainer import train

    shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run of a killed battery: start it again
    given = {"data_dir": str(data_dir), "model": model, "resolution": resolution, "epochs": epochs, "seed": seed}
    given.update(out_dir=str(run_dir), progress=False, workers=0, **options)
    run, plan = prepare_scratch(given)
    result = train(run)
    history = [{"epoch": row["epoch"], "val_top1": row["val_top1"], "val_loss": row["val_loss"], "train_loss": row.get("train_loss")} for row in result.history]
    return {"history": history, "plan": describe_scratch(plan, run.config)}


def plain_run(data_dir: Path, method: str, *, model: str, resolution: int, epochs: int, seed: int) -> dict[str, Any]:
    """A plain AdamW loop (`PLAIN_LOOPS[method]`) on the same network, initialised by PyTorch after `torch.manual_seed(seed)`."""
    import torch
    from common.plain_loops import folder_adamw_loop
    from torchvision import datasets

    import effnet
    from effnet.train.scratch import SCRATCH_RECIPE

    classes = datasets.ImageFolder(str(data_dir / "train")).classes
    torch.manual_seed(seed)
    # the network effnet's run trains (BN momentum 0.1, no drop path), but for its zero-initialised residual branches:
    # at the model's TF BN momentum (0.01) a few hundred steps leave the running statistics behind the weights and the
    # loop's validation sits at chance while its training loss falls
    same = {name: SCRATCH_RECIPE[name] for name in ("bn_momentum", "drop_path_rate")}
    network = effnet.create_model(model, num_classes=len(classes), **same)
    lr, decay, batch = PLAIN_LOOPS[method]
    run = folder_adamw_loop(network, data_dir, resolution=resolution, lr=lr, batch_size=batch, epochs=epochs, seed=seed, crop_min_area=0.0, weight_decay=decay)
    keep = ("epoch", "val_top1", "val_loss", "train_loss")
    return {"history": [{k: row[k] for k in keep} for row in run["history"]], "plan": f"AdamW {lr:g}, weight decay {decay:g}, cosine, batch {batch}"}


def summarise(rows: list[dict[str, Any]]) -> str:
    """Markdown: per half and set, each method's last-epoch top-1, and for effnet's, minus the bar (the better plain
    loop by mean) paired by seed."""
    from effnet.experiments.study.stats import mean_ci

    lines = []
    for half in ("tuning", "confirmation"):
        in_half = [r for r in rows if r["half"] == half]
        if not in_half:
            continue
        lines += [
            f"## {half.capitalize()} half",
            "",
            "| set | model, px, epochs | method | top-1 per seed (seeds) | mean ± 95% | minus the bar (paired) | >= bar - 1? |",
        ]
        lines.append("|---|---|---|---|---:|---:|---|")
        for name in sorted({r["set"] for r in in_half}):
            runs = [r for r in in_half if r["set"] == name]
            top1 = {m: {r["seed"]: r["val_top1"] for r in runs if r["method"] == m} for m in sorted({r["method"] for r in runs})}
            plain = {m: v for m, v in top1.items() if m in PLAIN_LOOPS}
            bar = max(plain, key=lambda m: sum(plain[m].values()) / len(plain[m]), default=None)
            for method, values in top1.items():
                diff, meets = ("(the bar)", "") if method == bar else ("", "")
                seeds = sorted(set(values) & set(top1[bar])) if bar and method not in PLAIN_LOOPS else []
                if seeds:
                    d = mean_ci([values[s] - top1[bar][s] for s in seeds])
                    diff, meets = d.text(1), ("yes" if d.mean >= -1.0 else "no")
                setting = f"{runs[0]['model']}, {runs[0]['resolution']}, {runs[0]['epochs']}"
                per_seed = ", ".join(f"{values[s]:.1f}" for s in sorted(values)) + f" ({', '.join(str(s) for s in sorted(values))})"
                lines.append(f"| {name} | {setting} | {method} | {per_seed} | {mean_ci(list(values.values())).text(1)} | {diff} | {meets} |")
        lines.append("")
    lines.append("Validation top-1 (%) at the last epoch; mean ± 95% t-interval over seeds (one seed: the value alone).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="where fetch.py laid the sets out")
    parser.add_argument("--sets", nargs="+", required=True, help="battery set names, or 'shapes' (generated under --out)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=[EFFNET, *PLAIN_LOOPS], choices=[EFFNET, *PLAIN_LOOPS], metavar="METHOD")
    parser.add_argument("--effnet-option", nargs="*", default=[], metavar="KEY=VALUE", help="a recipe variant (tuning sets): TrainConfig values on top")
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--shapes", type=int, default=1000, help="shapes: training images (validation: a quarter as many)")
    parser.add_argument("--shapes-resolution", type=int, default=96)
    parser.add_argument("--shapes-epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "effnet-battery-scratch")
    args = parser.parse_args(argv)
    import torch
    from common.run_log import RunLog
    from registry import get

    torch.set_num_threads(args.threads)
    options = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.effnet_option)}
    methods = [f"{EFFNET} + {', '.join(f'{k}={v}' for k, v in options.items())}" if m == EFFNET and options else m for m in args.methods]
    args.out.mkdir(parents=True, exist_ok=True)
    log = RunLog(args.out, "battery-scratch", ("set", "method", "seed", "epochs", "resolution", "model"))
    for name in args.sets:
        if name == SHAPES:
            data, half, resolution, epochs = shapes_folder(args.out, args.shapes), "tuning", args.shapes_resolution, args.shapes_epochs
        else:
            data, half, resolution, epochs = args.data_root / name, get(name).half, args.resolution, args.epochs
        for seed in args.seeds:
            for method in methods:
                key = {"set": name, "method": method, "seed": seed, "epochs": epochs, "resolution": resolution, "model": args.model}
                if key in log:
                    continue
                started = time.perf_counter()
                if method in PLAIN_LOOPS:
                    run = plain_run(data, method, model=args.model, resolution=resolution, epochs=epochs, seed=seed)
                else:
                    run_dir = args.out / "runs" / f"{name}-s{seed}-{method.replace(' ', '_')}"
                    run = effnet_run(data, run_dir, model=args.model, resolution=resolution, epochs=epochs, seed=seed, options=options)
                row = {**key, "half": half, "val_top1": run["history"][-1]["val_top1"], "seconds": time.perf_counter() - started, **run}
                log.add(row)
                by_epoch = " ".join(f"{h['val_top1']:.1f}" for h in run["history"])
                print(f"{name} seed {seed} {method}: top-1 by epoch {by_epoch} ({row['seconds']:.0f} s)", flush=True)
    table = summarise(log.rows())
    (args.out / "scratch.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
