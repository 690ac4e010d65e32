"""`effnet search`: the MnasNet-style architecture search from the command line.

Options that define the search default to None here, so that with ``--resume DIR`` the saved
settings are used and only the options given explicitly are compared with them (a changed
setting is an error naming it; ``--trials`` and ``--workers`` may change).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from effnet.search.strategies import STRATEGIES

# defaults of the options that default to None on the command line (so that --resume can tell what was given)
DEFAULTS: dict[str, Any] = {
    "strategy": "ppo",
    "trials": 32,
    "batch_size": 4,
    "seed": 0,
    "target_macs": 400e6,
    "reward": "soft",
    "w": -0.07,
    "evaluator": "proxy",
    "dataset": "synthetic",
    "data_dir": "",
    "num_classes": 0,
    "resolution": 64,
    "epochs": 2,
    "train_samples": 1000,
    "val_samples": 500,
    "train_batch_size": 32,
    "data_seed": 0,
    "warm_start": 0,
}
EVALUATOR_OPTIONS = {
    "evaluator": "kind",
    "dataset": "dataset",
    "data_dir": "data_dir",
    "num_classes": "num_classes",
    "resolution": "resolution",
    "epochs": "epochs",
    "train_samples": "train_samples",
    "val_samples": "val_samples",
    "train_batch_size": "batch_size",
    "data_seed": "seed",
}


def add_search_commands(command: Any) -> None:
    """Register `effnet search` with the CLI's `command(name, handler, summary, description, epilog)`."""
    p = command(
        "search",
        run_search_command,
        "architecture search (MnasNet method, MACs in the reward) that found EfficientNet-B0",
        "Search the MnasNet factorized space over EfficientNet-B0's 7 stages (op, kernel, SE, skip, filters, layers per stage)\n"
        "for the architecture with the best reward = accuracy x (MACs/T)^w. Candidates are trained briefly on a proxy task\n"
        "(the built-in synthetic task by default) in parallel workers or on a Ray cluster. The state is saved after every\n"
        "trial: a killed search continues with --resume DIR, without losing or repeating a trial.",
        epilog="examples:\n"
        "  effnet search --strategy ppo --trials 48 --target-macs 20e6 --resolution 48 --workers 2 --out-dir runs/search\n"
        "  effnet search --resume runs/search                         # continue a killed search\n"
        "  effnet search --strategy evolution --ray-address 10.0.0.1:6379 --workers 32 --trials 1000 --out-dir runs/evo\n"
        "  effnet search --evaluator naswot --trials 500 --out-dir runs/quick   # zero-cost score, no training\n"
        "  effnet train --spec runs/search/best_spec.json --preset proxy        # train what was found\n\n"
        "A space file (YAML/JSON) changes the skeleton or the choice lists:\n"
        "  skeleton: efficientnet_b0\n  choices: {op: [ds, ir3, ir6], kernel: [3, 5]}\n  stages: {1: {op: [ds]}}",
    )
    g = p.add_argument_group("search")
    g.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=None,
        help=f"ppo: LSTM controller + PPO (MnasNet); reinforce; random; evolution (default: {DEFAULTS['strategy']})",
    )
    g.add_argument("--trials", type=int, default=None, metavar="N", help=f"architectures to sample (default: {DEFAULTS['trials']}; may grow on --resume)")
    g.add_argument("--batch-size", type=int, default=None, metavar="B", help=f"architectures per strategy update (default: {DEFAULTS['batch_size']})")
    g.add_argument("--seed", type=int, default=None, help=f"seed of the strategy (default: {DEFAULTS['seed']})")
    g.add_argument("--space", metavar="FILE", default=None, help="YAML/JSON search space file (default: MnasNet's space over B0's stages)")
    g.add_argument(
        "--warm-start",
        type=int,
        default=None,
        metavar="N",
        help="score N random nets with the zero-cost NASWOT score first: RL pretrains on them, random/evolution start from the best (default: 0)",
    )
    g.add_argument("--population", type=int, default=None, help="evolution: population size (default: 20)")
    g.add_argument("--tournament", type=int, default=None, help="evolution: tournament sample size (default: 5)")
    g.add_argument("--controller-lr", type=float, default=None, help="ppo/reinforce: Adam learning rate of the controller (default: 0.01)")
    g = p.add_argument_group("reward")
    g.add_argument(
        "--target-macs", type=float, default=None, metavar="T", help="target MACs T (default: 400e6, B0 at 224 px; scale it with the search resolution)"
    )
    g.add_argument("--reward", choices=("soft", "hard"), default=None, help="soft: w on both sides of T; hard: 0 below T, -1 above (default: soft)")
    g.add_argument("--w", type=float, default=None, help="soft-constraint exponent (default: -0.07)")
    g = p.add_argument_group("evaluation")
    g.add_argument(
        "--evaluator", choices=("proxy", "naswot"), default=None, help="proxy: short training; naswot: zero-cost score, no training (default: proxy)"
    )
    g.add_argument("--dataset", default=None, help="synthetic, folder, cifar10 or cifar100 (default: synthetic)")
    g.add_argument("--data-dir", default=None, help="dataset root (folder: train/CLASS/*.jpg [+ val/CLASS/*.jpg])")
    g.add_argument("--num-classes", type=int, default=None, help="classes (0: the dataset's; synthetic: 10) (default: 0)")
    g.add_argument("--resolution", type=int, default=None, help=f"input resolution of the candidates (default: {DEFAULTS['resolution']})")
    g.add_argument("--epochs", type=int, default=None, help=f"proxy training epochs per candidate (default: {DEFAULTS['epochs']})")
    g.add_argument("--train-samples", type=int, default=None, help=f"proxy training images (default: {DEFAULTS['train_samples']})")
    g.add_argument("--val-samples", type=int, default=None, help=f"held-out validation images (default: {DEFAULTS['val_samples']})")
    g.add_argument("--train-batch-size", type=int, default=None, help=f"proxy training batch size (default: {DEFAULTS['train_batch_size']})")
    g.add_argument("--data-seed", type=int, default=None, help="seed of the proxy data and training (default: 0)")
    g = p.add_argument_group("execution")
    g.add_argument("--workers", type=int, default=1, help="parallel evaluations: local worker processes, or Ray CPUs with --ray-address local")
    g.add_argument("--threads-per-worker", type=int, default=None, help="torch threads per worker (default: CPUs / workers)")
    g.add_argument("--ray-address", default=None, metavar="ADDR", help="run candidates as Ray tasks: 'local' or a cluster address such as 10.0.0.1:6379")
    g.add_argument("--out-dir", default=None, metavar="DIR", help="search directory (state, trials, reports)")
    g.add_argument("--resume", default=None, metavar="DIR", help="continue the search saved in DIR (its settings are used)")


