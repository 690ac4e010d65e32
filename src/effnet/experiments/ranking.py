"""Does a ranking of candidates mean anything? `ranking_warning` says when the top-1 accuracies behind it are too
close to chance, or to each other, to order the candidates (every experiment that ranks networks asks it)."""

from __future__ import annotations

import math
from collections.abc import Sequence

NEAR_CHANCE_POINTS = 2.0  # least margin above chance (top-1 points) that counts as learned, whatever the validation size
EQUAL_POINTS = 0.5  # scores closer than this (top-1 points) are ties when the validation size is unknown
ADVICE = "train longer (--epochs) or on more data (--train-samples)"


def ranking_warning(
    scores: Sequence[float], *, chance: float | None = None, samples: int | None = None, what: str = "candidate", advice: str = ADVICE
) -> str | None:
    """A warning when a ranking of top-1 accuracies (percent) says nothing, else None.

    - Near chance: the best is at most max(2, 2·SE) points above `chance` (percent), SE being the
      binomial standard error of a chance-level accuracy measured on `samples` validation images
      (100·sqrt(c(1-c)/n) points): such a best is what guessing gives with some luck.
    - Ties: every score lies within max(0.5, SE at their mean) points of the others: their order is
      noise (a ranking of equal scores only reflects how ties are broken, e.g. by fewer MACs).
    """
    scores = [float(s) for s in scores if s is not None and math.isfinite(s)]
    if not scores:
        return None
    best, worst = max(scores), min(scores)
    n = len(scores)
    every = f"every {what}" if n > 1 else f"the only {what}"
    if chance is not None and 0 < chance < 100:
        noise = _standard_error(chance, samples)
        margin = max(NEAR_CHANCE_POINTS, 2 * noise) if noise is not None else NEAR_CHANCE_POINTS
        if best - chance <= margin:
            return f"{every} scored within {margin:.1f} points of chance ({chance:.1f}%; best {best:.2f}%): the ranking says nothing; {advice}"
    if n < 2:
        return None
    noise = _standard_error(sum(scores) / n, samples)
    tie = max(EQUAL_POINTS, noise) if noise is not None else EQUAL_POINTS
    if best - worst <= 1e-9:
        return f"{every} scored {best:.2f}%: the ranking only orders ties (by cost), it says nothing about accuracy; {advice}"
    if best - worst <= tie:
        within = f"the noise of {samples} validation images (±{noise:.1f} points)" if noise is not None and noise >= EQUAL_POINTS else f"{tie:g} points"
        return f"{every} scored between {worst:.2f}% and {best:.2f}%, within {within}: the ranking says nothing; {advice}"
    return None


def _standard_error(percent: float, samples: int | None) -> float | None:
    """Binomial standard error (points) of an accuracy of `percent` measured on `samples` images; None without a count."""
    if not samples or samples < 1:
        return None
    p = min(max(percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / samples)
