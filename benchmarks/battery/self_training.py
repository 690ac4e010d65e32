"""Noisy Student with `effnet noisy-student`'s defaults on battery sets: does the student beat its teacher? (issue 28, item 3)

    python benchmarks/battery/self_training.py --data-root ~/battery-data --sets pets dtd ucmerced --seeds 0 1 2

Per set and seed, a seeded `--labeled-fraction` of each class's training images keeps its labels (at least one per
class) and the rest are given as unlabelled images (kept in class folders, whose names `effnet.experiments.selftrain` uses only
to report pseudo-label accuracy); the set's validation split is the check. `effnet noisy-student` then runs as a user
runs it: pretrained Lite0 teacher fine-tuned on the labelled part, a Lite0 student, every other option its default
(the noise, the student's budget, soft labels, threshold, balancing). Each run gives the teacher's and the student's
top-1 and which of the two the command kept. Rows go to OUT/trials.json (`benchmarks/common/run_log.py`) as they finish (a rerun skips them);
OUT/noisy_student.md is the table: student - teacher paired by seed, mean and 95% t-interval.

Trying a change to the student on the tuning half: `--teachers-from DIR` reuses the teachers an earlier run of this
script trained (DIR/runs/SET-sSEED/run/teacher, on the same seeded split), so every variant's student is compared with
the same teacher; `--student-init teacher` starts the student from that teacher's weights instead of the pretrained
ones; `--option FIELD=JSON` sets any other `NoisyStudentConfig` field (e.g. `budget={"epochs": 20}`, `soft=false`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from registry import get  # noqa: E402

TEACHER = STUDENT = "efficientnet_lite0"


def one_run(
    data: Path,
    work: Path,
    *,
    seed: int,
    fraction: float,
    val_cap: int,
    resolution: int,
    workers: int,
    teacher: Path | None = None,
    student_init: str = "pretrained",
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One `effnet noisy-student` on a seeded labelled/unlabelled split of `data`: its defaults, unless `teacher` (a
    run trained on the same split), `student_init` or `options` (NoisyStudentConfig fields) say otherwise."""
    from noisy_student import split

    from effnet.experiments.selftrain import NoisyStudentConfig, run_noisy_student
    from effnet.train.rundir import RunLayout

    labeled, unlabeled, counts = split(data, work / "data", seed, fraction, val_cap)
    out = work / "run"
    if student_init == "teacher":
        if teacher is None:
            raise SystemExit("--student-init teacher needs --teachers-from (the teacher's weights are the student's start)")
        options = {**(options or {}), "student_pretrained": str(RunLayout(teacher).weights())}
    config = NoisyStudentConfig(
        labeled=str(labeled),
        unlabeled=str(unlabeled),
        teacher=str(teacher) if teacher else TEACHER,
        student=STUDENT,
        out_dir=str(out),
        seed=seed,
        resolution=resolution,
        workers=workers,
        progress=False,
        **(options or {}),
    )
    started = time.perf_counter()
    result = run_noisy_student(config, resume=(out / "trials.json").is_file())
    first, last = result.records[0], result.records[-1]
    return {
        "images": counts,
        "teacher": first["teacher"]["val_top1"],
        "student": last["student"]["val_top1"],
        "kept": result.result.get("kept"),
        "pseudo_label_accuracy": first["pseudo_labels"]["accuracy_all"],
        "student_plan": last["student"]["plan"],
        "noise": last["student"]["noise"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def summarise(rows: list[dict[str, Any]]) -> str:
    from effnet.experiments.study.stats import mean_ci, paired_difference

    lines = [
        "| set | half | labelled / unlabelled / val images | seeds | teacher | student | student - teacher (paired) | kept by the command, per seed | pseudo labels correct |",
        "|---|---|---|---|---:|---:|---:|---|---:|",
    ]
    for name in sorted({r["set"] for r in rows}):
        runs = sorted((r for r in rows if r["set"] == name), key=lambda r: r["seed"])
        teacher = {r["seed"]: r["teacher"] for r in runs}
        student = {r["seed"]: r["student"] for r in runs}
        kept = ", ".join(r["kept"] or "?" for r in runs)
        images = runs[0]["images"]
        pseudo = [r["pseudo_label_accuracy"] for r in runs if r["pseudo_label_accuracy"] is not None]
        lines.append(
            f"| {name} | {runs[0]['half']} | {images['labeled']} / {images['unlabeled']} / {images['val']} | {', '.join(str(s) for s in teacher)} | "
            f"{mean_ci(list(teacher.values())).text(1)} | {mean_ci(list(student.values())).text(1)} | {paired_difference(student, teacher).text(1)} | "
            f"{kept} | {mean_ci(pseudo).text(1) if pseudo else ''} |"
        )
    lines += ["", "Validation top-1 (%), mean ± 95% t-interval over seeds (one seed: the value alone)."]
    return "\n".join(lines) + "\n"


def _earlier_teacher(folders: list[Path], run_name: str) -> Path | None:
    """The teacher an earlier run of this script trained for `run_name` (SET-sSEED), or None when no folders are given."""
    if not folders:
        return None
    for folder in folders:
        teacher = folder / "runs" / run_name / "run" / "teacher"
        if (teacher / "model.safetensors").is_file():
            return teacher
    raise SystemExit(f"no finished teacher for {run_name} under {', '.join(map(str, folders))}: run this script without --teachers-from there first")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="where fetch.py laid the sets out")
    parser.add_argument("--sets", nargs="+", required=True, help="set names")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labeled-fraction", type=float, default=0.15, help="share of each class's training images that keep their labels")
    parser.add_argument("--val-cap", type=int, default=0, help="at most this many validation images per class (0: all the set has)")
    parser.add_argument("--resolution", type=int, default=0, help="training resolution (0: the model's own, the command's default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "effnet-battery-ns", help="trials.json (the runs), the table, the run folders"
    )
    parser.add_argument("--teachers-from", type=Path, nargs="*", default=[], help="earlier --out folders whose teachers the students reuse")
    parser.add_argument(
        "--student-init", choices=("pretrained", "teacher"), default="pretrained", help="the student starts from the pretrained weights or its teacher's"
    )
    parser.add_argument("--option", action="append", default=[], metavar="FIELD=JSON", help='a NoisyStudentConfig field, e.g. budget={"epochs": 20}')
    args = parser.parse_args(argv)
    options = {key: json.loads(value) for key, _, value in (o.partition("=") for o in args.option)}
    import torch

    torch.set_num_threads(args.threads)
    from common.run_log import RunLog

    log = RunLog(args.out, "battery self-training", ("set", "seed"))
    rows = log.rows()
    for name in args.sets:
        entry = get(name)
        for seed in args.seeds:
            if {"set": name, "seed": seed} in log:
                continue
            work = args.out / "runs" / f"{name}-s{seed}"
            teacher = _earlier_teacher(args.teachers_from, f"{name}-s{seed}")
            run = one_run(
                args.data_root / name,
                work,
                seed=seed,
                fraction=args.labeled_fraction,
                val_cap=args.val_cap,
                resolution=args.resolution,
                workers=args.workers,
                teacher=teacher,
                student_init=args.student_init,
                options=options,
            )
            variant = {"teacher_run": str(teacher) if teacher else "", "student_init": args.student_init, "options": options}
            row = {"set": name, "half": entry.half, "seed": seed, "labeled_fraction": args.labeled_fraction, "resolution": args.resolution, **variant, **run}
            log.add(row)
            rows.append(row)
            print(f"{name} seed {seed}: teacher {run['teacher']:.1f} -> student {run['student']:.1f}, kept {run['kept']} ({run['seconds']:.0f} s)", flush=True)
    table = summarise(rows)
    (args.out / "noisy_student.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
