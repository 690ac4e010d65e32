"""`effnet noisy-student`: argument parsing and printing; the work is `effnet.experiments.selftrain.runner.run_noisy_student`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NamedTuple

from effnet.cli.resume import ResumableOptions
from effnet.experiments.selftrain.recipe import PAPER_NOISE, SMALL_SET_IMAGES, SMALL_SET_NOISE, STUDENT_EPOCH_FACTOR
from effnet.experiments.selftrain.runner import MAY_CHANGE, is_run_dir
from effnet.experiments.trial_store import STATE_FILE

NOISY = ResumableOptions("noisy-student", "noisy-student run", STATE_FILE, may_change=MAY_CHANGE)
NOISE_OPTIONS = ("randaugment_magnitude", "dropout", "drop_path")


def add_selftrain_commands(command: Any) -> None:
    """Register `noisy-student` with the CLI's `command(name, handler, summary, description, epilog)`."""
    p = command(
        "noisy-student",
        run_noisy_student_command,
        "self-training (Noisy Student): a teacher labels unlabelled images, a noised student learns from both",
        "Noisy Student (Xie et al., CVPR 2020) on your images: (1) a teacher trained on the labelled images (given as a\n"
        "run directory, or a model name whose pretrained weights are fine-tuned here first); (2) the un-noised teacher\n"
        "labels every unlabelled image (soft labels by default), images below the confidence threshold are dropped and the\n"
        "classes balanced; (3) an equal-or-larger student trains on labelled and pseudo-labelled images with noise:\n"
        "RandAugment, dropout and stochastic depth, and more pseudo-labelled than labelled images per batch; (4) the student\n"
        "becomes the teacher, --iterations times. Every step is resumable (--resume OUT_DIR); each iteration writes a\n"
        "report (Markdown, JSON, PNG) with both accuracies, the pseudo labels' accuracy where the unlabelled folder has class\n"
        "folders, and the images kept per class. The result (OUT_DIR/best, OUT_DIR/result.json) is the better network on\n"
        "the labelled validation images: a student that does not beat its teacher is reported and the teacher is kept.",
        epilog="examples:\n"
        "  effnet noisy-student --labeled DATA --unlabeled MORE --teacher efficientnet_lite0 --student efficientnet_lite1 --out-dir runs/ns\n"
        "  effnet noisy-student --labeled DATA --unlabeled MORE --teacher runs/mine --student efficientnet_lite0 --iterations 2 --out-dir runs/ns2\n"
        "  effnet noisy-student --resume runs/ns                                # after a kill; --iterations N grows a finished run",
    )
    add = NOISY.add
    add(p, "--labeled", metavar="DIR", path=True, help="labelled image folders: train/CLASS/* and val/CLASS/*, or CLASS/* (a validation fraction is held out)")
    add(p, "--unlabeled", metavar="DIR", path=True, help="unlabelled images: any image files under DIR, recursively")
    add(
        p,
        "--teacher",
        metavar="RUN_OR_MODEL",
        path=is_run_dir,
        help="a training run directory (effnet train/finetune), or a model name: its pretrained weights are fine-tuned on --labeled first",
    )
    add(
        p,
        "--student",
        metavar="MODEL_OR_SPEC",
        path=Path.is_file,
        help="the student: a model name, spec file or block string, as large as the teacher or larger",
    )
    add(p, "--iterations", type=int, default=1, help="teacher -> student rounds; each student teaches the next")
    add(p, "--labels", choices=("soft", "hard"), default="soft", help="soft: the teacher's distribution; hard: its most likely class")
    add(p, "--confidence-threshold", type=float, default=0.3, help="drop pseudo-labelled images whose top probability is lower (the paper's value)")
    add(
        p,
        "--balance",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="balance the classes: duplicate rare ones, keep the most confident of common ones",
    )
    add(p, "--per-class", type=int, default=0, help="balancing target per class", shown="the mean per-class count after filtering")
    add(
        p,
        "--pseudo-label-ratio",
        type=float,
        default=0.0,
        help="pseudo-labelled images per labelled image in each batch",
        shown="the paper's 3, or the pseudo-labelled/labelled proportion when smaller",
    )
    _add_training_options(p)
    add(p, "--label-batch-size", type=int, default=64, help="images per batch when labelling and evaluating")
    add(p, "--chunk-size", type=int, default=1024, help="images per resumable labelling chunk")
    add(p, "--workers", type=int, default=2, help="data-loader worker processes")
    add(p, "--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--out-dir", default=None, help="run directory: state, labels, student runs and reports (default: runs/noisy-student)")
    NOISY.add_resume(p)
    add(p, "--no-progress", dest="progress", action="store_false", default=True, help="no progress bars")


class CommandLineRun(NamedTuple):
    """What the command line asks for: the run's config, whether it continues one, and the options.json payload."""

    config: Any  # NoisyStudentConfig
    resuming: bool
    options: dict[str, Any]


