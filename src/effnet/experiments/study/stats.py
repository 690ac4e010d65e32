"""Confidence intervals over seeds: Student's t-interval of a mean, and of a paired difference; Kendall's rank
correlation with a bootstrap interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """Mean of `n` values with a two-sided `level` t-interval: mean ± half_width."""

    mean: float
    half_width: float  # nan when n < 2 (one seed gives no spread)
    std: float  # sample standard deviation (n - 1 in the denominator)
    n: int
    level: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def text(self, digits: int = 1) -> str:
        """'52.3 ± 1.4' (or '52.3' for a single value)."""
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "half_width": self.half_width, "std": self.std, "n": self.n, "level": self.level}


def t_quantile(probability: float, dof: int) -> float:
    """Quantile of Student's t distribution with `dof` degrees of freedom (scipy when present)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    try:
        from scipy.stats import t

        return float(t.ppf(probability, dof))
    except ImportError:
        return _t_quantile_bisect(probability, dof)


def _t_quantile_bisect(probability: float, dof: int) -> float:
    """Invert the t CDF by bisection (the CDF through the regularised incomplete beta, by a continued fraction)."""

    def cdf(x: float) -> float:
        z = dof / (dof + x * x)
        tail = 0.5 * _betainc(dof / 2, 0.5, z)
        return 1 - tail if x > 0 else tail

    low, high = -1e3, 1e3
    for _ in range(200):
        mid = (low + high) / 2
        if cdf(mid) < probability:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (Lentz's continued fraction, as in Numerical Recipes' betacf)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x > (a + 1) / (a + b + 2):
        return 1 - _betainc(b, a, 1 - x)
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)), -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1) < 1e-12:
            break
    return front * result / a


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean and two-sided t-interval of `values` (e.g. one accuracy per seed)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, level)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean, half, std, n, level)


def paired_difference(a: dict[int, float], b: dict[int, float], level: float = 0.95) -> Interval:
    """t-interval of mean(a[s] - b[s]) over the seeds s both have (same seed: same data and initial draw)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("paired_difference needs at least one seed present in both")
    return mean_ci([a[s] - b[s] for s in seeds], level)


def detectable_difference(interval: Interval, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided test at `interval.level` would detect with probability `power`,
    given the spread `interval` observed over its `n` values: (t_{1-α/2} + t_{power}) · std / √n.

    The usual planning formula for a paired t-test (the t distribution standing in for the noncentral one); nan
    with fewer than two values."""
    if interval.n < 2 or math.isnan(interval.std):
        return math.nan
    dof = interval.n - 1
    return (t_quantile(0.5 + interval.level / 2, dof) + t_quantile(power, dof)) * interval.std / math.sqrt(interval.n)


def seeds_for_half_width(std: float, half_width: float, level: float = 0.95, most: int = 1000) -> int:
    """The fewest seeds n (>= 2) whose `level` t-interval, at sample spread `std`, has a half-width <= `half_width`;
    `most` when even that many would not (the search's cap)."""
    if half_width <= 0:
        raise ValueError(f"half_width must be > 0, got {half_width}")
    for n in range(2, most + 1):
        if t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n) <= half_width:
            return n
    return most


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either ranking corrected for), by counting pairs."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = ((concordant + discordant + ties_x) * (concordant + discordant + ties_y)) ** 0.5
    return (concordant - discordant) / denominator if denominator else float("nan")


def kendall_tau_interval(x: Sequence[float], y: Sequence[float], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of `kendall_tau_b` over pairs (x_i, y_i) resampled with replacement."""
    import random

    rng = random.Random(seed)
    values = []
    for _ in range(draws):
        picks = [rng.randrange(len(x)) for _ in x]
        tau = kendall_tau_b([x[i] for i in picks], [y[i] for i in picks])
        if not math.isnan(tau):  # every resampled pair the same: no ranking
            values.append(tau)
    if not values:  # no resample ranks anything (e.g. every y equal)
        return math.nan, math.nan
    values.sort()
    return values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]
