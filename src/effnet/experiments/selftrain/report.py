"""What each Noisy Student iteration reports: teacher and student accuracy, pseudo-label accuracy, images kept per class.

Accuracy is top-1 on the labelled set's validation split, each network with its own run's test-time
preprocessing. Pseudo-label accuracy needs true labels, which unlabelled images do not have; when the
unlabelled folder is itself a class-folder tree with the labelled set's class names (an experiment that
hid the labels), the folder names are used as the truth here, and only here.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from effnet._io import atomic_write, atomic_write_text
from effnet.experiments.selftrain.labels import LabelRecord, read_labels


def evaluate_run(
    run: str | Path,
    labeled: str,
    *,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "auto",
    train_options: dict | None = None,
    splits: Any = None,
) -> dict[str, Any]:
    """A run's final weights on the labelled validation split: network, params, top-1 (percent) and image count.
    `splits`: the labelled folder's train and validation images, scanned already (`image_folder_splits`)."""
    from torch.utils.data import DataLoader

    from effnet.core.profile import profile_spec
    from effnet.data import build_datasets
    from effnet.train.distributed import resolve_device
    from effnet.train.evaluate import evaluate
    from effnet.train.rundir import load_run_model

    options = train_options or {}
    model = load_run_model(run)
    prep = model.preprocessing
    data = build_datasets(
        "folder",
        data_dir=labeled,
        resolution=prep.resolution,
        preprocessing=prep,
        auto_augment="none",
        val_samples=options.get("val_samples") or None,
        val_fraction=options.get("val_fraction", 0.1),
        splits=splits,
    )
    torch_device = resolve_device(device)
    loader = DataLoader(data.val, batch_size=batch_size, num_workers=workers, collate_fn=data.collate_fn)
    result = evaluate(model.to(torch_device), loader, torch_device, data.num_classes)
    return {
        "run": str(run),
        "network": model.spec.name or "spec",
        "params": profile_spec(model.spec).params,
        "resolution": prep.resolution,
        "val_top1": result.top1,
        "val_images": result.count,
    }


def hidden_truth(records: list[LabelRecord], unlabeled: str | Path, classes: list[str]) -> list[int | None]:
    """Per record, the class of the folder it sits in under `unlabeled` (first level), or None when that is not a class name."""
    root = Path(unlabeled).expanduser().resolve()
    index = {name: i for i, name in enumerate(classes)}
    truth: list[int | None] = []
    for record in records:
        try:
            parts = Path(record.image).relative_to(root).parts
        except ValueError:
            parts = ()
        truth.append(index.get(parts[0]) if len(parts) > 1 else None)
    return truth


def _percent(hits: int, total: int) -> float | None:
    return 100.0 * hits / total if total else None


