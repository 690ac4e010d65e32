"""`effnet grid-search` and `effnet study scaling`: argument parsing and printing."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from effnet.scaling import ALPHA, BETA, GAMMA

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


def add_study_commands(command: Any) -> None:
    """Register `grid-search` and `study` with the CLI's `command(name, handler, summary, description, epilog)`."""
    p = command(
        "grid-search",
        run_grid_search,
        "step 1 of compound scaling: find α, β, γ for a baseline by a small grid search",
        "Enumerate α, β, γ >= 1 on a grid under |α·β²·γ² - 2| <= tolerance, scale the baseline by (α^φ, β^φ, γ^φ)\n"
        "(φ = 1: twice the MACs), train every candidate for the same proxy budget, rank them by accuracy (MACs shown)\n"
        "and print the best. Candidates run in parallel worker processes, or on a Ray cluster with --ray-address.\n"
        "Progress is saved after every candidate in OUT_DIR/trials.json; --resume continues a killed search.",
        epilog="examples:\n"
        "  effnet grid-search efficientnet_b0 --step 0.1 --tolerance 0.1 --workers 2 --out-dir runs/grid\n"
        "  effnet grid-search my_spec.json --epochs 10 --dataset folder --data-dir DATA --out-dir runs/grid\n"
        "  effnet grid-search efficientnet_b0 --out-dir runs/grid --resume      # after a kill: finished candidates are kept\n"
        "  effnet grid-search efficientnet_b0 --ray-address 127.0.0.1:6379      # a `ray start --head` cluster ('local': Ray on this machine)",
    )
    p.add_argument("baseline", metavar="NAME_OR_SPEC", help="model name (effnet models), spec file (JSON or block string) or block string")
    p.add_argument("--phi", type=float, default=1.0, help="compound coefficient of the candidates (the paper's step 1: 1)")
    p.add_argument("--step", type=float, default=0.05, help="grid step of α, β, γ (from 1 upwards)")
    p.add_argument("--tolerance", type=float, default=0.05, help="keep candidates with |α·β²·γ² - 2| <= this")
    p.add_argument("--resolution-base", type=int, default=0, metavar="PX", help="set the baseline's resolution first (0: keep its own)")
    p.add_argument("--seeds", type=int, default=1, help="training runs per candidate (different seeds); accuracy is their mean")
    _add_execution_options(p, default_out="runs/grid-search")
    for name, kind, default, text in BUDGET_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=default, help=text)
    p.add_argument("--dataset", default="synthetic", help="synthetic (built-in proxy task), folder, cifar10 or cifar100")
    p.add_argument("--data-dir", default="", help="dataset root (folder, cifar)")
    p.add_argument("--train-config", metavar="FILE", help="YAML/JSON file of further TrainConfig options for every candidate (e.g. lr, optimizer)")
    p.add_argument("--list", action="store_true", help="only list the grid's candidates with their MACs; train nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = command(
        "study",
        _study_help,
        "scaling experiments: `effnet study scaling`",
        "Scaling experiments of the paper, small: `effnet study scaling --preset mini` runs on 2 CPU cores in under 30 minutes.",
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
        "Writes report.md, study.json and PNG plots into --out-dir; trials.json lets --resume continue a killed study.",
        epilog="presets:\n"
        + "\n".join(f"  {name:<6} {preset.description}" for name, preset in _presets().items())
        + "\nexamples:\n  effnet study scaling --preset mini --out-dir runs/study\n"
        "  effnet study scaling --preset small --dataset folder --data-dir DATA --workers 8 --out-dir runs/study-mine\n"
        "  effnet study scaling --out-dir runs/study --resume",
        formatter_class=p.formatter_class,
    )
    s.set_defaults(handler=run_study_scaling)
    s.add_argument("--preset", choices=sorted(_presets()), default="mini", help="size of the study (see below)")
    s.add_argument("--baseline", metavar="NAME_OR_SPEC", help="your baseline (model name, spec file or block string) instead of the preset's")
    s.add_argument("--dataset", default="synthetic", help="synthetic (built-in proxy task), folder, cifar10 or cifar100")
    s.add_argument("--data-dir", default="", help="dataset root (folder, cifar)")
    s.add_argument("--seeds", type=int, default=None, help="seeds per network (default: the preset's)")
    s.add_argument("--targets", type=float, nargs="+", default=None, help="matched-MACs targets as multiples of the baseline's MACs (default: the preset's)")
    s.add_argument(
        "--parts",
        nargs="+",
        choices=("fig3", "fig4", "table3"),
        default=["fig3", "fig4", "table3"],
        help="which parts to run: fig3 (one dimension at a time), fig4 (width at (d, r)), table3 (matched MACs)",
    )
    s.add_argument("--alpha", type=float, default=ALPHA, help="compound scaling: depth base")
    s.add_argument("--beta", type=float, default=BETA, help="compound scaling: width base")
    s.add_argument("--gamma", type=float, default=GAMMA, help="compound scaling: resolution base")
    s.add_argument("--epochs", type=int, default=None, help="override the preset's epochs per run")
    s.add_argument("--train-samples", type=int, default=None, help="override the preset's training images per run")
    _add_execution_options(s, default_out="runs/study-scaling", workers_default=None)


