"""Deployment paths: ONNX (checked with onnxruntime), TorchScript script/trace, torch.compile.

Models are randomly initialised, then their BatchNorm statistics are calibrated on a
random batch so activations have realistic magnitudes: with untouched running stats the
logits are ~1e-13 and any tolerance check would pass trivially.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import effnet
from effnet.models.export import ExportError, export_onnx, export_torchscript

RES = 64  # small inputs keep every test well under a second of inference on 2 cores
ONNX_ATOL = 1e-4
# Feature maps (magnitude ~20 after calibration) differ by ~5e-6 relative between onnxruntime
# and PyTorch kernels; the logits are compared with the plain absolute bound.
FEATURES_RTOL = 1e-5

onnxruntime = pytest.importorskip("onnxruntime")

# torch 2.14 deprecates torch.jit.*; TorchScript export is still a supported deployment path here
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning")


def calibrated(name: str = "efficientnet_b0", **kwargs) -> nn.Module:
    """The named model (a TF-initialised head: a zero head would make every output 0), calibrated."""
    torch.manual_seed(0)
    return calibrate(effnet.create_model(name, head_init="tf", **kwargs))


def calibrate(model: nn.Module, size: int = RES) -> nn.Module:
    """`model` with BN running stats from one random batch (cumulative average), in eval mode."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(8, model.spec.in_chans, size, size))
    return model.eval()


def images(batch: int, seed: int = 1, size: tuple[int, int] = (RES, RES)) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def run_onnx(path, x: torch.Tensor) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def max_diff(expected: torch.Tensor, got) -> float:
    return float((expected - torch.as_tensor(got)).abs().max())


# ------------------------------------------------------------------ ONNX
@pytest.fixture(scope="module")
def b0():
    return calibrated()