def _add_training_options(p: argparse.ArgumentParser) -> None:
    """The student's noise and every training's length, batch, resolution and further options."""
    add = NOISY.add
    by_size = f"{SMALL_SET_NOISE.describe()} below {SMALL_SET_IMAGES:,} labelled images, the paper's {PAPER_NOISE.describe()} from there"
    add(
        p,
        "--randaugment-magnitude",
        type=float,
        help="student noise: RandAugment magnitude on torchvision's 0-30 scale (0: off)",
        shown="by the labelled set's size",
    )
    add(p, "--dropout", type=float, help="student noise: dropout before the classifier", shown="by the labelled set's size")
    add(p, "--drop-path", type=float, help=f"student noise: stochastic depth of the last block; the defaults: {by_size}", shown="by the labelled set's size")
    add(p, "--no-noise", action="store_true", help="train the student without noise (no RandAugment, dropout or drop path): the paper's ablation")
    add(
        p,
        "--student-pretrained",
        default="auto",
        metavar="WEIGHTS",
        path=Path.is_file,
        help="auto (a named model's pretrained weights, if any), default, none, or a weights file",
    )
    add(p, "--epochs", type=int, default=10, help="epochs of the teacher's training")
    add(
        p,
        "--student-epochs",
        type=int,
        default=0,
        help="epochs of each student's training (over labelled + pseudo-labelled images)",
        shown=f"{STUDENT_EPOCH_FACTOR} x --epochs",
    )
    add(
        p, "--steps", type=int, default=0, help="optimizer steps of each training instead of --epochs (equal budgets for unequal data)", shown="0: use --epochs"
    )
    add(p, "--batch-size", type=int, default=0, help="images per step", shown="from the image count, as for fine-tuning")
    add(p, "--resolution", type=int, default=0, help="training resolution in pixels", shown="each model's own")
    add(p, "--seed", type=int, default=0, help="random seed of every training")
    add(p, "--train-config", metavar="FILE", path=True, help="YAML/JSON file of further TrainConfig options for every training (e.g. lr, optimizer)")


def _config(args: argparse.Namespace) -> CommandLineRun:
    """The NoisyStudentConfig of the command line (after --resume), whether it resumes, and the options.json payload."""
    from effnet.experiments.selftrain.recipe import Budget, Noise
    from effnet.experiments.selftrain.runner import NoisyStudentConfig, NoisyStudentError
    from effnet.train.config import read_config_file

    run = NOISY.resolve(args, default_out="runs/noisy-student")
    v = run.values
    missing = [NOISY.names[name] for name in ("labeled", "unlabeled", "teacher", "student") if not getattr(v, name)]
    if missing:
        raise NoisyStudentError(f"give {', '.join(missing)} (or --resume DIR to continue a run)")
    if v.no_noise and any(name in run.given for name in NOISE_OPTIONS):
        raise NoisyStudentError("--no-noise turns RandAugment, dropout and drop path off; drop it or the noise options")
    noise = Noise(0.0, 0.0, 0.0) if v.no_noise else Noise(v.randaugment_magnitude, v.dropout, v.drop_path)
    if run.from_saved("train_config") and run.saved is not None:
        extra = run.saved.get("train_config_contents", {})
    else:
        extra = read_config_file(v.train_config) if v.train_config else {}
    config = NoisyStudentConfig(
        labeled=v.labeled,
        unlabeled=v.unlabeled,
        teacher=v.teacher,
        student=v.student,
        iterations=v.iterations,
        out_dir=str(run.out_dir),
        soft=v.labels == "soft",
        confidence_threshold=v.confidence_threshold,
        balance=v.balance,
        per_class=v.per_class,
        pseudo_label_ratio=v.pseudo_label_ratio,
        noise=noise,
        student_pretrained=v.student_pretrained,
        budget=Budget(v.epochs, v.steps, v.batch_size, _student_epochs(v.student_epochs, v.epochs, run.saved)),
        resolution=v.resolution,
        seed=v.seed,
        train_options=extra,
        label_batch_size=v.label_batch_size,
        chunk_size=v.chunk_size,
        workers=v.workers,
        device=v.device,
        progress=v.progress,
    )
    return CommandLineRun(config, run.resuming, NOISY.payload(v, train_config_contents=extra))


def _student_epochs(given: int, epochs: int, saved: dict[str, Any] | None) -> int:
    """--student-epochs as given; for a run saved before the option existed, its students' length then: --epochs."""
    if not given and saved is not None and "student_epochs" not in saved.get("options", {}):
        return epochs
    return given


def run_noisy_student_command(args: argparse.Namespace) -> int:
    """`effnet noisy-student`: run or resume, print one line per iteration and where the report is."""
    from effnet.experiments.selftrain.runner import run_noisy_student
    from effnet.train.commands import run_until_stopped

    config, resuming, options = _config(args)
    hint = f"; continue the whole run with `effnet noisy-student --resume {config.out_dir}`"
    result, status = run_until_stopped(lambda: run_noisy_student(config, resume=resuming, options=options), hint)
    if status:
        return status
    from effnet.train.distributed import is_main_process

    if is_main_process():  # under torchrun, one summary
        print(result.summary())
    return 0
