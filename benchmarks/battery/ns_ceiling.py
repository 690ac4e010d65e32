"""How much a Noisy Student run could gain at all: the teacher's recipe trained on every label (issue 28, item 3).

    python benchmarks/battery/ns_ceiling.py --from OUT [OUT ...] --out CEILING

For each finished run of `self_training.py` under the OUT folders (SET-sSEED), the same seeded split's labelled
images and its unlabelled images *with their true labels* (the class folders the split kept them in) train one
network with exactly the teacher's recipe (`effnet.experiments.selftrain.recipe.teacher_config`: the fine-tune
recipe and plan, 10 epochs, the same resolution and seed), checked on the same validation images. That network is
what the student would be with perfect pseudo labels and no noise: the headroom over the teacher is
`ceiling - teacher`, and the share of it the student took is `(student - teacher) / (ceiling - teacher)`.

Rows go to CEILING/trials.json as they finish (a rerun skips them); CEILING/ceiling.md is the table, paired by seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def full_split(data: Path, out: Path) -> tuple[Path, int]:
    """out/train/CLASS (the labelled and the unlabelled images, as links) and out/val (the same validation images)."""
    from noisy_student import _link

    images = 0
    for class_dir in sorted(p for p in (data / "labeled" / "train").iterdir() if p.is_dir()):
        for source in (class_dir, data / "unlabeled" / class_dir.name):
            for path in sorted(source.iterdir()) if source.is_dir() else []:
                _link(path.resolve(), out / "train" / class_dir.name / path.name)
                images += 1
    for class_dir in sorted(p for p in (data / "labeled" / "val").iterdir() if p.is_dir()):
        for path in sorted(class_dir.iterdir()):
            _link(path.resolve(), out / "val" / class_dir.name / path.name)
    return out, images


def ceiling_run(data: Path, work: Path, *, seed: int, resolution: int, workers: int) -> dict[str, Any]:
    """The teacher's recipe on every training image with its true label; top-1 on the split's validation images."""
    from effnet.experiments.selftrain.recipe import Budget, teacher_config
    from effnet.train.prepared import prepare_run
    from effnet.train.rundir import RunLayout
    from effnet.train.trainer import Trainer

    folder, images = full_split(data, work / "data")
    out = work / "run"
    config, line = teacher_config(
        "efficientnet_lite0",
        labeled=str(folder),
        images=images,
        out_dir=str(out),
        budget=Budget(),
        seed=seed,
        resolution=resolution,
        extra={"workers": workers, "progress": False},
    )
    if not RunLayout(out).finished():
        print(line, flush=True)
        Trainer(prepare_run(config)).run()
    summary = json.loads((out / "summary.json").read_text())
    return {"images": images, "ceiling": summary["final"]["val_top1"], "plan": line}


def summarise(rows: list[dict[str, Any]]) -> str:
    from effnet.experiments.study.stats import mean_ci, paired_difference

    lines = [
        "| set | seeds | teacher (15% of labels) | student | every label (the ceiling) | ceiling - teacher | student - teacher | share of the headroom taken |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in sorted({r["set"] for r in rows}):
        runs = sorted((r for r in rows if r["set"] == name), key=lambda r: r["seed"])
        by = {key: {r["seed"]: r[key] for r in runs} for key in ("teacher", "student", "ceiling")}
        headroom = sum(by["ceiling"].values()) - sum(by["teacher"].values())
        gained = sum(by["student"].values()) - sum(by["teacher"].values())
        share = f"{100 * gained / headroom:.0f}%" if headroom > 0 else "no headroom"
        lines.append(
            f"| {name} | {', '.join(str(s) for s in by['teacher'])} | {mean_ci(list(by['teacher'].values())).text(1)} | "
            f"{mean_ci(list(by['student'].values())).text(1)} | {mean_ci(list(by['ceiling'].values())).text(1)} | "
            f"{paired_difference(by['ceiling'], by['teacher']).text(1)} | {paired_difference(by['student'], by['teacher']).text(1)} | {share} |"
        )
    lines += ["", "Validation top-1 (%), mean ± 95% t-interval over seeds, differences paired by seed; the share is of the mean headroom."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="sources", type=Path, nargs="+", required=True, help="self_training.py --out folders")
    parser.add_argument("--sets", nargs="*", default=[], help="only these sets (default: every finished run there)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from common.run_log import RunLog

    log = RunLog(args.out, "battery noisy-student ceiling", ("set", "seed"))
    rows = log.rows()
    for source in args.sources:
        finished = json.loads((source / "trials.json").read_text())["trials"]
        for trial in finished:
            run = trial["result"]
            if (args.sets and run["set"] not in args.sets) or {"set": run["set"], "seed": run["seed"]} in log:
                continue
            name = f"{run['set']}-s{run['seed']}"
            work = args.out / "runs" / name
            ceiling = ceiling_run(source / "runs" / name / "data", work, seed=run["seed"], resolution=run["resolution"], workers=args.workers)
            row = {key: run[key] for key in ("set", "half", "seed", "resolution", "teacher", "student")} | ceiling
            log.add(row)
            rows.append(row)
            print(f"{name}: teacher {run['teacher']:.1f}, student {run['student']:.1f}, every label {ceiling['ceiling']:.1f}", flush=True)
    table = summarise(rows)
    (args.out / "ceiling.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
