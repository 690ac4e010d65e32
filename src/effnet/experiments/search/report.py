"""What a search leaves behind: the best spec, a top-k table, plots and a Markdown summary.

Files written into the search directory by `write_report`:

- ``best_spec.json``: the best architecture (`NetSpec.save`), for `effnet train --spec` and `effnet scale best_spec.json`;
- ``top.md``: the top-k trials by reward;
- ``rewards.png``: reward against trial number (with the running best);
- ``pareto.png``: accuracy against MACs, the Pareto front (no other trial is both more accurate and cheaper) marked;
- ``history.csv``: every trial told to the strategy;
- ``summary.md``: the settings, the best architecture and its per-stage choices, the table and the plots.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from effnet._io import atomic_write, atomic_write_text
from effnet.experiments.search.evaluators import score_text

CSV_FIELDS = ("trial", "batch", "strategy", "status", "accuracy", "macs", "params", "reward", "seconds", "cached", "key", "error")


def pareto_front(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The successful records no other record dominates (at most as many MACs and strictly more accurate, or fewer MACs and as accurate), by MACs."""
    ok = sorted((r for r in records if r.get("accuracy") is not None), key=lambda r: (r["macs"], -r["accuracy"]))
    front, best = [], -math.inf
    for record in ok:
        if record["accuracy"] > best:
            front.append(record)
            best = record["accuracy"]
    return front


def top_k(records: Sequence[dict[str, Any]], k: int = 10) -> list[dict[str, Any]]:
    """The k best distinct architectures by reward (a repeated architecture is listed once)."""
    out, seen = [], set()
    for record in sorted((r for r in records if r.get("reward") is not None), key=lambda r: -r["reward"]):
        if record["key"] not in seen:
            seen.add(record["key"])
            out.append(record)
    return out[:k]


def top_table(records: Sequence[dict[str, Any]], k: int = 10, kind: str = "proxy") -> str:
    """Markdown table of the top k trials (accuracy in percent; the NASWOT score of a zero-cost search as is)."""
    header = "NASWOT score" if kind == "naswot" else "top-1 %"
    lines = [f"| rank | trial | reward | {header} | MACs | params | architecture |", "|---:|---:|---:|---:|---:|---:|---|"]
    for rank, r in enumerate(top_k(records, k), 1):
        score = f"{r['accuracy']:.2f}" if kind == "naswot" else f"{100 * r['accuracy']:.2f}"
        lines.append(f"| {rank} | {r['trial'] + 1} | {r['reward']:.4f} | {score} | {r['macs'] / 1e6:.2f}M | {r['params'] / 1e6:.3f}M | `{r['key']}` |")
    return "\n".join(lines)