def config_from_args(args: argparse.Namespace, saved: dict[str, Any] | None = None) -> Any:
    """The SearchConfig the options describe: saved settings (resume) or defaults, overridden by the options given."""
    from effnet.search.evaluators import EvaluatorConfig
    from effnet.search.runner import SearchConfig
    from effnet.search.space import SearchSpace, default_space

    given = {k: v for k, v in vars(args).items() if v is not None}
    if saved is not None:
        values = dict(saved)
        evaluator = dict(values["evaluator"])
    else:
        values = {k: DEFAULTS[k] for k in ("strategy", "trials", "batch_size", "seed", "target_macs", "reward", "w", "warm_start")}
        evaluator = EvaluatorConfig().to_dict()
        evaluator.update({field: DEFAULTS[option] for option, field in EVALUATOR_OPTIONS.items()})
        values["space"] = default_space().to_dict()
        values["strategy_options"] = {}
    for key in ("strategy", "trials", "batch_size", "seed", "target_macs", "reward", "w", "warm_start"):
        if key in given:
            values[key] = given[key]
    for option, field in EVALUATOR_OPTIONS.items():
        if option in given:
            evaluator[field] = given[option]
    values["evaluator"] = evaluator
    if "space" in given:
        values["space"] = SearchSpace.from_file(given["space"]).to_dict()
    # saved strategy options only apply to the saved strategy (a different one is refused by the resume check anyway)
    options = dict(saved.get("strategy_options", {})) if saved is not None and values["strategy"] == saved["strategy"] else {}
    if values["strategy"] == "evolution":
        for option, name in (("population", "population"), ("tournament", "sample")):
            if option in given:
                options[name] = given[option]
    elif values["strategy"] in ("ppo", "reinforce") and "controller_lr" in given:
        options["lr"] = given["controller_lr"]
    values["strategy_options"] = options
    return SearchConfig.from_dict(values)


def run_search_command(args: argparse.Namespace) -> int:
    """`effnet search`: run or resume a search, print the best architecture and where the reports are."""
    from effnet.profile import profile_spec
    from effnet.search.runner import CONFIG_FILE, SearchError, run_search

    if args.resume and args.out_dir and Path(args.resume) != Path(args.out_dir):
        raise SearchError("--resume DIR is the search directory; give either --resume DIR or --out-dir DIR, not two different ones")
    out_dir = args.resume or args.out_dir
    if not out_dir:
        raise SearchError("give --out-dir DIR for a new search (or --resume DIR to continue one)")
    saved = None
    if args.resume:
        path = Path(args.resume) / CONFIG_FILE
        if not path.is_file():
            raise SearchError(f"{args.resume} holds no search to resume (no {CONFIG_FILE}); start one with --out-dir {args.resume}")
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SearchError(f"cannot read {path}: {err}") from None
    config = config_from_args(args, saved)
    space = config.search_space()
    evaluator = config.evaluator_config()
    base = space.skeleton.replace(resolution=space.resolution or evaluator.resolution, num_classes=evaluator.num_classes or 10)
    base_macs = profile_spec(base).macs
    ratio = config.target_macs / base_macs
    print(
        f"effnet search: {config.strategy}, {config.trials} trials, space of {space.size:.3g} architectures; "
        f"T = {config.target_macs / 1e6:.1f}M MACs (the skeleton has {base_macs / 1e6:.1f}M at {base.resolution} px); {evaluator.describe()}",
        file=sys.stderr,
    )
    if config.reward == "hard" and not 0.25 <= ratio <= 4:
        # the soft reward ranks models the same for any T (T^-w is a common factor); the hard one does not
        print(
            f"effnet search: note: the target is {ratio:.2g}x the skeleton's MACs at {base.resolution} px; with the hard constraint "
            f"{'nearly every candidate is under it (no MACs penalty)' if ratio > 1 else 'nearly every candidate is over it'}. "
            "Set --target-macs near the size you want at the search resolution.",
            file=sys.stderr,
        )
    result = run_search(
        config, out_dir, resume=bool(args.resume), workers=args.workers, ray_address=args.ray_address, threads_per_worker=args.threads_per_worker
    )
    print(result.summary())
    return 0
