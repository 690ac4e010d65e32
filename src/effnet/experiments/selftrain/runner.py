"""Noisy Student, iterated (Xie et al., CVPR 2020): label, select, train a noised student; the student becomes the teacher.

A run directory holds everything, and its `trials.json` says which step of which iteration is done, so a
killed run continues where it stopped (`resume=True`): labelling resumes by chunks, the student's
training from its last checkpoint (the trainer's own resume), finished steps are not redone.

    OUT/options.json, trials.json       the command's options; the steps done
    OUT/teacher/                        the teacher trained on the labelled images (when `teacher` names a model)
    OUT/iterK/labels.jsonl (+ .json)    the teacher's labels of every unlabelled image
    OUT/iterK/selected.jsonl (+ .json)  what the student trains on: confidence threshold, class balancing
    OUT/iterK/student/                  the student's training run (it labels iteration K+1)
    OUT/iterK/report.md, .json, .png    accuracies, pseudo-label accuracy, images kept per class
    OUT/report.md, .json, .png          all iterations
    OUT/result.json, OUT/best/          the result: the better of the first teacher and the students by top-1 on the labelled
                                        validation split (a student is kept only when it beats the teacher), and a copy of its
                                        run's weights and metadata; every network's own run stays where it was trained
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from effnet._io import absolute_path
from effnet._lock import lock_directory
from effnet.data import DataError, find_images, image_folder_splits
from effnet.experiments.saved_options import refuse_changed
from effnet.experiments.selftrain.balance import PAPER_THRESHOLD, select, write_selection
from effnet.experiments.selftrain.labels import LABELS_NAME, label_images, read_labels
from effnet.experiments.selftrain.recipe import Budget, Network, Noise, resolve_network, student_config, teacher_config
from effnet.experiments.selftrain.report import choose_result, evaluate_run, iteration_record, write_iteration_report, write_result, write_summary
from effnet.experiments.trial_store import STATE_FILE, Trial, TrialStore, stored_identity
from effnet.train import distributed as D
from effnet.train.rundir import RunLayout

STEPS = ("labels", "selection", "student", "report")
# Settings a resumed run may change: how it runs, and how many iterations (a run only grows).
MAY_CHANGE = frozenset({"iterations", "workers", "device", "progress"})


class NoisyStudentError(ValueError):
    """A Noisy Student run cannot start or continue as asked; the message says why and what to do."""


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a training run directory (it has the config.json every run writes first)."""
    return RunLayout(path).is_run()


# The config's paths, recorded absolute (resolved) so that a run resumes from any working directory: field -> which values are paths
PATHS: dict[str, Any] = {
    "labeled": None,
    "unlabeled": None,
    "out_dir": None,
    "teacher": is_run_dir,
    "student": Path.is_file,
    "student_pretrained": Path.is_file,
}


def absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """A config's values (NoisyStudentConfig's fields) with its paths absolute and resolved: relative and absolute spellings compare equal."""
    return {k: absolute_path(v, PATHS[k]) if k in PATHS and isinstance(v, str) else v for k, v in values.items()}