def _save_png(fig: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def plot_rewards(runs: dict[str, Sequence[Sequence[dict[str, Any]]]], path: str | Path, title: str = "reward per trial") -> None:
    """Reward against trial number, one colour per strategy (label), one line per run: dots per trial, the running best as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, histories) in enumerate(runs.items()):
        color = colors[index % len(colors)]
        for run_index, history in enumerate(histories):
            xs = [r["trial"] + 1 for r in history if r.get("reward") is not None]
            ys = [r["reward"] for r in history if r.get("reward") is not None]
            ax.scatter(xs, ys, s=10, color=color, alpha=0.35)
            running, best = [], -math.inf
            for y in ys:
                best = max(best, y)
                running.append(best)
            ax.step(xs, running, where="post", color=color, alpha=0.9, label=f"{label} (best so far)" if run_index == 0 else None)
    ax.set_xlabel("trial")
    ax.set_ylabel("reward = accuracy x (MACs/T)^w")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, Path(path))
    plt.close(fig)


def plot_pareto(records: Sequence[dict[str, Any]], path: str | Path, target_macs: float | None = None, extra: Sequence[dict[str, Any]] = ()) -> None:
    """Accuracy against MACs of every successful trial, the Pareto front marked; `extra` points (label, macs, accuracy) as stars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.get("accuracy") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    strategies = sorted({r.get("strategy", "") for r in ok})
    for name in strategies:
        points = [r for r in ok if r.get("strategy", "") == name]
        ax.scatter([r["macs"] / 1e6 for r in points], [r["accuracy"] for r in points], s=14, alpha=0.6, label=name or "trials")
    front = pareto_front(ok)
    if front:
        ax.step([r["macs"] / 1e6 for r in front], [r["accuracy"] for r in front], where="post", color="black", lw=1.2, label="Pareto front")
        ax.scatter([r["macs"] / 1e6 for r in front], [r["accuracy"] for r in front], s=40, facecolors="none", edgecolors="black")
    for point in extra:
        ax.scatter([point["macs"] / 1e6], [point["accuracy"]], marker="*", s=160, label=point["label"], zorder=5)
    if target_macs:
        ax.axvline(target_macs / 1e6, color="grey", ls="--", lw=1, label=f"target T = {target_macs / 1e6:.1f}M")
    ax.set_xlabel("MACs (millions of multiply-adds)")
    ax.set_ylabel("accuracy (held-out validation)")
    ax.set_title("accuracy vs MACs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, Path(path))
    plt.close(fig)


def history_csv(records: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow(record)
    return buffer.getvalue()


def write_report(out_dir: str | Path, config: Any, space: Any, result: Any, k: int = 10) -> None:
    """Write best_spec.json, top.md, history.csv, rewards.png, pareto.png and summary.md into `out_dir`."""
    out = Path(out_dir)
    history = result.history
    atomic_write_text(out / "history.csv", history_csv(history))
    kind = config.evaluator_config().kind
    atomic_write_text(out / "top.md", top_table(history, k, kind) + "\n")
    plot_rewards({config.strategy: [history]}, out / "rewards.png", title=f"{config.strategy} search, seed {config.seed}")
    plot_pareto(history, out / "pareto.png", target_macs=config.target_macs)
    evaluator = config.evaluator_config()
    failed = sum(r["status"] != "ok" for r in history)
    cached = sum(bool(r["cached"]) for r in history)
    lines = [
        f"# Architecture search: {config.strategy}, seed {config.seed}",
        "",
        f"- trials: {len(history)} ({failed} failed, {cached} repeats answered from the cache), batch {config.batch_size}",
        f"- space: {space.size:.3g} architectures ({space.num_decisions} decisions over {len(space.stages)} stages), skeleton {space.skeleton.name or 'custom'}, "
        f"{space.resolution} px, {space.num_classes} classes",
        f"- reward: accuracy x (MACs/T)^w, {config.reward} constraint, T = {config.target_macs / 1e6:.1f}M MACs"
        + (f", w = {config.w}" if config.reward == "soft" else " (alpha 0, beta -1)"),
        f"- evaluator: {evaluator.describe()}",
        "",
    ]
    if getattr(result, "warning", None):
        lines += [f"**Warning:** {result.warning}.", ""]
    best = result.best
    if best is None:
        lines.append("No trial succeeded; see history.csv for the errors.")
    else:
        spec = space.decode(best["encoding"]).replace(name=f"search_{config.strategy}_best")
        spec.save(out / "best_spec.json")
        lines += [
            "## Best architecture",
            "",
            f"Reward {best['reward']:.4f}, {score_text(best['accuracy'], kind)}, {best['macs'] / 1e6:.2f}M MACs, {best['params'] / 1e6:.3f}M params (trial {best['trial'] + 1}).",
            "",
            f"`{best['key']}`",
            "",
            "| stage | op | kernel | SE | skip | filters | layers |",
            "|---:|---|---:|---:|---|---:|---:|",
        ]
        for index, (choice, stage) in enumerate(zip(space.describe(best["encoding"]), spec.stages, strict=True), 1):
            lines.append(
                f"| {index} | {choice['op']} | {choice['kernel']} | {choice['se']} | {'yes' if choice['skip'] else 'no'} | "
                f"{choice['filters']}x = {stage.out_channels} | {choice['layers']:+d} = {stage.repeats} |"
            )
        lines += ["", "Train it: `effnet train --spec best_spec.json --preset proxy`; scale it: `effnet scale best_spec.json --phi 1`.", ""]
    lines += ["## Top trials", "", top_table(history, k, kind), "", "![reward per trial](rewards.png)", "", "![accuracy vs MACs](pareto.png)", ""]
    atomic_write_text(out / "summary.md", "\n".join(lines))
