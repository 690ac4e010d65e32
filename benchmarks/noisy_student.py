"""The controlled experiment of issue 16: does a noised student beat its teacher, and does the noise matter?

From a labelled image-folder set DATA (train/CLASS/*, val/CLASS/*), each seed hides the labels of most of the
training split: per class, a seeded --labeled-fraction keeps its labels and the rest become "unlabelled" images
(kept in class folders, whose names `effnet.experiments.selftrain` uses only to report pseudo-label accuracy). Three runs
per seed, every training the same number of optimizer steps at the same batch size:

  (a) the teacher: pretrained --teacher fine-tuned on the labelled part only (`effnet noisy-student`'s step 1);
  (b) a student without noise: (a) labels the rest, the student trains on labelled + pseudo-labelled images
      with RandAugment, dropout and drop path off (crops and flips stay);
  (c) the Noisy Student: the same data, with the paper's noise.

(b) and (c) share (a) as their teacher. (p), the simplest honest baseline: a plain PyTorch loop (finetune_real.py's:
pretrained model, zero head, SGD 0.01, momentum 0.9, BN training) on the labelled part, the same steps and batch.
With --milder-noise, (d) is (c) with weaker noise (not in the paper: at a small
training budget the paper's noise may be more than a student can learn through). The table gives each run's top-1 on the validation split (mean and 95%
t-interval over seeds) and the paired differences, with the paper's claim beside them. Everything is resumable:
rerun the same command after a kill; finished seeds are read back from OUT/results.jsonl.

    python benchmarks/noisy_student.py --data /work/data/flowers5 --seeds 0 1 2 --out benchmarks/results/noisy_student
    python benchmarks/noisy_student.py --synthetic 2000 --seeds 0 1 2 --out runs/ns-synthetic --work runs/ns-synthetic   # the shapes proxy task (32 classes) as image folders

The defaults fit 2 CPU cores (pretrained Lite0 at 128 px, 150 steps of 16 images per training); scale up with
--resolution, --steps, --batch-size, --student, --iterations.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from effnet._io import atomic_write_text
from effnet.experiments.selftrain import PAPER_NOISE, Budget, Noise, NoisyStudentConfig, run_noisy_student
from effnet.experiments.study.stats import mean_ci, paired_difference

RUNS = (("a", "(a) teacher, labelled part only"), ("b", "(b) student without noise"), ("c", "(c) Noisy Student"))
PLAIN_RUN = ("p", "(p) plain PyTorch loop, labelled part only")
CLAIMS = {
    "p": "(the simplest baseline: SGD 0.01, BN training, same steps)",
    "a": "the baseline",
    "b": "gains less than (c): the paper's ablation removes the student's noise and loses accuracy",
    "c": "beats its teacher (EfficientNet-L2 reaches 88.4% top-1 on ImageNet this way)",
    "d": "(not in the paper: the same method with weaker noise)",
}
DIFFERENCES = (("c", "a", "> 0: the student beats the teacher"), ("c", "b", "> 0: noise matters"), ("b", "a", "smaller than (c) - (a)"))


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        return
    try:
        target.symlink_to(source.resolve())
    except OSError:  # no symlinks here (some file systems): copy
        import shutil

        shutil.copyfile(source, target)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def split(data: Path, out: Path, seed: int, fraction: float, val_cap: int) -> tuple[Path, Path, dict[str, int]]:
    """out/labeled/{train,val}/CLASS and out/unlabeled/CLASS as links: per class a seeded `fraction` of train keeps its label."""
    counts = {"labeled": 0, "unlabeled": 0, "val": 0}
    for class_dir in sorted(p for p in (data / "train").iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _files(class_dir)
        random.Random(f"{seed}:{class_dir.name}").shuffle(files)
        keep = max(1, round(fraction * len(files)))
        for path in files[:keep]:
            _link(path, out / "labeled" / "train" / class_dir.name / path.name)
        for path in files[keep:]:
            _link(path, out / "unlabeled" / class_dir.name / path.name)
        val = _files(data / "val" / class_dir.name)
        if val_cap and len(val) > val_cap:  # evenly spaced, the same for every seed
            val = [val[i * len(val) // val_cap] for i in range(val_cap)]
        for path in val:
            _link(path, out / "labeled" / "val" / class_dir.name / path.name)
        counts["labeled"] += keep
        counts["unlabeled"] += len(files) - keep
        counts["val"] += len(val)
    return out / "labeled", out / "unlabeled", counts


def synthetic_folders(out: Path, train: int, classes: int) -> Path:
    """The shapes proxy task (effnet.data.shapes, which small networks learn at batch 32) written as PNG folders:
    `train` training and train/4 validation images."""
    from effnet.data import ShapesTask

    if (out / "done").is_file():
        return out
    for split_name, count in (("train", train), ("val", max(classes, train // 4))):
        ShapesTask(split_name, num_samples=count, num_classes=classes, seed=0).write_folder(out)
    (out / "done").write_text("")
    return out


def _share_first_labels(source: Path, out: Path) -> None:
    """(b) and (d) have (c)'s teacher: copy its labels of iteration 1, which `label_images` then finds complete (same fingerprint)."""
    import shutil

    for name in ("labels.jsonl", "labels.json"):
        if (source / "iter1" / name).is_file() and not (out / "iter1" / name).exists():
            (out / "iter1").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / "iter1" / name, out / "iter1" / name)


