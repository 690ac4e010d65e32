"""NetSpec: validation, the block-string codec and the JSON round trip."""

from __future__ import annotations

import pytest

import effnet
from effnet.core.spec import NetSpec, SpecError, StageSpec


def test_block_string_round_trip_for_every_variant() -> None:
    for name in effnet.list_models():
        spec = effnet.get_spec(name)
        again = NetSpec.from_string(spec.to_string(), **{k: v for k, v in spec.to_dict().items() if k != "stages"})
        assert again == spec
        assert NetSpec.from_json(spec.to_json()) == spec


def test_b0_block_strings_are_table_1() -> None:
    spec = effnet.get_spec("efficientnet_b0")
    # Table 1: operator, resolution stride, channels, layers
    expected = [
        ("ds", 3, 1, 16, 1),
        ("ir", 3, 2, 24, 2),
        ("ir", 5, 2, 40, 2),
        ("ir", 3, 2, 80, 3),
        ("ir", 5, 1, 112, 3),
        ("ir", 5, 2, 192, 4),
        ("ir", 3, 1, 320, 1),
    ]
    assert [(s.block, s.kernel, s.stride, s.out_channels, s.repeats) for s in spec.stages] == expected
    assert all(s.expand_ratio == (1 if i == 0 else 6) for i, s in enumerate(spec.stages))
    assert all(s.se_ratio == 0.25 for s in spec.stages)
    assert (spec.stem_channels, spec.head_channels, spec.resolution, spec.activation) == (32, 1280, 224, "swish")
    assert spec.stages[1].to_string() == "ir_r2_k3_s2_e6_c24_se0.25"


def test_parse_tokens() -> None:
    stage = StageSpec.from_string("ir_r3_k5_s2_e3_c40_noskip")
    assert stage == StageSpec("ir", 3, 5, 2, 3.0, 40, 0.0, False)
    assert stage.to_string() == "ir_r3_k5_s2_e3_c40_noskip"
    assert StageSpec.from_string("ds_r1_k3_s1_c16").expand_ratio == 1


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("ir_r2_k3_s2_e6_c24_sx0.25", "'sx0.25'"),
        ("xx_r2_k3_s2_e6_c24", "'xx'"),
        ("ir_r2_k3_s2_e6", "c"),
        ("ir_r2_k4_s2_e6_c24", "odd"),
        ("ir_r2_k3_s3_e6_c24", "stride"),
        ("ir_r2_r3_k3_s2_e6_c24", "twice"),
        ("ir_r0_k3_s1_e6_c24", "repeats"),
        ("ir_rX_k3_s1_e6_c24", "'rX'"),
    ],
)
def test_malformed_stage_strings_quote_the_problem(text: str, quoted: str) -> None:
    with pytest.raises(SpecError) as info:
        NetSpec.from_string(text)
    message = str(info.value)
    assert quoted in message
    assert text in message or "stage string" in message


def test_netspec_validation_messages() -> None:
    spec = effnet.get_spec("efficientnet_b0")
    with pytest.raises(SpecError, match="activation"):
        spec.replace(activation="gelu")
    with pytest.raises(SpecError, match="dropout"):
        spec.replace(dropout=1.5)
    with pytest.raises(SpecError, match="unknown NetSpec field"):
        NetSpec.from_dict({**spec.to_dict(), "widht": 1.0})
    with pytest.raises(SpecError, match="not valid JSON"):
        NetSpec.from_json("{nope")


def test_save_and_load(tmp_path) -> None:
    spec = effnet.get_spec("efficientnet_lite2")
    spec.save(tmp_path / "spec.json")
    assert NetSpec.load(tmp_path / "spec.json") == spec
    (tmp_path / "s.txt").write_text("ds_r1_k3_s1_e1_c16 ir_r2_k3_s2_e6_c24_se0.25\n")
    assert len(NetSpec.load(tmp_path / "s.txt").stages) == 2
    (tmp_path / "bad.json").write_text('{"stages": ["ir_r1_k3_s1_e6_cX"]}')
    with pytest.raises(SpecError, match="bad.json"):
        NetSpec.load(tmp_path / "bad.json")


def test_bottleneck_ratio_is_a_reduction() -> None:
    import dataclasses

    from effnet.core.parts import site_parts

    stage = StageSpec(block="bt", repeats=2, kernel=3, stride=2, reduction=4, out_channels=256, se_ratio=0.0)
    assert stage == StageSpec.from_string("bt_r2_k3_s2_e4_c256")  # the block string keeps its e token
    assert stage.reduction == 4 and stage.to_string() == "bt_r2_k3_s2_e4_c256"
    assert StageSpec.from_string("ir_r1_k3_s1_e6_c16").reduction is None
    assert eval(repr(stage), {"StageSpec": StageSpec}) == stage and "reduction=4" in repr(stage)
    assert dataclasses.replace(stage, reduction=2).reduction == 2 and dataclasses.replace(stage, repeats=3).reduction == 4
    # the inner width is out_channels / reduction: 256 / 4 = 64
    spec = NetSpec(stages=(stage,), stem_channels=64, head_channels=0)
    assert [(p.name, p.out_channels) for p in site_parts(next(spec.blocks()))][:2] == [("reduce", 64), ("spatial", 64)]
    # specs written with dict stages keep loading
    old = {"stages": [{"block": "bt", "repeats": 2, "kernel": 3, "stride": 2, "expand_ratio": 4.0, "out_channels": 256, "se_ratio": 0.0}]}
    assert NetSpec.from_dict(old).stages[0] == stage
    with pytest.raises(SpecError, match="reduction applies to 'bt'"):
        StageSpec(block="ir", reduction=4)
    with pytest.raises(SpecError, match="reduction must be >= 1"):
        StageSpec(block="bt", reduction=0.5)
