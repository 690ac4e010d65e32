"""The scaling study's Markdown report and PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effnet._io import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from effnet.experiments.study.results import Point, StudyResult

RESOLVE_POINTS = 4.0  # the half-width (top-1 points) the verdict counts seeds for: what separates the rows of Table 3
LEARNED_MARGIN = 10.0  # top-1 points above chance below which the verdict warns that nothing much was learned
PLOTS = {"fig3": "fig3_single_dimension.png", "fig4": "fig4_width_at_depth_resolution.png", "table3": "table3_matched_macs.png"}


def _acc(p: Point, digits: int = 1) -> str:
    acc = p.accuracy
    if acc is None:
        first = next(iter(p.errors.values()), "no result").splitlines()[0]
        return f"failed ({first[:60]})"
    text = acc.text(digits)
    return text + (f" ({len(p.errors)} failed)" if p.errors else "")


def _seeds(p: Point) -> str:
    return ", ".join(f"{v:.1f}" for _, v in sorted(p.scores.items()))


def _m(macs: float) -> str:
    return f"{macs / 1e6:.2f}M"


def markdown(result: StudyResult) -> str:
    """The report: setup, the parts that were run as tables, the verdict and how the run went."""
    base = result.baseline_point
    n = len(result.seeds)
    grown = any(p.seeds_trained > n for p in result.points)
    lines = [
        f"# Scaling study ({result.preset.name})",
        "",
        f"Baseline: `{result.baseline.name or 'custom'}` at {result.baseline.resolution} px, {_m(base.macs)} MACs, {base.params / 1e6:.3f}M params, "
        f"{result.baseline.num_classes} classes; spec `{result.baseline.to_string()}` (stem {result.baseline.stem_channels}, head {result.baseline.head_channels}).",
        f"Data: {result.dataset}. Every network is trained with the `proxy` preset plus `{json.dumps(_train_of(result))}`.",
        f"Seeds: {n} ({', '.join(map(str, result.seeds))})"
        + (", more for the networks the stopping rule grew (the tables show each network's seeds)" if grown else "")
        + "; a seed fixes the images, data order and initial draw for every network alike. "
        + "Accuracy is the final validation top-1 %, mean ± the 95% Student-t interval over seeds"
        + (f" (t with {n - 1} degrees of freedom)." if n > 1 and not grown else "." if n > 1 else " (no interval with one seed)."),
        "MACs are multiply-adds of the trained network (the paper's FLOPS).",
    ]
    if result.stopping:
        rounds = "".join(f" Round {i}: {text}." for i, text in enumerate(result.stopping.get("rounds", []), 1))
        lines.insert(-1, f"Stopping rule, fixed before the run: {result.stopping['rule']}.{rounds} It stopped because {result.stopping['reason']}.")
    if any(result.part(dim) for dim in ("width", "depth", "resolution")):
        lines += _fig3_lines(result)
    if result.part("fig4"):
        lines += _fig4_lines(result)
    if result.part("matched"):
        lines += _table3_lines(result)
    lines += ["", "## Verdict", "", *verdict(result), "", "## Run", ""]
    for i, run in enumerate(result.runs or [{"wall_seconds": result.wall_seconds, **result.machine}], 1):
        when = f", finished {run['finished']}" if run.get("finished") else ""
        lines.append(
            f"- Invocation {i}{when}: wall time {run.get('wall_seconds', 0) / 60:.1f} min on {run.get('cpus')} CPU(s) with {run.get('workers')} worker(s); "
            f"{run.get('runs_trained_now')} training runs trained, {run.get('runs_resumed')} taken from an earlier invocation; "
            f"this study's processes used {run.get('own_cpu_seconds')} CPU-seconds; the machine was {_pct(run.get('machine_busy_share'))} busy "
            "(all processes, other users' included)"
            + (
                f"; {run['training_images']} training images at {run['images_per_second']:g} images/s end to end (start-up, data and evaluation included) on {run.get('device', 'cpu')}."
                if run.get("images_per_second")
                else "."
            )
        )
    return "\n".join(lines) + "\n"


# Each part's section: heading, plot caption, and the table's header and alignment rows.
_SECTIONS = {
    "fig3": (
        "(a) One dimension at a time (paper Figure 3)",
        "single dimension",
        "| scaled | multiplier | resolution | MACs | × baseline | params | top-1 % | per seed |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ),
    "fig4": (
        "(b) Width at several (depth, resolution) settings (paper Figure 4)",
        "width at depth and resolution",
        "| depth | resolution | width | MACs | × baseline | top-1 % | per seed |",
        "|---:|---:|---:|---:|---:|---|---|",
    ),
    "table3": (
        "(c) Single dimension against compound scaling at matched MACs (paper Table 3)",
        "matched MACs",
        "| target MACs | scaling | d | w | r (px) | MACs | off target | seeds | top-1 % | compound − row |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ),
}


def _section(part: str, intro: str = "") -> list[str]:
    """A part's heading, `intro`, its plot and its table's header."""
    title, caption, header, align = _SECTIONS[part]
    return ["", f"## {title}", "", *([intro, ""] if intro else []), f"![{caption}]({PLOTS[part]})", "", header, align]


def _fig3_lines(result: StudyResult) -> list[str]:
    base = result.baseline_point
    lines = _section("fig3")
    lines.append(f"| baseline | 1 | {base.spec.resolution} | {_m(base.macs)} | 1.00 | {base.params / 1e6:.3f}M | {_acc(base)} | {_seeds(base)} |")
    for dim in ("width", "depth", "resolution"):
        for p in sorted(single_dimension(result, dim), key=lambda p: p.macs):
            m = getattr(p, dim)
            lines.append(
                f"| {dim} | {m:.3g} | {p.spec.resolution} | {_m(p.macs)} | {p.macs / base.macs:.2f} | {p.params / 1e6:.3f}M | {_acc(p)} | {_seeds(p)} |"
            )
    return lines


def _fig4_lines(result: StudyResult) -> list[str]:
    base = result.baseline_point
    lines = _section("fig4")
    for p in result.part("fig4"):
        lines.append(
            f"| {p.depth:g} | {p.resolution:g} ({p.spec.resolution} px) | {p.width:g} | {_m(p.macs)} | {p.macs / base.macs:.2f} | {_acc(p)} | {_seeds(p)} |"
        )
    return lines


def _table3_lines(result: StudyResult) -> list[str]:
    lines = _section(
        "table3",
        f"Compound scaling with α = {result.alpha:g}, β = {result.beta:g}, γ = {result.gamma:g} (φ solved for each target); single dimensions "
        "by the multiplier that lands on the target. 'compound − row' is the paired difference over seeds (mean ± 95% t-interval).",
    )
    for row in result.matched_rows():
        p = row["point"]
        label = p.label + (f" (φ = {p.phi:.3f})" if p.phi is not None else "")
        off = "" if row["macs_error"] is None else f"{100 * row['macs_error']:+.1f}%"
        diff = row.get("compound_minus")
        lines.append(
            f"| {_m(row['target_macs'])} | {label} | {p.depth:.3g} | {p.width:.3g} | {p.resolution:.3g} ({p.spec.resolution}) | {_m(p.macs)} | {off} | "
            f"{p.seeds_trained} | {_acc(p)} | {diff.text(1) if diff else ''} |"
        )
    return lines


def single_dimension(result: StudyResult, dim: str) -> list[Point]:
    """Part (a)'s networks of one dimension, with the matched-MACs network of that dimension alone (it ends the curve)."""
    return result.part(dim) + [p for p in result.part("matched") if p.label == f"{dim} only"]


