"""How long a training run will take: its first steps timed, the rest estimated (again after the first epoch), with advice when that is long."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """Where a run stands, and what of it is left: what an estimate needs."""

    epoch: int  # epochs done
    global_step: int  # optimizer steps done
    steps_per_epoch: int
    epochs: int
    eval_every: int
    images_per_step: int  # per process
    val_images: int
    ema: bool  # evaluated twice (raw and EMA weights)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class StepTimer:
    """Times a process's first optimizer steps (data loading included), then estimates the rest of the run."""

    SKIP = 1  # the first step pays for warm-up (allocations, kernel selection, loader start)
    MEASURE = 3
    LONG = 2 * 3600.0  # beyond this, suggest a quicker set-up

    def __init__(self) -> None:
        self.starts: list[float] = []

    def step_started(self) -> None:
        self.starts.append(time.perf_counter())

    def ready(self) -> bool:
        return len(self.starts) >= self.SKIP + self.MEASURE

    def estimate(self, progress: Progress) -> str:
        """The first estimate, from the first steps (their data loading included)."""
        per_step = (time.perf_counter() - self.starts[self.SKIP]) / (len(self.starts) - self.SKIP)
        return _line(progress, "time", per_step, None)


def epoch_estimate(progress: Progress, seconds: float, steps: int, eval_seconds: float | None) -> str:
    """The estimate refreshed after an epoch: `steps` steps in `seconds` of wall time (a machine busy with other work
    shows here, not in the first steps), and one evaluation in `eval_seconds` when the epoch had one."""
    return _line(progress, f"time, measured over epoch {progress.epoch}", seconds / max(1, steps), eval_seconds)


def _line(progress: Progress, label: str, per_step: float, eval_seconds: float | None) -> str:
    p = progress
    remaining = p.steps_per_epoch * p.epochs - p.global_step
    evaluations = sum(1 for e in range(p.epoch + 1, p.epochs + 1) if e % p.eval_every == 0 or e == p.epochs)
    if eval_seconds is None:
        per_image = per_step / p.images_per_step
        # an eval image costs about a third of a training image (forward only); EMA doubles it
        eval_seconds = p.val_images * per_image / 3 * (2 if p.ema else 1)
    total = per_step * remaining + evaluations * eval_seconds
    line = (
        f"{label}: {per_step:.2f} s/step on this machine ({p.images_per_step / per_step:.1f} images/s) -> "
        f"about {_duration(total)} for the remaining {remaining} steps and {evaluations} evaluation(s) of {p.epochs} epochs"
    )
    if total > StepTimer.LONG:
        line += (
            "; for a quicker run: --preset proxy (a recipe for short runs), a smaller --resolution (e.g. 128), fewer --epochs, a GPU, or --max-steps-per-epoch"
        )
    return line
