"""Step 1 of compound scaling (paper Section 3.3): a small grid search for α, β, γ.

With φ = 1 (twice the resources), enumerate α, β, γ >= 1 on a grid under the constraint
α·β²·γ² ≈ 2, scale the baseline by depth α, width β and resolution γ, train every candidate
for the same proxy budget and rank them by accuracy. The best (α, β, γ) is then fixed and
larger networks come from φ alone (step 2, `effnet scale --phi`).

Candidates are independent trials (`effnet.experiments.trials.run_trials`): parallel local processes by
default, Ray tasks with `ray_address`; every finished candidate is stored at once in
`out_dir/trials.json`, so a killed search resumes without redoing finished candidates.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet.core.scaling import compound
from effnet.core.spec import NetSpec, SpecError
from effnet.experiments.proxy import evaluate_candidate, recipe, task_classes
from effnet.experiments.study.results import Trained
from effnet.train.config import GENERATED_DATASETS

CONSTRAINT = 2.0  # α·β²·γ²: MACs double per unit φ (MACs grow as d·w²·r²)


@dataclass
class GridCandidate(Trained):
    """One (α, β, γ) of the grid: the scaled spec, its cost and (after training) its accuracy over seeds."""

    alpha: float
    beta: float
    gamma: float
    spec: NetSpec = field(repr=False)
    macs: int
    params: int
    scores: dict[int, float] = field(default_factory=dict)  # seed -> top-1 %
    errors: dict[int, str] = field(default_factory=dict)  # seed -> why it failed

    @property
    def product(self) -> float:
        return self.alpha * self.beta**2 * self.gamma**2

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "gamma": self.gamma,
            "product": self.product,
            "spec": self.spec.to_string(),
            "resolution": self.spec.resolution,
            "macs": self.macs,
            "params": self.params,
            **self.outcome(),
        }


@dataclass
class GridResult:
    """Every candidate, ranked best first (failed ones last), with the settings of the search."""

    ranking: list[GridCandidate]
    baseline_macs: int
    phi: float
    step: float
    tolerance: float
    distinct_specs: int
    warning: str | None = None  # set when the ranking says nothing (best near chance, or all scores tied)

    @property
    def best(self) -> GridCandidate | None:
        """The most accurate candidate (ties: fewer MACs), or None when every candidate failed."""
        return self.ranking[0] if self.ranking and self.ranking[0].scores else None

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "phi": self.phi,
            "step": self.step,
            "tolerance": self.tolerance,
            "candidates": len(self.ranking),
            "distinct_specs": self.distinct_specs,
            "baseline_macs": self.baseline_macs,
            "best": {"alpha": best.alpha, "beta": best.beta, "gamma": best.gamma} if best else None,
            "warning": self.warning,
            "ranking": [c.to_dict() for c in self.ranking],
        }

    def table(self, limit: int | None = None) -> str:
        """The ranking as a Markdown table (accuracy as mean ± 95% t-interval over seeds)."""
        lines = [
            "| rank | α | β | γ | α·β²·γ² | resolution | MACs | × baseline | params | top-1 % |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        shown = self.ranking if limit is None else self.ranking[:limit]
        for rank, c in enumerate(shown, 1):
            acc = c.accuracy
            score = acc.text(2) if acc else "failed: " + next(iter(c.errors.values()), "").splitlines()[0][:80]
            lines.append(
                f"| {rank} | {c.alpha:.3g} | {c.beta:.3g} | {c.gamma:.3g} | {c.product:.3f} | {c.spec.resolution} | "
                f"{c.macs / 1e6:.2f}M | {c.macs / self.baseline_macs:.2f} | {c.params / 1e6:.3f}M | {score} |"
            )
        if limit is not None and len(self.ranking) > limit:
            lines.append(f"| ... {len(self.ranking) - limit} more | | | | | | | | | |")
        return "\n".join(lines)


def grid_candidates(step: float = 0.05, tolerance: float = 0.05, constraint: float = CONSTRAINT) -> list[tuple[float, float, float]]:
    """All (α, β, γ) with α, β, γ = 1 + k·step (k = 0, 1, ...) and |α·β²·γ² − constraint| <= tolerance."""
    if not 0 < step <= 1:
        raise ValueError(f"grid step must be in (0, 1], got {step!r}; the paper's grid is about 0.05")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    limit = constraint + tolerance

    def steps(top: float) -> range:
        # integer steps, so that 1 + 3 * 0.05 is exactly 1.15 and not 1.1500000000000001
        return range(int(math.floor((top - 1) / step + 1e-9)) + 1)

    out = []
    for i in steps(limit):
        alpha = round(1 + i * step, 10)
        for j in steps(math.sqrt(limit / alpha)):
            beta = round(1 + j * step, 10)
            for k in steps(math.sqrt(limit / (alpha * beta**2))):
                gamma = round(1 + k * step, 10)
                if abs(alpha * beta**2 * gamma**2 - constraint) <= tolerance + 1e-12:
                    out.append((alpha, beta, gamma))
    return out


def _key(alpha: float, beta: float, gamma: float, seed: int) -> str:
    return f"a{alpha:g}-b{beta:g}-g{gamma:g}-seed{seed}"


def analytic_cost(spec: NetSpec, num_classes: int | None) -> tuple[int, int]:
    """(MACs, params) of `spec` with its classifier sized for `num_classes` (None: the spec's own)."""
    from effnet.core.profile import profile_spec

    p = profile_spec(spec.replace(num_classes=num_classes) if num_classes else spec)
    return p.macs, p.params


def plan_candidates(baseline: NetSpec, phi: float, step: float, tolerance: float, num_classes: int | None) -> list[GridCandidate]:
    """Every grid point as a scaled spec with its MACs and params, the classifier sized for the task (as it will be trained)."""
    candidates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compound() warns per candidate about the constraint; the search says it once
        for alpha, beta, gamma in grid_candidates(step, tolerance):
            spec = compound(baseline, phi, alpha, beta, gamma, name=f"{baseline.name or 'baseline'}-a{alpha:g}-b{beta:g}-g{gamma:g}")
            macs, params = analytic_cost(spec, num_classes)
            candidates.append(GridCandidate(alpha, beta, gamma, spec, macs, params))
    return candidates


def grid_search(
    baseline: NetSpec,
    *,
    evaluate: Callable[[dict[str, Any]], dict[str, Any]] = evaluate_candidate,
    phi: float = 1.0,
    step: float = 0.05,
    tolerance: float = 0.05,
    train: dict[str, Any] | None = None,
    preset: str = "proxy",
    seeds: Sequence[int] = (0,),
    workers: int = 2,
    ray_address: str | None = None,
    threads_per_worker: int | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    options: dict[str, Any] | None = None,
) -> GridResult:
    """Find α, β, γ for `baseline`: scale by (α^φ, β^φ, γ^φ) for every grid point, train, rank.

    `train` holds TrainConfig options for every candidate (epochs, train_samples, dataset, ...);
    `evaluate(params)` must return a dict with ``top1`` (and may return ``macs``/``params``);
    it gets ``spec``, ``train``, ``preset``, ``seed``, ``alpha``, ``beta``, ``gamma``, ``phi``
    and the multipliers ``depth``, ``width``, ``resolution``. With `out_dir`, progress is saved
    after every candidate; `resume=True` continues a search there (same settings), skipping
    finished candidates. The ranking is also written to `out_dir` (grid.json, grid.md).
    `options` (the command line's, from `effnet.cli.resume`) are saved as `out_dir/options.json` once
    the directory is checked, so that `--resume DIR` needs nothing else.
    """
    from effnet.experiments.trials import Experiment, evaluator_name

    _check_grid(phi, step, tolerance, seeds, log)
    train = dict(train or {})
    num_classes = task_classes(train)
    candidates = plan_candidates(baseline, phi, step, tolerance, num_classes)
    baseline_macs, _ = analytic_cost(baseline, num_classes)
    distinct = len({(c.spec.to_string(), c.spec.resolution, c.spec.stem_channels, c.spec.head_channels) for c in candidates})
    if log:
        log(
            f"grid search: {len(candidates)} (α, β, γ) candidates on a grid of step {step:g} with |α·β²·γ² - {CONSTRAINT:g}| <= {tolerance:g} "
            f"({distinct} distinct networks after rounding), φ = {phi:g}, {len(seeds)} seed(s): {len(candidates) * len(seeds)} training runs"
        )

    identity = {
        "study": "grid-search",
        "baseline": baseline.to_dict(),
        "phi": phi,
        "step": step,
        "tolerance": tolerance,
        "train": train,
        "preset": preset,
        "seeds": [int(s) for s in seeds],
        "evaluator": evaluator_name(evaluate),
        "recipe": recipe(preset),
    }
    experiment = Experiment.open(
        out_dir, identity, what="grid search", resume=resume, options=options, workers=workers, ray_address=ray_address, threads_per_worker=threads_per_worker
    )
    if log and experiment.store is not None and len(experiment.store):
        log(f"resuming: {len(experiment.store)} training run(s) already finished in {experiment.store.path}")

    trials = experiment.run(evaluate, _trial_items(candidates, seeds, train, preset, phi), progress="grid search" if progress else None)
    for c in candidates:
        for seed in seeds:
            c.record(int(seed), trials[_key(c.alpha, c.beta, c.gamma, int(seed))])
    ranking = sorted(candidates, key=lambda c: (not c.scores, -(c.accuracy.mean if c.accuracy else 0.0), c.macs, abs(c.product - CONSTRAINT)))
    result = GridResult(ranking, baseline_macs, phi, step, tolerance, distinct, _warning(candidates, trials, train, len(seeds), num_classes))
    experiment.write("grid.json", json.dumps(result.to_dict(), indent=2) + "\n")
    experiment.write("grid.md", grid_markdown(result, baseline) + "\n")
    return result


def _check_grid(phi: float, step: float, tolerance: float, seeds: Sequence[int], log: Callable[[str], None] | None) -> None:
    """Refuse a grid search that cannot mean anything; warn when the tolerance admits candidates of unequal cost."""
    if not phi >= 0:
        raise SpecError(f"phi must be >= 0, got {phi!r}; the grid search scales the baseline by φ = 1 (twice its MACs)")
    if phi == 0:
        raise SpecError("phi = 0 scales nothing: every candidate would be the baseline; use phi = 1 (the paper's step 1)")
    if not seeds:
        raise ValueError("give at least one seed")
    grid = grid_candidates(step, tolerance)
    if not grid:
        raise ValueError(f"no (α, β, γ) on a grid of step {step:g} lies within {tolerance:g} of α·β²·γ² = {CONSTRAINT:g}; raise --tolerance or lower --step")
    worst = max(abs(a * b**2 * g**2 - CONSTRAINT) for a, b, g in grid)
    if worst > 0.1 + 1e-9:  # the paper-like default tolerances (<= 0.1) stay quiet
        message = (
            f"tolerance {tolerance:g} admits candidates with α·β²·γ² far from {CONSTRAINT:g} (up to {worst:.3f} away): they do not double MACs "
            "per unit φ, so their accuracies are not compared at equal cost (a tolerance of about 0.05-0.1 keeps them comparable)"
        )
        warnings.warn(message, stacklevel=3)
        if log:
            log(f"warning: {message}")


def _trial_items(candidates: list[GridCandidate], seeds: Sequence[int], train: dict[str, Any], preset: str, phi: float) -> list[tuple[str, dict[str, Any]]]:
    """(key, params) of every training run: each candidate with each seed."""
    items = []
    for c in candidates:
        depth, width, resolution = c.alpha**phi, c.beta**phi, c.gamma**phi
        for seed in seeds:
            params = {
                "spec": c.spec.to_dict(),
                "train": train,
                "preset": preset,
                "seed": int(seed),
                "alpha": c.alpha,
                "beta": c.beta,
                "gamma": c.gamma,
                "phi": phi,
                "depth": depth,
                "width": width,
                "resolution": resolution,
            }
            items.append((_key(c.alpha, c.beta, c.gamma, int(seed)), params))
    return items


def _warning(candidates: list[GridCandidate], trials: dict[str, Any], train: dict[str, Any], seeds: int, num_classes: int | None) -> str | None:
    """`ranking_warning` of the candidates' mean accuracies, with chance from the task's classes."""
    from effnet.experiments.ranking import ranking_warning

    classes = next((int(t.result["classes"]) for t in trials.values() if t.ok and t.result.get("classes")), num_classes)
    synthetic = train.get("dataset", "synthetic") in GENERATED_DATASETS
    return ranking_warning(
        [c.accuracy.mean for c in candidates if c.accuracy],
        chance=100.0 / classes if classes else None,
        samples=int(train["val_samples"]) * seeds if synthetic and train.get("val_samples") else None,  # other datasets: at most that many
    )


def grid_markdown(result: GridResult, baseline: NetSpec) -> str:
    """A short Markdown report of a grid search: settings, the best (α, β, γ) and the ranking."""
    best = result.best
    lines = [
        "# α/β/γ grid search",
        "",
        f"Baseline `{baseline.name or 'custom'}` at {baseline.resolution} px, {result.baseline_macs / 1e6:.2f}M MACs; φ = {result.phi:g}, "
        f"grid step {result.step:g}, |α·β²·γ² − 2| ≤ {result.tolerance:g}: {len(result.ranking)} candidates ({result.distinct_specs} distinct networks).",
        "",
    ]
    if best:
        lines.append(f"**Best: α = {best.alpha:g}, β = {best.beta:g}, γ = {best.gamma:g}** (top-1 {best.accuracy.text(2)} %, {best.macs / 1e6:.2f}M MACs).")
    else:
        lines.append("**Every candidate failed**; see the errors below.")
    if result.warning:
        lines += ["", f"**Warning:** {result.warning}."]
    lines += ["", "Top-1 is the mean over seeds ± the 95% t-interval (no interval with one seed).", "", result.table()]
    return "\n".join(lines)
