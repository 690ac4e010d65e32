"""Scaling primitives against the TF reference rules and the released B1-B7 table."""

from __future__ import annotations

import math
import warnings

import pytest

import effnet
from effnet.core.scaling import compound, compound_multipliers, round_filters, round_repeats, scale, scale_along, scale_to_macs, solve_multiplier, solve_phi
from effnet.core.spec import SpecError


def test_round_filters_matches_reference_rule() -> None:
    # nearest multiple of 8, never below 90% of the target
    assert round_filters(32, 1.1) == 32  # 35.2 -> 32 (>= 31.68)
    assert round_filters(16, 1.4) == 24  # 22.4 -> 24
    assert round_filters(1280, 1.1) == 1408
    assert round_filters(320, 4.3) == 1376
    assert round_filters(40, 1.8) == 72
    assert round_filters(3, 1.0) == 8  # never below the divisor
    for c in (16, 24, 40, 80, 112, 192, 320, 1280):
        for w in (1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0):
            r = round_filters(c, w)
            assert r % 8 == 0 and r >= 0.9 * c * w and abs(r - c * w) <= 8


def test_round_repeats_is_ceil() -> None:
    assert [round_repeats(r, 3.1) for r in (1, 2, 3, 4)] == [4, 7, 10, 13]
    assert round_repeats(3, 1.0) == 3


def test_b1_to_b7_are_b0_scaled_by_the_table() -> None:
    b0 = effnet.get_spec("efficientnet_b0")
    b7 = effnet.get_spec("efficientnet_b7")
    assert [s.repeats for s in b7.stages] == [math.ceil(s.repeats * 3.1) for s in b0.stages]
    assert [s.out_channels for s in b7.stages] == [32, 48, 80, 160, 224, 384, 640]
    assert (b7.stem_channels, b7.head_channels, b7.resolution, b7.dropout) == (64, 2560, 600, 0.5)


def test_lite_scaling_keeps_stem_head_and_end_stages() -> None:
    lite4 = effnet.get_spec("efficientnet_lite4")
    assert (lite4.stem_channels, lite4.head_channels) == (32, 1280)
    assert lite4.stages[0].repeats == 1 and lite4.stages[-1].repeats == 1
    assert [s.repeats for s in lite4.stages[1:-1]] == [4, 4, 6, 6, 8]
    assert all(s.se_ratio == 0 for s in lite4.stages) and lite4.activation == "relu6"


def test_scale_is_identity_at_one() -> None:
    b0 = effnet.get_spec("efficientnet_b0")
    assert scale(b0) == b0
    assert compound(b0, 0) == b0


def test_resolution_multiplier_is_resolution_mult() -> None:
    b0 = effnet.get_spec("efficientnet_b0")
    scaled = scale(b0, resolution_mult=1.15)
    assert scaled.resolution == 258 and scaled.stages == b0.stages  # round(224 * 1.15) pixels, nothing else changed
    assert scale(b0, resolution_mult=1.15, image_size=300).resolution == 300  # pixels given exactly win
    assert scale_along(b0, "resolution", 1.15) == scaled and scale_along(b0, "width", 1.1) == scale(b0, width=1.1)
    with pytest.raises(TypeError, match="resolution"):
        scale(b0, resolution=1.15)  # the multiplier's name says it is not pixels
    with pytest.raises(SpecError, match="unknown scaling dimension 'compound'"):
        scale_along(b0, "compound", 1.0)


def test_compound_phi_one_doubles_macs_roughly() -> None:
    b0 = effnet.get_spec("efficientnet_b0")
    d, w, r = compound_multipliers(1.0)
    assert (d, w, r) == pytest.approx((1.2, 1.1, 1.15))
    scaled = compound(b0, 1.0)
    assert [s.repeats for s in scaled.stages] == [math.ceil(s.repeats * 1.2) for s in b0.stages]
    assert [s.out_channels for s in scaled.stages] == [round_filters(s.out_channels, 1.1) for s in b0.stages]
    assert scaled.resolution == round(224 * 1.15)
    # alpha * beta^2 * gamma^2 = 1.92, but ceil() on B0's short stages (1 -> 2, 2 -> 3 layers)
    # makes the real depth factor larger: phi = 1 costs about 2.57x B0's MACs, never less than 1.92x
    ratio = effnet.profile(scaled).macs / effnet.profile(b0).macs
    assert 1.92 < ratio < 2.7


