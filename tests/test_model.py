"""The built network: feature maps, classifier reset, drop path schedule, input checks, names."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import StochasticDepth

import effnet
from effnet.models.model import feature_levels


def test_features_only_returns_five_maps_at_reported_strides() -> None:
    model = effnet.create_model("efficientnet_b0", features_only=True).eval()
    assert model.channels() == [16, 24, 40, 112, 320]
    assert model.reductions() == [2, 4, 8, 16, 32]
    maps = model(torch.randn(1, 3, 224, 224))
    assert [tuple(m.shape[1:]) for m in maps] == [(c, 224 // r, 224 // r) for c, r in zip(model.channels(), model.reductions(), strict=True)]
    b3 = effnet.create_model("efficientnet_b3", features_only=True, out_indices=(2, 4))
    assert b3.channels() == [48, 384] and b3.reductions() == [8, 32]
    with pytest.raises(effnet.SpecError, match="out_indices"):
        effnet.create_model("efficientnet_b0", features_only=True, out_indices=(5,))


def test_feature_maps_equal_the_full_models_intermediates() -> None:
    full = effnet.create_model("efficientnet_b0").eval()
    backbone = effnet.create_model("efficientnet_b0", features_only=True).eval()
    backbone.load_state_dict({k: v for k, v in full.state_dict().items() if k in backbone.state_dict()})
    x = torch.randn(1, 3, 96, 96)
    stage_outputs = []
    h = full.stem(x)
    for stage in full.stages:
        h = stage(h)
        stage_outputs.append(h)
    with torch.no_grad():
        maps = backbone(x)
    for level, fmap in zip(feature_levels(full.spec), maps, strict=True):
        assert torch.allclose(fmap, stage_outputs[level.stage], atol=1e-6)


def test_any_resolution_classes_and_channels() -> None:
    model = effnet.create_model("efficientnet_b0", num_classes=10, in_chans=1).eval()
    for size in (32, 65, 300):
        assert model(torch.randn(2, 1, size, size + 3)).shape == (2, 10)
    assert model.forward_features(torch.randn(1, 1, 64, 64)).shape == (1, 1280, 2, 2)
    assert model.forward_head(model.forward_features(torch.randn(1, 1, 64, 64)), pre_logits=True).shape == (1, 1280)


def test_wrong_input_channels_error_is_clear() -> None:
    model = effnet.create_model("efficientnet_b0")
    with pytest.raises(ValueError, match=r"expected a batch of images shaped \(N, 3, H, W\), got shape \[1, 4, 64, 64\].*in_chans=4"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match="got shape"):
        model(torch.randn(3, 64, 64))


def test_reset_classifier() -> None:
    model = effnet.create_model("efficientnet_lite0")
    model.reset_classifier(5)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    assert model.spec.num_classes == 5
    model.reset_classifier(0)
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1280)


def test_drop_path_rises_linearly_and_dropout_follows_variant() -> None:
    model = effnet.create_model("efficientnet_b0", drop_path_rate=0.2)
    rates = [block.drop_path.p if isinstance(block.drop_path, StochasticDepth) else 0.0 for stage in model.stages for block in stage]
    n = len(rates)
    for i, rate in enumerate(rates):
        block = [b for s in model.stages for b in s][i]
        assert rate == (pytest.approx(0.2 * i / n) if block.has_skip else 0.0)
    assert model.dropout.p == 0.2
    assert effnet.create_model("efficientnet_b7").dropout.p == 0.5
    assert effnet.create_model("efficientnet_b7", drop_rate=0.1).dropout.p == 0.1


def test_training_step_runs_and_drop_path_is_stochastic() -> None:
    model = effnet.create_model("efficientnet_b0", num_classes=4, drop_path_rate=0.5, head_init="tf").train()
    x = torch.randn(4, 3, 64, 64)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_names_and_suggestions() -> None:
    assert effnet.get_spec("b3") == effnet.get_spec("EfficientNet-B3")
    assert "efficientnet_lite4" in effnet.list_models("lite")
    with pytest.raises(effnet.UnknownModelError, match=r"did you mean .*'efficientnet_b1'"):
        effnet.create_model("efficentnet_b1")
    with pytest.raises(effnet.SpecError, match="unknown option"):
        effnet.create_model("efficientnet_b0", widht=2)


def test_one_resolver_reads_names_tags_files_and_block_strings(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    tiny = "ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e6_c24_se0.25"
    assert effnet.resolve_spec("B3") == effnet.get_spec("efficientnet_b3")
    assert effnet.resolve_spec(tiny).to_string() == tiny
    effnet.NetSpec.from_string(tiny, resolution=96, name="tiny").save(tmp_path / "tiny.json")
    (tmp_path / "tiny.txt").write_text(tiny + "\n")
    assert effnet.resolve_spec("tiny.json").resolution == 96 and effnet.resolve_spec(tmp_path / "tiny.json").name == "tiny"
    assert effnet.resolve_spec("tiny.txt").to_string() == tiny
    # a weight tag gives the network those weights need, as create_model builds it
    for tagged in effnet.list_weights():
        assert effnet.resolve_spec(tagged) == effnet.create_model(tagged).spec, tagged
    assert effnet.resolve_spec("efficientnet_lite0.lite-package").padding == "tf_same"
    # errors name what was wrong: the closest model, the bad token, the missing file
    with pytest.raises(
        effnet.UnknownModelError,
        match=r"unknown model 'efficientnet_b9' \(neither a spec file, a block string nor a model name\); did you mean 'efficientnet_b8'",
    ):
        effnet.resolve_spec("efficientnet_b9")
    with pytest.raises(effnet.SpecError, match="neither a spec file"):  # the same error is a SpecError too
        effnet.resolve_spec("nope")
    with pytest.raises(effnet.SpecError, match="bad token 'q7' in stage string 'ir_r1_k3_s1_e6_c16_q7'"):
        effnet.resolve_spec("ir_r1_k3_s1_e6_c16_q7")
    with pytest.raises(effnet.SpecError, match="bad block kind 'zz'"):
        effnet.resolve_spec("zz_r1_k3_s1_c16")
    with pytest.raises(FileNotFoundError, match="no such spec file") as missing:
        effnet.resolve_spec("missing.json")
    assert missing.value.filename == "missing.json"
    with pytest.raises(effnet.UnknownModelError, match="no weights tagged 'nope'"):
        effnet.resolve_spec("efficientnet_b0.nope")


def test_build_from_a_spec_string_and_preprocessing() -> None:
    model = effnet.build("ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k5_s2_e3_c24", num_classes=3, head_channels=64, resolution=96)
    assert model(torch.randn(1, 3, 96, 96)).shape == (1, 3)
    assert effnet.profile(model).params == sum(p.numel() for p in model.parameters())
    assert model.preprocessing.resolution == 96
    assert effnet.create_model("efficientnet_b4").preprocessing.resolution == 380
    tv = effnet.create_model("efficientnet_b2", pretrained=False).preprocessing
    assert (tv.resolution, tv.resize_size) == (260, 292)


def test_grayscale_rgba_images_go_through_eval_transform() -> None:
    from PIL import Image

    transform = effnet.get_preprocessing("efficientnet_b0").eval_transform()
    for mode in ("L", "RGBA", "P", "CMYK", "I;16"):
        image = Image.new(mode, (37, 301))
        assert transform(image).shape == (3, 224, 224)


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    # head_init="tf": with a zero head every backbone gradient would be 0 and the comparison empty
    plain = effnet.create_model("efficientnet_b0", num_classes=5, drop_path_rate=0.0, drop_rate=0.0, head_init="tf").train()
    lean = effnet.create_model("efficientnet_b0", num_classes=5, drop_path_rate=0.0, drop_rate=0.0, head_init="tf").train()
    lean.load_state_dict(plain.state_dict())
    lean.grad_checkpointing = True
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([1, 3])
    for model in (plain, lean):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), lean.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    # the recomputation in backward must not update BN running statistics a second time
    for (name, a), (_, b) in zip(plain.named_buffers(), lean.named_buffers(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_set_grad_checkpointing_recomputes_stages_with_the_same_gradients() -> None:
    spec = effnet.NetSpec.from_string("ds_r1_k3_s1_e1_c8_se0.25-ir_r2_k5_s2_e6_c16_se0.25", stem_channels=8, head_channels=32, num_classes=3)
    plain = effnet.build(spec, drop_path_rate=0.3, dropout=0.2, head_init="tf").train()  # drop path and dropout on: the recomputation must replay their RNG
    lean = effnet.build(spec, drop_path_rate=0.3, dropout=0.2, head_init="tf").train()
    lean.load_state_dict(plain.state_dict())
    lean.set_grad_checkpointing()
    assert lean.grad_checkpointing and not plain.grad_checkpointing
    calls = []
    lean.stages[1].register_forward_pre_hook(lambda *_: calls.append(1))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    for model in (plain, lean):
        torch.manual_seed(7)
        torch.nn.functional.cross_entropy(model(x), y).backward()
    assert len(calls) == 2  # forward, then recomputed in backward
    for (name, a), (_, b) in zip(plain.named_parameters(), lean.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    for (name, a), (_, b) in zip(plain.named_buffers(), lean.named_buffers(), strict=True):
        assert torch.equal(a, b), name  # BN statistics updated once
    lean.set_grad_checkpointing(False)
    assert not lean.grad_checkpointing


def test_dropout_and_timms_drop_rate_are_one_setting() -> None:
    with torch.device("meta"):
        assert effnet.create_model("efficientnet_b0", dropout=0.3).dropout.p == 0.3
        assert effnet.create_model("efficientnet_b0", drop_rate=0.3).dropout.p == 0.3
        assert effnet.create_model("efficientnet_b0", dropout=0.3, drop_rate=0.3).spec.dropout == 0.3
        assert effnet.create_model("efficientnet_b3").dropout.p == 0.3  # the variant's own
        with pytest.raises(ValueError, match="drop_rate is timm's name"):
            effnet.create_model("efficientnet_b0", dropout=0.3, drop_rate=0.1)


def test_zero_init_residuals_start_every_skip_block_as_its_shortcut() -> None:
    from effnet.models.model import zero_init_residuals
    from effnet.models.nn.blocks import Bottleneck, _Residual

    # every block kind, each with a stride-1 repeat that has an identity skip, and one block without a skip
    blocks = "ds_r2_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e6_c24_se0.25-fused_r2_k3_s1_e4_c24-cv_r2_k3_s1_c24_se0.25-sep_r2_k3_s1_c24-bt_r2_k3_s2_e4_c32-ir_r2_k3_s1_e6_c32_noskip"
    model = effnet.build(blocks, num_classes=3)
    residuals = [m for m in model.modules() if isinstance(m, _Residual)]
    with_skip = [m for m in residuals if m.has_skip]
    kinds = {type(m).__name__ for m in with_skip}
    assert kinds == {"MBConv", "FusedMBConv", "ConvBlock", "SeparableConv", "Bottleneck"}
    untouched = {name: p.clone() for name, p in model.state_dict().items()}
    assert zero_init_residuals(model) == len(with_skip) < len(residuals)
    changed = {name for name, p in model.state_dict().items() if not torch.equal(p, untouched[name])}
    assert changed == {f"{name}.{block.BRANCH_END}.bn.weight" for name, block in model.named_modules() if getattr(block, "has_skip", False)}
    for train_mode in (True, False):
        model.train(train_mode)
        for block in with_skip:
            channels = block.get_submodule(block.BRANCH_END).bn.num_features
            x = torch.randn(2, channels, 8, 8) if not isinstance(block, Bottleneck) else None
            if x is None:  # the bottleneck's branch is silenced; its shortcut (maybe a projection) and activation stay
                x = torch.randn(2, block.reduce.conv.in_channels, 8, 8)
                with torch.no_grad():
                    assert torch.equal(block(x), block.act(block.shortcut(x)))
                continue
            with torch.no_grad():
                assert torch.equal(block(x), x)
    # off by default: the TF reference's init, which pretrained-weight parity and the paper's recipe assume
    assert all(bool((m.get_submodule(m.BRANCH_END).bn.weight == 1).all()) for m in effnet.build(blocks).modules() if isinstance(m, _Residual) and m.has_skip)
