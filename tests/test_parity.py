"""Numerical parity: random-init reference models, converted into effnet, give the same logits.

References: timm (efficientnet_bX, tf_efficientnet_bX, efficientnet_liteX, tf_efficientnet_liteX),
torchvision (efficientnet_bX) and EfficientNet-PyTorch (efficientnet-bX). Small inputs keep it fast;
64 px makes every stride-2 'same' padding asymmetric, so the TF mode is really exercised.
"""

from __future__ import annotations

import pytest
from conftest import max_logit_difference

import effnet

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")

B_SERIES = [f"efficientnet_b{i}" for i in range(8)]
LITE = [f"efficientnet_lite{i}" for i in range(5)]
TOLERANCE = 1e-4


@pytest.mark.parametrize("name", B_SERIES)
def test_timm(name: str) -> None:
    assert max_logit_difference(timm.create_model(name), effnet.create_model(name)) < TOLERANCE


@pytest.mark.parametrize("name", B_SERIES)
def test_timm_tf_ported(name: str) -> None:
    assert max_logit_difference(timm.create_model("tf_" + name), effnet.create_model(name, tf_compat=True)) < TOLERANCE


@pytest.mark.parametrize("name", B_SERIES)
def test_torchvision(name: str) -> None:
    reference = getattr(torchvision.models, name)()
    eps = reference.features[0][1].eps  # torchvision uses 1e-3 for B5-B7 (weights ported from TF)
    assert max_logit_difference(reference, effnet.create_model(name, bn_eps=eps)) < TOLERANCE


@pytest.mark.parametrize("name", B_SERIES)
def test_efficientnet_pytorch(name: str) -> None:
    reference = efficientnet_pytorch.EfficientNet.from_name(name.replace("_", "-"), image_size=64)
    assert max_logit_difference(reference, effnet.create_model(name, tf_compat=True)) < TOLERANCE


@pytest.mark.parametrize("name", LITE)
def test_timm_lite(name: str) -> None:
    assert max_logit_difference(timm.create_model(name), effnet.create_model(name)) < TOLERANCE
    assert max_logit_difference(timm.create_model("tf_" + name), effnet.create_model(name, tf_compat=True), size=57) < TOLERANCE


def test_odd_resolution_tf_padding_matches_reference() -> None:
    # odd sizes give symmetric TF padding at some layers and asymmetric at others
    for size in (63, 97):
        assert max_logit_difference(timm.create_model("tf_efficientnet_b0"), effnet.create_model("efficientnet_b0", tf_compat=True), size=size) < TOLERANCE
