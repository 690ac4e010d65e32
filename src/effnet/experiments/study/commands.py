"""`effnet grid-search` and `effnet study scaling`: argument parsing and printing."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from effnet.cli.resume import Resolved, ResumableOptions
from effnet.core.scaling import ALPHA, BETA, GAMMA
from effnet.train.config import DATASET_DEFAULT_HELP

# 4 classes: on the synthetic task a few thousand images of proxy training get small nets above chance on 4 classes, not on 10
SYNTHETIC_CLASSES = 4
# TrainConfig options the grid search exposes as its training budget (all others: `--train-config FILE`)
BUDGET_OPTIONS = (
    ("epochs", int, 4, "training epochs per candidate"),
    ("train_samples", int, 1000, "synthetic task: training images (a fixed subset for other datasets)"),
    ("val_samples", int, 400, "synthetic task: validation images (a fixed subset for other datasets)"),
    ("batch_size", int, 32, "images per step"),
    ("num_classes", int, 0, "classes (0: 4 for the synthetic task, the data's own otherwise)"),
)


GRID = ResumableOptions("grid-search", "grid search", "trials.json", may_change={"workers", "threads", "ray_address", "progress"}, not_saved={"list", "json"})
STUDY = ResumableOptions(
    "study scaling",
    "scaling study",
    "trials.json",
    may_change={"workers", "threads", "ray_address", "progress", "seeds", "parts", "targets", "until_half_width", "max_seeds", "budget_minutes"},
)


def add_study_commands(command: Any) -> None:
    """Register `grid-search` and `study` with the CLI's `command(name, handler, summary, description, epilog)`."""
    _add_grid_search_command(command)
    _add_study_scaling_command(command)


def _add_grid_search_command(command: Any) -> None:
    """`effnet grid-search` and its options."""
    p = command(
        "grid-search",
        run_grid_search,
        "step 1 of compound scaling: find α, β, γ for a baseline by a small grid search",
        "Enumerate α, β, γ >= 1 on a grid under |α·β²·γ² - 2| <= tolerance, scale the baseline by (α^φ, β^φ, γ^φ)\n"
        "(φ = 1: twice the MACs), train every candidate for the same proxy budget, rank them by accuracy (MACs shown)\n"
        "and print the best. Candidates run in parallel worker processes, or on a Ray cluster with --ray-address.\n"
        "Progress is saved after every candidate in OUT_DIR/trials.json, the options in OUT_DIR/options.json:\n"
        "--resume OUT_DIR continues a killed search with no other option needed.",
        epilog="examples:\n"
        "  effnet grid-search efficientnet_b0 --step 0.1 --tolerance 0.1 --workers 2 --out-dir runs/grid\n"
        "  effnet grid-search my_spec.json --epochs 10 --dataset folder --data-dir DATA --out-dir runs/grid\n"
        "  effnet grid-search --resume runs/grid                                # after a kill: finished candidates are kept\n"
        "  effnet grid-search efficientnet_b0 --ray-address 127.0.0.1:6379      # a `ray start --head` cluster ('local': Ray on this machine)",
    )
    add = GRID.add
    add(
        p, "baseline", nargs="?", metavar="NAME_OR_SPEC", path=Path.is_file, help="model name (effnet models), spec file (JSON or block string) or block string"
    )
    add(p, "--phi", type=float, default=1.0, help="compound coefficient of the candidates (the paper's step 1: 1)")
    add(p, "--step", type=float, default=0.05, help="grid step of α, β, γ (from 1 upwards)")
    add(p, "--tolerance", type=float, default=0.05, help="keep candidates with |α·β²·γ² - 2| <= this")
    add(p, "--resolution-base", type=int, default=0, metavar="PX", help="set the baseline's resolution first (0: keep its own)", shown="0")
    add(p, "--seeds", type=int, default=1, help="training runs per candidate (different seeds); accuracy is their mean")
    _add_execution_options(p, GRID, default_out="runs/grid-search")
    for name, kind, default, text in BUDGET_OPTIONS:
        add(p, "--" + name.replace("_", "-"), type=kind, default=default, help=text, shown=str(default))
    add(p, "--dataset", default="", help="synthetic or shapes (built-in proxy tasks), folder, cifar10 or cifar100", shown=DATASET_DEFAULT_HELP)
    add(p, "--data-dir", default="", path=True, help="dataset root (folder, cifar)")
    add(p, "--train-config", metavar="FILE", path=True, help="YAML/JSON file of further TrainConfig options for every candidate (e.g. lr, optimizer)")
    add(p, "--list", action="store_true", help="only list the grid's candidates with their MACs; train nothing")
    add(p, "--json", action="store_true", help="print the result as JSON")


