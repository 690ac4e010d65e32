"""What a training run gives back (`TrainResult`), and the two ways it can stop early."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C or SIGTERM: a checkpoint was saved, --resume continues."""


@dataclass
class TrainResult:
    out_dir: Path
    best_top1: float
    best_ema_top1: float | None
    final: dict[str, Any]
    history: list[dict[str, Any]] = field(repr=False)
    seconds: float = 0.0
    images_per_second: float = 0.0
    fixres: Any = None  # FixResResult when --fixres was asked for
    # what was built: the network as trained (classifier sized for the task), its input size, and its analytic cost there
    spec: Any = field(default=None, repr=False)
    resolution: int = 0
    params: int = 0
    macs: int = 0  # multiply-adds at `resolution` (effnet.core.profile)
    warning: str = ""  # what summary.json's "warning" says: e.g. the run ended at chance (`at_chance_warning`); "" when all is well

    def summary(self) -> str:
        ema = f", EMA {self.best_ema_top1:.2f}%" if self.best_ema_top1 is not None else ""
        final = f"final top-1 {self.final['val_top1']:.2f}%, " if "val_top1" in self.final else ""
        fixres = f"; FixRes at {self.fixres.resolution} px {self.fixres.before.top1:.2f}% -> {self.fixres.after.top1:.2f}%" if self.fixres else ""
        return f"{final}best top-1 {self.best_top1:.2f}%{ema}{fixres}; {self.seconds:.0f} s, {self.images_per_second:.1f} images/s; run in {self.out_dir}"


def at_chance_warning(final: dict[str, Any], num_classes: int) -> str:
    """A sentence when a run ended where it started: training loss still that of uniform predictions (ln K) and
    validation accuracy near chance. A run can collapse this way without a NaN (the features die early and the head
    learns the class prior), and nothing else would say so."""
    loss, top1 = final.get("train_loss"), final.get("val_top1")
    if num_classes < 2 or loss is None or top1 is None:
        return ""
    uniform, chance = math.log(num_classes), 100.0 / num_classes
    if loss < 0.95 * uniform or top1 > 1.5 * chance:
        return ""
    return (
        f"the run ended at chance: training loss {loss:.3f} against {uniform:.3f} for uniform predictions, validation top-1 "
        f"{top1:.1f}% against {chance:.1f}% chance. The network learned nothing; try a lower learning rate (--lr), more "
        "warm-up (--warmup-epochs) or another --seed, and do not use this run's weights"
    )
