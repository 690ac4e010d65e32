"""`effnet search`: the MnasNet-style architecture search from the command line.

Options default to None on the command line (`effnet.cli.resume.ResumableOptions`), so that with
``--resume DIR`` the saved settings are used and only the options given explicitly are compared
with them (a changed setting is refused, naming it; ``--trials`` may grow and the execution
options may change).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from effnet.cli.resume import ResumableOptions
from effnet.experiments.search.strategies import STRATEGIES
from effnet.train.config import DATASET_DEFAULT_HELP

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
    "dataset": "",
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


SEARCH = ResumableOptions("search", "search", "search.json", may_change={"trials", "workers", "threads_per_worker", "ray_address"})


def add_search_commands(command: Any) -> None:
    """Register `effnet search` with the CLI's `command(name, handler, summary, description, epilog)`."""
    p = command(
        "search",
        run_search_command,
        "architecture search (MnasNet method, MACs in the reward) that found EfficientNet-B0",
        "Search the MnasNet factorized space over EfficientNet-B0's 7 stages (op, kernel, SE, skip, filters, layers per stage)\n"
        "for the architecture with the best reward = accuracy x (MACs/T)^w. Candidates are trained briefly on a proxy task\n"
        "(the built-in synthetic task by default) in parallel workers or on a Ray cluster. The state is saved after every\n"
        "trial: a killed search continues with --resume DIR, without losing or repeating a trial and with no other option\n"
        "needed (--trials may grow; --workers, --threads-per-worker and --ray-address may change).",
        epilog="examples:\n"
        "  effnet search --strategy ppo --trials 48 --target-macs 20e6 --resolution 48 --workers 2 --out-dir runs/search\n"
        "  effnet search --resume runs/search                         # continue a killed search\n"
        "  effnet search --strategy evolution --ray-address 10.0.0.1:6379 --workers 32 --trials 1000 --out-dir runs/evo\n"
        "  effnet search --evaluator naswot --trials 500 --out-dir runs/quick   # zero-cost score, no training\n"
        "  effnet train --spec runs/search/best_spec.json --preset proxy        # train what was found\n\n"
        "A space file (YAML/JSON) changes the skeleton or the choice lists:\n"
        "  skeleton: efficientnet_b0\n  choices: {op: [ds, ir3, ir6], kernel: [3, 5]}\n  stages: {1: {op: [ds]}}",
    )
    add = SEARCH.add
    g = p.add_argument_group("search")
    add(g, "--strategy", choices=STRATEGIES, default=DEFAULTS["strategy"], help="ppo: LSTM controller + PPO (MnasNet); reinforce; random; evolution")
    add(g, "--trials", type=int, metavar="N", default=DEFAULTS["trials"], help="architectures to sample (may grow on --resume)")
    add(g, "--batch-size", type=int, metavar="B", default=DEFAULTS["batch_size"], help="architectures per strategy update")
    add(g, "--seed", type=int, default=DEFAULTS["seed"], help="seed of the strategy")
    add(g, "--space", metavar="FILE", path=True, help="YAML/JSON search space file", shown="MnasNet's space over B0's stages")
    add(
        g,
        "--warm-start",
        type=int,
        metavar="N",
        default=DEFAULTS["warm_start"],
        shown="0",
        help="score N random nets with the zero-cost NASWOT score first: RL pretrains on them, random/evolution start from the best",
    )
    add(g, "--population", type=int, help="evolution: population size", shown="20")
    add(g, "--tournament", type=int, help="evolution: tournament sample size", shown="5")
    add(g, "--controller-lr", type=float, help="ppo/reinforce: Adam learning rate of the controller", shown="0.01")
    g = p.add_argument_group("reward")
    add(
        g,
        "--target-macs",
        type=float,
        metavar="T",
        default=DEFAULTS["target_macs"],
        shown="400e6",
        help="target MACs T (B0 at 224 px; scale it with the search resolution)",
    )
    add(g, "--reward", choices=("soft", "hard"), default=DEFAULTS["reward"], help="soft: w on both sides of T; hard: 0 below T, -1 above")
    add(g, "--w", type=float, default=DEFAULTS["w"], help="soft-constraint exponent")
    g = p.add_argument_group("evaluation")
    add(g, "--evaluator", choices=("proxy", "naswot"), default=DEFAULTS["evaluator"], help="proxy: short training; naswot: zero-cost score, no training")
    add(g, "--dataset", default=DEFAULTS["dataset"], help="synthetic, shapes, folder, cifar10 or cifar100", shown=DATASET_DEFAULT_HELP)
    add(g, "--data-dir", default=DEFAULTS["data_dir"], path=True, help="dataset root (folder: train/CLASS/*.jpg [+ val/CLASS/*.jpg])")
    add(g, "--num-classes", type=int, default=DEFAULTS["num_classes"], shown="0", help="classes (0: the dataset's; synthetic: 10, shapes: 16)")
    add(g, "--resolution", type=int, default=DEFAULTS["resolution"], help="input resolution of the candidates")
    add(g, "--epochs", type=int, default=DEFAULTS["epochs"], help="proxy training epochs per candidate")
    add(g, "--train-samples", type=int, default=DEFAULTS["train_samples"], help="proxy training images")
    add(g, "--val-samples", type=int, default=DEFAULTS["val_samples"], help="held-out validation images")
    add(g, "--train-batch-size", type=int, default=DEFAULTS["train_batch_size"], help="proxy training batch size")
    add(g, "--data-seed", type=int, default=DEFAULTS["data_seed"], shown="0", help="seed of the proxy data and training")
    g = p.add_argument_group("execution")
    add(g, "--workers", type=int, default=1, help="parallel evaluations: local worker processes, or Ray CPUs with --ray-address local")
    add(g, "--threads-per-worker", type=int, help="torch threads per worker", shown="CPUs / workers")
    add(g, "--ray-address", metavar="ADDR", help="run candidates as Ray tasks: 'local' or a cluster address such as 10.0.0.1:6379")
    g.add_argument("--out-dir", default=None, metavar="DIR", help="search directory (state, trials, options, reports)")
    SEARCH.add_resume(g)


