"""The multi-objective reward of MnasNet, with MACs in place of latency (as for EfficientNet-B0).

    reward(m) = ACC(m) x [MACs(m) / T] ^ w,   w = alpha if MACs(m) <= T else beta

The soft constraint (default) uses alpha = beta = -0.07: a model twice over the target keeps
2^-0.07 = 0.953 of its accuracy, one at half the target gains the same factor. The hard
constraint (alpha = 0, beta = -1) leaves models under the target at their accuracy and
divides the accuracy of bigger ones by how far they overshoot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SOFT_EXPONENT = -0.07
DEFAULT_TARGET_MACS = 400e6


@dataclass(frozen=True)
class Reward:
    """ACC x (MACs/T)^w with w = `alpha` at or below the target and `beta` above it."""

    target_macs: float = DEFAULT_TARGET_MACS
    alpha: float = SOFT_EXPONENT
    beta: float = SOFT_EXPONENT

    def __post_init__(self) -> None:
        if isinstance(self.target_macs, bool) or not isinstance(self.target_macs, (int, float)) or not math.isfinite(self.target_macs) or self.target_macs <= 0:
            raise ValueError(f"the target MACs must be a positive number (e.g. 400e6 for EfficientNet-B0 at 224 px), got {self.target_macs!r}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not math.isfinite(value) or value > 0:
                raise ValueError(f"{name} must be a finite number <= 0 (a penalty on MACs), got {value!r}")

    @classmethod
    def soft(cls, target_macs: float = DEFAULT_TARGET_MACS, w: float = SOFT_EXPONENT) -> Reward:
        """The soft constraint: the same exponent w on both sides of the target (the paper's choice)."""
        return cls(target_macs, w, w)

    @classmethod
    def hard(cls, target_macs: float = DEFAULT_TARGET_MACS) -> Reward:
        """The hard constraint: no bonus below the target (alpha 0), accuracy x T/MACs above it (beta -1)."""
        return cls(target_macs, 0.0, -1.0)

    @classmethod
    def from_name(cls, kind: str, target_macs: float = DEFAULT_TARGET_MACS, w: float = SOFT_EXPONENT) -> Reward:
        """'soft' or 'hard'."""
        if kind == "soft":
            return cls.soft(target_macs, w)
        if kind == "hard":
            return cls.hard(target_macs)
        raise ValueError(f"unknown reward kind {kind!r}; expected 'soft' or 'hard'")

    def factor(self, macs: float) -> float:
        """The MACs factor (MACs/T)^w that multiplies the accuracy."""
        if not macs > 0:
            raise ValueError(f"MACs must be positive, got {macs!r}")
        ratio = macs / self.target_macs
        return ratio ** (self.alpha if ratio <= 1 else self.beta)

    def __call__(self, accuracy: float, macs: float) -> float:
        """The reward of a model with `accuracy` (a fraction in [0, 1]) and `macs` multiply-adds."""
        return accuracy * self.factor(macs)

    def to_dict(self) -> dict[str, Any]:
        return {"target_macs": float(self.target_macs), "alpha": float(self.alpha), "beta": float(self.beta)}