@dataclass
class NoisyStudentConfig:
    """Everything a Noisy Student run needs; the defaults are the paper's, adapted as `effnet.experiments.selftrain.recipe` says."""

    labeled: str  # image folders: train/CLASS + val/CLASS, or CLASS/ with a held-out validation fraction
    unlabeled: str  # any images under it, recursively (class folders, if any, are used only to report pseudo-label accuracy)
    teacher: str  # a training run directory, or a model name whose pretrained weights are fine-tuned on `labeled` first
    student: str  # a model name or a spec (file or block string), equal to or larger than the teacher
    iterations: int = 1
    out_dir: str = "runs/noisy-student"
    soft: bool = True  # soft (the teacher's distribution) or hard (its most likely class) pseudo labels
    confidence_threshold: float = PAPER_THRESHOLD
    balance: bool = True
    per_class: int = 0  # balancing target (0: the mean per-class count after filtering)
    pseudo_label_ratio: float = 0.0  # pseudo-labelled images per labelled one in each batch (0: the paper's 3, or fewer for few images)
    noise: Noise = field(default_factory=Noise)  # settings left None: the default for the labelled set's size (recipe.default_noise)
    student_pretrained: str = "auto"  # auto (a named model's pretrained weights when it has some), default, none, or a weights file
    budget: Budget = field(default_factory=Budget)  # the teacher's epochs, the students' (twice the teacher's unless set), or steps for every training
    resolution: int = 0  # training resolution of teacher and student (0: each model's own)
    seed: int = 0
    train_options: dict[str, Any] = field(default_factory=dict)  # further TrainConfig options for every training
    label_batch_size: int = 64
    chunk_size: int = 1024  # images per resumable labelling chunk
    workers: int = 2
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        for name, value in absolute_paths({name: getattr(self, name) for name in PATHS}).items():
            setattr(self, name, value)
        if isinstance(self.noise, dict):
            self.noise = Noise(**self.noise)
        if isinstance(self.budget, dict):
            self.budget = Budget(**self.budget)
        if self.iterations < 1:
            raise NoisyStudentError(f"iterations must be >= 1, got {self.iterations}")
        if self.pseudo_label_ratio < 0:
            raise NoisyStudentError(f"the pseudo-label ratio must be > 0 (0: automatic), got {self.pseudo_label_ratio}")
        if self.label_batch_size < 1 or self.chunk_size < 1:
            raise NoisyStudentError("the labelling batch size and chunk size must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass
class NoisyStudentResult:
    out_dir: Path
    records: list[dict[str, Any]]  # one per iteration (report.json's)
    result: dict[str, Any] = field(default_factory=dict)  # result.json's: which network was kept and why

    @property
    def best_run(self) -> Path:
        """The kept network's copy (OUT/best), a training run directory as `effnet predict/export` take it."""
        return self.out_dir / "best"

    def summary(self) -> str:
        lines = []
        for r in self.records:
            pseudo = r["pseudo_labels"]["accuracy_all"]
            truth = f"; pseudo labels {pseudo:.1f}% correct" if pseudo is not None else ""
            lines.append(f"iteration {r['iteration']}: teacher {r['teacher']['val_top1']:.2f}% -> student {r['student']['val_top1']:.2f}%{truth}")
        lines.append(f"report: {self.out_dir / 'report.md'}")
        if self.result:
            lines.append(f"{self.result['message']}; the result: {self.best_run} (a copy of {self.result['run']})")
        return "\n".join(lines)


def _main() -> bool:
    return D.is_main_process()


def _sync(device: str) -> None:
    """Wait for every process (torchrun); nothing on one process."""
    D.barrier(D.init_distributed(D.resolve_device(device)))


def _log(text: str) -> None:
    if _main():
        print(text, flush=True)


class _Steps:
    """The steps done, in the run's `trials.json` (`TrialStore`, the store of every experiment): one trial a step,
    keyed "teacher" or "iterK/STEP", written atomically as each step finishes; a torn store keeps its complete steps.
    The store's identity is the config without what a resumed run may change."""

    def __init__(self, out_dir: Path, config: NoisyStudentConfig, resume: bool) -> None:
        """Check that the run may start (or continue) as asked; every process checks before rank 0 writes."""
        path = out_dir / STATE_FILE
        if path.is_file() and not resume:
            raise NoisyStudentError(f"{out_dir} already holds a noisy-student run ({STATE_FILE}); continue it with --resume, or choose another --out-dir")
        if resume and not path.is_file():
            raise NoisyStudentError(f"{out_dir} holds no noisy-student run to continue (no {STATE_FILE}); start one without --resume")
        now = config.to_dict()
        identity = {"experiment": "noisy-student", "config": {k: v for k, v in now.items() if k not in MAY_CHANGE | {"out_dir"}}}
        if resume:
            saved = stored_identity(out_dir)
            if saved.get("experiment") != "noisy-student":
                raise NoisyStudentError(f"{path} is not a noisy-student run's; continue that run with its own command, or choose another --out-dir")
            budget = saved["config"].get("budget", {})
            if "student_epochs" not in budget:  # a run from before students had their own length: its students trained `epochs`
                saved["config"]["budget"] = {**budget, "student_epochs": budget.get("epochs")}
                if now["budget"] == saved["config"]["budget"]:
                    identity["config"]["budget"] = budget  # the store's identity as it was written
            refuse_changed(out_dir, saved["config"], now, MAY_CHANGE | {"out_dir"}, lambda name: name)  # every long command's rule
        _sync(config.device)
        if _main():
            self.store = TrialStore(out_dir, identity)
        _sync(config.device)
        if not _main():
            self.store = TrialStore(out_dir, identity, writer=False)

    def done(self, iteration: int, step: str) -> bool:
        return f"iter{iteration}/{step}" in self.store

    def mark(self, iteration: int, step: str, **result: Any) -> None:
        self.record(f"iter{iteration}/{step}", {"iteration": iteration, "step": step}, result)

    def record(self, key: str, params: dict[str, Any], result: dict[str, Any]) -> None:
        if key not in self.store:
            self.store.add(Trial(key, params, result=result, index=len(self.store)))


class Labelled(NamedTuple):
    """The labelled folder's training and validation images, found once (`image_folder_splits`) for every training and evaluation of a run."""

    train: Any
    val: Any

    @property
    def classes(self) -> list[str]:
        return list(self.train.classes)


def _train(config: Any, line: str, labelled: Labelled, network: Any = None) -> Path:
    """Train (or continue) a run: finished runs are kept, a checkpoint is resumed (the trainer's own resume).
    `network`: the NetSpec the config names, resolved already.

    `Trainer.run`, not `train`: under torchrun the process group stays up for the next step (creating a gloo group
    again after destroying one fails now and then with "Connection refused"); `run_noisy_student` ends it.
    """
    from effnet.train.prepared import prepare_run
    from effnet.train.trainer import Trainer

    out = Path(config.out_dir)
    if RunLayout(out).finished():
        return out
    if RunLayout(out).has_checkpoint():
        config = dataclasses.replace(config, resume=True)
        line += " (resuming from its checkpoint)"
    _log(line)
    Trainer(prepare_run(config, resolved=network, splits=tuple(labelled))).run()
    return out


def _given_teacher(config: NoisyStudentConfig) -> Path | None:
    """The teacher's run directory when `config.teacher` is one; None when it is a model name (to fine-tune); an error otherwise."""
    from effnet.core.zoo import UnknownModelError, get_info

    given = Path(config.teacher).expanduser()
    if is_run_dir(given):
        return given.resolve()
    try:
        get_info(config.teacher)
    except UnknownModelError as err:
        raise NoisyStudentError(f"--teacher {config.teacher!r} is neither a training run directory (no config.json there) nor a model name: {err}") from None
    return None


def _train_teacher(config: NoisyStudentConfig, out: Path, state: _Steps, labelled: Labelled, teacher: Network) -> Path:
    """Step 1, when the teacher is a model name: its pretrained weights fine-tuned on the labelled images."""
    train_config, line = teacher_config(
        teacher,
        labeled=config.labeled,
        images=len(labelled.train),
        out_dir=str(out / "teacher"),
        budget=config.budget,
        seed=config.seed,
        resolution=config.resolution,
        extra={**config.train_options, "workers": config.workers, "device": config.device, "progress": config.progress},
    )
    run = _train(train_config, line, labelled, teacher.spec).resolve()
    _sync(config.device)
    state.record("teacher", {"step": "teacher"}, {"run": str(run)})
    return run


def check_teacher(teacher: Any, classes: list[str], labeled: str) -> None:
    """A teacher must label the labelled set's classes, in the same order."""
    outputs = int(teacher.classifier.out_features)
    if outputs != len(classes):
        shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
        raise DataError(
            f"the teacher predicts {outputs} classes but the labelled set {labeled} has {len(classes)} ({shown}); the teacher must be trained on "
            "these classes: give --teacher a model name to fine-tune it on the labelled set first, or the run of such a training"
        )
    names = getattr(teacher, "class_names", None)
    if names and list(names) != classes:
        differ = next(i for i, (a, b) in enumerate(zip(names, classes, strict=True)) if a != b)
        raise DataError(
            f"the teacher's classes differ from the labelled set's (class {differ}: teacher {names[differ]!r}, labelled set {classes[differ]!r}); "
            "train the teacher on the same class folders"
        )


def check_student_size(teacher_spec: Any, student: Network, num_classes: int) -> None:
    """A warning when the student has fewer parameters than the teacher (effnet.core.profile): the paper's students are equal or larger."""
    from effnet.core.profile import profile_spec

    teacher_params = profile_spec(teacher_spec.replace(num_classes=num_classes)).params
    student_params = profile_spec(student.spec.replace(num_classes=num_classes)).params
    if student_params < teacher_params:
        warnings.warn(
            f"the student {student.name} ({student_params / 1e6:.2f}M parameters) is smaller than the teacher ({teacher_params / 1e6:.2f}M); Noisy Student "
            "needs an equal-or-larger student (the paper's students are never smaller), so it may not beat its teacher",
            stacklevel=3,
        )


def run_noisy_student(config: NoisyStudentConfig, resume: bool = False, options: dict[str, Any] | None = None) -> NoisyStudentResult:
    """Run (or continue, with `resume`) `config.iterations` iterations of Noisy Student in `config.out_dir`.

    `options`, when given, is saved as options.json (the command line's `--resume` reads it). Under torchrun every
    process calls it: labelling is sharded, trainings are distributed, rank 0 writes the rest.
    """
    try:
        return _run(config, resume, options)
    finally:
        D.cleanup(D.launched())


def _run(config: NoisyStudentConfig, resume: bool, options: dict[str, Any] | None) -> NoisyStudentResult:
    from effnet.train.config import TrainConfig
    from effnet.train.rundir import load_run_model

    out = Path(config.out_dir)

    # the labelled folder, scanned once: its split is every training's (TrainConfig's val_fraction) and every evaluation's
    labelled = Labelled(*image_folder_splits(config.labeled, val_fraction=config.train_options.get("val_fraction", TrainConfig.val_fraction)))
    classes = labelled.classes
    # refuse bad input before anything is written or trained
    find_images(config.unlabeled, "unlabelled")
    student = resolve_network(config.student, config.student_pretrained)  # once: every iteration's student is this network
    teacher: Path | Network | None = _given_teacher(config)  # a run directory, or (None) a model to fine-tune first
    if teacher is not None:
        model = load_run_model(teacher)
        check_teacher(model, classes, config.labeled)
        teacher_spec = model.spec
    else:
        teacher = resolve_network(config.teacher, "default")
        teacher_spec = teacher.spec
    check_student_size(teacher_spec, student, len(classes))
    with lock_directory(out, "noisy-student run", main_process=D.is_main_process()):  # rank 0 only; the teacher's and students' runs lock their own
        return _iterate(config, out, resume, options, teacher, labelled, student)


def _iterate(
    config: NoisyStudentConfig, out: Path, resume: bool, options: Any, teacher: Path | Network, labelled: Labelled, student: Network
) -> NoisyStudentResult:
    from effnet.experiments.saved_options import save_options

    state = _Steps(out, config, resume)
    if _main():
        save_options(out, options)
    teacher_run = teacher if isinstance(teacher, Path) else _train_teacher(config, out, state, labelled, teacher)
    records = []
    for k in range(1, config.iterations + 1):
        records.append(_iteration(config, out, state, k, teacher_run if k == 1 else out / f"iter{k - 1}" / "student", labelled, student))
        if _main():
            write_summary(out, records)
    result = choose_result(records)
    if _main():
        write_result(out, result)
        write_summary(out, records, result)
    return NoisyStudentResult(out, records, result)


def _iteration(config: NoisyStudentConfig, out: Path, state: _Steps, k: int, teacher: Path, labelled: Labelled, student: Network) -> dict[str, Any]:
    """One iteration: label with `teacher`, select, train the student, report; each step skipped when the store says it is done."""
    folder = out / f"iter{k}"
    labels_file, selected_file, student_dir = folder / LABELS_NAME, folder / "selected.jsonl", folder / "student"
    noise = config.noise.resolved(len(labelled.train))
    if not (state.done(k, "labels") and labels_file.is_file()):
        _log(f"iteration {k}: the teacher {teacher} labels {config.unlabeled}")
        summary = label_images(
            teacher,
            config.unlabeled,
            labels_file,
            batch_size=config.label_batch_size,
            chunk_size=config.chunk_size,
            workers=config.workers,
            device=config.device,
            progress=config.progress,
        )
        _log(summary.describe())
        state.mark(k, "labels")
    if not (state.done(k, "selection") and selected_file.is_file()):
        if _main():
            selection = select(
                read_labels(labels_file),
                len(labelled.classes),
                threshold=config.confidence_threshold,
                balance=config.balance,
                per_class=config.per_class,
                soft=config.soft,
            )
            write_selection(selection, selected_file, labelled.classes)
        _sync(config.device)
        state.mark(k, "selection")
    selected = json.loads(selected_file.with_suffix(".json").read_text())
    train_config, line = student_config(
        student,
        labeled=config.labeled,
        labeled_images=len(labelled.train),
        pseudo_file=str(selected_file.resolve()),
        pseudo_images=selected["images"],
        out_dir=str(student_dir),
        budget=config.budget,
        noise=noise,
        pseudo_label_ratio=config.pseudo_label_ratio,
        seed=config.seed,
        resolution=config.resolution,
        extra={**config.train_options, "workers": config.workers, "device": config.device, "progress": config.progress},
    )
    if not (state.done(k, "student") and RunLayout(student_dir).finished()):
        _train(train_config, f"iteration {k}: {line}", labelled, student.spec)
        _sync(config.device)
        state.mark(k, "student")
    report_file = folder / "report.json"
    if state.done(k, "report") and report_file.is_file():
        return json.loads(report_file.read_text())
    record: dict[str, Any] = {}
    if _main():
        evaluation = {
            "batch_size": config.label_batch_size,
            "workers": config.workers,
            "device": config.device,
            "train_options": config.train_options,
            "splits": tuple(labelled),
        }
        record = iteration_record(
            k,
            teacher=evaluate_run(teacher, config.labeled, **evaluation),
            student=evaluate_run(student_dir, config.labeled, **evaluation),
            labels_file=labels_file,
            selected=selected,
            unlabeled=config.unlabeled,
            plan=line,
            noise=noise,
            ratio=train_config.pseudo_label_ratio,
        )
        write_iteration_report(folder, record)
        _log(f"iteration {k}: teacher {record['teacher']['val_top1']:.2f}% -> student {record['student']['val_top1']:.2f}% ({folder / 'report.md'})")
    _sync(config.device)
    state.mark(k, "report")
    return record if record else json.loads(report_file.read_text())