@pytest.fixture(scope="module")
def b0_onnx(b0, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "b0.onnx"
    assert export_onnx(b0, path, resolution=RES, verify=False) == path
    return path


def test_onnx_b0_matches_pytorch(b0, b0_onnx):
    x = images(1)
    with torch.no_grad():
        expected = b0(x)
    (got,) = run_onnx(b0_onnx, x)
    assert got.shape == (1, 1000)
    assert expected.abs().max() > 0.1  # the comparison is not between near-zero outputs
    assert max_diff(expected, got) < ONNX_ATOL


def test_onnx_dynamic_batch(b0, b0_onnx):
    session = onnxruntime.InferenceSession(str(b0_onnx), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "input"
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [3, RES, RES]  # symbolic batch
    x = images(2, seed=2)
    with torch.no_grad():
        expected = b0(x)
    (got,) = run_onnx(b0_onnx, x)
    assert got.shape == (2, 1000)
    assert max_diff(expected, got) < ONNX_ATOL


def test_onnx_tf_same_padding_of_a_small_net_matches_pytorch(tmp_path):
    """TF 'same' padding (odd sizes pad unevenly) through ONNX, on a small net; B0's own is in the slow step."""
    torch.manual_seed(0)
    spec = "ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e6_c24_se0.25-ir_r1_k5_s2_e6_c40_se0.25"
    model = calibrate(effnet.build(spec, num_classes=7, head_init="tf", padding="tf_same"), size=45)
    path = export_onnx(model, tmp_path / "tiny_tf.onnx", resolution=45, batch_size=2)  # verify=True raises on mismatch
    x = images(3, seed=3, size=(45, 45))
    with torch.no_grad():
        expected = model(x)
    (got,) = run_onnx(path, x)
    assert max_diff(expected, got) < ONNX_ATOL and float(expected.abs().max()) > 1e-3


@pytest.mark.slow  # 8 s; a small net's TF 'same' padding through ONNX is in the default suite
def test_onnx_tf_compat_with_builtin_verification(tmp_path):
    model = calibrated(tf_compat=True)
    path = export_onnx(model, tmp_path / "b0_tf.onnx", resolution=RES, batch_size=2)  # verify=True raises on mismatch
    x = images(3, seed=3)
    with torch.no_grad():
        expected = model(x)
    (got,) = run_onnx(path, x)
    assert max_diff(expected, got) < ONNX_ATOL
    assert not model.training  # the caller's mode is kept


def test_onnx_features_only_legacy_opset(tmp_path):
    """opset < 18 goes through the TorchScript-based exporter; a features model exports its 5 maps."""
    import onnx

    model = calibrated(features_only=True)
    path = export_onnx(model, tmp_path / "features.onnx", resolution=RES, opset=17)
    assert [o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")] == [17]
    x = images(2)
    with torch.no_grad():
        expected = model(x)
    got = run_onnx(path, x)
    assert [g.shape[1] for g in got] == model.channels()
    assert all(max_diff(e, g) < ONNX_ATOL + FEATURES_RTOL * float(e.abs().max()) for e, g in zip(expected, got, strict=True))


def test_onnx_verification_reports_mismatch(b0_onnx):
    """Verification of a file against a model it does not reproduce fails, saying by how much."""
    from effnet.models.export import _verify_onnx

    other = calibrated()
    with torch.no_grad():
        other.classifier.bias += 0.01
    with pytest.raises(ExportError, match=r"does not match PyTorch: output 0 differs by up to 0\.01"):
        _verify_onnx(other, b0_onnx, images(1), 1e-4, 0.0)


def test_onnx_missing_dependency_message(b0, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install effnet\[export\]"):
        export_onnx(b0, tmp_path / "b0.onnx")
    assert not (tmp_path / "b0.onnx").exists()


# ------------------------------------------------------------------ TorchScript
@pytest.mark.parametrize("tf_compat", [False, True], ids=["default", "tf_compat"])
def test_script_matches_eager_at_any_size(tf_compat, tmp_path):
    model = calibrated(tf_compat=tf_compat)
    path = export_torchscript(model, tmp_path / "b0.pt", method="script", resolution=RES)
    loaded = torch.jit.load(str(path))
    # a scripted model keeps the size-dependent TF padding: odd sizes work too
    for x in (images(2), images(1, size=(RES + 1, RES - 1))):
        with torch.no_grad():
            assert max_diff(model(x), loaded(x)) < 1e-5


def test_script_features_only_returns_five_maps(tmp_path):
    model = calibrated(features_only=True)
    loaded = torch.jit.load(str(export_torchscript(model, tmp_path / "features.pt", resolution=RES)))
    x = images(2)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    assert len(got) == 5
    assert [g.shape[1] for g in got] == model.channels() == [16, 24, 40, 112, 320]
    assert [RES // g.shape[-1] for g in got] == model.reductions()
    assert all(max_diff(e, g) < 1e-5 for e, g in zip(expected, got, strict=True))


@pytest.mark.parametrize("tf_compat", [False, True], ids=["default", "tf_compat"])
def test_trace_matches_eager(tf_compat, tmp_path):
    model = calibrated(tf_compat=tf_compat)
    loaded = torch.jit.load(str(export_torchscript(model, tmp_path / "b0.pt", method="trace", resolution=RES)))
    x = images(3, seed=5)
    with torch.no_grad():
        assert max_diff(model(x), loaded(x)) < 1e-5


def test_trace_features_only(tmp_path):
    model = calibrated(features_only=True)
    loaded = torch.jit.load(str(export_torchscript(model, tmp_path / "features.pt", method="trace", resolution=RES)))
    got = loaded(images(1))
    assert len(got) == 5 and [g.shape[1] for g in got] == model.channels()


def test_torchscript_rejects_unknown_method(b0, tmp_path):
    with pytest.raises(ValueError, match="script"):
        export_torchscript(b0, tmp_path / "b0.pt", method="compile")


# ------------------------------------------------------------------ torch.compile
def test_torch_compile_matches_eager():
    # aot_eager traces through dynamo and AOTAutograd (functionalisation, decompositions) without
    # generating C++: inductor takes ~80 s for B0 on 2 cores, too slow for the test suite.
    torch._dynamo.reset()
    model = calibrated()
    compiled = torch.compile(model, backend="aot_eager")
    x = images(2)
    with torch.inference_mode():
        expected, got = model(x), compiled(x)
    assert got.shape == (2, 1000)
    assert max_diff(expected, got) < 1e-4