def plain_baseline(args: argparse.Namespace, data: Path, seed: int) -> float:
    """(p): the plain fine-tuning loop (common/plain_loops.py) on the labelled part of `seed`'s split, args.steps steps of args.batch_size images."""
    import math

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common.plain_loops import MODEL, PLAIN, plain_loop

    if args.teacher != MODEL or args.batch_size != PLAIN["finetune"]["batch"]:
        raise SystemExit(f"the plain loop baseline is {MODEL} at batch {PLAIN['finetune']['batch']}; use --no-plain-loop for other teachers or batches")
    labeled, _, counts = split(data, Path(args.work) / f"seed{seed}" / "data", seed, args.labeled_fraction, args.val_cap)
    epochs = math.ceil(args.steps / max(1, counts["labeled"] // args.batch_size))
    run = plain_loop(
        labeled, mode="finetune", epochs=epochs, seed=seed, train_cap=None, val_cap=None, workers=args.workers, resolution=args.resolution, max_steps=args.steps
    )
    return run["history"][-1]["val_top1"]


def one_seed(args: argparse.Namespace, data: Path, seed: int) -> dict[str, Any]:
    """Runs (a), (b), (c) for one seed (each resumed if a run directory is there)."""
    root = Path(args.work) / f"seed{seed}"
    labeled, unlabeled, counts = split(data, root / "data", seed, args.labeled_fraction, args.val_cap)
    common = {
        "labeled": str(labeled),
        "unlabeled": str(unlabeled),
        "student": args.student,
        "iterations": args.iterations,
        "budget": Budget(steps=args.steps, batch_size=args.batch_size),
        "resolution": args.resolution,
        "seed": seed,
        "confidence_threshold": args.threshold,
        "ratio": args.ratio,
        "workers": args.workers,
        "device": args.device,
        "progress": False,
    }
    started = time.perf_counter()
    arms = [("c", args.teacher, PAPER_NOISE), ("b", str(root / "c" / "teacher"), Noise(0.0, 0.0, 0.0))]
    if args.milder_noise:  # (d): the same run with weaker noise, sharing (c)'s teacher and pseudo labels' source
        arms.append(("d", str(root / "c" / "teacher"), Noise(*args.milder_noise)))
    runs = {}
    for key, teacher, noise in arms:
        out = root / key
        if key != "c":
            _share_first_labels(root / "c", out)
        config = NoisyStudentConfig(teacher=teacher, noise=noise, out_dir=str(out), **common)
        runs[key] = run_noisy_student(config, resume=(out / "trials.json").is_file()).records
    noisy, plain = runs["c"], runs["b"]
    row = {
        "seed": seed,
        "images": counts,
        "a": noisy[0]["teacher"]["val_top1"],
        "b": plain[-1]["student"]["val_top1"],
        "c": noisy[-1]["student"]["val_top1"],
        "pseudo_label_accuracy": noisy[0]["pseudo_labels"]["accuracy_all"],
        "selected": noisy[0]["pseudo_labels"]["selected"],
        "plan": noisy[-1]["student"]["plan"],
        "plan_no_noise": plain[-1]["student"]["plan"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    if "d" in runs:
        row.update(d=runs["d"][-1]["student"]["val_top1"], noise_d=runs["d"][-1]["student"]["noise"])
    return row


def _runs(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    runs = [PLAIN_RUN, *RUNS] if all("p" in r for r in rows) else list(RUNS)
    if all("d" in r for r in rows):
        runs.append(("d", f"(d) Noisy Student, milder noise: {rows[0]['noise_d']}"))
    return runs


def _differences(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    more = (("d", "a", "(the student beats the teacher?)"), ("d", "b", "(milder noise against none)")) if all("d" in r for r in rows) else ()
    plain = (
        (("a", "p", "(effnet's teacher against the plain loop)"), ("c", "p", "(the Noisy Student against the plain loop)"))
        if all("p" in r for r in rows)
        else ()
    )
    return [*DIFFERENCES, *more, *plain]


def summary(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The table's numbers as JSON: per run and per paired difference, mean, 95% half-width, std and seeds."""
    by_seed = {key: {r["seed"]: r[key] for r in rows} for key, _ in _runs(rows)}
    return {
        "setup": {k: v for k, v in vars(args).items() if k not in ("workers", "device", "out", "work")},
        "seeds": [r["seed"] for r in rows],
        "runs": {key: {"name": name, "claim": CLAIMS[key], **mean_ci(list(by_seed[key].values())).to_dict()} for key, name in _runs(rows)},
        "differences": {f"{x}-{y}": {"claim": claim, **paired_difference(by_seed[x], by_seed[y]).to_dict()} for x, y, claim in _differences(rows)},
        "pseudo_label_accuracy": mean_ci([r["pseudo_label_accuracy"] for r in rows]).to_dict() if rows[0]["pseudo_label_accuracy"] is not None else None,
    }


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The Markdown table: each run's top-1 (mean ± 95% CI over seeds), the paired differences, the paper's claim beside them."""
    n = len(rows)
    lines = [
        f"Noisy Student, controlled: {args.data or f'the shapes proxy task ({args.synthetic} images, {args.synthetic_classes} classes)'}, {100 * args.labeled_fraction:g}% of the training "
        f"labels kept; teacher {args.teacher}, student {args.student}, {args.resolution} px, {args.steps} steps of {args.batch_size} images "
        f"per training, {args.iterations} iteration(s), {n} seeds ({', '.join(str(r['seed']) for r in rows)}; 95% t-intervals).",
        "",
        "| run | top-1 % | per seed | the paper's claim |",
        "|---|---:|---|---|",
    ]
    for key, name in _runs(rows):
        lines.append(f"| {name} | {mean_ci([r[key] for r in rows]).text(2)} | {' / '.join(f'{r[key]:.1f}' for r in rows)} | {CLAIMS[key]} |")
    by_seed = {key: {r["seed"]: r[key] for r in rows} for key, _ in _runs(rows)}
    for first, second, claim in _differences(rows):
        difference = paired_difference(by_seed[first], by_seed[second])
        per_seed = " / ".join(f"{by_seed[first][s] - by_seed[second][s]:+.1f}" for s in sorted(by_seed[first]))
        lines.append(f"| ({first}) - ({second}), paired by seed | {difference.text(2)} | {per_seed} | {claim} |")
    pseudo = [r["pseudo_label_accuracy"] for r in rows if r["pseudo_label_accuracy"] is not None]
    if pseudo:
        lines += ["", f"The teacher's pseudo labels were {mean_ci(pseudo).text(1)}% correct (hidden truth); {rows[0]['plan']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="image folders DATA/train/CLASS and DATA/val/CLASS")
    source.add_argument("--synthetic", type=int, metavar="N", help="use the shapes proxy task, written as N training images")
    parser.add_argument(
        "--synthetic-classes",
        type=int,
        default=32,
        help="the shapes task's classes (4: relation x texture; every 4 more add a shape; with 4 or 16 the teacher alone reaches 100%%)",
    )
    parser.add_argument("--labeled-fraction", type=float, default=0.1, help="share of each class's training images that keep their labels")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher", default="efficientnet_lite0", help="a model name with pretrained weights (fine-tuned on the labelled part)")
    parser.add_argument("--student", default="efficientnet_lite0", help="model name or spec, equal to or larger than the teacher")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps of every training (the equal budget)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=0.3, help="confidence threshold of the pseudo labels")
    parser.add_argument("--ratio", type=float, default=0.0, help="pseudo-labelled images per labelled one in a batch (0: the default)")
    parser.add_argument("--val-cap", type=int, default=200, help="at most this many validation images per class (0: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--milder-noise",
        type=float,
        nargs=3,
        metavar=("MAGNITUDE", "DROPOUT", "DROP_PATH"),
        help="also run (d): the Noisy Student with this RandAugment magnitude, dropout and drop path",
    )
    parser.add_argument("--no-plain-loop", action="store_true", help="skip (p), the plain PyTorch loop on the labelled part")
    parser.add_argument("--report-only", action="store_true", help="write the table of the seeds finished so far, train nothing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared: 1 by default)")
    parser.add_argument("--out", default="out/noisy_student", help="(default: a scratch folder) results: the table (Markdown) and per-seed rows (JSON lines)")
    parser.add_argument("--work", default="runs/noisy_student_experiment", help="run directories, the split's image links, checkpoints (not for git)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else synthetic_folders(Path(args.work) / f"shapes{args.synthetic_classes}", args.synthetic, args.synthetic_classes)
    results_file = out / "results.jsonl"
    done = {}
    if results_file.is_file():
        done = {row["seed"]: row for row in map(json.loads, results_file.read_text().splitlines())}
    rows = []
    for seed in args.seeds:
        if args.report_only:
            rows += [done[seed]] if seed in done else []
            continue
        if seed in done and "p" not in done[seed] and not args.no_plain_loop:  # (p) added to a finished seed
            done[seed]["p"] = plain_baseline(args, data, seed)
            atomic_write_text(results_file, "".join(json.dumps(r) + "\n" for r in done.values()))
        if seed not in done or (args.milder_noise and "d" not in done[seed]):  # finished runs are read back, not redone
            row = one_seed(args, data, seed)
            if not args.no_plain_loop:
                row["p"] = plain_baseline(args, data, seed)
            if seed in done:  # (d) added to a finished seed: the seconds of all its runs
                row["seconds"] = round(row["seconds"] + done[seed]["seconds"], 1)
            done[seed] = row
            atomic_write_text(results_file, "".join(json.dumps(r) + "\n" for r in done.values()))
            print(f"seed {seed}: " + "  ".join(f"({k}) {row[k]:.2f}" for k in "pabcd" if k in row) + f"  ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
        rows.append(done[seed])
    if not rows:
        raise SystemExit(f"no finished seed in {results_file} yet; run without --report-only")
    text = table(rows, args)
    missing = [seed for seed in args.seeds if seed not in done]
    if missing:
        text = f"**Incomplete: seed(s) {', '.join(map(str, missing))} not finished yet**; the same command without --report-only finishes them.\n\n" + text
    atomic_write_text(out / "noisy_student.md", text)
    atomic_write_text(out / "noisy_student.json", json.dumps(summary(rows, args), indent=1) + "\n")
    print(text)
    print(f"per-seed rows: {results_file}; per-iteration reports: {args.work}/seed*/c/iter*/report.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