def _pct(share: Any) -> str:
    return "?" if share is None else f"{100 * share:.0f}%"


def _train_of(result: StudyResult) -> dict[str, Any]:
    return result.train or {**result.preset.train, "num_classes": result.baseline.num_classes}


def verdict(result: StudyResult) -> list[str]:
    """Plain sentences: did compound beat each single dimension at matched MACs, by how much, is it beyond the seeds'
    spread, and the smallest difference the run could have detected."""
    from effnet.experiments.study.stats import detectable_difference, seeds_for_half_width

    out, spreads = [], []
    for row in result.matched_rows():
        p, diff = row["point"], row.get("compound_minus")
        if diff is None or p.label == "compound":
            continue
        if math.isnan(diff.half_width):
            sure = "one seed, no interval"
        elif diff.low > 0:
            sure = "the 95% interval excludes 0: compound is better"
        elif diff.high < 0:
            sure = "the 95% interval excludes 0: compound is worse"
        else:
            sure = "the 95% interval includes 0: no significant difference"
        who = "the baseline" if p.part == "baseline" else p.label
        detectable = detectable_difference(diff)
        power = "" if math.isnan(detectable) else f"; the smallest difference these seeds detect 80% of the time: {detectable:.1f} points"
        out.append(f"- At {_m(row['target_macs'])} MACs, compound − {who}: {diff.text(1)} points top-1 over {diff.n} seeds ({sure}{power}).")
        spreads.append(diff)
    out = out or ["- No matched-MACs comparison finished."]
    if spreads and all(d.n >= 2 and not math.isnan(d.std) for d in spreads):
        widest = max(spreads, key=lambda d: d.half_width)
        if widest.half_width > RESOLVE_POINTS:
            needed = max(seeds_for_half_width(d.std, RESOLVE_POINTS) for d in spreads)
            out.append(
                f"- Resolution: the widest half-width is {widest.half_width:.1f} points; at the spreads seen, the widest comparison would need "
                f"about {needed} seeds for a ±{RESOLVE_POINTS:g}-point interval (`--until-half-width {RESOLVE_POINTS:g} --budget-minutes 0` "
                "grows the unresolved comparisons to it)."
            )
    classes = result.baseline.num_classes
    means = [p.accuracy.mean for p in result.points if p.accuracy is not None]
    if classes and means and max(means) < 100.0 / classes + LEARNED_MARGIN:
        out.append(
            f"- Caution: the best network's mean top-1 is {max(means):.1f}%, within {LEARNED_MARGIN:g} points of chance ({100.0 / classes:.0f}%): "
            "this training budget taught the networks little, so the run can neither confirm nor refute the claim. "
            "Train longer (--epochs, --train-samples) or use a larger preset."
        )
    return out


