"""A small architecture-search study: every strategy at an equal trial budget, several seeds, on 2 CPU cores.

    python benchmarks/search_study.py --out benchmarks/results/search_study --work /tmp/effnet-search-study

Phase "search": for each strategy (ppo, reinforce, random, evolution) and seed, an
`effnet.experiments.search` run with the same space, proxy evaluator, reward and trial budget; candidates run
as Ray tasks on this machine (one Ray runtime for the whole study, 1 torch thread per worker).
Each run lives in its own directory under --work and is resumable (re-running the script
continues where it stopped).

Phase "final": the best architecture found over all runs is trained longer on fresh data
(another data seed: new training images and a held-out set no search run has seen) and compared
with EfficientNet-B0 compound-scaled (phi from `effnet.core.scaling.scale_to_macs`) to the same MACs.

Writes search_study.json, search_study.md, search_study_rewards.png and search_study_pareto.png.
The proxy task is small (see the settings written with the results): rankings measured on it are
hypotheses about real data, not results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from effnet._io import atomic_write_text
from effnet.core.profile import profile_spec
from effnet.core.spec import NetSpec
from effnet.experiments.search import EvaluatorConfig, SearchConfig, SearchSpace, run_search
from effnet.experiments.search.evaluators import score_candidate
from effnet.experiments.search.report import pareto_front, plot_pareto, plot_rewards, top_k
from effnet.experiments.trials import ray_session
from effnet.train.config import GENERATED_DATASETS

STRATEGIES = ("ppo", "reinforce", "random", "evolution")
# The study's skeleton: B0's first four stages (Table 1 rows 1-4, output stride 16) and a 320-channel head.
# The full 7-stage B0 at the proxy's resolution trains too slowly on 2 shared cores for a 3-seed x 4-strategy study.
SKELETON = NetSpec.from_string(
    "ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e6_c24_se0.25-ir_r2_k5_s2_e6_c40_se0.25-ir_r3_k3_s2_e6_c80_se0.25",
    stem_channels=32,
    head_channels=320,
    dropout=0.1,
    name="b0_first4",
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/search_study", help="where search_study.* go (default: a scratch folder)")
    p.add_argument("--work", default="/tmp/effnet-search-study", help="search directories (resumable)")
    p.add_argument(
        "--phase",
        choices=("search", "final", "all", "report", "reeval"),
        default="all",
        help="report: write the results from what is on disk (finished searches, finished final trainings), running nothing; "
        "reeval: only re-evaluate each strategy's best on fresh data (--final-seeds), then report",
    )
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--resolution", type=int, default=48)
    p.add_argument("--dataset", default="shapes", help="the proxy task: shapes or synthetic (generated), or folder/cifar10 with --data-dir")
    p.add_argument("--data-dir", default="")
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-samples", type=int, default=600)
    p.add_argument("--val-samples", type=int, default=400)
    p.add_argument("--train-batch-size", type=int, default=32)
    p.add_argument("--naswot-candidates", type=int, default=100, help="zero-cost baseline: random architectures NASWOT chooses among per seed (0: no baseline)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--final-epochs", type=int, default=8)
    p.add_argument("--final-train-samples", type=int, default=1500)
    p.add_argument("--final-val-samples", type=int, default=1000)
    p.add_argument("--final-seeds", nargs="+", type=int, default=[1, 2], help="data seeds of the final comparison (the search used 0)")
    return p.parse_args()


def study_space(args: argparse.Namespace) -> SearchSpace:
    return SearchSpace.from_dict({"skeleton": SKELETON.to_dict(), "resolution": args.resolution, "num_classes": args.classes})


def search_config(args: argparse.Namespace, strategy: str, seed: int, target: float) -> SearchConfig:
    evaluator = EvaluatorConfig(
        kind="proxy",
        dataset=args.dataset,
        data_dir=args.data_dir,
        num_classes=args.classes,
        resolution=args.resolution,
        epochs=args.epochs,
        train_samples=args.train_samples,
        val_samples=args.val_samples,
        batch_size=args.train_batch_size,
        seed=0,
        train={"data_on_device": True} if args.dataset in GENERATED_DATASETS else {},
    )
    # small budgets: evolution's population and tournament shrink with it (Real et al. use 100 / 25 for 20k trials)
    options = {"population": max(4, args.trials // 2), "sample": max(2, args.trials // 6)} if strategy == "evolution" else {}
    return SearchConfig(
        strategy=strategy,
        trials=args.trials,
        batch_size=args.batch_size,
        seed=seed,
        target_macs=target,
        space=study_space(args).to_dict(),
        evaluator=evaluator,
        strategy_options=options,
    )


def run_searches(args: argparse.Namespace, target: float) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in args.strategies}
    total = len(args.strategies) * len(args.seeds)
    started = time.perf_counter()
    done = 0
    # seed-major order: if the study is cut short, every strategy has the same number of finished seeds
    for seed in args.seeds:
        for strategy in args.strategies:
            directory = Path(args.work) / f"{strategy}_seed{seed}"
            config = search_config(args, strategy, seed, target)
            resume = (directory / "search.json").exists()
            t0 = time.perf_counter()
            result = run_search(
                config,
                directory,
                resume=resume,
                workers=args.workers,
                ray_address="local",
                threads_per_worker=1,
                log=lambda line, tag=f"{strategy}/seed{seed}": print(f"[{tag}] {line}", flush=True),
            )
            done += 1
            elapsed = time.perf_counter() - started
            print(
                f"== {strategy} seed {seed}: {result.summary().splitlines()[0]} ({time.perf_counter() - t0:.0f} s; {done}/{total} runs, {elapsed / 60:.1f} min)",
                flush=True,
            )
            runs[strategy].append(
                {
                    "seed": seed,
                    "best": result.best,
                    "history": result.history,
                    "batches": result.batches,
                    "seconds": sum(r["seconds"] for r in result.history),
                    "dir": str(directory),
                }
            )
    return runs


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out = {}
    for strategy, items in runs.items():
        bests = [r["best"]["reward"] for r in items if r["best"]]
        accs = [r["best"]["accuracy"] for r in items if r["best"]]
        all_rewards = [h["reward"] for r in items for h in r["history"] if h["reward"] is not None]
        first_batch = [max(h["reward"] for h in r["history"] if h["batch"] == 0 and h["reward"] is not None) for r in items if r["best"]]
        out[strategy] = {
            "runs": len(items),
            "best_reward_mean": statistics.mean(bests) if bests else None,
            "best_reward_std": statistics.stdev(bests) if len(bests) > 1 else 0.0,
            "best_reward_min": min(bests, default=None),
            "best_reward_max": max(bests, default=None),
            "best_reward_per_seed": bests,
            "best_accuracy_per_seed": accs,
            "first_batch_best_mean": statistics.mean(first_batch) if first_batch else None,
            "gain_over_first_batch_mean": statistics.mean(b - f for b, f in zip(bests, first_batch, strict=True)) if bests else None,
            "mean_reward_all_trials": statistics.mean(all_rewards) if all_rewards else None,
            "failed": sum(h["status"] != "ok" for r in items for h in r["history"]),
            "evaluated_seconds": sum(r["seconds"] for r in items),
        }
    return out


def b0_at_macs(args: argparse.Namespace, macs: float) -> tuple[NetSpec, float, int, list[str]]:
    """EfficientNet-B0 (all 7 stages) compound-scaled to `macs`: (spec, phi, base resolution, scaling warnings).

    Compound scaling only scales up (phi >= 0), so B0 starts at the largest resolution (a multiple
    of 8, at most the search's) where it is under the budget.
    """
    import warnings

    from effnet.core.scaling import scale_to_macs
    from effnet.core.zoo import get_spec

    base_resolution = args.resolution
    b0 = get_spec("efficientnet_b0").replace(num_classes=args.classes, dropout=0.1)
    while profile_spec(b0.replace(resolution=base_resolution)).macs > macs and base_resolution > 16:
        base_resolution -= 8
    base = b0.replace(resolution=base_resolution)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if profile_spec(base).macs >= macs:  # even the smallest base is over the budget: compound scaling cannot go lower
            scaled, phi = base, 0.0
            warnings.warn(f"B0 at {base_resolution} px already has {profile_spec(base).macs / 1e6:.2f}M MACs, over {macs / 1e6:.2f}M; used as is", stacklevel=2)
        else:
            scaled, phi = scale_to_macs(base, macs)
    return scaled, phi, base_resolution, [str(w.message) for w in caught]


def final_comparison(args: argparse.Namespace, best: dict[str, Any]) -> dict[str, Any]:
    """Train the best found net and B0 compound-scaled to its MACs longer, on fresh data, with several data seeds."""
    from effnet.experiments.trials import TrialStore, run_trials

    space = study_space(args)
    found = space.decode(best["encoding"]).replace(name="search_best")
    found_macs = profile_spec(found).macs
    scaled, phi, base_resolution, notes = b0_at_macs(args, found_macs)
    scaled = scaled.replace(name=f"efficientnet_b0_phi{phi:.2f}")
    nets = {"search_best": found, "b0_scaled": scaled, "skeleton": space.skeleton.replace(resolution=args.resolution, num_classes=args.classes)}
    items = []
    for seed in args.final_seeds:
        for label, spec in nets.items():
            evaluator = EvaluatorConfig(
                kind="proxy",
                dataset=args.dataset,
                data_dir=args.data_dir,
                num_classes=args.classes,
                resolution=spec.resolution,
                epochs=args.final_epochs,
                train_samples=args.final_train_samples,
                val_samples=args.final_val_samples,
                batch_size=args.train_batch_size,
                seed=seed,
                train={"data_on_device": True} if args.dataset in GENERATED_DATASETS else {},
            )
            items.append((f"{label}/seed{seed}", {"evaluator": evaluator.to_dict(), "spec": spec.to_dict(), "encoding": []}))
    identity = {"final": True, "nets": {k: v.to_string() + f"@{v.resolution}" for k, v in nets.items()}, "args": [args.final_epochs, args.final_train_samples]}
    store = TrialStore(Path(args.work) / "final", identity)
    trials = run_trials(
        score_candidate,
        items,
        workers=args.workers,
        ray_address="local",
        store=store,
        threads_per_worker=1,
        progress=None,
        on_trial=lambda t: print(f"[final] {t.key}: {t.status} {t.result.get('accuracy')} ({t.seconds:.0f} s)", flush=True),
    )
    rows = {}
    for label, spec in nets.items():
        mine = [t for t in trials if t.key.startswith(label + "/")]
        accs = [t.result["accuracy"] for t in mine if t.ok]
        prof = profile_spec(spec)
        rows[label] = {
            "spec": spec.to_string(),
            "resolution": spec.resolution,
            "macs": prof.macs,
            "params": prof.params,
            "accuracy_per_seed": accs,
            "accuracy_mean": statistics.mean(accs) if accs else None,
            "curves": [t.result.get("curve") for t in mine if t.ok],
            "failed": [t.error for t in mine if not t.ok],
        }
    return {"phi": phi, "b0_base_resolution": base_resolution, "scale_warnings": notes, "nets": rows}


def reevaluate(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], target: float) -> dict[str, Any]:
    """Each strategy's best architecture evaluated again by the same proxy on fresh data (data seeds --final-seeds).

    The best of a search is selected on noisy proxy accuracies, so its reward is biased upwards
    (the winner's curse); fresh data shows how much of it, and whether the strategies' order holds.
    """
    from effnet.experiments.search.reward import Reward
    from effnet.experiments.trials import TrialStore, run_trials

    reward = Reward.soft(target)
    picks = {}
    for strategy, items in runs.items():
        bests = [r["best"] for r in items if r["best"]]
        if bests:
            picks[strategy] = max(bests, key=lambda b: b["reward"])
    space = study_space(args)
    items = []
    for strategy, best in picks.items():
        spec = space.decode(best["encoding"])
        for seed in args.final_seeds:
            config = search_config(args, strategy, 0, target).evaluator_config()
            evaluator = dataclasses.replace(config, seed=seed)
            items.append((f"{strategy}/seed{seed}", {"evaluator": evaluator.to_dict(), "spec": spec.to_dict(), "encoding": best["encoding"]}))
    store = TrialStore(Path(args.work) / "reeval", {"reeval": True, "picks": {k: v["key"] for k, v in picks.items()}, "seeds": args.final_seeds})
    trials = run_trials(
        score_candidate,
        items,
        workers=args.workers,
        ray_address="local",
        store=store,
        threads_per_worker=1,
        progress=None,
        on_trial=lambda t: print(f"[reeval] {t.key}: {t.status} {t.result.get('accuracy')} ({t.seconds:.0f} s)", flush=True),
    )
    out = {}
    for strategy, best in picks.items():
        accs = [t.result["accuracy"] for t in trials if t.key.startswith(strategy + "/") and t.ok]
        out[strategy] = {
            "key": best["key"],
            "search_reward": best["reward"],
            "search_accuracy": best["accuracy"],
            "fresh_accuracy_per_seed": accs,
            "fresh_reward_mean": statistics.mean(reward(a, best["macs"]) for a in accs) if accs else None,
        }
    return out


def naswot_baseline(args: argparse.Namespace, target: float) -> list[dict[str, Any]]:
    """NASWOT alone, the zero-cost baseline (Mellor et al. 2021): per search seed, --naswot-candidates random
    architectures scored by NASWOT with no training, reward = score x the same MACs term; the best is then trained
    once by the search's own proxy, so its reward sits on the strategies' scale. One training per seed instead of
    --trials."""
    from effnet.experiments.search.reward import Reward
    from effnet.experiments.trials import TrialStore, run_trials

    if args.naswot_candidates < 1:
        return []
    picks = {}
    for seed in args.seeds:
        proxy = search_config(args, "random", seed, target)
        zero_cost = dataclasses.replace(proxy, trials=args.naswot_candidates, evaluator=dict(proxy.evaluator, kind="naswot"))
        directory = Path(args.work) / f"naswot_seed{seed}"
        result = run_search(zero_cost, directory, resume=(directory / "search.json").exists(), workers=args.workers, ray_address="local", threads_per_worker=1)
        picks[seed] = result.best
    evaluator = search_config(args, "random", 0, target).evaluator  # the search's proxy, the same for every seed
    items = [
        (
            f"naswot/seed{seed}/{best['key']}",
            {"evaluator": evaluator, "spec": study_space(args).decode(best["encoding"]).to_dict(), "encoding": best["encoding"]},
        )
        for seed, best in picks.items()
        if best
    ]
    store = TrialStore(Path(args.work) / "naswot_trained", {"naswot_pick_trained_by": evaluator})
    trials = {t.key: t for t in run_trials(score_candidate, items, workers=args.workers, ray_address="local", store=store, threads_per_worker=1, progress=None)}
    reward = Reward.soft(target)
    rows = []
    for seed, best in picks.items():
        trial = trials.get(f"naswot/seed{seed}/{best['key']}") if best else None
        accuracy = trial.result["accuracy"] if trial is not None and trial.ok else None
        rows.append(
            {
                "seed": seed,
                "key": best["key"] if best else None,
                "naswot_reward": best["reward"] if best else None,
                "macs": best["macs"] if best else None,
                "accuracy": accuracy,
                "reward": reward(accuracy, best["macs"]) if best and accuracy is not None else None,
                "candidates": args.naswot_candidates,
            }
        )
    return rows


def strategy_comparisons(runs: dict[str, list[dict[str, Any]]], naswot: list[dict[str, Any]]) -> list[str]:
    """Each strategy's best reward minus random search's, paired by seed, with its t-interval and the smallest
    difference these seeds could detect."""
    from effnet.experiments.study.stats import detectable_difference, paired_difference

    best = {s: {r["seed"]: r["best"]["reward"] for r in items if r["best"]} for s, items in runs.items()}
    if naswot:
        best["naswot (zero-cost pick)"] = {r["seed"]: r["reward"] for r in naswot if r["reward"] is not None}
    if "random" not in best:
        return []
    lines = [
        "Paired by seed against random search (same seed: the same first random nets, the same proxy data), best reward x 100:",
        "",
        "| strategy | seeds | minus random, mean ± 95% t-interval | smallest difference these seeds detect (80% power) |",
        "|---|---:|---|---:|",
    ]
    for strategy, values in best.items():
        if strategy == "random" or len(set(values) & set(best["random"])) < 2:
            continue
        diff = paired_difference({k: 100 * v for k, v in values.items()}, {k: 100 * v for k, v in best["random"].items()})
        lines.append(f"| {strategy} | {diff.n} | {diff.text(2)} | {detectable_difference(diff):.2f} |")
    return [*lines, ""]


def reading(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], summary: dict[str, dict[str, Any]]) -> list[str]:
    """A few computed facts that say how far the table can be trusted."""
    lines = ["How to read this table:", ""]
    done = {k: v for k, v in summary.items() if v["best_reward_mean"] is not None}
    if len(done) >= 2:
        top = max(done, key=lambda k: done[k]["best_reward_mean"])
        low = min(done, key=lambda k: done[k]["best_reward_mean"])
        n_top, n_low = done[top]["runs"], done[low]["runs"]
        se = (done[top]["best_reward_std"] ** 2 / n_top + done[low]["best_reward_std"] ** 2 / n_low) ** 0.5
        gap = done[top]["best_reward_mean"] - done[low]["best_reward_mean"]
        lines.append(
            f"- The gap between the best and the worst strategy ({top} {done[top]['best_reward_mean']:.4f} vs {low} {done[low]['best_reward_mean']:.4f}) "
            f"is {gap / se:.1f} standard errors of the difference of their {n_top}- and {n_low}-seed means"
            + (": not a significant difference at this budget." if gap < 2 * se else ".")
        )
        first_gap = done[top]["first_batch_best_mean"] - done[low]["first_batch_best_mean"]
        gains = ", ".join(f"{k} {v['gain_over_first_batch_mean']:+.4f}" for k, v in done.items())
        lines.append(
            f"- Before any learning, the best of the first batch already differs by {first_gap:+.4f} between {top} and {low} (final gap {gap:+.4f}); "
            f"the gains of each run's best over its own first batch are {gains}."
            + (" So the order comes from which nets the first batches happened to hold, not from learning." if abs(first_gap) >= 0.7 * abs(gap) else "")
        )
    pairs = []
    for a, b in (("ppo", "reinforce"), ("random", "evolution")):
        if a in runs and b in runs:
            for ra, rb in zip(runs[a], runs[b], strict=False):
                diff = [sum(x != y for x, y in zip(ha["encoding"], hb["encoding"], strict=True)) for ha, hb in zip(ra["history"], rb["history"], strict=False)]
                pairs.append((a, b, ra["seed"], diff))
    if pairs:
        same_first = [f"{a}/{b} seed {seed}: {sum(d == 0 for d in diff)} of {len(diff)} trials identical" for a, b, seed, diff in pairs]
        lines.append(
            "- Common random numbers: with the same seed, random search and evolution draw the same first nets (evolution's first population is "
            "random), and PPO and REINFORCE start from the same controller and RNG stream; after 2-3 small controller updates they still propose "
            "nearly the same nets (" + "; ".join(same_first) + "). Their rows are therefore paired, not independent, evidence."
        )
    accuracies = [h["accuracy"] for items in runs.values() for r in items for h in r["history"] if h.get("accuracy") is not None]
    if accuracies:
        chance = 1 / args.classes
        median = statistics.median(accuracies)
        lines.append(
            f"- The median proxy accuracy over all trials is {100 * median:.1f}% (chance {100 * chance:.0f}%)"
            + (
                f": after {args.epochs} short epochs most nets are still near chance, so the proxy mostly rewards nets that learn fastest."
                if median < 1.5 * chance
                else "."
            )
        )
    return lines + [""]


def final_reading(final: dict[str, Any], target: float) -> list[str]:
    """What the longer trainings say, with the rewards they imply."""
    from effnet.experiments.search.reward import Reward

    nets = {k: v for k, v in final["nets"].items() if v["accuracy_mean"] is not None}
    reward = Reward.soft(target)
    out = [
        "Rewards of the longer trainings (same formula and T): " + ", ".join(f"{k} {reward(v['accuracy_mean'], v['macs']):.4f}" for k, v in nets.items()) + "."
    ]
    best, skeleton, b0 = nets.get("search_best"), nets.get("skeleton"), nets.get("b0_scaled")
    if best and skeleton:
        verdict = "below" if best["accuracy_mean"] < skeleton["accuracy_mean"] else "above"
        out.append(
            f"The searched net ({best['macs'] / 1e6:.2f}M MACs) ends {verdict} the search's own starting point, the skeleton ({skeleton['macs'] / 1e6:.2f}M), "
            f"in accuracy ({best['accuracy_mean']:.3f} vs {skeleton['accuracy_mean']:.3f}) when both train longer: the proxy's short-training "
            "ranking, which favours nets that learn fast, need not carry over."
        )
    if b0 and best:
        out.append(
            f"B0 cannot be compound-scaled down: to get near {best['macs'] / 1e6:.2f}M MACs it has to start at {b0['resolution']} px, where its "
            "16 blocks and 1280-channel head leave a 1x1 map after stride 32"
            + (f" and it stays at chance ({b0['accuracy_mean']:.3f})" if b0["accuracy_mean"] < 0.3 else f" ({b0['accuracy_mean']:.3f})")
            + ". That says B0's shape does not fit such a small budget on this task, not that the search beat EfficientNet's design."
        )
    return out


def write_results(
    args: argparse.Namespace, target: float, runs: dict, summary: dict, final: dict | None, seconds: float, naswot: list[dict[str, Any]] | None = None
) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "work", "phase")}
    every = [dict(h, seed=r["seed"]) for items in runs.values() for r in items for h in r["history"]]
    best = max((h for h in every if h["reward"] is not None), key=lambda h: h["reward"], default=None)
    payload = {
        "settings": settings,
        "skeleton": SKELETON.to_string(),
        "target_macs": target,
        "study_seconds": seconds,
        "summary": summary,
        "best_overall": best,
        "final": final,
        "naswot": naswot or [],
        "runs": {s: [{k: v for k, v in r.items() if k != "history"} | {"history": r["history"]} for r in items] for s, items in runs.items()},
    }
    atomic_write_text(out / "search_study.json", json.dumps(payload, indent=1) + "\n")
    plot_rewards(
        {s: [r["history"] for r in items] for s, items in runs.items()}, out / "search_study_rewards.png", title="reward per trial (running best per run)"
    )
    extra = []
    if final:
        for label in ("search_best", "b0_scaled", "skeleton"):
            row = final["nets"].get(label)
            if row and row["accuracy_mean"] is not None:
                extra.append({"label": f"{label}, trained longer (fresh data)", "macs": row["macs"], "accuracy": row["accuracy_mean"]})
    plot_pareto(every, out / "search_study_pareto.png", target_macs=target, extra=extra)

    lines = [
        f"# Architecture search study ({args.dataset} proxy task, 2 CPU cores)",
        "",
        f"Command: `python benchmarks/search_study.py {' '.join(sys.argv[1:])}`"
        + (
            " (this file was rewritten from the saved run directories; the study ran with the same options and --phase all); "
            f"search phase wall time {seconds / 60:.1f} min."
            if args.phase in ("report", "reeval")
            else f"; wall time {seconds / 60:.1f} min."
        ),
        "",
        "## Settings",
        "",
        f"- space: MnasNet's per-stage choices (op cv/ds/ir3/ir6, kernel 3/5, SE 0/0.25, skip yes/no, filters x0.75/1/1.25, layers -1/0/+1) "
        f"over the skeleton `{SKELETON.to_string()}` (B0's first four stages, stem 32, head 320): {study_space(args).size:.3g} architectures. "
        "The full 7-stage B0 skeleton (the default space) trains too slowly at the proxy's size for 12 searches on 2 shared cores.",
        f"- proxy task: the {args.dataset} task, {args.classes} classes (chance {100 / args.classes:.0f}%), {args.resolution} px, "
        f"{args.train_samples} training images x {args.epochs} epochs (batch {args.train_batch_size}, proxy preset: AdamW 3e-3, cosine"
        + (", data on the device" if args.dataset in GENERATED_DATASETS else "")
        + "), "
        f"accuracy on {args.val_samples} held-out validation images (binomial standard error about "
        f"{100 * (0.35 * 0.65 / args.val_samples) ** 0.5:.1f} points at 35%).",
        f"- reward: accuracy x (MACs/T)^-0.07 (soft), T = {target / 1e6:.2f}M MACs = the skeleton's MACs at {args.resolution} px "
        "(scaled down from 400M because the proxy nets are small; with the soft constraint T only scales every reward by the same factor).",
        f"- budget: {args.trials} trials per run, batch {args.batch_size} per strategy update, seeds {args.seeds}; "
        f"{args.workers} Ray workers x 1 thread. Evolution: population {max(4, args.trials // 2)}, tournament {max(2, args.trials // 6)}.",
        "",
        "## Best reward per strategy (over seeds)",
        "",
        "| strategy | runs | best reward mean | std | min | max | best of first batch (mean) | gain over own first batch (mean) | mean reward of all trials | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for strategy, s in summary.items():
        if s["best_reward_mean"] is None:
            lines.append(f"| {strategy} | {s['runs']} | - | - | - | - | - | - | - | {s['failed']} |")
            continue
        lines.append(
            f"| {strategy} | {s['runs']} | {s['best_reward_mean']:.4f} | {s['best_reward_std']:.4f} | {s['best_reward_min']:.4f} | {s['best_reward_max']:.4f} | "
            f"{s['first_batch_best_mean']:.4f} | {s['gain_over_first_batch_mean']:+.4f} | {s['mean_reward_all_trials']:.4f} | {s['failed']} |"
        )
    lines += ["", *reading(args, runs, summary), *strategy_comparisons(runs, naswot or [])]
    if naswot:
        lines += [
            "NASWOT alone (no training to choose): per seed, the best of "
            f"{naswot[0]['candidates']} random architectures by NASWOT score x the same MACs term, then trained once by the proxy:",
            "",
            "| seed | proxy accuracy | reward | MACs | architecture |",
            "|---:|---:|---:|---:|---|",
        ]
        for row in naswot:
            accuracy = f"{row['accuracy']:.3f}" if row["accuracy"] is not None else "failed"
            reward = f"{row['reward']:.4f}" if row["reward"] is not None else "-"
            lines.append(f"| {row['seed']} | {accuracy} | {reward} | {(row['macs'] or 0) / 1e6:.2f}M | `{row['key']}` |")
        lines.append("")
    lines += ["", "Per seed (best reward / its accuracy):", ""]
    for strategy, s in summary.items():
        pairs = ", ".join(f"{r:.4f} / {a:.3f}" for r, a in zip(s["best_reward_per_seed"], s["best_accuracy_per_seed"], strict=True))
        lines.append(f"- {strategy}: {pairs}")
    lines += ["", "![reward per trial](search_study_rewards.png)", "", "![accuracy vs MACs](search_study_pareto.png)", ""]
    if best:
        lines += [
            "## Best architecture found",
            "",
            f"{best['strategy']} seed {best['seed']}, trial {best['trial'] + 1}: reward {best['reward']:.4f}, accuracy {best['accuracy']:.4f}, "
            f"{best['macs'] / 1e6:.2f}M MACs: `{best['key']}`",
            "",
            "Top 5 over all runs:",
            "",
            "| reward | accuracy | MACs | strategy | architecture |",
            "|---:|---:|---:|---|---|",
        ]
        for r in top_k(every, 5):
            lines.append(f"| {r['reward']:.4f} | {r['accuracy']:.4f} | {r['macs'] / 1e6:.2f}M | {r['strategy']} | `{r['key']}` |")
        front = pareto_front(every)
        lines += ["", f"Pareto front (accuracy vs MACs) over all {len(every)} trials: {len(front)} points.", ""]
    if final and final.get("nets"):
        lines += [
            "## Best found vs B0 compound-scaled to the same MACs (trained longer, fresh data)",
            "",
            f"{args.final_epochs} epochs x {args.final_train_samples} images, accuracy on {args.final_val_samples} validation images, "
            f"data seeds {args.final_seeds} (the search used seed 0: new training and validation images). "
            "B0 (all 7 stages)"
            + (f" at {final['b0_base_resolution']} px" if final.get("b0_base_resolution") else "")
            + (f" compound-scaled with phi = {final['phi']:.3f}." if final.get("phi") is not None else " compound-scaled (not finished)."),
            "",
            "| net | resolution | MACs | params | accuracy per seed | mean | architecture |",
            "|---|---:|---:|---:|---|---:|---|",
        ]
        for label, row in final["nets"].items():
            accs = ", ".join(f"{a:.3f}" for a in row["accuracy_per_seed"])
            mean = f"{row['accuracy_mean']:.3f}" if row["accuracy_mean"] is not None else "failed"
            lines.append(f"| {label} | {row['resolution']} | {row['macs'] / 1e6:.2f}M | {row['params'] / 1e6:.3f}M | {accs} | {mean} | `{row['spec']}` |")
        if final["scale_warnings"]:
            lines += ["", "Scaling note: " + "; ".join(final["scale_warnings"])]
        lines += ["", *final_reading(final, target)]
        lines.append("")
    else:
        lines += ["## Best found vs B0 scaled to the same MACs", "", "Not done in this run (the heavy-job window ran out).", ""]
    if final and final.get("reeval"):
        lines += [
            "## Winner's curse: each strategy's best, evaluated again on fresh proxy data",
            "",
            f"The same proxy training ({args.epochs} epochs x {args.train_samples} images) with data seeds {args.final_seeds} instead of 0.",
            "",
            "| strategy | reward in the search | accuracy in the search | accuracy on fresh data (per seed) | reward on fresh data (mean) |",
            "|---|---:|---:|---|---:|",
        ]
        for strategy, row in final["reeval"].items():
            accs = ", ".join(f"{a:.3f}" for a in row["fresh_accuracy_per_seed"])
            fresh = f"{row['fresh_reward_mean']:.4f}" if row["fresh_reward_mean"] is not None else "failed"
            lines.append(f"| {strategy} | {row['search_reward']:.4f} | {row['search_accuracy']:.3f} | {accs} | {fresh} |")
        lines.append("")
    atomic_write_text(out / "search_study.md", "\n".join(lines) + "\n")


def load_runs(args: argparse.Namespace) -> tuple[dict[str, list[dict[str, Any]]], float]:
    """The searches as saved on disk (state.pt of each run), and the wall time from the first setting written to the last trial stored."""
    import torch

    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in args.strategies}
    first, last = float("inf"), 0.0
    for seed in args.seeds:
        for strategy in args.strategies:
            directory = Path(args.work) / f"{strategy}_seed{seed}"
            if not (directory / "state.pt").exists():
                continue
            state = torch.load(directory / "state.pt", weights_only=True)
            history = json.loads(state["history"])
            ok = [h for h in history if h["reward"] is not None]
            first = min(first, (directory / "search.json").stat().st_mtime)
            last = max(last, (directory / "trials.json").stat().st_mtime)
            runs[strategy].append(
                {
                    "seed": seed,
                    "best": max(ok, key=lambda h: h["reward"]) if ok else None,
                    "history": history,
                    "batches": json.loads(state["batches"]),
                    "seconds": sum(h["seconds"] for h in history),
                    "dir": str(directory),
                }
            )
    return runs, max(0.0, last - first)


def load_final(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], target: float) -> dict[str, Any] | None:
    """The final trainings and re-evaluations finished so far (read from their trial stores), or None."""
    from effnet.experiments.search.reward import Reward

    path = Path(args.work) / "final" / "trials.json"
    if not path.exists():
        return None
    trials = json.loads(path.read_text())["trials"]
    rows: dict[str, Any] = {}
    phi = None
    for trial in trials:
        label = trial["key"].split("/")[0]
        spec = NetSpec.from_dict(trial["params"]["spec"])
        if label == "b0_scaled":
            phi = float(spec.name.rsplit("phi", 1)[1])
        prof = profile_spec(spec)
        row = rows.setdefault(
            label,
            {
                "spec": spec.to_string(),
                "resolution": spec.resolution,
                "macs": prof.macs,
                "params": prof.params,
                "accuracy_per_seed": [],
                "curves": [],
                "failed": [],
            },
        )
        if trial["status"] == "ok":
            row["accuracy_per_seed"].append(trial["result"]["accuracy"])
            row["curves"].append(trial["result"].get("curve"))
        else:
            row["failed"].append(trial["error"])
    for row in rows.values():
        row["accuracy_mean"] = statistics.mean(row["accuracy_per_seed"]) if row["accuracy_per_seed"] else None
    rows = {label: rows[label] for label in ("search_best", "b0_scaled", "skeleton") if label in rows}
    base_resolution, notes = None, []
    if "search_best" in rows:  # the same B0 as final_comparison built (analytic, deterministic)
        _, phi, base_resolution, notes = b0_at_macs(args, rows["search_best"]["macs"])
    final: dict[str, Any] = {"phi": phi, "b0_base_resolution": base_resolution, "scale_warnings": notes, "nets": rows}
    reeval_path = Path(args.work) / "reeval" / "trials.json"
    if reeval_path.exists():
        reward = Reward.soft(target)
        reeval_trials = json.loads(reeval_path.read_text())["trials"]
        final["reeval"] = {}
        for strategy, items in runs.items():
            bests = [r["best"] for r in items if r["best"]]
            accs = [t["result"]["accuracy"] for t in reeval_trials if t["key"].startswith(strategy + "/") and t["status"] == "ok"]
            if bests and accs:
                best = max(bests, key=lambda b: b["reward"])
                final["reeval"][strategy] = {
                    "key": best["key"],
                    "search_reward": best["reward"],
                    "search_accuracy": best["accuracy"],
                    "fresh_accuracy_per_seed": accs,
                    "fresh_reward_mean": statistics.mean(reward(a, best["macs"]) for a in accs),
                }
    return final


def main() -> int:
    args = parse_args()
    target = profile_spec(study_space(args).skeleton.replace(resolution=args.resolution, num_classes=args.classes)).macs
    started = time.perf_counter()
    final = None
    if args.phase in ("report", "reeval"):
        runs, seconds = load_runs(args)
        final = load_final(args, runs, target)
        if args.phase == "reeval":
            with ray_session("local", args.workers):
                final = final or {"nets": {}, "phi": None, "b0_base_resolution": None, "scale_warnings": []}
                final["reeval"] = reevaluate(args, runs, target)
        saved = Path(args.out) / "search_study.json"
        naswot = json.loads(saved.read_text()).get("naswot") if saved.exists() else None
        write_results(args, target, runs, summarize(runs), final, seconds, naswot)
        return 0
    with ray_session("local", args.workers):
        runs = run_searches(args, target)
        summary = summarize(runs)
        naswot = naswot_baseline(args, target)
        write_results(args, target, runs, summary, None, time.perf_counter() - started, naswot)
        print(json.dumps(summary, indent=1), flush=True)
        if args.phase in ("final", "all"):
            every = [h for items in runs.values() for r in items for h in r["history"] if h["reward"] is not None]
            best = max(every, key=lambda h: h["reward"])
            final = final_comparison(args, best)
            final["reeval"] = reevaluate(args, runs, target)
            print(json.dumps(final, indent=1), flush=True)
    write_results(args, target, runs, summary, final, time.perf_counter() - started, naswot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