def _add_study_scaling_command(command: Any) -> None:
    """`effnet study scaling` and its options."""
    p = command(
        "study",
        _study_help,
        "scaling experiments: `effnet study scaling`",
        "Scaling experiments of the paper, small: `effnet study scaling --preset mini --parts table3` runs on 2 CPU cores in under 30 minutes.",
        epilog="example:\n  effnet study scaling --preset mini --out-dir runs/study",
    )
    sub = p.add_subparsers(dest="study_command", metavar="STUDY", title="studies")
    s = sub.add_parser(
        "scaling",
        help="width, depth, resolution alone (Fig. 3), width at (d, r) (Fig. 4), single vs compound at matched MACs (Table 3)",
        description="The paper's scaling study on the synthetic proxy task (or your dataset), with several seeds and 95% t-intervals:\n"
        "(a) accuracy against MACs for width, depth and resolution scaled alone (Figure 3),\n"
        "(b) width scaling at several (depth, resolution) settings (Figure 4),\n"
        "(c) width-only, depth-only, resolution-only and compound scaling at matched MACs (Table 3's rows).\n"
        "Writes report.md, study.json and PNG plots into --out-dir; trials.json and options.json let --resume OUT_DIR\n"
        "continue a killed study with no other option needed (--seeds, --parts and --targets may change: the study grows).",
        epilog="presets:\n"
        + "\n".join(f"  {name:<6} {preset.description}" for name, preset in _presets().items())
        + "\nexamples:\n  effnet study scaling --preset mini --out-dir runs/study\n"
        "  effnet study scaling --preset small --dataset folder --data-dir DATA --workers 8 --out-dir runs/study-mine\n"
        "  effnet study scaling --resume runs/study",
        formatter_class=p.formatter_class,
    )
    s.set_defaults(handler=run_study_scaling)
    add = STUDY.add
    add(s, "--preset", choices=sorted(_presets()), default="mini", help="size of the study (see below)")
    add(s, "--baseline", metavar="NAME_OR_SPEC", path=Path.is_file, help="your baseline (model name, spec file or block string) instead of the preset's")
    add(s, "--dataset", help="synthetic or shapes (built-in proxy tasks), folder, cifar10 or cifar100", shown="folder with --data-dir, else the preset's")
    add(s, "--data-dir", default="", path=True, help="dataset root (folder, cifar)")
    add(s, "--seeds", type=int, help="seeds per network", shown="the preset's")
    add(
        s,
        "--until-half-width",
        type=float,
        metavar="POINTS",
        help="stopping rule: after --seeds, add seeds to the networks of each Table 3 'compound - row' comparison until its 95%% "
        "half-width is <= POINTS (0: fixed seeds)",
        shown="the preset's",
    )
    add(s, "--max-seeds", type=int, help="the stopping rule's cap on seeds per network", shown="the preset's")
    add(
        s,
        "--budget-minutes",
        type=float,
        metavar="MIN",
        help="the stopping rule adds no seeds that would not finish within MIN minutes of this invocation (0: no budget)",
        shown="the preset's",
    )
    add(s, "--targets", type=float, nargs="+", help="matched-MACs targets as multiples of the baseline's MACs", shown="the preset's")
    add(
        s,
        "--parts",
        nargs="+",
        choices=("fig3", "fig4", "table3"),
        default=["fig3", "fig4", "table3"],
        help="which parts to run: fig3 (one dimension at a time), fig4 (width at (d, r)), table3 (matched MACs)",
    )
    add(s, "--alpha", type=float, default=ALPHA, help="compound scaling: depth base")
    add(s, "--beta", type=float, default=BETA, help="compound scaling: width base")
    add(s, "--gamma", type=float, default=GAMMA, help="compound scaling: resolution base")
    add(s, "--epochs", type=int, help="override the preset's epochs per run")
    add(s, "--train-samples", type=int, help="override the preset's training images per run")
    _add_execution_options(s, STUDY, default_out="runs/study-scaling", workers_shown="the preset's")


