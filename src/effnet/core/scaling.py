"""Model scaling (paper Section 3): depth d, width w, resolution r, and compound scaling by φ.

Scaling is a pure function NetSpec -> NetSpec, so it applies to any baseline.
Rounding follows the EfficientNet reference code (tensorflow/tpu efficientnet_model.py):

- width: every channel count c becomes ``round_filters(c * w)``: the nearest multiple
  of 8, never below 90% of ``c * w``;
- depth: every stage's repeats r becomes ``ceil(r * d)``: extra layers go to every stage
  in proportion to its depth (stages are never split or merged);
- resolution: the input size becomes ``round(resolution * r)`` (``resolution_mult=r``) unless given exactly
  (the released B1-B7 use a fixed table of resolutions, not γ^φ).

`v2_scale` is EfficientNetV2's variant of the rule (no 90% floor on widths, inference size capped
at 480, optionally more layers in the later stages).

The same rules apply to any spec (MobileNet, ResNet, a user's net). Because of ceil() a
depth multiplier just above 1 already adds a layer to every stage, so MACs grow in steps;
`scale_to_macs` / `solve_phi` find the multiplier whose network lands nearest a MACs budget.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

from effnet.core.profile import profile_spec
from effnet.core.spec import NetSpec, SpecError

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # the paper's grid-search result for EfficientNet-B0


def round_filters(channels: float, width: float = 1.0, divisor: int = 8, *, round_limit: float = 0.9) -> int:
    """Channels after width scaling: nearest multiple of `divisor` (at least `divisor`), never below `round_limit` of the target.

    `round_limit` 0.9 is EfficientNet's rule; EfficientNetV2's reference rounds without the floor (0).
    """
    target = channels * width
    rounded = max(divisor, int(target + divisor / 2) // divisor * divisor)
    if rounded < round_limit * target:
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
) -> NetSpec:
    """Scale a spec by depth, width and resolution multipliers (the paper's d, w, r).

    `resolution_mult` multiplies the input size (`NetSpec.resolution` is in pixels);
    `image_size` sets it in pixels exactly (overrides `resolution_mult`);
    `dropout` sets the classifier dropout (larger nets use more in the reference).
    A multiplier of 1.0 leaves that dimension exactly as it was.
    """
    for label, value in (("depth", depth), ("width", width), ("resolution", resolution_mult)):
        if not value > 0:
            raise SpecError(f"{label} multiplier must be > 0, got {value!r}")
    new_resolution = image_size if image_size is not None else int(round(spec.resolution * resolution_mult))
    return _scaled(spec, [depth] * len(spec.stages), width, 0.9, new_resolution, dropout, name)


def _scaled(spec: NetSpec, depths: list[float], width: float, round_limit: float, resolution: int, dropout: float | None, name: str | None) -> NetSpec:
    """`spec` with stage i's repeats scaled by depths[i] (ceil), every width by `width` (`round_filters`), and the given resolution."""
    last = len(spec.stages) - 1
    stages = []
    for index, (stage, depth) in enumerate(zip(spec.stages, depths, strict=True)):
        fixed_depth = not spec.scale_first_last_repeats and index in (0, last)
        stages.append(
            stage.__class__(
                block=stage.block,
                repeats=stage.repeats if fixed_depth or depth == 1.0 else round_repeats(stage.repeats, depth),
                kernel=stage.kernel,
                stride=stage.stride,
                expand_ratio=stage.expand_ratio,
                out_channels=stage.out_channels if width == 1.0 else round_filters(stage.out_channels, width, round_limit=round_limit),
                se_ratio=stage.se_ratio,
                skip=stage.skip,
            )
        )
    scale_ends = spec.scale_stem_head and width != 1.0
    return spec.replace(
        stages=tuple(stages),
        stem_channels=round_filters(spec.stem_channels, width, round_limit=round_limit) if scale_ends else spec.stem_channels,
        head_channels=round_filters(spec.head_channels, width, round_limit=round_limit) if scale_ends and spec.head_channels else spec.head_channels,
        resolution=resolution,
        dropout=spec.dropout if dropout is None else dropout,
        name=name if name is not None else spec.name,
    )


V2_MAX_IMAGE_SIZE = 480  # EfficientNetV2 paper, Section 4.3: "we restrict the maximum inference image size to 480"
V2_LATE_STAGES = 2  # "add more layers to later stages (e.g., stage 5 and 6 in Table 4)": the last two of V2-S's six


def v2_scale(
    spec: NetSpec,
    *,
    width: float = 1.0,
    depth: float = 1.0,
    image_size: int | None = None,
    resolution_mult: float = 1.0,
    max_image_size: int = V2_MAX_IMAGE_SIZE,
    late_depth: float = 1.0,
    late_stages: int = V2_LATE_STAGES,
    dropout: float | None = None,
    name: str | None = None,
) -> NetSpec:
    """EfficientNetV2's scaling rule (paper Section 4.3; google/automl efficientnetv2/effnetv2_model.py), a pure function of specs.

    What differs from `scale`, EfficientNet's rule:

    - width: channels (stem and head included) become the multiple of 8 nearest ``c * width``,
      at least 8, without V1's floor of 90% of the target (`round_filters` with ``round_limit=0``,
      the V2 reference's ``round_filters``);
    - depth: every stage's repeats become ``ceil(r * depth)``, and the last `late_stages` stages
      ``ceil(r * depth * late_depth)``: the paper's "more layers to later stages", which adds
      capacity where the feature maps are small and layers cheap (`late_depth` 1: none);
    - resolution: `image_size` pixels (else ``round(resolution * resolution_mult)``), never above
      `max_image_size` (480: larger images cost memory and training speed for little accuracy).

    EfficientNetV2-B1..B3 are exactly ``v2_scale(b0, width=, depth=, image_size=, dropout=)`` with
    the reference's coefficients (`effnet.core.zoo.EFFICIENTNETV2_B_TABLE`). V2-S, M and L are not
    outputs of this function: the paper scales S up to M and L "using similar compound scaling"
    with these two heuristics, but the released M and L are hand-set tables (M adds a seventh
    stage, 512 channels wide; the reference's comments put S, M, L at about B0-base x (width 1.4,
    depth 1.8), (1.6, 2.2), (2.0, 3.1), and no single width and depth gives them). The zoo holds
    S, M, L (and XL) as those tables, as the reference does.
    """
    for label, value in (("width", width), ("depth", depth), ("resolution", resolution_mult), ("late_depth", late_depth)):
        if not value > 0:
            raise SpecError(f"{label} multiplier must be > 0, got {value!r}")
    if late_stages < 0 or (late_depth != 1.0 and late_stages > len(spec.stages)):
        raise SpecError(f"late_stages must be between 0 and the spec's {len(spec.stages)} stages, got {late_stages!r}")
    if max_image_size < 1:
        raise SpecError(f"max_image_size must be >= 1 pixel, got {max_image_size!r}")
    first_late = len(spec.stages) - late_stages
    depths = [depth * (late_depth if index >= first_late else 1.0) for index in range(len(spec.stages))]
    pixels = image_size if image_size is not None else int(round(spec.resolution * resolution_mult))
    return _scaled(spec, depths, width, 0.0, min(pixels, max_image_size), dropout, name)


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