def config_from_args(args: argparse.Namespace, saved: dict[str, Any] | None = None) -> Any:
    """The SearchConfig the options describe: saved settings (resume) or defaults, overridden by the options given."""
    from effnet.experiments.search.evaluators import EvaluatorConfig
    from effnet.experiments.search.runner import SearchConfig
    from effnet.experiments.search.space import SearchSpace, default_space

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
    from effnet.core.profile import profile_spec
    from effnet.experiments.search.runner import CONFIG_FILE, SearchError, run_search

    run = SEARCH.resolve(args)
    if run.out_dir is None:
        raise SearchError("give --out-dir DIR for a new search (or --resume DIR to continue one)")
    saved = None
    if run.resuming:
        path = run.out_dir / CONFIG_FILE
        if not path.is_file():
            raise SearchError(f"{run.out_dir} holds no search to resume (no {CONFIG_FILE}); start one with --out-dir {run.out_dir}")
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SearchError(f"cannot read {path}: {err}") from None
    # what defines the search: the options given, over those saved with the run (the space as saved in search.json,
    # not re-read from its file); a run saved before options.json gets only the given ones over its search.json
    chosen = dict(run.given)
    if run.saved is not None:
        chosen = {**{k: v for k, v in run.saved["options"].items() if k != "space"}, **run.given}
    config = config_from_args(argparse.Namespace(**{name: chosen.get(name) for name in SEARCH.defaults}), saved)
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
    v = run.values
    # a run saved before options.json: its settings are search.json's, not the defaults, so no options.json is written for it
    options = SEARCH.payload(v) if run.saved is not None or not run.resuming else None
    result = run_search(
        config, run.out_dir, resume=run.resuming, workers=v.workers, ray_address=v.ray_address, threads_per_worker=v.threads_per_worker, options=options
    )
    if result.warning:
        print(f"effnet: warning: {result.warning}", file=sys.stderr)
    print(result.summary())
    return 0