def plot(result: StudyResult, out_dir: Path) -> list[Path]:
    """The three PNGs: Figure 3 (one panel per dimension), Figure 4 (width lines) and Table 3 (matched MACs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def errorbar(ax: Any, points: list[Point], **kwargs: Any) -> None:
        done = [p for p in points if p.accuracy is not None]
        if not done:
            return
        xs = [p.macs / 1e6 for p in done]
        ys = [p.accuracy.mean for p in done]
        err = [0.0 if math.isnan(p.accuracy.half_width) else p.accuracy.half_width for p in done]
        ax.errorbar(xs, ys, yerr=err, capsize=3, **{"marker": "o", **kwargs})

    if any(result.part(dim) for dim in ("width", "depth", "resolution")):
        written.append(_plot_fig3(plt, result, errorbar, out_dir))
    if result.part("fig4"):
        written.append(_plot_fig4(plt, result, errorbar, out_dir))
    if result.part("matched"):
        written.append(_plot_table3(plt, result, out_dir))
    return written


def _plot_fig3(plt: Any, result: StudyResult, errorbar: Any, out_dir: Path) -> Path:
    base = result.baseline_point
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, dim in zip(axes, ("width", "depth", "resolution"), strict=True):
        points = sorted([base, *single_dimension(result, dim)], key=lambda p: p.macs)
        errorbar(ax, points)
        for p in points:
            if p.accuracy is not None:
                ax.annotate(f"{getattr(p, dim):.3g}", (p.macs / 1e6, p.accuracy.mean), textcoords="offset points", xytext=(4, 4), fontsize=8)
        _chance(ax, result)
        ax.set_title(f"{dim} scaled alone")
        ax.set_xlabel("MACs (millions)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 % (mean ± 95% CI over seeds)")
    fig.suptitle(f"Single-dimension scaling of {result.baseline.name or 'the baseline'} (cf. paper Figure 3)")
    fig.tight_layout()
    path = _save(fig, out_dir / PLOTS["fig3"])
    plt.close(fig)
    return path


def _plot_fig4(plt: Any, result: StudyResult, errorbar: Any, out_dir: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 5))
    settings = sorted({(p.depth, p.resolution) for p in result.part("fig4")})
    for d, r in settings:
        points = sorted([p for p in result.part("fig4") if (p.depth, p.resolution) == (d, r)], key=lambda p: p.width)
        errorbar(ax, points, label=f"d={d:g}, r={r:g}")
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel("top-1 % (mean ± 95% CI over seeds)")
    _chance(ax, result)
    ax.set_title("Width scaling at several (depth, resolution) (cf. paper Figure 4)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    path = _save(fig, out_dir / PLOTS["fig4"])
    plt.close(fig)
    return path


def _plot_table3(plt: Any, result: StudyResult, out_dir: Path) -> Path:
    """The rows side by side (their MACs are equal by construction, so MACs make a poor x axis); seeds as dots."""
    base = result.baseline_point
    targets = sorted({p.target_macs for p in result.part("matched") if p.target_macs})
    fig, axes = plt.subplots(1, max(1, len(targets)), figsize=(max(7.5, 6 * len(targets)), 4.8), sharey=True, squeeze=False)
    for ax, target in zip(axes[0], targets, strict=False):
        rows = [base, *[p for p in result.part("matched") if p.target_macs == target]]
        for x, p in enumerate(rows):
            color = "tab:red" if p.label == "compound" else ("gray" if p is base else "tab:blue")
            if p.accuracy is not None:
                half = 0.0 if math.isnan(p.accuracy.half_width) else p.accuracy.half_width
                ax.errorbar([x], [p.accuracy.mean], yerr=[half], capsize=5, marker="o", markersize=8, color=color)
                ax.scatter([x + 0.12] * len(p.scores), list(p.scores.values()), s=12, color=color, alpha=0.5)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([f"{p.label}\n{p.macs / 1e6:.1f}M" for p in rows], fontsize=8)
        _chance(ax, result)
        ax.set_title(f"target {target / 1e6:.1f}M MACs ({target / base.macs:.1f}x baseline)")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("top-1 % (mean ± 95% CI; dots: seeds)")
    fig.suptitle("Single dimension vs compound scaling at matched MACs (cf. paper Table 3)")
    fig.tight_layout()
    path = _save(fig, out_dir / PLOTS["table3"])
    plt.close(fig)
    return path


def _chance(ax: Any, result: StudyResult) -> None:
    """A dashed line at chance level (100 / classes): on a proxy task, accuracies near it mean the budget taught little."""
    classes = result.baseline.num_classes
    if classes:
        ax.axhline(100.0 / classes, color="black", linestyle="--", linewidth=0.8, alpha=0.6, label=f"chance ({100.0 / classes:.0f}%)")


def _save(fig: Any, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    return path


def write_report(result: StudyResult, out_dir: str | Path) -> Path:
    """Write study.json, the PNG plots and report.md into `out_dir`; returns the report's path."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "study.json", json.dumps(result.to_dict(), indent=2) + "\n")
    plot(result, out_dir)
    path = out_dir / "report.md"
    atomic_write_text(path, markdown(result))
    return path
