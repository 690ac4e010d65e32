"""What a training run writes, and when: the run's description before the first step, checkpoints (rank 0 writes,
every process waits), the metrics after each epoch, the weights and summary at the end, FixRes' result.

The file names are `effnet.train.rundir`'s (`RunLayout`); the checkpoint format is `effnet.train.checkpoint`'s.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch
from torch import nn

from effnet.train import distributed as D
from effnet.train.checkpoint import CheckpointError, check_space, save_checkpoint, state_bytes
from effnet.train.metrics import plot_history, write_history
from effnet.train.rundir import RunLayout


class RunWriter:
    """Writes one run directory (`layout`) for the processes of a training (`dist`); only rank 0 touches files."""

    def __init__(self, layout: RunLayout, dist: D.DistInfo, device: torch.device) -> None:
        self.layout = layout
        self.dist = dist
        self.device = device
        self.main = dist.is_main
        self._last_save = time.monotonic()

    def check_new(self) -> None:
        """A run that is not resumed must not write over one that holds checkpoints."""
        if self.layout.has_checkpoint():
            raise CheckpointError(
                f"{self.layout.root} already holds a run ({self.layout.checkpoint}); pass --resume to continue it or choose another --out-dir"
            )

    def begin(self, run: Any, model: nn.Module, ema: Any) -> None:
        """Before the first step: a warning when the disk is short of two checkpoints, then what the run is (config,
        spec, preprocessing, class names) so that the directory alone describes it."""
        if not self.main:
            return
        weights = state_bytes(model.state_dict())
        # model, EMA and two optimizer slots per weight
        warning = check_space(self.layout.root, weights * (2 if ema is not None else 1) + 2 * state_bytes(list(model.parameters())))
        if warning:
            warnings.warn(warning, stacklevel=4)
        self.layout.write_description(run.config, model.spec, run.preprocessing, run.class_names)

    def checkpoint(self, payload: dict[str, Any], rng: dict[str, Any]) -> None:
        """The state at the last step boundary, as last.pt (rank 0 writes; everyone waits)."""
        if self.main:
            save_checkpoint(self.layout.checkpoint, payload, rng=rng)
        D.barrier(self.dist)
        self._last_save = time.monotonic()

    def checkpoint_due(self, global_step: int, every_steps: int, every_minutes: float) -> bool:
        """A mid-epoch checkpoint every `every_steps` steps and/or `every_minutes` minutes (one decision for all processes)."""
        by_steps = bool(every_steps) and global_step % every_steps == 0
        by_time = bool(every_minutes) and time.monotonic() - self._last_save >= 60 * every_minutes
        if every_minutes and self.dist.enabled:
            by_time = not D.all_true(not by_time, self.dist, self.device)  # any process's clock decides for all
        return by_steps or by_time

    def epoch_done(self, history: list[dict[str, Any]]) -> None:
        """The metrics so far, as JSON lines, CSV and a plot."""
        if self.main:
            write_history(history, self.layout.root)
            plot_history(history, self.layout.root)

    def finish(self, model: nn.Module, ema: Any, summary: dict[str, Any]) -> None:
        """The trained weights (raw and EMA) and the summary."""
        if not self.main:
            return
        self.layout.write_weights("model", model.state_dict(), model.spec)
        if ema is not None:
            self.layout.write_weights("ema", ema.module.state_dict(), model.spec)
        self.layout.write_json(self.layout.summary, summary)

    def fixres(self, adapted: nn.Module, spec: Any, outcome: Any) -> None:
        """FixRes' adapted copy and its accuracies before and after."""
        if self.main:
            self.layout.write_weights("fixres", adapted.state_dict(), spec, resolution=str(outcome.resolution))
            self.layout.write_json(self.layout.fixres, outcome.to_dict())
