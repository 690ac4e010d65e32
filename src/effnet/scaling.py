"""Model scaling (paper Section 3): depth d, width w, resolution r, and compound scaling by φ.

Scaling is a pure function NetSpec -> NetSpec, so it applies to any baseline.
Rounding follows the EfficientNet reference code (tensorflow/tpu efficientnet_model.py):

- width: every channel count c becomes ``round_filters(c * w)``: the nearest multiple
  of 8, never below 90% of ``c * w``;
- depth: every stage's repeats r becomes ``ceil(r * d)``: extra layers go to every stage
  in proportion to its depth (stages are never split or merged);
- resolution: the input size becomes ``round(resolution * r)`` (``resolution_mult=r``) unless given exactly
  (the released B1-B7 use a fixed table of resolutions, not γ^φ).

The same rules apply to any spec (MobileNet, ResNet, a user's net). Because of ceil() a
depth multiplier just above 1 already adds a layer to every stage, so MACs grow in steps;
`scale_to_macs` / `solve_phi` find the multiplier whose network lands nearest a MACs budget.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

from effnet.profile import profile_spec
from effnet.spec import NetSpec, SpecError

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # the paper's grid-search result for EfficientNet-B0


def round_filters(channels: float, width: float = 1.0, divisor: int = 8) -> int:
    """Channels after width scaling: nearest multiple of `divisor`, never below 90% of the target."""
    target = channels * width
    rounded = max(divisor, int(target + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * target:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float = 1.0) -> int:
    """Layers of a stage after depth scaling: ceil(repeats * depth)."""
    return int(math.ceil(depth * repeats))


def scale(
    spec: NetSpec,
    *,
    depth: float = 1.0,
    width: float = 1.0,
    resolution_mult: float = 1.0,
    image_size: int | None = None,
    dropout: float | None = None,
    name: str | None = None,
    resolution: float | None = None,
) -> NetSpec:
    """Scale a spec by depth, width and resolution multipliers (the paper's d, w, r).

    `resolution_mult` multiplies the input size (`NetSpec.resolution` is in pixels);
    `image_size` sets it in pixels exactly (overrides `resolution_mult`);
    `dropout` sets the classifier dropout (larger nets use more in the reference).
    A multiplier of 1.0 leaves that dimension exactly as it was.
    `resolution=` is the old name of `resolution_mult` (deprecated: it read as pixels).
    """
    if resolution is not None:
        if resolution_mult != 1.0:
            raise SpecError("give the resolution multiplier once: resolution_mult= (resolution= is its deprecated old name)")
        warnings.warn(
            "scale(resolution=...) is deprecated: the resolution multiplier is now resolution_mult= (NetSpec.resolution is in pixels; "
            "to set pixels, pass image_size=)",
            DeprecationWarning,
            stacklevel=2,
        )
        resolution_mult = resolution
    for label, value in (("depth", depth), ("width", width), ("resolution", resolution_mult)):
        if not value > 0:
            raise SpecError(f"{label} multiplier must be > 0, got {value!r}")
    last = len(spec.stages) - 1
    stages = []
    for index, stage in enumerate(spec.stages):
        fixed_depth = not spec.scale_first_last_repeats and index in (0, last)
        stages.append(
            stage.__class__(
                block=stage.block,
                repeats=stage.repeats if fixed_depth or depth == 1.0 else round_repeats(stage.repeats, depth),
                kernel=stage.kernel,
                stride=stage.stride,
                expand_ratio=stage.expand_ratio,
                out_channels=stage.out_channels if width == 1.0 else round_filters(stage.out_channels, width),
                se_ratio=stage.se_ratio,
                skip=stage.skip,
            )
        )
    scale_ends = spec.scale_stem_head and width != 1.0
    new_resolution = image_size if image_size is not None else int(round(spec.resolution * resolution_mult))
    return spec.replace(
        stages=tuple(stages),
        stem_channels=round_filters(spec.stem_channels, width) if scale_ends else spec.stem_channels,
        head_channels=round_filters(spec.head_channels, width) if scale_ends and spec.head_channels else spec.head_channels,
        resolution=new_resolution,
        dropout=spec.dropout if dropout is None else dropout,
        name=name if name is not None else spec.name,
    )


def compound_multipliers(phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> tuple[float, float, float]:
    """(d, w, r) = (α^φ, β^φ, γ^φ); warns if α·β²·γ² is far from 2 (FLOPs then do not double per unit φ)."""
    if phi < 0:
        raise SpecError(f"compound coefficient phi must be >= 0, got {phi!r}; phi = 0 is the baseline")
    for label, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if value < 1:
            raise SpecError(f"{label} must be >= 1 (the paper requires α, β, γ >= 1), got {value!r}")
    product = alpha * beta**2 * gamma**2
    if abs(product - 2.0) > 0.1:
        warnings.warn(
            f"alpha * beta^2 * gamma^2 = {product:.3f}, far from the paper's constraint of about 2: "
            f"MACs will grow about {product:.2f}x per unit phi instead of 2x",
            stacklevel=2,
        )
    return alpha**phi, beta**phi, gamma**phi


def compound(
    spec: NetSpec,
    phi: float,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    *,
    name: str | None = None,
) -> NetSpec:
    """Compound scaling (paper Eq. 3): depth α^φ, width β^φ, resolution γ^φ."""
    depth, width, resolution_mult = compound_multipliers(phi, alpha, beta, gamma)
    return scale(spec, depth=depth, width=width, resolution_mult=resolution_mult, name=name)


DIMENSIONS = ("compound", "depth", "width", "resolution")


def scale_along(spec: NetSpec, dimension: str, multiplier: float) -> NetSpec:
    """Scale one dimension ("depth", "width" or "resolution") by `multiplier`, the others left as they are."""
    if dimension == "depth":
        return scale(spec, depth=multiplier)
    if dimension == "width":
        return scale(spec, width=multiplier)
    if dimension == "resolution":
        return scale(spec, resolution_mult=multiplier)
    raise SpecError(f"unknown scaling dimension {dimension!r}; expected depth, width or resolution (compound scaling: compound())")


def _scaler(spec: NetSpec, dimension: str, alpha: float, beta: float, gamma: float) -> Callable[[float], NetSpec]:
    """multiplier -> scaled spec for one way of scaling (compound: the multiplier is φ)."""
    if dimension == "compound":
        compound_multipliers(0.0, alpha, beta, gamma)  # validate (and warn about) α, β, γ once
        return lambda phi: scale(spec, depth=alpha**phi, width=beta**phi, resolution_mult=gamma**phi)
    if dimension in ("depth", "width", "resolution"):
        return lambda m: scale_along(spec, dimension, m)
    raise SpecError(f"unknown scaling dimension {dimension!r}; expected one of {DIMENSIONS}")


def scale_to_macs(
    spec: NetSpec,
    target_macs: float,
    dimension: str = "compound",
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    *,
    tolerance: float = 0.02,
) -> tuple[NetSpec, float]:
    """Scale `spec` along `dimension` to the MACs budget `target_macs`; returns (scaled spec, multiplier).

    `dimension` is "compound" (the multiplier is φ >= 0, so it only scales up), or "depth",
    "width", "resolution" (a multiplier > 0, below 1 scales down). MACs grow in steps (rounded
    layers, channels and pixels), so the result is the step nearest the target; when no step
    lies within `tolerance` (relative), a warning names the two nearest reachable networks.
    """
    if not target_macs > 0:
        raise SpecError(f"target MACs must be > 0, got {target_macs!r}")
    scaled = _scaler(spec, dimension, alpha, beta, gamma)

    @functools.cache  # the bracket ends are profiled again for the choice and the warning
    def macs(m: float) -> int:
        return profile_spec(scaled(m)).macs

    base = profile_spec(spec).macs
    if dimension == "compound":
        if target_macs < base * (1 - tolerance):
            raise SpecError(
                f"target {target_macs:.4g} MACs is below the baseline's {base:.4g}: compound scaling (phi >= 0) only scales up; "
                "pick a smaller baseline, or scale it down along one dimension (width, depth or resolution below 1)"
            )
        low, high = 0.0, 1.0
    else:
        low, high = 1.0, 1.0
        while macs(low) > target_macs:  # down-scaling: find a multiplier below the target
            low /= 2
            if low < 1e-3:
                raise SpecError(
                    f"target {target_macs:.4g} MACs is below the smallest network {dimension} scaling reaches "
                    f"({macs(low):.4g}: one layer per stage, {8} channels, or a few pixels); scale another dimension"
                )
    while macs(high) < target_macs:
        low, high = high, high * 2
        if high > 1e3:
            raise SpecError(f"target {target_macs:.4g} MACs is out of reach of {dimension} scaling of this {base:.4g}-MACs baseline")
    # MACs never decrease with the multiplier: bisect for the first step at or above the target
    for _ in range(60):
        mid = (low + high) / 2
        if macs(mid) >= target_macs:
            high = mid
        else:
            low = mid
    best = min((low, high), key=lambda m: abs(macs(m) - target_macs))
    error = macs(best) / target_macs - 1
    if abs(error) > tolerance:
        warnings.warn(
            f"{dimension} scaling cannot land within {tolerance:.0%} of {target_macs:.4g} MACs: the nearest networks have "
            f"{macs(low):.4g} (multiplier {low:.4g}) and {macs(high):.4g} (multiplier {high:.4g}); using the nearer ({error:+.1%})",
            stacklevel=2,
        )
    return scaled(best), best


def solve_phi(spec: NetSpec, target_macs: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> float:
    """The compound coefficient φ whose scaled network is nearest `target_macs` MACs."""
    return scale_to_macs(spec, target_macs, "compound", alpha, beta, gamma)[1]


def solve_multiplier(spec: NetSpec, target_macs: float, dimension: str) -> float:
    """The depth, width or resolution multiplier (that dimension alone) nearest `target_macs` MACs."""
    if dimension == "compound":
        raise SpecError("solve_multiplier scales one dimension (depth, width or resolution); use solve_phi for compound scaling")
    return scale_to_macs(spec, target_macs, dimension)[1]