def iteration_record(
    iteration: int,
    *,
    teacher: dict[str, Any],
    student: dict[str, Any],
    labels_file: str | Path,
    selected: dict[str, Any],
    unlabeled: str | Path,
    plan: str,
    noise: Any,
    ratio: float,
) -> dict[str, Any]:
    """report.json of one iteration (`selected`: the selection's counts, selected.json)."""
    records = read_labels(labels_file)
    classes = list(selected["classes"])
    truth = hidden_truth(records, unlabeled, classes)
    threshold = selected["threshold"]
    known = [(r, t) for r, t in zip(records, truth, strict=True) if t is not None]
    kept = [(r, t) for r, t in known if r.confidence >= threshold]
    rows = []
    for c, name in enumerate(classes):
        of_class = [r for r, t in known if t == c]
        rows.append(
            {
                "class": name,
                "predicted": sum(1 for r in records if r.label == c),
                "kept": selected["available"][c],
                "selected": selected["counts"][c],
                "true_images": len(of_class) if known else None,
                "labelled_correctly": _percent(sum(1 for r in of_class if r.label == c), len(of_class)),
            }
        )
    return {
        "iteration": iteration,
        "teacher": teacher,
        "student": {**student, "plan": plan, "noise": noise.describe(), "ratio": ratio},
        "pseudo_labels": {
            "images": len(records),
            "soft": selected["soft"],
            "threshold": threshold,
            "kept": sum(selected["available"]),
            "selected": selected["images"],
            "target_per_class": selected["target_per_class"],
            "with_truth": len(known),
            "accuracy_all": _percent(sum(1 for r, t in known if r.label == t), len(known)),
            "accuracy_kept": _percent(sum(1 for r, t in kept if r.label == t), len(kept)),
        },
        "classes": rows,
    }


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def iteration_markdown(record: dict[str, Any]) -> str:
    t, s, p = record["teacher"], record["student"], record["pseudo_labels"]
    kind = "soft" if p["soft"] else "hard"
    balance = f"balanced to {p['target_per_class']} per class" if p["target_per_class"] else "not balanced"
    lines = [
        f"# Noisy Student, iteration {record['iteration']}",
        "",
        "| | network | params | resolution | top-1 % on the labelled validation set |",
        "|---|---|---:|---:|---:|",
        f"| teacher | {t['network']} | {t['params'] / 1e6:.2f}M | {t['resolution']} | {t['val_top1']:.2f} |",
        f"| student | {s['network']} | {s['params'] / 1e6:.2f}M | {s['resolution']} | {s['val_top1']:.2f} |",
        "",
        f"Training: {s['plan']}.",
        "",
        f"Pseudo labels ({kind}): {p['images']} images labelled by the un-noised teacher, {p['kept']} at confidence >= {p['threshold']:g}, "
        f"{p['selected']} training images after selection ({balance}).",
    ]
    if p["with_truth"]:
        lines += [
            "",
            f"Pseudo-label accuracy (truth from the unlabelled folder's class folders, {p['with_truth']} images; used only for this report): "
            f"{_num(p['accuracy_all'])}% of all, {_num(p['accuracy_kept'])}% of those kept.",
        ]
    lines += ["", "| class | teacher's label | kept | selected | true images | labelled correctly % |", "|---|---:|---:|---:|---:|---:|"]
    for row in record["classes"]:
        true = "n/a" if row["true_images"] is None else str(row["true_images"])
        lines.append(f"| {row['class']} | {row['predicted']} | {row['kept']} | {row['selected']} | {true} | {_num(row['labelled_correctly'])} |")
    return "\n".join(lines) + "\n"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def plot_iteration(record: dict[str, Any], path: str | Path) -> None:
    """Images per class (labelled as it, kept, selected) beside the accuracies (teacher, student, pseudo labels)."""
    plt = _pyplot()
    if plt is None:
        return
    rows = record["classes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2, 1.2]})
    xs = range(len(rows))
    width = 0.27
    for offset, key, label in ((-width, "predicted", "teacher's label"), (0, "kept", "kept (confidence)"), (width, "selected", "selected (balanced)")):
        left.bar([x + offset for x in xs], [r[key] for r in rows], width, label=label)
    left.set_xticks(list(xs), [r["class"] for r in rows], rotation=45 if len(rows) > 6 else 0, ha="right" if len(rows) > 6 else "center", fontsize=8)
    left.set_ylabel("images")
    left.set_title("pseudo-labelled images per class")
    left.legend(fontsize=8)
    p = record["pseudo_labels"]
    bars = [("teacher", record["teacher"]["val_top1"]), ("student", record["student"]["val_top1"])]
    bars += [(name, value) for name, value in (("pseudo labels\nall", p["accuracy_all"]), ("pseudo labels\nkept", p["accuracy_kept"])) if value is not None]
    right.bar([b[0] for b in bars], [b[1] for b in bars], color=["tab:grey", "tab:blue", "tab:orange", "tab:orange"][: len(bars)])
    for i, (_, value) in enumerate(bars):
        right.text(i, value, f"{value:.1f}", ha="center", va="bottom", fontsize=8)
    right.set_ylabel("top-1 %")
    right.set_ylim(0, 105)
    right.set_title("top-1: validation; pseudo labels: vs hidden truth", fontsize=9)
    right.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"Noisy Student, iteration {record['iteration']}")
    fig.tight_layout()
    _save(fig, Path(path))
    plt.close(fig)


