"""What a run leaves to look at: per-epoch metrics as JSONL and CSV, and PNG plots."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any

from effnet._io import atomic_write, atomic_write_text
from effnet.train.rundir import METRICS_CSV_NAME, METRICS_NAME, PLOT_NAME

PLOTTED = (("loss", ("train_loss", "val_loss", "ema_val_loss")), ("top-1 accuracy (%)", ("train_top1", "val_top1", "ema_val_top1")), ("learning rate", ("lr",)))


def write_history(history: list[dict[str, Any]], out_dir: str | Path) -> None:
    """Rewrite metrics.jsonl and metrics.csv from the whole history (atomic, so resume never duplicates rows)."""
    out = Path(out_dir)
    atomic_write_text(out / METRICS_NAME, "".join(json.dumps(row) + "\n" for row in history))
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns and not isinstance(row[k], (list, dict))]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out / METRICS_CSV_NAME, buffer.getvalue())


def repair_history(out_dir: str | Path, history: list[dict[str, Any]]) -> None:
    """On resume: metrics.jsonl as the checkpoint's `history` says, with a warning for a torn last line (a kill mid-write,
    or a copy cut short) that is skipped. Rewritten only when it differs (e.g. after a fall-back to previous.pt)."""
    path = Path(out_dir) / METRICS_NAME
    if not path.is_file():
        return
    lines = path.read_text(errors="replace").splitlines()
    rows, unreadable = [], []
    for number, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            unreadable.append(number)
    if unreadable:
        where = "its last line is torn" if unreadable == [len(lines) - 1] else f"{len(unreadable)} line(s) are unreadable"
        warnings.warn(f"{path}: {where} (a process killed mid-write?); skipped: the metrics are rewritten from the checkpoint's history", stacklevel=3)
    if unreadable or rows != json.loads(json.dumps(history)):
        write_history(history, out_dir)


def plot_history(history: list[dict[str, Any]], out_dir: str | Path) -> Path | None:
    """Loss, accuracy and learning rate against epochs as one PNG (training.png); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(5 * len(PLOTTED), 3.6))
    for ax, (title, keys) in zip(axes, PLOTTED, strict=True):
        for key in keys:
            points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=key.replace("_", " "))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out_dir) / PLOT_NAME
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