def _presets() -> dict[str, Any]:
    from effnet.experiments.study.scaling_study import PRESETS

    return PRESETS


def _add_execution_options(
    p: argparse.ArgumentParser, options: ResumableOptions, default_out: str, workers_default: int | None = 2, workers_shown: str | None = None
) -> None:
    add = options.add
    add(
        p,
        "--workers",
        type=int,
        default=workers_default,
        shown=workers_shown,
        help="trainings in parallel (local processes, or Ray CPUs with --ray-address local)",
    )
    add(p, "--threads", type=int, help="torch threads per worker", shown="CPUs // workers")
    add(p, "--ray-address", metavar="ADDRESS", help="run on Ray: 'local' or a cluster address such as 127.0.0.1:6379")
    p.add_argument("--out-dir", default=None, help=f"where trials.json (progress), options.json, results and the report go (default: {default_out})")
    options.add_resume(p)
    add(p, "--no-progress", dest="progress", action="store_false", default=True, help="no progress bar")


def _study_help(args: argparse.Namespace) -> int:
    print("effnet study: choose a study, e.g. `effnet study scaling --preset mini` (see `effnet study scaling --help`)", file=sys.stderr)
    return 2


def _baseline(run: Resolved) -> dict[str, Any] | None:
    """The baseline as a spec dict: `resolve_spec` of the argument given now, else the spec saved with the run being resumed."""
    from effnet.core.zoo import resolve_spec

    return _file_inputs(run, "baseline", "baseline_spec", lambda text: resolve_spec(text).to_dict())


def _execution(run: Resolved, options: dict[str, Any]) -> dict[str, Any]:
    """How a grid search or a study runs (not what it computes): where, resumed or not, on what, and what it says."""
    v = run.values
    return {
        "out_dir": run.out_dir,
        "resume": run.resuming,
        "workers": v.workers,
        "ray_address": v.ray_address,
        "threads_per_worker": v.threads,
        "progress": v.progress,
        "log": lambda text: print(text, file=sys.stderr),
        "options": options,
    }


def _file_inputs(run: Resolved, option: str, saved_key: str, read: Any) -> Any:
    """An input file's contents: read now when given (or on a new run), else the contents saved with the run being resumed."""
    if run.from_saved(option) and run.saved is not None and saved_key in run.saved:
        return run.saved[saved_key]
    value = getattr(run.values, option)
    return read(value) if value else None


