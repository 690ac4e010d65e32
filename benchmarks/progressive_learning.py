"""Progressive learning (EfficientNetV2, Tan & Le 2021, Section 4.2, Algorithm 1) against fixed-size training, with seeds.

The paper's claim: training with the image size growing stage by stage, and regularization growing with it, is
faster at equal or better accuracy. Measured here from scratch on a real image folder (train/CLASS/*, val/CLASS/*) or
on the shapes proxy task, with the same model, data and recipe on every side:

- fixed: --epochs epochs at the final --resolution, with the final regularization (RandAugment --magnitude,
  --mixup, --dropout) throughout.
- progressive: Algorithm 1 in --stages stages (`effnet train --progressive-stages`): the size grows linearly from
  --start-resolution to --resolution, the magnitude, mixup and dropout from --start-* to the final values; it gets as
  many epochs as fit in the fixed run's training time (below).
- progressive-same-epochs (with --same-epochs): Algorithm 1 over the fixed run's epochs, the paper's own framing
  (the same schedule length, cheaper early epochs).
- plain (unless --no-plain): a plain PyTorch loop on the fixed run's network, size, epochs and batch, the baseline
  that tells whether the trainer's recipe helps at all: torchvision's ImageFolder and transforms (random-resized crop
  with the same smallest area, flip; evaluation resized and centre-cropped as effnet's), torch.optim.AdamW at the
  proxy preset's learning rate with cosine annealing, cross entropy; no RandAugment, label smoothing, warm-up or EMA.

The data: a real image folder (--data-dir), or the shapes proxy task (--shapes N: N training and, unless
--shapes-val says otherwise, N/4 validation images of `effnet.data.shapes`, written once as PNG folders under --work
by `ShapesTask.write_folder` and then read like any image folder). The shapes' objects fill the central 3/4 of the
image, so give it --crop-min-area 0.6 (`effnet.data.TRAIN_MIN_AREA["shapes"]`), which every method then uses.

Equal time: before the first run, `calibrate` times training steps at every stage's size and regularization with
the trainer itself (two short runs per size, whose difference drops start-up costs; every size twice, the faster
reading kept), so that every size is timed on the same machine state. A run's calibrated time is its steps x those
seconds per step at their size. The progressive run gets the most epochs whose calibrated time stays within the fixed
run's; one count for every seed, kept in OUT/trials.json. The calibrated clock is untouched by other jobs that
stretch a run's wall clock on a shared machine (a job that ignores the lock); the measured training wall clock (the
trainer's own count: training steps and data loading, evaluations and checkpoints excluded) is reported beside it,
and is the clock to read when the load average stayed at this job's own. Every method evaluates after every epoch, at the final
size, and accuracy is also read at equal elapsed time from these curves. A third cost does not depend on the machine
at all: training images x forward multiply-adds at their size.

Every run is stored in OUT/trials.json (common/run_log.py) when it finishes (a rerun skips finished ones); OUT/progressive_learning.md
summarises them; a rerun with a method added (the plain loop, --same-epochs) trains only that method's runs. On a
shared CPU, take the lock that other experiments take, so that runs do not overlap:

    flock /work/runs/cpu.lock python benchmarks/progressive_learning.py --data-dir /work/data/imagenette10 \\
        --seeds 0 1 2 --out benchmarks/results/progressive_learning
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import effnet
from effnet._io import atomic_write_text
from effnet.core.preprocessing import Preprocessing
from effnet.core.profile import profile_spec
from effnet.core.scaling import scale
from effnet.core.spec import NetSpec
from effnet.core.zoo import resolve_spec
from effnet.data import ShapesTask
from effnet.experiments.study.stats import Interval, mean_ci, paired_difference
from effnet.models.model import build
from effnet.train.config import TrainConfig, preset
from effnet.train.progressive import Stage, schedule, stage_of
from effnet.train.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common.plain_loops import folder_adamw_loop  # noqa: E402
from common.run_log import RunLog  # noqa: E402

FIXED, PROGRESSIVE, SAME_EPOCHS, PLAIN = "fixed", "progressive", "progressive-same-epochs", "plain"
LABELS = {
    FIXED: "fixed size",
    PROGRESSIVE: "progressive, equal time",
    SAME_EPOCHS: "progressive, same epochs",
    PLAIN: "plain PyTorch loop",
}
METHODS = (FIXED, PROGRESSIVE, SAME_EPOCHS, PLAIN)
ELAPSED_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # of the fixed run's training time, for accuracy at equal elapsed time


# -- the setup ------------------------------------------------------------------------------------------------------
def network(args: argparse.Namespace) -> NetSpec:
    """The model to train: --model, narrowed and made shallower by --width and --depth when asked."""
    spec = resolve_spec(args.model)
    if args.width == 1 and args.depth == 1:
        return spec
    return scale(spec, width=args.width, depth=args.depth, name=f"{spec.name}-w{args.width:g}-d{args.depth:g}")


def setup_of(args: argparse.Namespace, spec: NetSpec) -> dict[str, Any]:
    """What defines the comparison; runs made under another setup are not mixed in."""
    return {
        "data": Path(args.data_dir).name,
        "train_cap": args.train_cap,
        "val_cap": args.val_cap,
        "model": spec.name,
        "resolution": args.resolution,
        "start_resolution": args.start_resolution or args.resolution // 2,
        "stages": args.stages,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "crop_min_area": args.crop_min_area,
        "magnitude": [args.start_magnitude, args.magnitude],
        "mixup": [args.start_mixup, args.mixup],
        "dropout": [args.start_dropout, final_dropout(args, spec)],
        "threads": args.threads,
    }


def final_dropout(args: argparse.Namespace, spec: NetSpec) -> float:
    return args.dropout if args.dropout >= 0 else spec.dropout


def base_config(args: argparse.Namespace, spec: NetSpec, *, seed: int, out_dir: Path, **changes: Any) -> TrainConfig:
    """The shared recipe: the proxy preset (AdamW, cosine), RandAugment, from scratch, evaluation after every epoch.
    EMA off: at a few hundred steps the averaged weights trail the raw ones, and evaluating both doubles the cost."""
    options: dict[str, Any] = {
        "dataset": "folder",
        "data_dir": str(args.data_dir),
        "train_samples": args.train_cap,
        "val_samples": args.val_cap,
        "resolution": args.resolution,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "auto_augment": "randaugment",
        "crop_min_area": args.crop_min_area,
        "randaugment_magnitude": args.magnitude,
        "mixup": args.mixup,
        "dropout": final_dropout(args, spec),
        "ema_decay": 0.0,
        "seed": seed,
        "out_dir": str(out_dir),
        "progress": False,
        "verbose": False,
        "checkpoint_minutes": 0.0,
    }
    return preset("proxy", **{**options, **changes})


def progressive_changes(args: argparse.Namespace, epochs: int) -> dict[str, Any]:
    return {
        "epochs": epochs,
        "progressive_stages": args.stages,
        "progressive_start_resolution": args.start_resolution or args.resolution // 2,
        "progressive_start_magnitude": args.start_magnitude,
        "progressive_start_mixup": args.start_mixup,
        "progressive_start_dropout": args.start_dropout,
    }


def stages_of(args: argparse.Namespace, spec: NetSpec, epochs: int) -> list[Stage]:
    """Algorithm 1's stages over `epochs` (the schedule the trainer follows for the same options)."""
    return schedule(
        epochs,
        args.stages,
        resolution=(args.start_resolution or args.resolution // 2, args.resolution),
        magnitude=(args.start_magnitude, args.magnitude),
        mixup=(args.start_mixup, args.mixup),
        dropout=(args.start_dropout, final_dropout(args, spec)),
    )


# -- equal time -----------------------------------------------------------------------------------------------------
def calibrate(args: argparse.Namespace, spec: NetSpec, work: Path) -> dict[str, float]:
    """Seconds per training step at each stage's size and regularization. Per size, two short trainer runs of `short`
    and `short + calibration_steps` steps; their difference leaves out what a run pays once (model, data, first steps,
    the evaluation). The sizes are timed in turn, then again in reverse order, and the faster of the two kept: on a
    shared machine a slow reading means another job, not the step."""
    short = 2
    stages = stages_of(args, spec, args.stages)
    readings: dict[str, list[float]] = {}
    for stage in [*stages, *reversed(stages)]:
        seconds = []
        for steps in (short, short + args.calibration_steps):
            out_dir = work / f"calibrate-{stage.resolution}-{steps}"
            shutil.rmtree(out_dir, ignore_errors=True)
            config = base_config(
                args,
                spec,
                seed=0,
                out_dir=out_dir,
                epochs=1,
                max_steps_per_epoch=steps,
                val_samples=args.batch_size,
                resolution=stage.resolution,
                randaugment_magnitude=stage.randaugment_magnitude,
                mixup=stage.mixup,
                dropout=stage.dropout,
            )
            seconds.append(train(config, spec=spec).history[-1]["seconds"])
            shutil.rmtree(out_dir, ignore_errors=True)
        reading = (seconds[1] - seconds[0]) / args.calibration_steps
        print(f"calibration: {stage.resolution} px, {reading:.3f} s/step", flush=True)
        if reading > 0:  # the longer run no slower than the shorter: noise larger than the steps, not a reading
            readings.setdefault(str(stage.resolution), []).append(reading)
    missing = [str(stage.resolution) for stage in stages if str(stage.resolution) not in readings]
    if missing:
        raise RuntimeError(f"calibration gave no reading at {', '.join(missing)} px; raise --calibration-steps")
    return {size: min(values) for size, values in readings.items()}


def equal_time_epochs(args: argparse.Namespace, spec: NetSpec, per_step: dict[str, float]) -> int:
    """The most progressive epochs whose calibrated training time is within the fixed run's (steps per epoch cancel)."""
    budget = args.epochs * per_step[str(args.resolution)]

    def predicted(epochs: int) -> float:
        return sum((s.end_epoch - s.first_epoch) * per_step[str(s.resolution)] for s in stages_of(args, spec, epochs))

    epochs = args.stages
    while predicted(epochs + 1) <= budget * 1.0001 and epochs < 20 * args.epochs:
        epochs += 1
    return epochs


# -- one run --------------------------------------------------------------------------------------------------------
def run_one(args: argparse.Namespace, spec: NetSpec, method: str, seed: int, epochs: int, work: Path, per_step: dict[str, float]) -> dict[str, Any]:
    out_dir = work / f"{method}-s{seed}-e{epochs}"
    shutil.rmtree(out_dir, ignore_errors=True)
    changes = progressive_changes(args, epochs) if method != FIXED else {"epochs": epochs}
    config = base_config(args, spec, seed=seed, out_dir=out_dir, **changes)
    stages = stages_of(args, spec, epochs) if method != FIXED else None
    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(config, spec=spec)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    macs = {r: profile_spec(result.spec, r).macs for r in {args.resolution, *(s.resolution for s in stages or [])}}
    history, previous_step, image_macs, calibrated = [], 0, 0.0, 0.0
    for row in result.history:
        epoch = row["epoch"] - 1
        resolution = stage_of(stages, epoch).resolution if stages else args.resolution
        steps = row["step"] - previous_step
        image_macs += steps * args.batch_size * macs[resolution]
        calibrated += steps * per_step[str(resolution)]
        previous_step = row["step"]
        history.append(
            {
                "epoch": row["epoch"],
                "stage": stage_of(stages, epoch).index if stages else 0,
                "resolution": resolution,
                "images": steps * args.batch_size,
                "seconds": row["seconds"],  # cumulative training seconds, measured
                "calibrated_seconds": calibrated,  # cumulative steps x calibrated seconds per step at their size
                "image_macs": image_macs,  # cumulative training images x forward MACs at their size
                "train_loss": row["train_loss"],
                "val_top1": row["val_top1"],
                "val_loss": row["val_loss"],
            }
        )
    shutil.rmtree(out_dir, ignore_errors=True)  # checkpoints and weights: megabytes per run, nothing reads them
    return {
        "method": method,
        "seed": seed,
        "epochs": epochs,
        "history": history,
        "train_seconds": result.seconds,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "load_average": [round(x, 2) for x in (*load_before, *os.getloadavg())],  # 1/5/15 min before, then after
        "params": result.params,
        "macs_per_image": {str(r): m for r, m in sorted(macs.items())},
        "stages": [stage_record(s) for s in stages or []],
    }


def stage_record(stage: Stage) -> dict[str, Any]:
    return {k: getattr(stage, k) for k in ("index", "first_epoch", "end_epoch", "resolution", "randaugment_magnitude", "mixup", "dropout")}


def plain_network(args: argparse.Namespace, spec: NetSpec, num_classes: int) -> torch.nn.Module:
    """The network the trainer builds for the fixed run (its dropout, BN momentum and stochastic depth), made the way a
    user would: `effnet.create_model`, or `effnet.models.model.build` on the narrowed spec when --width/--depth ask for one."""
    recipe = base_config(args, spec, seed=0, out_dir=args.work)
    options = {"num_classes": num_classes, "dropout": final_dropout(args, spec), "bn_momentum": recipe.bn_momentum, "drop_path_rate": recipe.drop_path_rate}
    if args.width == 1 and args.depth == 1:
        return effnet.create_model(args.model, **options)
    return build(spec, **options)


def run_plain(args: argparse.Namespace, spec: NetSpec, seed: int, epochs: int) -> dict[str, Any]:
    """The plain PyTorch loop at the final size (common/plain_loops.py's `folder_adamw_loop`) on the network the trainer
    builds, at the proxy preset's learning rate: no RandAugment, label smoothing, warm-up or EMA. Evaluated after every
    epoch at the final size; its clock counts the training steps and their data loading, as the trainer's does."""
    from torchvision import datasets

    torch.manual_seed(seed)
    res, lr = args.resolution, base_config(args, spec, seed=seed, out_dir=args.work).lr
    classes = datasets.ImageFolder(str(Path(args.data_dir) / "train")).classes
    model = plain_network(args, spec, len(classes))
    run = folder_adamw_loop(model, args.data_dir, resolution=res, lr=lr, batch_size=args.batch_size, epochs=epochs, seed=seed, crop_min_area=args.crop_min_area)
    return {"method": PLAIN, "seed": seed, "epochs": epochs, **run, "stages": []}


# -- the summary ----------------------------------------------------------------------------------------------------
# Two clocks: "calibrated_seconds" (steps x the calibration's seconds per step: what the budget was set on, untouched by
# other jobs slowing a run) and "seconds" (the trainer's measured training wall clock).
CLOCKS = {"calibrated_seconds": "calibrated s", "seconds": "measured s"}
Runs = dict[str, dict[int, dict[str, Any]]]  # method -> seed -> run


def final_top1(run: dict[str, Any]) -> float:
    return run["history"][-1]["val_top1"]


def total(run: dict[str, Any], clock: str) -> float:
    return run["history"][-1][clock]


def first_reaching(run: dict[str, Any], threshold: float) -> dict[str, Any] | None:
    """The first epoch's row whose val top-1 reaches `threshold` (None: never)."""
    return next((row for row in run["history"] if row["val_top1"] >= threshold), None)


def top1_at(run: dict[str, Any], seconds: float, clock: str) -> float | None:
    """Val top-1 of the last evaluation at or before `seconds` of training on `clock` (None: none yet, or no such clock)."""
    reached = [row["val_top1"] for row in run["history"] if row[clock] is not None and row[clock] <= seconds * 1.0001]
    return reached[-1] if reached else None


def by_method(runs: list[dict[str, Any]]) -> Runs:
    out: Runs = {}
    for run in runs:
        out.setdefault(run["method"], {})[run["seed"]] = run
    return out


def paired(values: dict[int, float], baseline: dict[int, float]) -> Interval | None:
    """The study's paired difference over the seeds both have; None when they share none (yet)."""
    return paired_difference(values, baseline) if set(values) & set(baseline) else None


def ratio_text(values: dict[int, float], baseline: dict[int, float]) -> str:
    """Per-seed ratio values / baseline, mean ± 95% t-interval."""
    ratios = [values[s] / baseline[s] for s in sorted(set(values) & set(baseline)) if baseline[s]]
    return mean_ci(ratios).text(2) if ratios else "—"


def summarise(runs: list[dict[str, Any]], setup: dict[str, Any], calibration: dict[str, Any], args: argparse.Namespace) -> str:
    methods = by_method(runs)
    fixed = methods.get(FIXED, {})
    order = [m for m in METHODS if m in methods]
    lines = [
        "# Progressive learning against fixed-size training (EfficientNetV2, Algorithm 1)",
        "",
        setup_text(setup, calibration, runs, args),
        "",
        "## Final accuracy and cost",
        "",
        "Val top-1 (%) after the last epoch, mean ± 95% t-interval over seeds; differences and ratios paired by seed. Calibrated s:",
        "training steps x the calibration's seconds per step at their size (the clock the budget is set on; it times the trainer's",
        "steps, so the plain loop has none). Measured s: the training wall clock (evaluations excluded), which other jobs on the",
        "machine stretch. Image-MACs: training images x forward multiply-adds at their size.",
        "",
        "| method | epochs | seeds | val top-1 | minus fixed (paired) | calibrated s | measured s | measured / fixed (paired) | process CPU s | image-MACs (10^12) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    fixed_top1 = {s: final_top1(r) for s, r in fixed.items()}
    fixed_measured = {s: total(r, "seconds") for s, r in fixed.items()}
    for method in order:
        rs = methods[method]
        top1 = {s: final_top1(r) for s, r in rs.items()}
        difference = paired(top1, fixed_top1) if method != FIXED else None
        measured = {s: total(r, "seconds") for s, r in rs.items()}
        lines.append(
            f"| {LABELS[method]} | {epochs_text(rs)} | {len(rs)} | {mean_ci(list(top1.values())).text(1)} | "
            f"{difference.text(1) if difference else '—'} | {mean_text([total(r, 'calibrated_seconds') for r in rs.values()])} | "
            f"{mean_ci(list(measured.values())).text(0)} | {ratio_text(measured, fixed_measured) if method != FIXED else '—'} | "
            f"{mean_ci([r['cpu_seconds'] for r in rs.values()]).text(0)} | "
            f"{statistics.fmean(r['history'][-1]['image_macs'] for r in rs.values()) / 1e12:.2f} |"
        )
    lines += ["", *time_to_accuracy(methods, order, args.margin)]
    for clock in CLOCKS:
        lines += ["", *accuracy_at_elapsed(methods, order, clock)]
    lines += ["", *throughput(methods, order, calibration, args.batch_size), "", *per_epoch(methods, order)]
    lines += ["", "## Reading", "", reading(methods, args.margin)]
    return "\n".join(lines) + "\n"


def mean_text(values: list[float | None]) -> str:
    """The mean, or '—' where a run has no such value (the plain loop on the calibrated clock)."""
    return "—" if None in values else f"{statistics.fmean(values):.0f}"  # type: ignore[arg-type]


def epochs_text(runs: dict[int, dict[str, Any]]) -> str:
    return "/".join(str(e) for e in sorted({r["epochs"] for r in runs.values()}))


def time_to_accuracy(methods: Runs, order: list[str], margin: float) -> list[str]:
    """Time (both clocks) and image-MACs to reach the fixed run's final top-1 minus `margin` points, per seed."""
    fixed = methods.get(FIXED, {})
    lines = [
        "## Time to accuracy",
        "",
        f"Training time until val top-1 first reaches the same seed's fixed-run final top-1 minus {margin:g} points (evaluated after",
        "each epoch, so a time is the end of an epoch). Mean ± 95% t-interval over the seeds that reached it; ratios paired by seed.",
        "",
        "| method | reached | calibrated s | calibrated / fixed | measured s | measured / fixed | image-MACs (10^12) |",
        "|---|---|---|---|---|---|---|",
    ]
    fixed_times: dict[str, dict[int, float]] = {clock: {} for clock in CLOCKS}
    for method in order:
        rows = {seed: first_reaching(run, final_top1(fixed[seed]) - margin) for seed, run in methods[method].items() if seed in fixed}
        reached = {seed: row for seed, row in rows.items() if row is not None}
        if not reached:
            lines.append(f"| {LABELS[method]} | 0 of {len(rows)} | — | — | — | — | — |")
            continue
        times = {clock: {seed: row[clock] for seed, row in reached.items()} for clock in CLOCKS}
        if method == FIXED:
            fixed_times = times
        cells = []
        for clock in CLOCKS:
            if None in times[clock].values():  # the plain loop has no calibrated clock
                cells += ["—", "—"]
                continue
            cells += [mean_ci(list(times[clock].values())).text(0), ratio_text(times[clock], fixed_times[clock]) if method != FIXED else "—"]
        macs = statistics.fmean(row["image_macs"] for row in reached.values()) / 1e12
        lines.append(f"| {LABELS[method]} | {len(reached)} of {len(rows)} | " + " | ".join(cells) + f" | {macs:.2f} |")
    return lines


def accuracy_at_elapsed(methods: Runs, order: list[str], clock: str) -> list[str]:
    """Val top-1 at fractions of each seed's fixed-run training time on `clock`: the curves at equal elapsed time."""
    fixed = methods.get(FIXED, {})
    heads = " | ".join(f"{f:.0%} of fixed's time" for f in ELAPSED_FRACTIONS)
    what = "calibrated" if clock == "calibrated_seconds" else "measured"
    lines = [
        f"## Accuracy at equal elapsed time ({what} clock)",
        "",
        f"Val top-1 (%) of the last evaluation at or before a fraction of the same seed's fixed-run training time, {what}",
        "(mean ± 95% t-interval; '—' where some seed had no evaluation by then). The last column is the equal-budget comparison.",
        "",
        f"| method | {heads} |",
        "|---|" + "---|" * len(ELAPSED_FRACTIONS),
    ]
    for method in order:
        cells = []
        for fraction in ELAPSED_FRACTIONS:
            values = [top1_at(run, fraction * total(fixed[seed], clock), clock) for seed, run in methods[method].items() if seed in fixed]
            known = [v for v in values if v is not None]
            cells.append(mean_ci(known).text(1) if known and len(known) == len(values) else "—")
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return lines


def throughput(methods: Runs, order: list[str], calibration: dict[str, Any], batch_size: int) -> list[str]:
    """Training images per second per stage, measured (mean over seeds) and calibrated, beside the analytic cost."""
    lines = [
        "## Throughput per stage",
        "",
        "Training images per second of each stage: measured (its images over its measured training seconds; mean ± 95%",
        "t-interval over seeds) and calibrated (batch over the calibration's seconds per step), the calibrated speed relative",
        "to the final size, and the forward multiply-adds per image.",
        "",
        "| method | stage | size (px) | epochs | measured images/s | calibrated images/s | calibrated speed vs final size | forward MMACs per image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    per_step = calibration["per_step_seconds"]
    final_size = max(int(size) for size in per_step)
    for method in order:
        runs = list(methods[method].values())
        for stage in sorted({h["stage"] for r in runs for h in r["history"]}):
            speeds = [stage_speeds(run)[stage] for run in runs if stage in stage_speeds(run)]
            rows = [h for h in runs[0]["history"] if h["stage"] == stage]
            size = rows[0]["resolution"]
            calibrated = f"{batch_size / per_step[str(size)]:.1f} | {per_step[str(final_size)] / per_step[str(size)]:.2f}x" if method != PLAIN else "— | —"
            macs = runs[0]["macs_per_image"][str(size)] / 1e6
            lines.append(f"| {LABELS[method]} | {stage + 1} | {size} | {len(rows)} | {mean_ci(speeds).text(1)} | {calibrated} | {macs:.0f} |")
    return lines


def stage_speeds(run: dict[str, Any]) -> dict[int, float]:
    images: dict[int, int] = {}
    seconds: dict[int, float] = {}
    previous = 0.0
    for row in run["history"]:
        images[row["stage"]] = images.get(row["stage"], 0) + row["images"]
        seconds[row["stage"]] = seconds.get(row["stage"], 0.0) + row["seconds"] - previous
        previous = row["seconds"]
    return {stage: images[stage] / seconds[stage] for stage in images}


def per_epoch(methods: Runs, order: list[str]) -> list[str]:
    lines = [
        "## Per epoch",
        "",
        "Val top-1 (%), cumulative calibrated and measured training seconds of each run, epoch by epoch.",
        "",
        "| method | seed | val top-1 by epoch | calibrated s | measured s | 1-min load average before, after |",
        "|---|---|---|---|---|---|",
    ]
    for method in order:
        for seed, run in sorted(methods[method].items()):
            history = run["history"]
            top1 = " ".join(f"{h['val_top1']:.1f}" for h in history)
            calibrated = " ".join("—" if h["calibrated_seconds"] is None else f"{h['calibrated_seconds']:.0f}" for h in history)
            measured = " ".join(f"{h['seconds']:.0f}" for h in history)
            load = f"{run['load_average'][0]:.1f}, {run['load_average'][3]:.1f}"
            lines.append(f"| {LABELS[method]} | {seed} | {top1} | {calibrated} | {measured} | {load} |")
    return lines


def setup_text(setup: dict[str, Any], calibration: dict[str, Any], runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    trainer_runs = [r for r in runs if r["method"] != PLAIN]
    params = trainer_runs[0]["params"] if trainer_runs else 0
    per_step = ", ".join(f"{r} px {s:.3f}" for r, s in sorted(calibration["per_step_seconds"].items(), key=lambda item: int(item[0])))
    load = [r["load_average"][0] for r in runs]
    return "\n".join(
        [
            f"From scratch on `{setup['data']}` ({describe_caps(setup)}), model `{setup['model']}` ({params / 1e6:.2f} M parameters), "
            f"batch {setup['batch_size']}, the proxy preset (AdamW 3e-3, cosine, 0.2 warm-up epochs, BN momentum 0.1), "
            f"random-resized crops of {setup['crop_min_area'] or 0.08:g} to 1 of the image, RandAugment, EMA off, label smoothing 0.1.",
            f"Fixed: {setup['epochs']} epochs at {setup['resolution']} px with RandAugment magnitude {setup['magnitude'][1]:g}, "
            f"mixup {setup['mixup'][1]:g}, dropout {setup['dropout'][1]:g}. "
            f"Progressive: {setup['stages']} stages from {setup['start_resolution']} to {setup['resolution']} px, magnitude "
            f"{setup['magnitude'][0]:g} to {setup['magnitude'][1]:g}, mixup {setup['mixup'][0]:g} to {setup['mixup'][1]:g}, dropout "
            f"{setup['dropout'][0]:g} to {setup['dropout'][1]:g}; evaluation always at {setup['resolution']} px.",
            f"Equal time: the calibration's seconds per training step ({per_step}) gave the progressive run "
            f"{calibration['progressive_epochs']} epochs for the fixed run's {setup['epochs']}.",
            *([plain_text(setup, args)] if any(r["method"] == PLAIN for r in runs) else []),
            *([shapes_text(args)] if args.shapes else []),
            f"Machine: {os.cpu_count()} CPU cores, {setup['threads']} torch threads, no loader workers, torch {torch.__version__}, "
            f"Python {platform.python_version()}; shared with other jobs (1-minute load average at the start of a run: "
            f"{min(load, default=0):.1f} to {max(load, default=0):.1f}; about 2 is this job alone), every run under the shared CPU lock,",
            "which not every job on the machine takes.",
            f"Made with `{command_line()}`; every run is a trial of `trials.json`.",
        ]
    )


def plain_text(setup: dict[str, Any], args: argparse.Namespace) -> str:
    resolution = setup["resolution"]
    resize = Preprocessing().replace(resolution=resolution).resize_size
    return (
        f"Plain PyTorch loop: the fixed run's network (dropout {setup['dropout'][1]:g}, BN momentum 0.1, no stochastic depth) from "
        f"`{'effnet.create_model' if args.width == 1 and args.depth == 1 else 'effnet.models.model.build'}`, {setup['epochs']} epochs at {resolution} px, torchvision's ImageFolder and transforms (RandomResizedCrop "
        f"of {setup['crop_min_area'] or 0.08:g} to 1 of the image, bilinear; horizontal flip; evaluation: resize to {resize} px bicubic, "
        f"centre crop {resolution} px, as effnet's), torch.optim.AdamW at lr 3e-3 (its default weight decay 0.01) with cosine annealing "
        "over all steps, no warm-up, plain cross entropy; no RandAugment, label smoothing, mixup or EMA."
    )


def shapes_text(args: argparse.Namespace) -> str:
    classes = args.shapes_classes
    return (
        f"Data: the shapes task (`effnet.data.shapes`; {classes} classes, chance {100 / classes:.0f}%; 128 px PNGs written once by "
        f"`ShapesTask.write_folder`, seed 0): {args.shapes} training and {args.shapes_val or args.shapes // 4} validation images, "
        "read as an image folder by every method."
    )


def describe_caps(setup: dict[str, Any]) -> str:
    train_cap = f"{setup['train_cap']} training images" if setup["train_cap"] else "all training images"
    val_cap = f"{setup['val_cap']} validation images" if setup["val_cap"] else "all validation images"
    return f"{train_cap}, {val_cap}"


def command_line() -> str:
    return "python benchmarks/progressive_learning.py " + " ".join(sys.argv[1:])


def reading(methods: Runs, margin: float) -> str:
    """The result beside the paper's claim, in words that follow the intervals."""
    claim = (
        "The paper's claim (Tan & Le 2021, Section 4.2, Algorithm 1): progressive learning with adaptive regularization trains "
        "faster at equal or better accuracy."
    )
    fixed = methods.get(FIXED)
    if not fixed or PROGRESSIVE not in methods:
        return claim + " Not enough runs yet to compare."
    fixed_top1 = {s: final_top1(r) for s, r in fixed.items()}
    progressive = methods[PROGRESSIVE]
    top1 = {s: final_top1(r) for s, r in progressive.items()}
    difference = paired(top1, fixed_top1)
    assert difference is not None
    fixed_seconds = {clock: {s: total(r, clock) for s, r in fixed.items()} for clock in CLOCKS}
    seconds = {clock: {s: total(r, clock) for s, r in progressive.items()} for clock in CLOCKS}
    per_seed = ", ".join(f"{top1[s] - fixed_top1[s]:+.1f}" for s in sorted(set(top1) & set(fixed_top1)))
    parts = [
        claim,
        f"Here, given {epochs_text(progressive)} epochs for fixed training's {epochs_text(fixed)} (the most that fit the calibrated budget: "
        f"{ratio_text(seconds['calibrated_seconds'], fixed_seconds['calibrated_seconds'])} of it; measured training wall clock "
        f"{ratio_text(seconds['seconds'], fixed_seconds['seconds'])} of the fixed run's), progressive learning ended at "
        f"{mean_ci(list(top1.values())).text(1)}% against {mean_ci(list(fixed_top1.values())).text(1)}% for fixed-size training: "
        f"{verdict(difference)}; by seed {per_seed}.",
    ]
    reached = {s: first_reaching(r, fixed_top1[s] - margin) for s, r in progressive.items() if s in fixed}
    fixed_reached = {s: first_reaching(fixed[s], fixed_top1[s] - margin) for s in reached}
    times = {s: row["seconds"] for s, row in reached.items() if row is not None}
    baseline = {s: row["seconds"] for s, row in fixed_reached.items() if row is not None}
    if times:
        parts.append(
            f"It reached the same seed's fixed-run final accuracy minus {margin:g} points in {len(times)} of {len(reached)} seeds; in those, "
            f"after {ratio_text(times, baseline)} of the fixed run's measured time to the same point."
        )
    else:
        parts.append(f"It did not reach the fixed run's final accuracy minus {margin:g} points in any seed.")
    speeds = measured_speed_by_size(progressive)
    final_size = max(speeds)
    fixed_speed = statistics.fmean(stage_speeds(r)[0] for r in fixed.values())
    smaller = [size for size in speeds if size < final_size]
    if smaller:
        macs = next(iter(progressive.values()))["macs_per_image"]
        gains = [speeds[size] / fixed_speed for size in smaller]
        savings = [macs[str(final_size)] / macs[str(size)] for size in smaller]
        parts.append(
            f"Its smaller stages trained only {min(gains):.2f}-{max(gains):.2f}x as many images per second as the final size (measured), "
            f"though they need {min(savings):.1f}-{max(savings):.1f}x fewer multiply-adds per image: what a step costs besides the "
            "network (decoding and augmenting the images on the same 2 cores, per-step overheads) does not shrink with the image."
        )
    if SAME_EPOCHS in methods:
        same = methods[SAME_EPOCHS]
        same_difference = paired({s: final_top1(r) for s, r in same.items()}, fixed_top1)
        assert same_difference is not None
        same_ratio = ratio_text({s: total(r, "calibrated_seconds") for s, r in same.items()}, {s: total(r, "calibrated_seconds") for s, r in fixed.items()})
        parts.append(
            f"Over the same epochs (the paper's framing) it took {same_ratio} of the fixed run's calibrated training time and ended {verdict(same_difference)}."
        )
    if PLAIN in methods:
        plain = methods[PLAIN]
        plain_top1 = {s: final_top1(r) for s, r in plain.items()}
        plain_difference = paired(plain_top1, fixed_top1)
        if plain_difference is not None:
            plain_ratio = ratio_text({s: total(r, "seconds") for s, r in plain.items()}, fixed_seconds["seconds"])
            parts.append(
                f"The plain PyTorch loop on the same network, size and epochs ended at {mean_ci(list(plain_top1.values())).text(1)}%, against the "
                f"fixed run (the trainer): {verdict(plain_difference)}, in {plain_ratio} of its measured training time."
            )
    return " ".join(parts)


def measured_speed_by_size(runs: dict[int, dict[str, Any]]) -> dict[int, float]:
    """Each stage's size -> its measured training images per second, mean over seeds."""
    sizes = {row["stage"]: row["resolution"] for run in runs.values() for row in run["history"]}
    return {size: statistics.fmean(stage_speeds(run)[stage] for run in runs.values()) for stage, size in sorted(sizes.items())}


def verdict(difference: Interval) -> str:
    """The paired difference in words: which way it falls and whether its interval excludes zero."""
    text = f"{difference.text(1)} points (paired, {difference.n} seeds)"
    if difference.n < 2:
        return text + ", one seed, no interval"
    if difference.low > 0:
        return text + ", better, the interval above zero"
    if difference.high < 0:
        return text + ", worse, the interval below zero"
    return text + ", the interval spans zero (no difference resolved at this many seeds)"


def shapes_folder(args: argparse.Namespace) -> Path:
    """The shapes task as image folders under --work (train/CLASS/*.png, val/CLASS/*.png), written on first use."""
    val = args.shapes_val or args.shapes // 4
    root = args.work / f"shapes-{args.shapes_classes}classes-{args.shapes}train-{val}val"
    done = root / "written"
    if not done.exists():
        for split, count in (("train", args.shapes), ("val", val)):
            ShapesTask(split, num_samples=count, num_classes=args.shapes_classes, seed=0).write_folder(root)
        done.write_text("")
    return root


# -- the driver -----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data-dir", type=Path, help="train/CLASS/*.jpg and val/CLASS/*.jpg")
    data.add_argument("--shapes", type=int, default=0, help="instead: this many training images of the shapes task, written once under --work")
    parser.add_argument("--shapes-classes", type=int, default=4, help="with --shapes: classes (4: relation x texture)")
    parser.add_argument("--shapes-val", type=int, default=0, help="with --shapes: validation images (0: a quarter of the training images)")
    parser.add_argument("--train-cap", type=int, default=0, help="at most this many training images (a fixed subset; 0: all)")
    parser.add_argument("--val-cap", type=int, default=0, help="at most this many validation images (0: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="efficientnetv2_b0", help="effnet model name (trained from scratch)")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier on --model")
    parser.add_argument("--depth", type=float, default=1.0, help="depth multiplier on --model")
    parser.add_argument("--resolution", type=int, default=96, help="final image size (fixed training's size, evaluation's size)")
    parser.add_argument("--start-resolution", type=int, default=0, help="progressive: the first stage's size (0: half the final)")
    parser.add_argument("--stages", type=int, default=4, help="progressive: stages (the paper's M)")
    parser.add_argument("--epochs", type=int, default=10, help="fixed training's epochs")
    parser.add_argument("--progressive-epochs", type=int, default=0, help="progressive's epochs instead of calibrating (0: calibrate)")
    parser.add_argument("--same-epochs", action="store_true", help="also run progressive learning over the fixed run's epochs")
    parser.add_argument("--no-plain", action="store_true", help="leave out the plain PyTorch loop")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--crop-min-area", type=float, default=0.0, help="smallest random-resized-crop area, both methods (0: 0.08, photos' default)")
    parser.add_argument("--magnitude", type=float, default=9.0, help="final RandAugment magnitude (torchvision's 0-30 scale)")
    parser.add_argument("--start-magnitude", type=float, default=5.0)
    parser.add_argument("--mixup", type=float, default=0.0, help="final mixup alpha (EfficientNetV2-S: 0)")
    parser.add_argument("--start-mixup", type=float, default=0.0)
    parser.add_argument("--dropout", type=float, default=-1.0, help="final dropout (-1: the model's own)")
    parser.add_argument("--start-dropout", type=float, default=0.1)
    parser.add_argument("--calibration-steps", type=int, default=12, help="timed steps per size when calibrating")
    parser.add_argument("--margin", type=float, default=3.0, help="time to accuracy: the fixed run's final top-1 minus this many points")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("runs/progressive_learning"), help="run directories (deleted after each run)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.shapes:
        args.data_dir = shapes_folder(args)
    spec = network(args)
    setup = setup_of(args, spec)
    args.out.mkdir(parents=True, exist_ok=True)
    log = RunLog(args.out, "progressive_learning", ("kind", "setup", "method", "seed", "epochs"))
    rows = [r for r in log.rows() if r.get("setup") == setup]

    def append(row: dict[str, Any]) -> None:
        row["setup"] = setup
        log.add(row)
        rows.append(row)

    calibration = next((r for r in rows if r["kind"] == "calibration"), None)
    if calibration is None:
        per_step = calibrate(args, spec, args.work)
        epochs = args.progressive_epochs or equal_time_epochs(args, spec, per_step)
        calibration = {"kind": "calibration", "per_step_seconds": per_step, "progressive_epochs": epochs, "load_average": os.getloadavg()}
        append(calibration)
    planned = {FIXED: args.epochs, PROGRESSIVE: calibration["progressive_epochs"]}
    if args.same_epochs:
        planned[SAME_EPOCHS] = args.epochs
    if not args.no_plain:
        planned[PLAIN] = args.epochs
    print(f"plan: {', '.join(f'{LABELS[m]} {e} epochs' for m, e in planned.items())}; seeds {args.seeds}", flush=True)
    done = {(r["method"], r["seed"], r["epochs"]) for r in rows if r["kind"] == "run"}
    for seed in args.seeds:
        for method, epochs in planned.items():  # fixed first, so that a seed's pair runs back to back on the same machine state
            if (method, seed, epochs) in done:
                continue
            if method == PLAIN:
                run = run_plain(args, spec, seed, epochs)
            else:
                run = run_one(args, spec, method, seed, epochs, args.work, calibration["per_step_seconds"])
            append({"kind": "run", **run})
            top = " ".join(f"{h['val_top1']:.1f}" for h in run["history"])
            print(
                f"seed {seed} {LABELS[method]}: val top-1 by epoch {top} ({run['train_seconds']:.0f} s training, {run['wall_seconds']:.0f} s wall)", flush=True
            )
    runs = [r for r in rows if r["kind"] == "run" and planned.get(r["method"]) == r["epochs"]]
    summary = summarise(runs, setup, calibration, args)
    atomic_write_text(args.out / "progressive_learning.md", summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
