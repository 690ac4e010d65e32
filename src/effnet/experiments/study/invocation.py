"""What one invocation of the scaling study used: wall and CPU time, the machine's load, the device, the images trained.

The record goes into study.json's `runs`, so a resumed study's report keeps the first invocation's timing.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat (0, 0 where there is none)."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    total = sum(fields[:8])
    return total - fields[3] - fields[4], total


def own_cpu_seconds() -> float:
    """CPU seconds used by this process and its finished children (the worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def images_per_run(train_options: dict[str, Any]) -> int | None:
    """Training images one run of the study sees (epochs x whole batches of its training images); None for real data
    without a set image count."""
    samples, epochs, batch = train_options.get("train_samples"), train_options.get("epochs"), train_options.get("batch_size")
    if not (samples and epochs and batch):
        return None
    return int(epochs) * (int(samples) // int(batch)) * int(batch)


def device_name(train_options: dict[str, Any]) -> str:
    """The device the trainings run on, as its maker names it ("cpu" without CUDA or when the options say so)."""
    import torch

    wanted = str(train_options.get("device", "auto"))
    if wanted != "cpu" and torch.cuda.is_available():
        index = torch.device(wanted).index if wanted.startswith("cuda") else None
        return torch.cuda.get_device_name(index or 0)
    return "cpu"


def previous_runs(out_dir: Path) -> list[dict[str, Any]]:
    """The invocation records of an earlier study.json in `out_dir` (so a resumed study's report keeps the first run's timing)."""
    try:
        data = json.loads((out_dir / "study.json").read_text())
    except (OSError, json.JSONDecodeError):
        return []
    if isinstance(data.get("runs"), list):
        return [run for run in data["runs"] if run.get("runs_trained_now", 1)]
    if "wall_seconds" in data:  # written before invocation records existed: one run
        return [{"wall_seconds": data["wall_seconds"], **data.get("machine", {})}]
    return []