def run_grid_search(args: argparse.Namespace) -> int:
    """`effnet grid-search`: list or run the α/β/γ grid and print the ranking and the best."""
    import shlex
    import warnings

    from effnet.core.spec import NetSpec, SpecError
    from effnet.experiments.study.grid import analytic_cost, grid_search, plan_candidates, task_classes
    from effnet.train.config import dataset_for, read_config_file

    run = GRID.resolve(args, default_out="runs/grid-search")
    v = run.values
    v.dataset = dataset_for(v.dataset, v.data_dir)
    if v.phi < 0:
        raise SpecError(f"--phi must be >= 0, got {v.phi:g}; the grid search scales by φ = 1 (twice the baseline's MACs)")
    if v.baseline is None:
        raise SpecError("give the baseline to scale (NAME_OR_SPEC: a model name, spec file or block string), or --resume DIR to continue a grid search")
    baseline_dict = _baseline(run)
    baseline = NetSpec.from_dict(baseline_dict)
    if v.resolution_base:
        baseline = baseline.replace(resolution=v.resolution_base)
    extra = _file_inputs(run, "train_config", "train_config_contents", read_config_file) or {}
    train: dict[str, Any] = dict(extra)
    for name, _, _, _ in BUDGET_OPTIONS:
        if name != "num_classes":
            train[name] = getattr(v, name)
    if v.num_classes:
        train["num_classes"] = v.num_classes
    elif v.dataset == "synthetic":
        train["num_classes"] = SYNTHETIC_CLASSES
    if v.dataset != "synthetic":
        train.update(dataset=v.dataset, data_dir=v.data_dir)
    if v.list:
        candidates = plan_candidates(baseline, v.phi, v.step, v.tolerance, task_classes(train))
        base, _ = analytic_cost(baseline, task_classes(train))
        print(f"{len(candidates)} candidates (step {v.step:g}, |α·β²·γ² - 2| <= {v.tolerance:g}), φ = {v.phi:g}; MACs with the classifier of the task:")
        for c in candidates:
            print(
                f"  α={c.alpha:<5g} β={c.beta:<5g} γ={c.gamma:<5g} α·β²·γ²={c.product:.3f}  {c.spec.resolution:>4} px  "
                f"{c.macs / 1e6:9.2f}M MACs  x{c.macs / base:.2f}"
            )
        return 0
    options = GRID.payload(v, baseline_spec=baseline_dict, train_config_contents=extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # grid_search prints its own warning line
        result = grid_search(
            baseline,
            phi=v.phi,
            step=v.step,
            tolerance=v.tolerance,
            train=train,
            seeds=tuple(range(v.seeds)),
            **_execution(run, options),
        )
    warning = f"effnet: warning: {result.warning}" if result.warning else None
    if v.json:
        print(json.dumps(result.to_dict(), indent=2))
        if warning:
            print(warning, file=sys.stderr)
        return 0
    print(result.table())
    best = result.best
    if best is None:
        print("every candidate failed; see the table", file=sys.stderr)
        return 1
    command = f"effnet scale {shlex.quote(v.baseline)} --phi 1 --alpha {best.alpha:g} --beta {best.beta:g} --gamma {best.gamma:g}"
    print(
        f"\nbest: alpha={best.alpha:g} beta={best.beta:g} gamma={best.gamma:g} (α·β²·γ² = {best.product:.3f}), top-1 {best.accuracy.text(2)} %, "
        f"{best.macs / 1e6:.2f}M MACs\nscale with it: `{command}` (raise --phi for larger networks)"
    )
    if warning:
        sys.stdout.flush()
        print(warning, file=sys.stderr)
    print(f"ranking written to {run.out_dir / 'grid.md'} and grid.json")
    return 0


def run_study_scaling(args: argparse.Namespace) -> int:
    """`effnet study scaling`: run or resume the study and print where the report is, with the Table 3 verdict."""
    import warnings

    from effnet.core.spec import NetSpec
    from effnet.experiments.study.report import verdict
    from effnet.experiments.study.scaling_study import PRESETS, run_study

    run = STUDY.resolve(args, default_out="runs/study-scaling")
    v = run.values
    preset = PRESETS[v.preset]
    train = {}
    if v.epochs is not None:
        train["epochs"] = v.epochs
    if v.train_samples is not None:
        train["train_samples"] = v.train_samples
    baseline_dict = _baseline(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # run_study prints its own warning line
        result = run_study(
            preset,
            baseline_spec=NetSpec.from_dict(baseline_dict) if baseline_dict else None,
            dataset=v.dataset,
            data_dir=v.data_dir,
            seeds=v.seeds,
            train=train,
            alpha=v.alpha,
            beta=v.beta,
            gamma=v.gamma,
            targets=v.targets,
            parts=v.parts,
            until_half_width=v.until_half_width,
            max_seeds=v.max_seeds,
            budget_minutes=v.budget_minutes,
            **_execution(run, STUDY.payload(v, baseline_spec=baseline_dict)),
        )
    print("\n".join(verdict(result)))
    print(f"report: {run.out_dir / 'report.md'} ({result.wall_seconds / 60:.1f} min)")
    return 0
