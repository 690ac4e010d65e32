"""The baselines of the paper's Table 3 as specs: MobileNetV1, MobileNetV2, ResNet-50 (and the new block kinds).

Parity with torchvision (equal parameter counts, converted random weights give equal logits)
and MACs against the published values (MobileNetV1 569M, MobileNetV2 300M, ResNet-50 4.1B).
"""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_bn

import effnet
from effnet.core.profile import measure, profile_spec
from effnet.core.scaling import scale
from effnet.core.spec import NetSpec, SpecError, StageSpec
from effnet.core.zoo import TABLE3_ROWS, get_spec
from effnet.models.model import feature_levels
from effnet.models.weights import WeightsError, convert_state_dict, detect_layout, load_state_dict

torchvision = pytest.importorskip("torchvision")

# published (params, MACs) at 224: MobileNetV1 paper Table 8, MobileNetV2 paper Table 4, ResNet-50 (He et al. 3.8 GFLOPs
# for v1; torchvision's v1.5 is 4.1 GMACs, the figure EfficientNet's Table 3 uses)
PUBLISHED = {"mobilenet_v1": (4.2e6, 569e6), "mobilenet_v2": (3.4e6, 300e6), "resnet50": (25.6e6, 4.1e9)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_macs_and_params_match_published(name: str) -> None:
    params, macs = PUBLISHED[name]
    prof = profile_spec(get_spec(name))
    assert abs(prof.macs / macs - 1) < 0.05, prof.macs
    assert abs(prof.params / params - 1) < 0.05, prof.params


# The paper's FLOPS are rounded to 0.1B and its rounding rules unstated: width and resolution scale every layer alike, so
# they land close; depth and compound go through ceil() per stage, so they land within a stage's step.
TABLE3_TOLERANCE = {"baseline": 0.06, "width": 0.06, "resolution": 0.06, "depth": 0.15, "compound": 0.15}
# ResNet-50 at w=2: doubling every channel quadruples every conv but the stem's (3 input channels): 4 x 4.1B - 0.1B = 16.1B.
# The paper's 14.7B (3.6x) is out of reach of any uniform width rule from its 4.1B baseline; kept visible, not hidden.
TABLE3_KNOWN_GAPS = {("resnet50", "width"): (0.09, 0.10)}


@pytest.mark.parametrize(("name", "row", "multipliers", "paper_macs"), TABLE3_ROWS, ids=[f"{n}-{r}" for n, r, _, _ in TABLE3_ROWS])
def test_table3_rows_match_the_papers_flops(name: str, row: str, multipliers: tuple[float, float, float], paper_macs: float) -> None:
    depth, width, resolution_mult = multipliers
    error = profile_spec(scale(get_spec(name), depth=depth, width=width, resolution_mult=resolution_mult)).macs / paper_macs - 1
    if (name, row) in TABLE3_KNOWN_GAPS:
        low, high = TABLE3_KNOWN_GAPS[name, row]
        assert low < error < high, f"{error:+.1%}"
    else:
        assert abs(error) < TABLE3_TOLERANCE[row], f"{error:+.1%}"


def test_mobilenet_v1_stages_are_grouped_by_width_as_the_paper_groups_b0() -> None:
    spec = get_spec("mobilenet_v1")
    assert [(s.repeats, s.stride, s.out_channels) for s in spec.stages] == [(1, 1, 64), (2, 2, 128), (2, 2, 256), (6, 2, 512), (2, 2, 1024)]
    # depth 1.4 adds layers per stage (ceil of 1.4 x 1, 2, 2, 6, 2), not one per strided layer: 2.47 GMACs at
    # (d 1.4, w 1.2, r 1.3) against the paper's 2.3B, where one-layer stages for every stride gave 2.88
    scaled = scale(spec, depth=1.4, width=1.2, resolution_mult=1.3)
    assert [s.repeats for s in scaled.stages] == [2, 3, 3, 9, 3]
    assert profile_spec(scaled).macs == pytest.approx(2.470e9, rel=1e-3)
    assert sum(s.repeats for s in spec.stages) == 13  # the 13 depthwise-separable layers of Howard et al.'s Table 1


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50"])
def test_parity_with_torchvision(name: str) -> None:
    reference = randomize_bn(getattr(torchvision.models, name)())
    state = reference.state_dict()
    assert detect_layout(state) == f"torchvision_{'mobilenet' if name == 'mobilenet_v2' else 'resnet'}"
    ours = effnet.create_model(name)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    load_state_dict(ours, state)  # strict: every key maps, every shape fits
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff < 1e-4, diff


def test_resnet152_parameter_count_equals_torchvision() -> None:
    expected = sum(p.numel() for p in torchvision.models.resnet152().parameters())
    assert profile_spec(get_spec("resnet152")).params == expected == 60_192_808


@pytest.mark.parametrize(
    "stages",
    [
        "cv_r2_k3_s2_c24-cv_r1_k5_s1_c24_se0.25",
        "sep_r2_k3_s2_c32_noskip-sep_r2_k5_s1_c32_se0.25",
        "bt_r2_k3_s2_e4_c64-bt_r2_k3_s1_e2_c64_se0.25_noskip",
        "ds_r1_k3_s1_c16-ir_r2_k5_s2_e3_c24-cv_r1_k3_s2_c40-sep_r1_k3_s1_c40-bt_r1_k3_s2_e4_c80",
    ],
)
def test_analytic_profile_equals_measured_for_every_block_kind(stages: str) -> None:
    for fields in ({}, {"stem_kernel": 7, "stem_pool": True, "head_channels": 0}):
        spec = NetSpec.from_string(stages, **fields)
        model = effnet.build(spec)
        prof = profile_spec(spec, 67)
        assert (prof.params, prof.macs) == measure(model, 67)
        # every weight layer the profile names exists in the model under that name
        names = {n for n, _ in model.named_modules()}
        assert all(layer.name.removesuffix(".weight") in names for layer in prof.layers)


def test_new_block_kinds_in_the_spec_language() -> None:
    assert StageSpec.from_string("cv_r1_k3_s2_c32") == StageSpec("cv", 1, 3, 2, 1.0, 32, 0.0, True)
    assert StageSpec.from_string("bt_r3_k3_s1_e4_c256").expand_ratio == 4.0
    for text in ("sep_r5_k3_s1_e1_c512_noskip", "bt_r3_k3_s2_e4_c512_se0.25", "cv_r1_k5_s1_e1_c16_se0.25_noskip"):
        assert StageSpec.from_string(text).to_string() == text  # the canonical form always writes e
    with pytest.raises(SpecError, match="'cv' block has no expansion"):
        StageSpec.from_string("cv_r1_k3_s1_e6_c16")
    with pytest.raises(SpecError, match="lacks the expansion token"):
        StageSpec.from_string("bt_r1_k3_s1_c16")
    with pytest.raises(SpecError, match="stem_kernel must be an odd integer"):
        get_spec("resnet50").replace(stem_kernel=4)
    spec = get_spec("resnet50")
    assert NetSpec.from_json(spec.to_json()) == spec


def test_resnet_features_and_residuals() -> None:
    spec = get_spec("resnet50")
    assert [(lvl.channels, lvl.reduction) for lvl in feature_levels(spec)] == [(256, 4), (512, 8), (1024, 16), (2048, 32)]
    features = effnet.build(spec, features_only=True).eval()
    shapes = [tuple(f.shape[1:]) for f in features(torch.randn(1, 3, 64, 64))]
    assert shapes == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]
    model = effnet.build(spec)
    first, second = model.stages[0][0], model.stages[0][1]
    assert first.has_skip and isinstance(first.shortcut, torch.nn.Sequential)  # 64 -> 256: projection
    assert second.has_skip and isinstance(second.shortcut, torch.nn.Identity)
    plain = effnet.build(spec.replace(stages=tuple(s.__class__(**{**s.__dict__, "skip": False}) for s in spec.stages)))
    assert not plain.stages[0][0].has_skip and profile_spec(plain.spec).params < profile_spec(spec).params


def test_mobilenet_v1_has_no_residuals_and_relu() -> None:
    model = effnet.create_model("mobilenet_v1")
    assert not any(getattr(m, "has_skip", False) for m in model.modules())
    assert model.classifier.in_features == 1024 and isinstance(model.head, torch.nn.Identity)
    assert isinstance(model.stages[0][0].pw.act, torch.nn.ReLU)


def test_efficientnet_layouts_refuse_other_block_kinds() -> None:
    spec = get_spec("resnet50")
    with pytest.raises(WeightsError, match="only MBConv and Fused-MBConv blocks, but stage 1 is 'bt'"):
        convert_state_dict({"conv_stem.weight": torch.zeros(1)}, spec, "timm")


def test_every_block_kind_scripts_with_torchscript() -> None:
    model = effnet.build(
        "cv_r1_k3_s1_c24_se0.25-sep_r1_k3_s2_c32_noskip-bt_r2_k3_s2_e4_c64-ir_r1_k3_s1_e3_c64", stem_kernel=7, stem_pool=True, head_init="tf"
    ).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(scripted(x), model(x))