def write_iteration_report(folder: str | Path, record: dict[str, Any]) -> None:
    folder = Path(folder)
    plot_iteration(record, folder / "report.png")
    atomic_write_text(folder / "report.md", iteration_markdown(record))
    atomic_write_text(folder / "report.json", json.dumps(record, indent=1) + "\n")  # last: its presence means the report is complete


def choose_result(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's result: the first teacher, or the best student when it beats that teacher (ties keep the teacher).

    A student that is not better than the network it would replace is no reason to hand back another model.
    """
    teacher = records[0]["teacher"]
    best = max(records, key=lambda r: r["student"]["val_top1"])  # the first of equals
    student = best["student"]
    which = f"the student of iteration {best['iteration']}" if len(records) > 1 else "the student"
    won = student["val_top1"] > teacher["val_top1"]
    sign = ">" if won else ("=" if student["val_top1"] == teacher["val_top1"] else "<")
    kept = which if won else "the teacher"
    best_name = "best student" if len(records) > 1 else "student"
    return {
        "kept": "student" if won else "teacher",
        "iteration": best["iteration"] if won else 0,
        "run": student["run"] if won else teacher["run"],
        "val_top1": student["val_top1"] if won else teacher["val_top1"],
        "teacher_val_top1": teacher["val_top1"],
        "student_val_top1": student["val_top1"],
        "student_lost": not won,
        "message": f"{best_name} {student['val_top1']:.1f}% {sign} teacher {teacher['val_top1']:.1f}%: kept {kept}",
    }


def write_result(out_dir: str | Path, result: dict[str, Any]) -> None:
    """result.json, and OUT/best: a copy of the kept run's weights and metadata (not its checkpoints), replaced atomically."""
    out = Path(out_dir)
    best, staging = out / "best", out / "best.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for path in Path(result["run"]).iterdir():
        if path.is_file() and path.suffix != ".pt":  # last.pt and other checkpoints: the run's own, for resuming it
            shutil.copy2(path, staging / path.name)
    if best.exists():
        shutil.rmtree(best)
    os.replace(staging, best)
    atomic_write_text(out / "result.json", json.dumps(result, indent=1) + "\n")


def write_summary(out_dir: str | Path, records: list[dict[str, Any]], result: dict[str, Any] | None = None) -> None:
    """report.md, report.json and report.png over all iterations so far, with the kept network once the run is done."""
    out = Path(out_dir)
    lines = [
        "# Noisy Student",
        "",
        *([f"**Result: {result['message']}** (top-1 on the labelled validation set); its copy: best/, from {result['run']}.", ""] if result else []),
        "| iteration | teacher | teacher top-1 % | student | student top-1 % | pseudo labels correct % | selected images |",
        "|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in records:
        p = r["pseudo_labels"]
        lines.append(
            f"| {r['iteration']} | {r['teacher']['network']} | {r['teacher']['val_top1']:.2f} | {r['student']['network']} | "
            f"{r['student']['val_top1']:.2f} | {_num(p['accuracy_all'])} | {p['selected']} |"
        )
    lines += ["", "Each iteration's report: iterN/report.md. Top-1 on the labelled validation set."]
    plt = _pyplot()
    if plt is not None and records:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        xs = [0] + [r["iteration"] for r in records]
        ax.plot(xs, [records[0]["teacher"]["val_top1"]] + [r["student"]["val_top1"] for r in records], marker="o", label="network (0: first teacher)")
        # iteration k's pseudo labels are those of network k - 1 (its teacher)
        truth = [(r["iteration"] - 1, r["pseudo_labels"]["accuracy_all"]) for r in records if r["pseudo_labels"]["accuracy_all"] is not None]
        if truth:
            ax.plot([t[0] for t in truth], [t[1] for t in truth], marker="s", ls="--", label="its pseudo labels (hidden truth)")
        ax.set_xlabel("iteration")
        ax.set_ylabel("top-1 %")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Noisy Student: accuracy by iteration")
        fig.tight_layout()
        _save(fig, out / "report.png")
        plt.close(fig)
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "report.json", json.dumps({"iterations": records, **({"result": result} if result else {})}, indent=1) + "\n")
