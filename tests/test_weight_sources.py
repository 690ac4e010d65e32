"""Pretrained weights you can choose ('name.tag'), and their metadata checked against the built model and against the publishers.

As torchvision's test_schema_meta_validation: every weight source says its preprocessing, its
published ImageNet metrics and its parameter count, and the model built for it must agree.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

import effnet
from effnet.core.profile import profile_spec
from effnet.core.zoo import UnknownModelError, UnknownWeightsError, get_info, get_weights, list_weights
from effnet.models.factory import weights_path
from effnet.models.weights import WeightsError, load_file

ALL_WEIGHTS = list_weights()


def _on_meta(name: str, **kwargs) -> torch.nn.Module:
    """The model as create_model builds it, with parameters on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return effnet.create_model(name, **kwargs)


@pytest.mark.parametrize("tagged", ALL_WEIGHTS)
def test_metadata_agrees_with_the_built_model(tagged: str) -> None:
    source = get_weights(tagged)
    model = _on_meta(tagged)
    assert sum(p.numel() for p in model.parameters()) == source.params == profile_spec(model.spec).params
    assert model.preprocessing == source.preprocessing  # the resolution, crop and normalisation the metrics were measured with
    assert 0 < source.preprocessing.crop_fraction <= 1
    assert 50 < source.top1 < 100 and (source.top5 is None or source.top1 < source.top5 < 100)
    assert source.metrics_source and source.license
    if source.tf_compat:
        assert (model.spec.padding, model.spec.bn_eps) == ("tf_same", 1e-3)
    if source.bn_eps is not None:
        assert model.spec.bn_eps == source.bn_eps
    assert bool(source.url) != bool(source.package)  # downloaded, or shipped in a package


@pytest.mark.parametrize("tagged", [t for t in ALL_WEIGHTS if t.endswith(".torchvision")])
def test_torchvision_metadata_is_torchvisions_own(tagged: str) -> None:
    from torchvision.models import get_model_weights

    source = get_weights(tagged)
    theirs = get_model_weights(tagged.split(".")[0].replace("efficientnetv2_", "efficientnet_v2_")).IMAGENET1K_V1  # torchvision's V2 names
    transform = theirs.transforms()
    assert source.url == theirs.url
    assert source.params == theirs.meta["num_params"]
    assert (source.top1, source.top5) == (theirs.meta["_metrics"]["ImageNet-1K"]["acc@1"], theirs.meta["_metrics"]["ImageNet-1K"]["acc@5"])
    pre = source.preprocessing
    assert (pre.resolution, pre.resize_size, pre.interpolation) == (transform.crop_size[0], transform.resize_size[0], transform.interpolation.value)
    assert (pre.mean, pre.std) == (tuple(transform.mean), tuple(transform.std))


@pytest.mark.parametrize("tagged", [t for t in ALL_WEIGHTS if t.endswith(".lite-package")])
def test_lite_metadata_matches_the_shipped_checkpoint(tagged: str) -> None:
    source = get_weights(tagged)
    published_millions = {"efficientnet_lite0": 4.7, "efficientnet_lite1": 5.4, "efficientnet_lite2": 6.1}  # the TF README's rounded params
    assert round(source.params / 1e6, 1) == published_millions[tagged.split(".")[0]]
    if importlib.util.find_spec(source.package.replace("-", "_")) is None:
        pytest.skip(f"{source.package} is not installed")
    state = load_file(weights_path(source))
    assert sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))) == source.params


def test_tags_choose_weights() -> None:
    assert "efficientnet_b0.torchvision" in ALL_WEIGHTS and "efficientnet_lite0.lite-package" in ALL_WEIGHTS
    assert list_weights("lite") == ["efficientnet_lite0.lite-package", "efficientnet_lite1.lite-package", "efficientnet_lite2.lite-package"]
    default = get_info("efficientnet_b0").weights[0]
    assert get_weights("efficientnet_b0") is default and get_info("b0").default_weights is default
    assert get_weights("b0.torchvision") is default and get_weights("efficientnet_b0", "torchvision") is default
    with pytest.raises(UnknownWeightsError, match=r"has no weights tagged 'timm'; it has 'efficientnet_b0.torchvision'"):
        get_weights("efficientnet_b0.timm")
    with pytest.raises(UnknownWeightsError, match="no pretrained weights are known for mobilenet_v1"):
        get_weights("mobilenet_v1")
    with pytest.raises(UnknownModelError, match="names a model's weights"):
        effnet.get_spec("efficientnet_b0.torchvision")
    assert effnet.get_preprocessing("efficientnet_b2.torchvision").resolution == 288
    assert effnet.get_preprocessing("efficientnet_b2") == get_weights("efficientnet_b2").preprocessing  # the default weights'


def test_a_tag_builds_the_model_its_weights_need() -> None:
    tagged, plain = _on_meta("efficientnet_b5.torchvision"), _on_meta("efficientnet_b5")
    assert tagged.spec.bn_eps == 1e-3 and plain.spec.bn_eps == 1e-5  # lukemelas' TF-ported B5 keeps TF's BN eps
    assert tagged.preprocessing.resolution == 456
    lite = _on_meta("efficientnet_lite0.lite-package")
    assert (lite.spec.padding, lite.spec.bn_eps) == ("tf_same", 1e-3)
    assert _on_meta("efficientnet_lite0").spec.padding == "symmetric"


def test_weights_keyword_and_its_errors() -> None:
    with pytest.raises(WeightsError, match="add pretrained=True"):
        effnet.create_model("efficientnet_b0", weights="torchvision")
    with pytest.raises(WeightsError, match="two different weight tags"):
        effnet.create_model("efficientnet_b0.torchvision", pretrained=True, weights="other")
    with pytest.raises(UnknownWeightsError, match="no weights tagged 'timm'"):
        effnet.create_model("efficientnet_b0.timm", pretrained=True)
    with pytest.raises(WeightsError, match="no pretrained weights are known"):
        effnet.create_model("mobilenet_v1", pretrained=True)


def test_pretrained_with_a_tag_loads_those_weights(tmp_path) -> None:
    source = get_weights("efficientnet_lite0.lite-package")
    if importlib.util.find_spec(source.package.replace("-", "_")) is None:
        pytest.skip(f"{source.package} is not installed")
    default = effnet.create_model("efficientnet_lite0", pretrained=True).state_dict()
    for model in (
        effnet.create_model("efficientnet_lite0.lite-package", pretrained=True),
        effnet.create_model("efficientnet_lite0", pretrained=True, weights="lite-package"),
        effnet.create_model("efficientnet_lite0.lite-package", pretrained=weights_path(source)),  # a file, built for the tag
    ):
        assert model.spec.padding == "tf_same" and model.preprocessing == source.preprocessing
        assert all(torch.equal(v, default[k]) for k, v in model.state_dict().items())


def test_effnet_models_lists_every_tag(capsys: pytest.CaptureFixture[str]) -> None:
    from effnet.cli import main

    assert main(["models"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines() if line.split() and line.split()[0] in ALL_WEIGHTS}
    assert set(rows) == set(ALL_WEIGHTS)
    assert rows["efficientnet_b0.torchvision"] == ["77.69", "93.53", "224", "bicubic", "yes"]
    assert rows["efficientnet_lite2.lite-package"][:3] == ["77.60", "-", "260"]