def _presets() -> dict[str, Any]:
    from effnet.study.scaling_study import PRESETS

    return PRESETS


def _add_execution_options(p: argparse.ArgumentParser, default_out: str, workers_default: int | None = 2) -> None:
    p.add_argument("--workers", type=int, default=workers_default, help="trainings in parallel (local processes, or Ray CPUs with --ray-address local)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: CPUs // workers)")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS", help="run on Ray: 'local' or a cluster address such as 127.0.0.1:6379")
    p.add_argument("--out-dir", default=default_out, help="where trials.json (progress), results and the report go")
    p.add_argument("--resume", action="store_true", help="continue the run in --out-dir, skipping finished trainings")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _study_help(args: argparse.Namespace) -> int:
    print("effnet study: choose a study, e.g. `effnet study scaling --preset mini` (see `effnet study scaling --help`)", file=sys.stderr)
    return 2


def _load_baseline(text: str) -> Any:
    from effnet.study.scaling_study import load_spec_argument

    return load_spec_argument(text)


def run_grid_search(args: argparse.Namespace) -> int:
    """`effnet grid-search`: list or run the α/β/γ grid and print the ranking and the best."""
    import warnings

    from effnet.spec import SpecError
    from effnet.study.grid import grid_candidates, grid_search
    from effnet.train.config import read_config_file

    if args.phi < 0:
        raise SpecError(f"--phi must be >= 0, got {args.phi:g}; the grid search scales by φ = 1 (twice the baseline's MACs)")
    baseline = _load_baseline(args.baseline)
    if args.resolution_base:
        baseline = baseline.replace(resolution=args.resolution_base)
    train: dict[str, Any] = {}
    if args.train_config:
        train.update(read_config_file(args.train_config))
    for name, _, _, _ in BUDGET_OPTIONS:
        if name != "num_classes":
            train[name] = getattr(args, name)
    if args.num_classes:
        train["num_classes"] = args.num_classes
    elif args.dataset == "synthetic":
        train["num_classes"] = SYNTHETIC_CLASSES
    if args.dataset != "synthetic":
        train.update(dataset=args.dataset, data_dir=args.data_dir)
    if args.list:
        from effnet.profile import profile_spec
        from effnet.scaling import compound

        rows = grid_candidates(args.step, args.tolerance)
        base = profile_spec(baseline).macs
        print(f"{len(rows)} candidates (step {args.step:g}, |α·β²·γ² - 2| <= {args.tolerance:g}), φ = {args.phi:g}:")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for a, b, g in rows:
                spec = compound(baseline, args.phi, a, b, g)
                macs = profile_spec(spec).macs
                print(f"  α={a:<5g} β={b:<5g} γ={g:<5g} α·β²·γ²={a * b * b * g * g:.3f}  {spec.resolution:>4} px  {macs / 1e6:9.2f}M MACs  x{macs / base:.2f}")
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # grid_search prints its own warning line
        result = grid_search(
            baseline,
            phi=args.phi,
            step=args.step,
            tolerance=args.tolerance,
            train=train,
            seeds=tuple(range(args.seeds)),
            workers=args.workers,
            ray_address=args.ray_address,
            threads_per_worker=args.threads,
            out_dir=args.out_dir,
            resume=args.resume,
            progress=args.progress,
            log=(lambda text: print(text, file=sys.stderr)),
        )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(result.table())
    best = result.best
    if best is None:
        print("every candidate failed; see the table", file=sys.stderr)
        return 1
    print(
        f"\nbest: alpha={best.alpha:g} beta={best.beta:g} gamma={best.gamma:g} (α·β²·γ² = {best.product:.3f}), top-1 {best.accuracy.text(2)} %, "
        f"{best.macs / 1e6:.2f}M MACs; scale further with `effnet scale NAME --phi N --alpha {best.alpha:g} --beta {best.beta:g} --gamma {best.gamma:g}`"
    )
    print(f"ranking written to {Path(args.out_dir) / 'grid.md'} and grid.json")
    return 0


def run_study_scaling(args: argparse.Namespace) -> int:
    """`effnet study scaling`: run or resume the study and print where the report is, with the Table 3 verdict."""
    import warnings

    from effnet.study.report import verdict
    from effnet.study.scaling_study import PRESETS, run_study

    preset = PRESETS[args.preset]
    train = {}
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.train_samples is not None:
        train["train_samples"] = args.train_samples
    baseline = _load_baseline(args.baseline) if args.baseline else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # run_study prints its own warning line
        result = run_study(
            preset,
            out_dir=args.out_dir,
            baseline_spec=baseline,
            dataset=args.dataset,
            data_dir=args.data_dir,
            seeds=args.seeds,
            workers=args.workers,
            ray_address=args.ray_address,
            threads_per_worker=args.threads,
            train=train,
            alpha=args.alpha,
            beta=args.beta,
            gamma=args.gamma,
            targets=args.targets,
            parts=args.parts,
            resume=args.resume,
            progress=args.progress,
            log=(lambda text: print(text, file=sys.stderr)),
        )
    print("\n".join(verdict(result)))
    print(f"report: {Path(args.out_dir) / 'report.md'} ({result.wall_seconds / 60:.1f} min)")
    return 0
