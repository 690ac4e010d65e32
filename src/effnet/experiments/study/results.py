"""What a scaling study produces: its preset, the networks it trained (points) and the whole result.

Data only, shared by the driver (`scaling_study`) and the report (`report`), so neither imports the other's module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from effnet.core.spec import NetSpec
from effnet.experiments.study.stats import Interval, mean_ci, paired_difference


@dataclass(frozen=True)
class StudyPreset:
    """What a study scales and how long it trains each network."""

    name: str
    description: str
    model: str  # the named model the baseline is derived from
    base_width: float  # the baseline = scale(model, width, depth, image_size)
    base_depth: float
    base_resolution: int
    num_classes: int  # synthetic task classes (other datasets bring their own)
    train: dict[str, Any]  # TrainConfig options of every run (on top of the "proxy" preset)
    seeds: int
    width: tuple[float, ...]  # (a): multipliers besides 1.0
    depth: tuple[float, ...]
    resolution: tuple[float, ...]
    fig4_settings: tuple[tuple[float, float], ...]  # (b): (depth, resolution) settings ...
    fig4_widths: tuple[float, ...]  # ... at each of which width takes these values
    targets: tuple[float, ...]  # (c): MACs targets as multiples of the baseline's
    workers: int = 2
    dataset: str = "synthetic"  # the task trained on unless --dataset says otherwise
    # the stopping rule the preset runs with unless told otherwise (`stopping.stopping_decision`): after `seeds`,
    # grow the unresolved Table 3 comparisons until every half-width <= until_half_width, within max_seeds and budget_minutes
    until_half_width: float | None = None
    max_seeds: int = 30
    budget_minutes: float | None = None


class Trained:
    """A network trained once per seed (a grid candidate, a study point), as a mixin of dataclasses with the fields
    `scores` (seed -> top-1 %), `errors` (seed -> why it failed), `macs` and `params`."""

    scores: dict[int, float]
    errors: dict[int, str]
    macs: int
    params: int

    @property
    def seeds_trained(self) -> int:
        """Seeds trained so far, finished or failed (a network's seeds are 0 .. n-1)."""
        return len(self.scores) + len(self.errors)

    @property
    def accuracy(self) -> Interval | None:
        """Mean top-1 % over the seeds that finished, with its 95% t-interval."""
        return mean_ci(list(self.scores.values())) if self.scores else None

    def record(self, seed: int, trial: Any) -> None:
        """One seed's finished trial (`effnet.experiments.trials.Trial`): its top-1, or why it failed.

        The trained network's measured MACs and params replace the planned ones (its classifier is sized for the task).
        """
        if trial.ok and "top1" in trial.result:
            self.scores[seed] = float(trial.result["top1"])
            self.macs = int(trial.result.get("macs", self.macs))
            self.params = int(trial.result.get("params", self.params))
        else:
            self.errors[seed] = trial.error or "the evaluator returned no 'top1'"

    def outcome(self) -> dict[str, Any]:
        """Scores, errors and accuracy, as `to_dict` writes them."""
        acc = self.accuracy
        return {
            "scores": {str(k): v for k, v in sorted(self.scores.items())},
            "errors": {str(k): v for k, v in sorted(self.errors.items())},
            "accuracy": acc.to_dict() if acc else None,
        }


@dataclass
class Point(Trained):
    """One network of the study, in one part: how it was scaled from the baseline and its results."""

    part: str  # "baseline", "width", "depth", "resolution", "fig4", "matched"
    label: str
    spec: NetSpec = field(repr=False)
    depth: float = 1.0
    width: float = 1.0
    resolution: float = 1.0
    phi: float | None = None
    target_macs: int | None = None
    macs: int = 0
    params: int = 0
    scores: dict[int, float] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identifies the network (not the part): networks shared between parts are trained once per seed."""
        data = self.spec.to_dict()
        data.pop("name", None)
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "label": self.label,
            "key": self.key,
            "spec": self.spec.to_dict(),
            "depth": self.depth,
            "width": self.width,
            "resolution": self.resolution,
            "phi": self.phi,
            "target_macs": self.target_macs,
            "macs": self.macs,
            "params": self.params,
            **self.outcome(),
        }


@dataclass
class StudyResult:
    """Everything the report needs: the points of each part, the baseline and how the run went."""

    preset: StudyPreset
    baseline: NetSpec
    points: list[Point]
    seeds: list[int]
    alpha: float
    beta: float
    gamma: float
    dataset: str
    wall_seconds: float = 0.0  # of this invocation
    machine: dict[str, Any] = field(default_factory=dict)  # this invocation: CPUs, workers, CPU time, busy share
    runs: list[dict[str, Any]] = field(default_factory=list)  # every invocation (a resumed study has several), this one last
    train: dict[str, Any] = field(default_factory=dict)  # the TrainConfig options every network was trained with (preset + overrides)
    stopping: dict[str, Any] | None = None  # the seed-count stopping rule, where it stopped and why (None: the seeds were fixed)

    def part(self, name: str) -> list[Point]:
        return [p for p in self.points if p.part == name]

    @property
    def baseline_point(self) -> Point:
        return self.part("baseline")[0]

    def matched_rows(self) -> list[dict[str, Any]]:
        """Table 3: per target, each single dimension and compound, with compound's paired advantage over it."""
        rows = []
        base = self.baseline_point
        for target in sorted({p.target_macs for p in self.part("matched") if p.target_macs}):
            group = [p for p in self.part("matched") if p.target_macs == target]
            comp = next((p for p in group if p.label == "compound"), None)
            for p in [base, *group]:
                row: dict[str, Any] = {"target_macs": target, "point": p}
                row["macs_error"] = (p.macs - target) / target if p is not base else None
                if comp is not None and p is not comp and comp.scores and p.scores:
                    row["compound_minus"] = paired_difference(comp.scores, p.scores)
                rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for row in self.matched_rows():
            diff = row.get("compound_minus")
            rows.append(
                {
                    "target_macs": row["target_macs"],
                    "label": row["point"].label,
                    "key": row["point"].key,
                    "macs": row["point"].macs,
                    "macs_error": row["macs_error"],
                    "compound_minus": diff.to_dict() if diff else None,
                }
            )
        return {
            "preset": asdict(self.preset),
            "baseline": self.baseline.to_dict(),
            "seeds": self.seeds,
            "alpha": self.alpha,
            "beta": self.beta,
            "gamma": self.gamma,
            "dataset": self.dataset,
            "wall_seconds": self.wall_seconds,
            "machine": self.machine,
            "runs": self.runs,
            "train": self.train,
            "points": [p.to_dict() for p in self.points],
            "table3": rows,
            "stopping": self.stopping,
        }
