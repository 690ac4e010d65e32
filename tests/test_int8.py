"""INT8 through ONNX Runtime's static QDQ quantization (`effnet.int8`, `effnet quantize`) on a tiny model.

The model is a few-block spec at 32 px with random weights and randomised BatchNorm statistics
(so activations have realistic ranges), calibrated on crops of the bundled photos. Accuracy and
speed are measured on real models in benchmarks/results/int8/, not asserted here.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
from conftest import randomize_bn
from torch import nn

import effnet
from effnet.cli import main
from effnet.core.preprocessing import Preprocessing
from effnet.data.folders import load_image
from effnet.int8 import QuantizeError, compare, labelled_folder, load_int8, quantize
from effnet.int8.rule import KINDS
from effnet.models.weights import save_file

pytest.importorskip("onnxruntime")

TINY = "ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e6_c24_se0.25"
CLASSES = ["cat", "coffee", "rocket"]  # the class folders of the tiny_photos task


def tiny_model(in_chans: int = 3) -> nn.Module:
    torch.manual_seed(0)
    spec = effnet.NetSpec.from_string(TINY, name="tiny", resolution=32, num_classes=3, in_chans=in_chans)
    model = randomize_bn(effnet.build(spec, head_init="tf"))
    model.preprocessing = Preprocessing.for_resolution(32)
    model.class_names = CLASSES
    return model


@pytest.fixture(scope="module")
def quantized(tiny_photos, tmp_path_factory):
    model = tiny_model()
    out = tmp_path_factory.mktemp("int8") / "tiny_int8.onnx"
    return model, quantize(model, tiny_photos / "train", out, count=32, keep_float=KINDS)


def test_int8_model_agrees_with_float_and_keeps_the_rule_layers_float(quantized, tiny_photos):
    model, result = quantized
    # the rule on this spec: 3 SE blocks of 6 nodes (pool, conv, swish fused into one node, conv, sigmoid, gate mul);
    # swish after the stem, the ds block's depthwise conv, each ir block's expand and depthwise conv, the head conv: 7
    kinds = result.float_layers.to_dict()["kinds"]
    assert kinds == {"stem": 1, "classifier": 1, "squeeze_excite": 18, "swish": 7} and result.float_layers.se_blocks == 3
    assert result.float_layers.swish == 7 and "swish (7 activations)" in result.float_layers.summary()
    assert result.calibration_images == 32
    graph = onnx.load(str(result.path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("QuickGelu") == 10  # 7 swish + 3 in SE, float, each one node
    assert ops.count("Sigmoid") == 3  # the SE gates: a sigmoid that scales another tensor is not a swish
    scales = [init for init in graph.initializer if init.name in {n.input[1] for n in graph.node if n.op_type == "DequantizeLinear"}]
    assert any(len(scale.dims) == 1 and scale.dims[0] > 1 for scale in scales), "weights should have one scale per output channel"
    int8 = load_int8(result.path)
    assert int8.class_names == CLASSES and int8.preprocessing == model.preprocessing
    samples = labelled_folder(tiny_photos / "val", model.preprocessing, CLASSES, 3)
    comparison = compare(model, int8, samples, model.preprocessing)
    assert comparison.images == 24 and comparison.agreement >= 90.0
    x = torch.stack([model.preprocessing.eval_transform()(load_image(path)) for path, _ in samples])
    with torch.no_grad():
        reference, got = model(x).numpy(), int8(x).numpy()
    assert np.corrcoef(reference.ravel(), got.ravel())[0, 1] > 0.98
    assert not np.allclose(reference, got, atol=1e-4)  # it really is a different (quantized) computation


def test_keep_float_none_quantizes_every_layer_calibrated_on_every_image(tmp_path):
    # 80 inputs, 5 calibration batches; only the first image is large: the input's range must come from it
    inputs = torch.randn(80, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    inputs[0] *= 10
    result = quantize(tiny_model(), inputs, tmp_path / "all.onnx", keep_float=())
    assert result.float_layers.names == [] and "none" in result.float_layers.summary() and result.calibration_images == 80
    graph = onnx.load(str(result.path)).graph
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    quantize_input = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == graph.input[0].name)
    expected = (inputs.max() - inputs.min()).item() / 255  # uint8 over [min, max] of all 80 images
    assert initializers[quantize_input.input[1]].item() == pytest.approx(expected, rel=1e-3)
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    convs = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(convs) == 17 and all(n.input[0] in dequantized and n.input[1] in dequantized for n in convs)
    assert result.size_bytes < 0.75 * result.float_onnx_bytes  # a tiny net's per-channel scales weigh more than a big one's


def test_predict_and_eval_run_the_int8_file(quantized, tiny_photos, capsys):
    model, result = quantized
    assert main(["predict", str(tiny_photos / "val" / "cat"), "--weights", str(result.path), "--json", "--topk", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 8 and all(r["top"][0]["label"] in CLASSES for r in rows)
    # `effnet eval` on the file: the same top-1 as `compare` gives the INT8 model on the same validation images
    assert main(["eval", "--weights", str(result.path), "--dataset", "folder", "--data-dir", str(tiny_photos), "--workers", "0", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    samples = labelled_folder(tiny_photos / "val", model.preprocessing, CLASSES, 3)
    expected = compare(model, load_int8(result.path), samples, model.preprocessing)
    assert row["count"] == 24 and row["resolution"] == 32 and abs(row["top1"] - expected.int8_top1) < 1e-6


def test_quantize_command_on_a_run_checks_its_validation_split(tiny_photos, tmp_path, capsys, monkeypatch):
    from effnet.train.config import TrainConfig

    model = tiny_model()
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig(dataset="folder", data_dir=str(tiny_photos), resolution=32).to_dict()))
    model.spec.save(run / "spec.json")
    (run / "preprocessing.json").write_text(json.dumps(model.preprocessing.to_dict()))
    (run / "classes.json").write_text(json.dumps(CLASSES))
    save_file(model.state_dict(), run / "model.safetensors")
    out = tmp_path / "run_int8.onnx"
    monkeypatch.setattr("effnet.int8.check.MAX_DROP", -101.0)  # any result "drops too much": the warning must show
    assert main(["quantize", str(run), "--calibration", str(tiny_photos / "train"), "--count", "16", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "WARNING: INT8 loses" in captured.err and "deploy the float model" in captured.err
    assert report["check"]["images"] == 24 and report["calibration_images"] == 16 and out.is_file()
    assert report["float_layers"]["se_blocks"] == 3


def test_bad_calibration_sets_and_models_write_nothing(tmp_path):
    out = tmp_path / "out" / "model.onnx"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QuantizeError, match="holds no image files"):
        quantize(tiny_model(), empty, out)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(QuantizeError, match="none of the 1 images .* could be read"):
        quantize(tiny_model(), broken, out)
    with pytest.raises(QuantizeError, match="have 3 channels but the model takes 1"):
        quantize(tiny_model(in_chans=1), torch.rand(4, 3, 32, 32), out)

    class DictModel(nn.Module):  # not a classifier effnet can export: its output is a dict
        preprocessing = Preprocessing.for_resolution(32)

        def forward(self, x):
            return {"logits": x.mean((2, 3))}

    with pytest.raises(QuantizeError, match="cannot be quantized"):
        quantize(DictModel(), torch.rand(4, 3, 32, 32), out)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_quantize_command_errors_are_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["quantize", "efficientnet_lite0", "--weights", "none", "--calibration", str(empty), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "calibration folder" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_the_rule_finds_the_stem_behind_tf_same_padding(tmp_path):
    from effnet.int8.rule import float_layers
    from effnet.models.export import export_onnx

    spec = effnet.NetSpec.from_string(TINY, resolution=32, num_classes=3, padding="tf_same")
    path = export_onnx(randomize_bn(effnet.build(spec, head_init="tf")), tmp_path / "tf.onnx", opset=17, verify=False)
    graph = onnx.load(str(path)).graph
    first_conv = next(n for n in graph.node if n.op_type == "Conv")
    assert graph.node[0] is not first_conv  # the padding ops come first
    found = float_layers(graph)
    assert found.nodes["stem"] == [first_conv.name] and found.se_blocks == 3 and len(found.nodes["swish"]) == 14


def test_fused_swish_computes_the_same_as_sigmoid_times_input(tmp_path):
    import onnxruntime

    from effnet.int8.rule import float_layers, fuse_swish
    from effnet.models.export import export_onnx

    spec = effnet.NetSpec.from_string(TINY, resolution=32, num_classes=3)
    path = export_onnx(randomize_bn(effnet.build(spec, head_init="tf")), tmp_path / "float.onnx", opset=17, verify=False)
    model = onnx.load(str(path))
    assert fuse_swish(model) == 10  # 7 swish + 1 inside each of the 3 SE blocks; the 3 SE gates are no swish
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuickGelu") == 10 and ops.count("Sigmoid") == 3
    found = float_layers(model.graph)
    assert found.se_blocks == 3 and found.swish == 7 and len(found.nodes["squeeze_excite"]) == 18
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)

    def run(proto: onnx.ModelProto) -> np.ndarray:
        session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    expected, got = run(onnx.load(str(path))), run(model)
    assert np.abs(expected).max() > 0.1 and np.allclose(got, expected, rtol=1e-4, atol=1e-5)
