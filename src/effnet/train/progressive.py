"""Progressive learning with adaptive regularization (EfficientNetV2, Tan & Le 2021, Section 4.2, Algorithm 1).

Training is split into M stages of (nearly) equal epochs. Stage i trains at image size
S_i = S_0 + (S_e - S_0) * i / (M - 1) with every regularization strength interpolated the same
way: phi_i = phi_0 + (phi_e - phi_0) * i / (M - 1), for the RandAugment magnitude, the mixup alpha
and the dropout rate. Small images come with weak regularization, the final size with the
strongest; evaluation always runs at the final size. The stage of an epoch is a pure function
of the epoch, so a resumed run picks up the stage it was in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    """One stage of progressive learning: epochs [first_epoch, end_epoch), image size and regularization."""

    index: int
    first_epoch: int
    end_epoch: int
    resolution: int
    randaugment_magnitude: float
    mixup: float
    dropout: float

    def describe(self) -> str:
        return (
            f"stage {self.index + 1}: epochs {self.first_epoch + 1}-{self.end_epoch}, {self.resolution} px, "
            f"RandAugment magnitude {self.randaugment_magnitude:g}, mixup {self.mixup:g}, dropout {self.dropout:g}"
        )


def interpolate(start: float, end: float, index: int, stages: int) -> float:
    """Algorithm 1's linear interpolation: `start` at the first stage, `end` at the last."""
    return start if stages == 1 else start + (end - start) * index / (stages - 1)


def schedule(
    epochs: int,
    stages: int,
    *,
    resolution: tuple[int, int],
    magnitude: tuple[float, float],
    mixup: tuple[float, float],
    dropout: tuple[float, float],
) -> list[Stage]:
    """The M stages over `epochs`; each pair is (first stage's value, last stage's value). Sizes round to whole pixels."""
    if stages < 1:
        raise ValueError(f"progressive learning needs at least 1 stage, got {stages}")
    if stages > epochs:
        raise ValueError(f"{stages} progressive stages need at least as many epochs, got {epochs}; lower --progressive-stages or raise --epochs")
    out = []
    for i in range(stages):
        first, end = i * epochs // stages, (i + 1) * epochs // stages
        out.append(
            Stage(
                index=i,
                first_epoch=first,
                end_epoch=end,
                resolution=int(round(interpolate(resolution[0], resolution[1], i, stages))),
                randaugment_magnitude=interpolate(magnitude[0], magnitude[1], i, stages),
                mixup=interpolate(mixup[0], mixup[1], i, stages),
                dropout=interpolate(dropout[0], dropout[1], i, stages),
            )
        )
    return out


def stage_of(stages: list[Stage], epoch: int) -> Stage:
    """The stage that trains epoch `epoch` (0-based)."""
    for stage in stages:
        if stage.first_epoch <= epoch < stage.end_epoch:
            return stage
    return stages[-1]


def config_schedule(config: Any, final_resolution: int, final_dropout: float) -> list[Stage] | None:
    """The schedule a TrainConfig asks for (None when --progressive-stages is 0 or 1)."""
    if config.progressive_stages <= 1:
        return None
    start_resolution = config.progressive_start_resolution or max(8, final_resolution // 2)
    return schedule(
        config.epochs,
        config.progressive_stages,
        resolution=(start_resolution, final_resolution),
        magnitude=(config.progressive_start_magnitude, config.randaugment_magnitude),
        mixup=(config.progressive_start_mixup, config.mixup),
        dropout=(config.progressive_start_dropout, final_dropout),
    )