def test_bad_scaling_inputs() -> None:
    b0 = effnet.get_spec("efficientnet_b0")
    with pytest.raises(SpecError, match="phi must be >= 0"):
        compound(b0, -1)
    with pytest.raises(SpecError, match="width multiplier must be > 0"):
        scale(b0, width=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compound(b0, 1.0, alpha=2.0, beta=1.5, gamma=1.5)
    assert any("far from the paper's constraint" in str(w.message) for w in caught)


@pytest.mark.parametrize("target", [0.7e9, 1.0e9, 1.8e9, 4.2e9, 9.9e9, 37e9])
def test_solve_phi_lands_within_two_percent(target: float) -> None:
    b0 = effnet.get_spec("efficientnet_b0")
    phi = solve_phi(b0, target)
    assert abs(effnet.profile(compound(b0, phi)).macs / target - 1) < 0.02


@pytest.mark.filterwarnings("ignore:.*cannot land within")
@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenet_v2", "resnet50"])
@pytest.mark.parametrize("dimension", ["depth", "width", "resolution"])
def test_single_dimension_solvers_find_the_nearest_step(name: str, dimension: str) -> None:
    spec = effnet.get_spec(name)
    base = effnet.profile(spec).macs
    grid = [0.25 + 0.01 * i for i in range(300)]  # brute force: no multiplier on this grid may come closer
    reachable = [effnet.profile(scale_along(spec, dimension, m)).macs for m in grid]
    for factor in (0.5, 2.0):
        target = base * factor
        scaled, multiplier = scale_to_macs(spec, target, dimension)
        assert scaled == scale_along(spec, dimension, multiplier)
        error = abs(effnet.profile(scaled).macs / target - 1)
        assert error <= min(abs(m / target - 1) for m in reachable) + 1e-12
        assert error < 0.07  # the coarsest step here: ResNet-50's depth going from 2 to 3 blocks per stage
        # the other dimensions are untouched
        facts = {"depth": lambda s: [x.repeats for x in s.stages], "width": lambda s: [x.out_channels for x in s.stages], "resolution": lambda s: s.resolution}
        assert all(facts[d](scaled) == facts[d](spec) for d in facts if d != dimension)
    assert solve_multiplier(spec, base * 2, dimension) > 1


def test_scale_to_macs_warns_when_a_step_cannot_be_hit() -> None:
    # ceil() makes any depth above 1 add a layer to every one-layer stage: +23% at once for MobileNetV1
    v1 = effnet.get_spec("mobilenet_v1")
    with pytest.warns(UserWarning, match="cannot land within 2%"):
        scale_to_macs(v1, effnet.profile(v1).macs * 1.1, "depth")


def test_solver_inputs_are_checked() -> None:
    b0 = effnet.get_spec("efficientnet_b0")
    with pytest.raises(SpecError, match="below the baseline's .* only scales up"):
        solve_phi(b0, 0.2e9)
    with pytest.raises(SpecError, match="target MACs must be > 0"):
        solve_phi(b0, 0)
    with pytest.raises(SpecError, match="unknown scaling dimension 'height'"):
        scale_to_macs(b0, 1e9, "height")
    with pytest.raises(SpecError, match="use solve_phi"):
        solve_multiplier(b0, 1e9, "compound")
    with pytest.raises(SpecError, match="out of reach"):
        solve_multiplier(b0, 1e20, "depth")
    with pytest.warns(UserWarning, match=r"alpha \* beta\^2 \* gamma\^2 = 3.000"):
        solve_phi(b0, 1e9, alpha=3.0, beta=1.0, gamma=1.0)
