"""`effnet study scaling`: the paper's scaling experiments, small, with seeds and confidence intervals.

Three parts, all trained with the same proxy budget (`effnet.experiments.proxy.evaluate_candidate`):

(a) width, depth and resolution scaled alone: accuracy against MACs (paper Figure 3);
(b) width scaled at several (depth, resolution) settings (Figure 4);
(c) single-dimension against compound scaling at matched MACs (Table 3's rows): for each target
    (a multiple of the baseline's MACs) the width-only, depth-only and resolution-only
    multipliers and the compound φ that land on it (`effnet.core.scaling.scale_to_macs`).

Every network is trained once per seed (networks that appear in several parts are shared);
accuracies are reported as mean ± the 95% Student-t interval over seeds, and compound is
compared with each single dimension by the paired difference over seeds (a seed fixes the
synthetic images, the data order and the initial draw for every network alike).
Results are stored after every training run (`trials.json`), so `--resume` continues a killed study.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.core.scaling import ALPHA, BETA, GAMMA, scale, scale_along
from effnet.core.spec import NetSpec
from effnet.experiments.proxy import evaluate_candidate, recipe, task_classes
from effnet.experiments.study.invocation import cpu_times, device_name, images_per_run, own_cpu_seconds, previous_runs
from effnet.experiments.study.results import Point, StudyPreset, StudyResult
from effnet.experiments.study.stopping import stopping_decision, trial_key
from effnet.train.config import GENERATED_DATASETS, dataset_for

DIMENSIONS = ("width", "depth", "resolution")
PARTS = ("fig3", "fig4", "table3")  # (a), (b), (c)


PRESETS: dict[str, StudyPreset] = {
    # 2 CPU cores, Table 3 (--parts table3) under 30 minutes. B0 at half width and 3/4 depth at 64 px (half the synthetic task's native
    # 128 px): at 4x its MACs, width-only, depth-only, resolution-only (128 px) and compound all land within 2% of
    # the target, which smaller baselines (32 px, half depth) do not allow: there one more pixel or one more block
    # per stage jumps MACs by 10-300%. The matched single-dimension networks also end the Figure 3 curves.
    "mini": StudyPreset(
        name="mini",
        description="2 CPU cores, table3 < 30 min: B0 x0.5 width, x0.75 depth at 64 px on 4 shapes classes, 10 epochs x 1000 images (batch 32), "
        "3 seeds, more for comparisons wider than +-4 points within 28 min",
        model="efficientnet_b0",
        base_width=0.5,
        base_depth=0.75,
        base_resolution=64,
        # shapes, not synthetic: on the synthetic task every mini network stayed within 4 points of chance. 4 classes
        # (relation x texture): each network learns both within the budget, and how much of the texture it can see
        # grows with resolution. Trained with the proxy recipe's zero-initialised residuals (without them depth only
        # never left chance) and stripes coarse enough at 64 px that every run learns them (with finer ones each
        # 64 px run either found them or not, and the paired differences spanned 40+ points).
        dataset="shapes",
        num_classes=4,
        # batch 32: at batch 16 the baseline stays near chance (benchmarks/results/proxy_pairs/archive/proxy_task/README.md). 10 epochs x
        # 1000 images (310 steps), where every network has levelled off; at 7 epochs x 5 seeds some runs were still
        # climbing and the spreads widened. 1000 validation images keep the binomial noise of one top-1 under ~2
        # points. The loader path: on the CPU the data work is a few percent of a run either way. The budgets tried,
        # their costs and how each run fell: benchmarks/results/scaling_study_mini/ACCEPTANCE.md.
        train={"epochs": 10, "train_samples": 1000, "val_samples": 1000, "batch_size": 32},
        # 3 seeds for every network, then more only for the comparisons still wider than +-4 points (the seeds of
        # their two networks, as their spread asks), as long as that fits 28 minutes: 3 seeds of everything fit
        # about two thirds of that, and the spreads differ by network (deep networks' runs vary the most).
        seeds=3,
        until_half_width=4.0,
        max_seeds=10,
        budget_minutes=28.0,
        width=(1.4,),
        depth=(2.0,),
        resolution=(1.3,),
        fig4_settings=((1.0, 1.0), (2.0, 1.3)),
        fig4_widths=(1.0, 1.4),
        targets=(4.0,),
    ),
    # One GPU, Table 3 at two targets in minutes: the mini preset's task at 10 epochs, where its networks have levelled
    # off on 2 CPU cores. Full depth instead of x0.75 because there all eight matched rows land within 2% of 4x and 8x.
    # The data stay on the GPU as tensors (no loader processes) and four trainings share the GPU, since one small
    # network alone leaves it mostly idle. On the CPU the on-device path and the loader agree on the mini networks
    # (benchmarks/results/proxy_pairs/README.md).
    "gpu-table3": StudyPreset(
        name="gpu-table3",
        description="one GPU, --parts table3 in minutes: B0 x0.5 width at 64 px on 4 shapes classes, targets 4x and 8x, 10 epochs x 2000 images "
        "(batch 64, data on the GPU), 5 seeds, 4 trainings at once",
        model="efficientnet_b0",
        base_width=0.5,
        base_depth=1.0,
        base_resolution=64,
        dataset="shapes",
        num_classes=4,
        train={"epochs": 10, "train_samples": 2000, "val_samples": 1000, "batch_size": 64, "data_on_device": True},
        seeds=5,
        width=(1.4, 2.0),
        depth=(2.0, 3.0),
        resolution=(1.3, 1.6),
        fig4_settings=((1.0, 1.0), (2.0, 1.3)),
        fig4_widths=(1.0, 1.4),
        targets=(4.0, 8.0),
        workers=4,
    ),
    # a many-core CPU or a GPU for an hour or so; at 96 px the matched rows land within ~1% of 4x and 8x
    "small": StudyPreset(
        name="small",
        description="many CPU cores or one GPU, ~1 h: B0 x0.5 width at 96 px on 10 synthetic classes, 10 epochs x 4000 images, 5 seeds",
        model="efficientnet_b0",
        base_width=0.5,
        base_depth=1.0,
        base_resolution=96,
        num_classes=10,
        train={"epochs": 10, "train_samples": 4000, "val_samples": 1000, "batch_size": 64},
        seeds=5,
        width=(1.4, 2.0),
        depth=(2.0, 3.0),
        resolution=(1.3, 1.6),
        fig4_settings=((1.0, 1.0), (2.0, 1.0), (1.0, 1.3), (2.0, 1.3)),
        fig4_widths=(1.0, 1.4, 2.0),
        targets=(4.0, 8.0),
    ),
    # GPUs: the full-size B0 at 96 px (at 112 or 128 px some matched rows miss 4x or 8x by 5-7%)
    "gpu": StudyPreset(
        name="gpu",
        description="GPU(s), hours: B0 at 96 px on 20 synthetic classes, 30 epochs x 20000 images, 5 seeds",
        model="efficientnet_b0",
        base_width=1.0,
        base_depth=1.0,
        base_resolution=96,
        num_classes=20,
        train={"epochs": 30, "train_samples": 20000, "val_samples": 4000, "batch_size": 128, "workers": 4},
        seeds=5,
        width=(1.4, 2.0, 2.6, 3.8),
        depth=(2.0, 3.0, 4.0, 6.0),
        resolution=(1.3, 1.7, 2.0, 2.5),
        fig4_settings=((1.0, 1.0), (2.0, 1.0), (1.0, 1.3), (2.0, 1.3)),
        fig4_widths=(1.0, 1.4, 2.0, 2.6),
        targets=(4.0, 8.0),
        workers=1,
    ),
}


def baseline_of(preset: StudyPreset, spec: NetSpec | None = None, num_classes: int | None = None) -> NetSpec:
    """The study's baseline: `spec` as given, or the preset's named model scaled down; classifier sized for the task."""
    from effnet.core.zoo import get_spec

    if spec is None:
        spec = scale(
            get_spec(preset.model),
            width=preset.base_width,
            depth=preset.base_depth,
            image_size=preset.base_resolution,
            name=f"{preset.model}-w{preset.base_width:g}-d{preset.base_depth:g}-{preset.base_resolution}px",
        )
    return spec.replace(num_classes=num_classes) if num_classes else spec


def _macs(spec: NetSpec) -> tuple[int, int]:
    from effnet.core.profile import profile_spec

    p = profile_spec(spec)
    return p.macs, p.params


def plan(
    preset: StudyPreset,
    baseline: NetSpec,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    targets: Sequence[float] | None = None,
    parts: Sequence[str] = PARTS,
) -> list[Point]:
    """The networks of the chosen parts (before training): specs, multipliers and analytic MACs; the baseline always."""
    from effnet.core.scaling import scale_to_macs

    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ValueError(f"unknown part(s) {unknown or parts}; choose from {', '.join(PARTS)} (Figure 3, Figure 4, Table 3)")
    points = [Point("baseline", "baseline", baseline)]
    for dim in DIMENSIONS if "fig3" in parts else ():  # (a) one dimension at a time
        for m in getattr(preset, dim):
            points.append(Point(dim, f"{dim} x{m:g}", scale_along(baseline, dim, m), **{dim: m}))
    for d, r in preset.fig4_settings if "fig4" in parts else ():  # (b) width at fixed (depth, resolution)
        for w in preset.fig4_widths:
            points.append(Point("fig4", f"d={d:g}, r={r:g}, w={w:g}", scale(baseline, depth=d, width=w, resolution_mult=r), depth=d, width=w, resolution=r))
    base_macs, _ = _macs(baseline)
    for factor in (targets if targets is not None else preset.targets) if "table3" in parts else ():  # (c) matched MACs
        if not factor > 1:
            raise ValueError(
                f"MACs target x{factor:g} is not above the baseline's {base_macs / 1e6:.2f}M MACs: scaling up a dimension cannot reach it; "
                "give targets > 1 (multiples of the baseline's MACs)"
            )
        target = int(round(factor * base_macs))
        for dim in DIMENSIONS:
            spec, m = scale_to_macs(baseline, target, dimension=dim)
            points.append(Point("matched", f"{dim} only", spec, target_macs=target, **{dim: float(m)}))
        spec, phi = scale_to_macs(baseline, target, dimension="compound", alpha=alpha, beta=beta, gamma=gamma)
        points.append(Point("matched", "compound", spec, depth=alpha**phi, width=beta**phi, resolution=gamma**phi, phi=float(phi), target_macs=target))
    for p in points:
        p.macs, p.params = _macs(p.spec)
    return points


def run_study(
    preset: StudyPreset,
    *,
    out_dir: str | Path,
    baseline_spec: NetSpec | None = None,
    dataset: str | None = None,
    data_dir: str = "",
    seeds: int | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    threads_per_worker: int | None = None,
    train: dict[str, Any] | None = None,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    targets: Sequence[float] | None = None,
    parts: Sequence[str] = PARTS,
    until_half_width: float | None = None,
    max_seeds: int | None = None,
    budget_minutes: float | None = None,
    resume: bool = False,
    evaluate: Callable[[dict[str, Any]], dict[str, Any]] = evaluate_candidate,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    options: dict[str, Any] | None = None,
) -> StudyResult:
    """Run (or resume) the study of `preset` into `out_dir`: trials.json, study.json, report.md and PNG plots.

    `options` (the command line's, from `effnet.cli.resume`) are saved as `out_dir/options.json` once the
    directory is checked, so that `--resume DIR` needs nothing else.

    `until_half_width` is a stopping rule fixed before the run (Stein's two-stage idea, repeated): after the
    first `seeds`, while some Table 3 "compound - row" 95% half-width exceeds it, the networks of those comparisons
    (the row and compound) grow to the seeds that the observed spread says are needed (at least one more, at most
    `max_seeds`); resolved comparisons keep their seeds. Growth that would not finish within `budget_minutes` of
    this invocation (estimated from the runs' measured times) is cut back, one seed at a time. Each of the three is
    the preset's when None; `until_half_width` 0 turns the rule off (fixed seeds), `budget_minutes` 0 lifts the budget.
    """
    from effnet.experiments.study.report import write_report
    from effnet.experiments.trials import Experiment, evaluator_name

    started = time.perf_counter()
    cpu0, busy0 = own_cpu_seconds(), cpu_times()
    _check_constraint(alpha, beta, gamma, log)
    rule = _Rule.of(preset, seeds, until_half_width, max_seeds, budget_minutes, parts)
    dataset, train_options, num_classes = _training(preset, train, dataset, data_dir)
    baseline = baseline_of(preset, baseline_spec, num_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the constraint was checked (and warned about) once above
        points = plan(preset, baseline, alpha, beta, gamma, targets, parts)

    identity = {"study": "scaling", "preset": preset.name, "baseline": baseline.to_dict(), "train": train_options}
    identity.update(alpha=alpha, beta=beta, gamma=gamma, evaluator=evaluator_name(evaluate), recipe=recipe())
    run_workers = workers if workers is not None else preset.workers
    experiment = Experiment.open(
        out_dir, identity, what="study", resume=resume, options=options, workers=run_workers, ray_address=ray_address, threads_per_worker=threads_per_worker
    )
    seed_list = list(range(rule.seeds))
    run = _Runs(experiment, evaluate, points, train_options, rule.seeds)
    if log:
        _log_plan(log, preset, baseline, points, run, rule)
    stopping = run.until_resolved(
        rule,
        lambda: StudyResult(preset, baseline, points, seed_list, alpha, beta, gamma, dataset),
        workers=run_workers or 1,
        started=started,
        progress=progress,
        log=log,
    )
    wall = time.perf_counter() - started
    machine = _machine(run, train_options, run_workers, cpu0, busy0, wall)
    runs = _runs_so_far(Path(out_dir), resume, machine, wall)
    result = StudyResult(preset, baseline, points, seed_list, alpha, beta, gamma, dataset, wall, machine, runs, train_options, stopping)
    write_report(result, out_dir)
    return result


def _check_constraint(alpha: float, beta: float, gamma: float, log: Callable[[str], None] | None) -> None:
    """Warn when α·β²·γ² is far from 2: compound scaling then does not double MACs per unit φ."""
    product = alpha * beta**2 * gamma**2
    if abs(product - 2.0) > 0.1:
        message = f"alpha * beta^2 * gamma^2 = {product:.3f} is far from 2: compound scaling then does not double MACs per unit phi"
        warnings.warn(message, stacklevel=3)
        if log:
            log(f"warning: {message}")


@dataclass
class _Rule:
    """The seeds a study starts with and its stopping rule (`until_half_width` None: fixed seeds), checked."""

    seeds: int
    until_half_width: float | None
    max_seeds: int
    budget_minutes: float | None

    @classmethod
    def of(
        cls, preset: StudyPreset, seeds: int | None, until_half_width: float | None, max_seeds: int | None, budget_minutes: float | None, parts: Sequence[str]
    ) -> _Rule:
        """The preset's values where the caller's are None; errors name the command-line option."""
        n_seeds = preset.seeds if seeds is None else seeds
        if n_seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {n_seeds}")
        explicit_rule = until_half_width is not None
        until_half_width = preset.until_half_width if until_half_width is None else until_half_width
        max_seeds = preset.max_seeds if max_seeds is None else max_seeds
        budget_minutes = preset.budget_minutes if budget_minutes is None else budget_minutes
        if until_half_width is not None and until_half_width < 0:
            raise ValueError(f"--until-half-width must be > 0 points (0: fixed seeds), got {until_half_width:g}")
        if not until_half_width or ("table3" not in parts and not explicit_rule):
            until_half_width = None  # off, or the preset's rule on a run without Table 3's comparisons
        if until_half_width is not None:
            if "table3" not in parts:
                raise ValueError(f"--until-half-width needs the table3 part (got parts {', '.join(parts)})")
            n_seeds = max(n_seeds, 2)  # a spread needs two seeds
            if max_seeds < n_seeds:
                raise ValueError(f"--max-seeds {max_seeds} is below the {n_seeds} seeds the study starts with")
        if budget_minutes is not None and budget_minutes < 0:
            raise ValueError(f"--budget-minutes must be >= 0 (0: no budget), got {budget_minutes:g}")
        return cls(n_seeds, until_half_width, max_seeds, budget_minutes)


def _training(preset: StudyPreset, train: dict[str, Any] | None, dataset: str | None, data_dir: str) -> tuple[str, dict[str, Any], int | None]:
    """(the dataset, the TrainConfig options of every run, the task's classes) from the preset and the caller's choices."""
    train_options = {**preset.train, **(train or {})}
    dataset = dataset_for(dataset, data_dir, preset.dataset)
    if dataset != "synthetic":
        train_options.update(dataset=dataset, data_dir=data_dir)
        if dataset == "folder" and not data_dir:
            raise ValueError("--dataset folder needs --data-dir (train/CLASS/*.jpg and val/CLASS/*.jpg, or CLASS/*.jpg)")
    if dataset not in GENERATED_DATASETS:  # a preset's on-device data is for the generated tasks; real images go through the loader
        train_options.pop("data_on_device", None)
    # a generated task has the preset's class count unless told otherwise; real data has its own
    num_classes = train_options.setdefault("num_classes", preset.num_classes) if dataset in GENERATED_DATASETS else task_classes(train_options)
    return dataset, train_options, num_classes


class _Runs:
    """The study's training runs: every distinct network at its seeds, grown by the stopping rule."""

    def __init__(self, experiment: Any, evaluate: Callable[[dict[str, Any]], dict[str, Any]], points: list[Point], train: dict[str, Any], seeds: int) -> None:
        self.experiment, self.evaluate, self.points, self.train = experiment, evaluate, points, train
        self.unique: dict[str, Point] = {}
        for p in points:
            self.unique.setdefault(p.key, p)
        # biggest networks first: a pool then ends with short runs instead of one long straggler
        self.order = sorted(self.unique.values(), key=lambda p: -p.macs)
        self.seeds_of = {key: seeds for key in self.unique}  # each network's seeds are 0 .. n-1; the stopping rule grows some
        self.items = self.items_now()
        self.already = experiment.stored(self.items)
        self.trials: dict[str, Any] = {}

    def items_now(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (trial_key(p.key, s), {"spec": p.spec.to_dict(), "train": self.train, "seed": s, "label": p.label})
            for s in range(max(self.seeds_of.values()))
            for p in self.order
            if s < self.seeds_of[p.key]
        ]

    def until_resolved(
        self, rule: _Rule, so_far: Callable[[], StudyResult], *, workers: int, started: float, progress: bool, log: Callable[[str], None] | None
    ) -> dict[str, Any] | None:
        """Train, record, and while the stopping rule asks for more seeds grow them; returns the rule's record (None: fixed seeds)."""
        stopping, rounds = None, []  # rounds: what the stopping rule saw and grew, in order
        while True:
            self.trials = self.experiment.run(self.evaluate, self.items, progress="study" if progress else None)
            for p in self.points:
                for s in range(self.seeds_of[p.key]):
                    p.record(s, self.trials[trial_key(p.key, s)])
            if rule.until_half_width is None:
                return stopping
            run_seconds = {key: [self.trials[trial_key(key, s)].seconds for s in range(n)] for key, n in self.seeds_of.items()}
            seconds_left = rule.budget_minutes * 60 - (time.perf_counter() - started) if rule.budget_minutes else None
            stopping, grow = stopping_decision(
                so_far(),
                rule.until_half_width,
                rule.max_seeds,
                run_seconds={key: sum(v) / len(v) for key, v in run_seconds.items()},
                stored=lambda key: bool(self.experiment.stored([(key, {})])),
                workers=workers,
                seconds_left=seconds_left,
            )
            if not grow:
                stopping["rounds"] = rounds
                return stopping
            grown = ", ".join(f"{name} to {n}" for name, n in stopping["growth"].items())
            rounds.append(f"{stopping['reason']}: grew {grown} seeds")
            if log:
                log(f"stopping rule: {stopping['reason']}; growing {grown} seeds")
            self.seeds_of.update(grow)
            known = {key for key, _ in self.items}
            self.items = self.items_now()
            self.already |= self.experiment.stored([item for item in self.items if item[0] not in known])


def _runs_so_far(out_dir: Path, resume: bool, machine: dict[str, Any], wall: float) -> list[dict[str, Any]]:
    """study.json's invocation records: a resumed study's earlier ones, and this one unless it trained nothing."""
    runs = previous_runs(out_dir) if resume else []
    # a resume that trained nothing (the report regenerated) is not an invocation worth listing
    if machine["runs_trained_now"] or not runs:
        runs.append({"finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_seconds": round(wall, 1), **machine})
    return runs


def _log_plan(log: Callable[[str], None], preset: StudyPreset, baseline: NetSpec, points: list[Point], run: _Runs, rule: _Rule) -> None:
    """The study's plan in a few lines: networks, seeds, runs, the stopping rule and each matched-MACs point."""
    log(
        f"scaling study '{preset.name}': baseline {baseline.name or 'custom'} at {baseline.resolution} px, {points[0].macs / 1e6:.2f}M MACs; "
        f"{len(points)} points, {len(run.unique)} distinct networks x {rule.seeds} seeds = {len(run.items)} training runs"
        + (f" ({len(run.already)} already done)" if len(run.experiment.store) else "")
        + (
            f"; the seeds of unresolved comparisons grow until every compound - row half-width <= {rule.until_half_width:g} points "
            f"(at most {rule.max_seeds}" + (f", within {rule.budget_minutes:g} min)" if rule.budget_minutes else ")")
            if rule.until_half_width
            else ""
        )
    )
    for p in points:
        if p.part == "matched":
            log(f"  matched {p.target_macs / 1e6:.2f}M MACs: {p.label:<16} {p.macs / 1e6:.2f}M ({100 * (p.macs - p.target_macs) / p.target_macs:+.1f}%)")


def _machine(run: _Runs, train_options: dict[str, Any], workers: int | None, cpu0: float, busy0: tuple[int, int], wall: float) -> dict[str, Any]:
    """What this invocation used and trained (study.json's `runs` record, less its time stamp and wall time)."""
    busy1 = cpu_times()
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "workers": workers,
        "own_cpu_seconds": round(own_cpu_seconds() - cpu0, 1),
        "machine_busy_share": round((busy1[0] - busy0[0]) / (busy1[1] - busy0[1]), 3) if busy1[1] > busy0[1] else None,
        "runs_trained_now": len(run.items) - len(run.already),
        "runs_resumed": len(run.already),
        "training_seconds_sum": round(sum(t.seconds for t in run.trials.values()), 1),
        "device": device_name(train_options),
    }
    images = images_per_run(train_options)
    if images is not None:
        machine["training_images"] = images * machine["runs_trained_now"]
        machine["images_per_second"] = round(machine["training_images"] / wall, 1) if wall > 0 else None
    return machine
