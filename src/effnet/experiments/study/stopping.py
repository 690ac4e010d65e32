"""The stopping rule of the scaling study's powered comparisons: seeds grow per unresolved "compound - row" comparison.

Stein's two-stage idea, repeated: after the first seeds, each Table 3 comparison whose 95% half-width is wider than
asked grows to the seeds its observed spread needs, within a cap and a time budget (`stopping_decision`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from effnet.experiments.study.results import Point, StudyResult


def stopping_decision(
    result: StudyResult,
    half_width: float,
    max_seeds: int,
    *,
    run_seconds: dict[str, float] | None = None,
    workers: int = 1,
    seconds_left: float | None = None,
    stored: Callable[[str], bool] | None = None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """The stopping rule's step: (the record of where it stands, {network key: the seeds to grow it to}; {} to stop).

    Each "compound - row" comparison whose 95% half-width exceeds `half_width` asks for the seeds its observed spread
    needs (at least one more than it has, at most `max_seeds`) for both its networks; compound takes the most any of
    its comparisons asks. With `seconds_left`, the growth is cut back one seed at a time (for every comparison at
    once) until its runs, at `run_seconds` (network key -> seconds per run) on `workers` in parallel, fit in it;
    runs that `stored` ("KEY-seedN" -> bool) says an earlier invocation finished cost nothing."""
    from effnet.experiments.study.stats import seeds_for_half_width

    targets = sorted({p.target_macs for p in result.part("matched") if p.target_macs})

    def name(p: Point) -> str:  # the same label recurs at every target
        return f"{p.label} at {p.target_macs / 1e6:.2f}M MACs" if len(targets) > 1 and p.target_macs else p.label

    comparisons = []  # (row, compound, interval, half-width: inf where there is no spread yet)
    for target in targets:
        compound = next((p for p in result.part("matched") if p.target_macs == target and p.label == "compound"), None)
        for row in result.matched_rows():
            diff = row.get("compound_minus")
            if row["target_macs"] == target and diff is not None and compound is not None:
                width = diff.half_width if diff.n >= 2 and not math.isnan(diff.half_width) else math.inf
                comparisons.append((row["point"], compound, diff, width))
    widest = max((c[3] for c in comparisons), default=math.inf)
    record: dict[str, Any] = {
        "rule": f"the seeds of each compound - row comparison grow until its 95% half-width <= {half_width:g} points, at most {max_seeds} seeds"
        + (" within the time budget" if seconds_left is not None else ""),
        "half_width": half_width,
        "max_seeds": max_seeds,
        "seeds": {name(p): p.seeds_trained for c in comparisons for p in c[:2]},
        "widest": round(widest, 2) if math.isfinite(widest) else None,
    }
    if widest <= half_width:
        return {**record, "reason": f"every half-width <= {half_width:g} (widest {widest:.1f})", "met": True}, {}
    wanted = []  # (row, compound, seeds asked for) of each unresolved comparison below the cap
    for row, compound, diff, width in comparisons:
        have = min(row.seeds_trained, compound.seeds_trained)
        if width > half_width and have < max_seeds:
            needed = seeds_for_half_width(diff.std, half_width, most=max_seeds) if math.isfinite(width) else have + 1
            wanted.append((row, compound, have, min(max_seeds, max(have + 1, needed))))
    if not wanted:
        return {**record, "reason": f"{max_seeds} seeds reached with the widest half-width {widest:.1f} > {half_width:g}", "met": False}, {}
    points = {p.key: p for c in comparisons for p in c[:2]}
    asked_most = max(want - have for _, _, have, want in wanted)
    for most_added in range(asked_most, 0, -1):
        grow: dict[str, int] = {}
        for row, compound, have, want in wanted:
            for p in (row, compound):
                grow[p.key] = max(grow.get(p.key, p.seeds_trained), min(want, have + most_added))
        grow = {key: n for key, n in grow.items() if n > points[key].seeds_trained}
        runs = [
            (run_seconds or {}).get(key, 0.0)
            for key, n in grow.items()
            for seed in range(points[key].seeds_trained, n)
            if not (stored and stored(trial_key(key, seed)))
        ]
        estimate = _wall_estimate(runs, workers)
        if seconds_left is None or estimate <= seconds_left:
            asked = ", ".join(f"{name(row)} {want}" for row, _, _, want in wanted)
            cut = "" if most_added == asked_most else f", cut to +{most_added} by the time budget"
            reason = f"widest half-width {widest:.1f} > {half_width:g}; the observed spreads ask for {asked}{cut}"
            growth = {name(points[key]): n for key, n in grow.items()}
            return {**record, "reason": reason, "met": False, "estimated_seconds": round(estimate, 1), "growth": growth}, grow
    reason = f"the time budget: one more seed of the unresolved comparisons would not finish in the {max(seconds_left or 0.0, 0.0) / 60:.1f} min left (widest half-width {widest:.1f} > {half_width:g})"
    return {**record, "reason": reason, "met": False}, {}


def trial_key(network: str, seed: int) -> str:
    """The trial store's key of one training run: a network (`Point.key`) at one seed."""
    return f"{network}-seed{seed}"


def _wall_estimate(seconds: list[float], workers: int) -> float:
    """Wall seconds of runs on `workers` in parallel, longest first to the least loaded (how a pool finishes them)."""
    loads = [0.0] * max(1, workers)
    for run in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += run
    return max(loads)
