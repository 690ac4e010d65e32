"""The `effnet` command line, run in-process through `main(argv)` (plus one run of the installed script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_bn
from PIL import Image

import effnet
from effnet.cli import main
from effnet.core.zoo import list_models
from effnet.models.predict import Prediction, load_class_names, predict, sample_images
from effnet.models.weights import load_file

# Accepted top-1 labels per bundled photo (ImageNet has several near-synonyms).
EXPECTED = {
    "cat.jpg": {"tabby", "tiger cat", "Egyptian cat"},
    "coffee.jpg": {"espresso", "cup"},
    "rocket.jpg": {"missile", "projectile", "space shuttle"},
}
# Paper Table 2 sizes as computed from the specs: (params, MACs) as printed by `effnet profile all`.
TABLE2 = {
    "efficientnet_b0": ("5.3M", "0.39B"),
    "efficientnet_b1": ("7.8M", "0.69B"),
    "efficientnet_b2": ("9.1M", "0.99B"),
    "efficientnet_b3": ("12.2M", "1.83B"),
    "efficientnet_b4": ("19.3M", "4.39B"),
    "efficientnet_b5": ("30.4M", "10.27B"),
    "efficientnet_b6": ("43.0M", "19.07B"),
    "efficientnet_b7": ("66.3M", "37.75B"),
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return effnet.create_model("efficientnet_lite0", pretrained=True).eval()


# ------------------------------------------------------------------ models / profile
def test_models_lists_every_variant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "models")
    assert code == 0 and err == ""
    names = set(list_models())
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in names}
    assert set(rows) == names and {"mobilenet_v1", "mobilenet_v2", "resnet50"} <= names
    assert "lite-package" in rows["efficientnet_lite0"] and "torchvision" in rows["efficientnet_b0"]
    assert rows["efficientnet_b0"].split()[1:4] == ["224", "5.29", "0.39"]


def test_profile_all_is_table2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profile", "all")
    assert code == 0
    assert "MACs (multiply-adds)" in out.splitlines()[0]
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("efficientnet_")}
    assert list(rows) == list(TABLE2)
    for name, (params, macs) in TABLE2.items():
        assert rows[name] == [params, macs, str(effnet.get_spec(name).resolution)]
    assert main(["profile"]) == 0  # no target means `all`
    assert capsys.readouterr().out == out


def test_profile_json_stages_resolution_and_spec_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "profile", "b0", "--json", "--stages")
    assert code == 0
    [data] = json.loads(out)
    assert (data["name"], data["params"], data["macs"], data["resolution"]) == ("efficientnet_b0", 5288548, 385814752, 224)
    assert [s["name"] for s in data["stages"]] == ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head"]

    code, out, _ = run(capsys, "profile", "b0", "--resolution", "112", "--json")
    [data] = json.loads(out)
    assert data["resolution"] == 112 and data["macs"] < 385814752 / 3 and "stages" not in data

    code, out, _ = run(capsys, "profile", "efficientnet_b0", "--stages")
    assert code == 0 and "MBConv6, k5x5" in out and "Conv1x1 & Pooling & FC" in out

    spec_file = tmp_path / "tiny.json"
    effnet.NetSpec.from_string("ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e6_c24_se0.25", name="tiny").save(spec_file)
    code, out, _ = run(capsys, "profile", str(spec_file), "--json")
    [data] = json.loads(out)
    assert code == 0 and data["name"] == "tiny" and data["params"] == effnet.profile(effnet.NetSpec.load(spec_file)).params


def test_profile_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"stages": ["ir_r1_k3_s9_e6_c16"]}')
    for argv, needle in [
        (["profile", "efficientnet_b9"], "did you mean"),
        (["profile", str(bad)], "stride must be 1 or 2"),
        (["profile", str(tmp_path / "missing.json")], "file not found"),
    ]:
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == ""
        assert err.startswith("effnet: error: ") and needle in err and err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------ predict
def test_predict_bundled_samples_with_pretrained_lite0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "predict", "--json", "--topk", "3")
    assert code == 0 and err == ""
    results = json.loads(out)
    assert [Path(r["path"]).name for r in results] == sorted(EXPECTED)
    for r in results:
        assert r["error"] is None and len(r["top"]) == 3
        assert r["top"][0]["label"] in EXPECTED[Path(r["path"]).name], r["top"]
        probs = [t["probability"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6

    code, out, _ = run(capsys, "predict")
    assert code == 0
    for name in EXPECTED:
        assert name in out
    assert "espresso" in out and "%" in out


def test_predict_reports_bad_files_and_classifies_the_rest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cat = sample_images()[0]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(cat.read_bytes()[:3000])  # a valid header, then the data stops
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture\n")
    missing = tmp_path / "missing.png"

    code, out, err = run(capsys, "predict", str(corrupt), str(cat), str(text), str(missing), "--topk", "1")
    assert code == 0
    assert str(cat) in out and out.count("%") == 1
    assert any(label in out for label in EXPECTED["cat.jpg"])
    lines = err.splitlines()
    assert len(lines) == 3 and "Traceback" not in err
    assert f"{corrupt}: truncated or corrupt image" in lines[0]
    assert f"{text}: not an image file" in lines[1]
    assert f"{missing}: file not found" in lines[2]

    code, out, err = run(capsys, "predict", str(text), str(missing))
    assert code == 1 and out == "" and len(err.splitlines()) == 2


def test_predict_api_on_odd_modes_sizes_and_directories(lite0: torch.nn.Module, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (64, 48), dtype=np.uint8), "L")
    rgba = Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA")
    odd = Image.fromarray(rng.integers(0, 256, (301, 37, 3), dtype=np.uint8), "RGB")
    palette = odd.convert("P")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, image in [("b_gray.png", gray), ("a_rgba.png", rgba), ("c_odd.bmp", odd), ("d_palette.gif", palette)]:
        image.save(folder / name)
    (folder / "readme.txt").write_text("ignored: not an image suffix")

    results = predict(lite0, [folder], topk=2)
    assert [r.path.name for r in results] == ["a_rgba.png", "b_gray.png", "c_odd.bmp", "d_palette.gif"]
    assert all(isinstance(r, Prediction) and r.ok and len(r.top) == 2 for r in results)
    in_small_batches = predict(lite0, [folder], topk=2, batch_size=3)
    assert [r.top[0][1] for r in in_small_batches] == [r.top[0][1] for r in results]

    # in-memory images give the same answers as their files, and a lone path is accepted
    in_memory = predict(lite0, [gray, odd], topk=2)
    assert [r.top[0][1] for r in in_memory] == [results[1].top[0][1], results[2].top[0][1]]
    assert in_memory[0].path is None and in_memory[0].name == "<image 0>"
    [single] = predict(lite0, folder / "b_gray.png", topk=1)
    assert single.label == results[1].label

    empty = tmp_path / "empty"
    empty.mkdir()
    [result] = predict(lite0, [empty])
    assert not result.ok and "no image files" in result.error
    with pytest.raises(ValueError, match="topk"):
        predict(lite0, sample_images(), topk=0)


def test_predict_keeps_training_mode_and_custom_class_names(lite0: torch.nn.Module) -> None:
    lite0.train()
    try:
        [result] = predict(lite0, sample_images()[1:2], topk=1, class_names=[f"c{i}" for i in range(1000)])
        assert lite0.training
    finally:
        lite0.eval()
    assert result.top[0][0] == f"c{result.top[0][1]}" and load_class_names()[result.top[0][1]] in EXPECTED["coffee.jpg"]


def test_unknown_model_and_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "predict", "--model", "efficientnet_b9")
    assert code == 2 and out == ""
    assert err.startswith("effnet: error: unknown model 'efficientnet_b9'") and "did you mean" in err and err.count("\n") == 1

    code, _, err = run(capsys, "predict", "--weights", str(tmp_path / "nope.safetensors"))
    assert code == 2 and "does not exist" in err and "Traceback" not in err

    assert run(capsys, "predict", "--topk", "0")[0] == 2
    assert run(capsys, "export", "b0")[0] == 2  # --format is required
    code, out, err = run(capsys)
    assert code == 2 and "usage: effnet" in err and "demo" in err


@pytest.mark.parametrize("command", ["models", "profile", "predict", "export", "quantize", "convert", "bench", "demo"])
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and out.startswith(f"usage: effnet {command}")


@pytest.mark.parametrize("command", ["scale", "export", "quantize", "train", "finetune", "eval", "grid-search", "search", "study scaling"])
def test_help_states_each_default_once_and_readably(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = run(capsys, *command.split(), "--help")
    text = " ".join(out.split())  # line wrapping aside
    assert code == 0
    for wrong in ("(default: True)", "(default: False)", "(default: )", "(default: None)"):
        assert wrong not in text, f"{command} --help says {wrong}"
    for entry in text.split(" --"):  # one option's usage and help per piece
        assert entry.count("(default:") <= 1, f"{command} --help states a default twice: --{entry}"
    if command == "scale":
        assert "name of the new spec (default: <base>_scaled) --out" in text
    if command in ("train", "finetune", "eval", "grid-search", "search"):
        assert "(default: folder with --data-dir, else synthetic)" in text  # a data directory means a folder dataset
    if command in ("train", "finetune"):
        assert "show a progress bar (default: --progress)" in text
    if command == "finetune":  # BatchNorm's mode is the data's choice, and the help says so (not "keeps its pretrained statistics")
        assert "BatchNorm keeps" not in text and "BatchNorm is chosen from the data" in text
        assert "its statistics train and the backbone learns at the head's rate; otherwise its pretrained statistics are kept" in text
    if command == "grid-search":
        assert "--no-progress no progress bar --epochs" in text and "--resume [DIR] continue the grid search in DIR" in text


def test_demo_prints_table2_and_classifies_the_samples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo")
    assert code == 0 and err == ""
    table, _, predictions = out.partition("Classifying")
    assert "MACs (multiply-adds)" in table
    for name, (params, macs) in TABLE2.items():
        assert f"{name}  " in table and f"{params} " in table and f"{macs} " in table
    lines = predictions.splitlines()
    tops = {line: lines[i + 1] for i, line in enumerate(lines) if line in EXPECTED}  # the line after a file name is its top-1
    assert set(tops) == set(EXPECTED)
    for name, first in tops.items():
        assert any(f"  {label} (" in first for label in EXPECTED[name]), first


# ------------------------------------------------------------------ convert
def test_convert_timm_weights_reproduce_timm_logits(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    reference = randomize_bn(timm.create_model("efficientnet_b0", pretrained=False))
    source = tmp_path / "timm_b0.pth"
    torch.save(reference.state_dict(), source)
    target = tmp_path / "b0.safetensors"

    code, out, err = run(capsys, "convert", str(source), str(target), "--from", "auto", "--model", "efficientnet_b0")
    assert code == 0 and err == "" and target.is_file()
    assert "timm layout" in out

    ours = effnet.create_model("efficientnet_b0")
    effnet.load_state_dict(ours, load_file(target), source="effnet", strict=True)
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff < 1e-5

    # the model is guessed from the parameter count when --model is left out
    assert run(capsys, "convert", str(source), str(tmp_path / "guessed.safetensors"))[0] == 0

    # weights of another variant, and a non-safetensors output, are one-line errors
    code, _, err = run(capsys, "convert", str(source), str(tmp_path / "b1.safetensors"), "--model", "b1")
    assert code == 2 and "do not fit efficientnet_b1" in err and "'efficientnet_b0'" in err and err.count("\n") == 1
    code, _, err = run(capsys, "convert", str(source), str(tmp_path / "b0.pth"), "--model", "b0")
    assert code == 2 and ".safetensors" in err


# ------------------------------------------------------------------ the installed console script
def test_console_script_reports_errors_without_traceback() -> None:
    script = Path(sys.executable).parent / "effnet"
    assert script.is_file(), "the `effnet` console script is not installed (pip install -e .)"
    proc = subprocess.run([str(script), "profile", "b0", "efficientnett_b3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("effnet: error: unknown model") and "did you mean 'efficientnet_b3'" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------ export
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_export_onnx_and_torchscript(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from effnet.models.export import read_metadata

    onnx_file = tmp_path / "lite0.onnx"
    code, out, err = run(capsys, "export", "efficientnet_lite0", "--format", "onnx", "--resolution", "64", "--static-batch", "--output", str(onnx_file))
    assert code == 0, err
    assert onnx_file.stat().st_size > 1_000_000 and f"wrote {onnx_file} (onnx, " in out
    assert "random weights; input (1, 3, 64, 64) -> logits (1, 1000); outputs verified against PyTorch" in out
    # the labels travel with the file: ImageNet's, in its metadata and beside it
    assert json.loads((tmp_path / "lite0.classes.json").read_text())[:2] == ["tench", "goldfish"]
    assert "classes: tench, goldfish, great white shark, tiger shark, hammerhead, ... (1000 in all)" in out
    assert "effnet: note: the weights are random" in err and "effnet export efficientnet_lite0 --format onnx --pretrained" in err

    ts_file = tmp_path / "lite0.pt"
    code, out, err = run(
        capsys, "export", "lite0", "--pretrained", "--format", "torchscript", "--method", "trace", "--resolution", "64", "--output", str(ts_file)
    )
    assert code == 0, err
    assert "pretrained weights" in out and "note" not in err
    metadata = read_metadata(ts_file)
    assert len(metadata["class_names"]) == metadata["num_classes"] == 1000 and metadata["preprocessing"]["resolution"] == 64
    loaded = torch.jit.load(str(ts_file))
    reference = effnet.create_model("efficientnet_lite0", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (loaded(x) - reference(x)).abs().max().item() < 1e-4

    code, _, err = run(capsys, "export", "lite0", "--format", "onnx", "--resolution", "4", "--output", str(tmp_path / "tiny.onnx"))
    assert code == 2 and err.startswith("effnet: error: ") and "Traceback" not in err


# ------------------------------------------------------------------ bench
def test_bench_tiny_run_writes_results(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["bench", "--models", "lite0", "--batch-sizes", "1", "--resolution", "64", "--warmup", "0", "--repeats", "1", "--libraries", "effnet", "timm"]
    code, out, err = run(capsys, *argv, "--threads", "1", "--out", str(tmp_path))
    assert code == 0, err
    assert "| efficientnet_lite0 | 1 | effnet |" in out and "| efficientnet_lite0 | 1 | timm |" in out
    rows = json.loads((tmp_path / "inference_bench.json").read_text())["results"]
    assert {r["library"] for r in rows} == {"effnet", "timm"} and all(r["params"] == rows[0]["params"] for r in rows)

    code, _, err = run(capsys, "bench", "--libraries", "tensorflow", "--repeats", "1")
    assert code == 2 and "unknown libraries" in err


def test_scale_prints_and_writes_a_trainable_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from effnet.core.profile import profile_spec
    from effnet.core.scaling import compound
    from effnet.core.spec import NetSpec

    out = tmp_path / "b0_phi1.json"
    assert main(["scale", "b0", "--phi", "1", "--out", str(out), "--name", "b0_phi1"]) == 0
    text = capsys.readouterr().out
    expected = compound(effnet.get_spec("b0"), 1.0)
    assert expected.to_string() in text and "MACs x2.573" in text
    saved = NetSpec.load(out)
    assert saved == expected and saved.name == "b0_phi1"
    assert main(["scale", "resnet50", "--target-macs", "2e9", "--dimension", "width", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert abs(data["macs"] / 2e9 - 1) < 0.02 and data["macs"] == profile_spec(NetSpec.from_dict(data["spec"])).macs
    assert "width scaling to 2e+09 MACs" in data["scaling"]
    assert main(["scale", "b0", "--target-macs", "1e9", "--json"]) == 0
    assert "compound scaling to 1e+09 MACs: phi=1.0397" in json.loads(capsys.readouterr().out)["scaling"]
    assert main(["scale", str(out), "--depth", "2", "--resolution", "1.1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s.split("_")[1] for s in data["spec"]["stages"]] == [f"r{2 * s.repeats}" for s in saved.stages]


def test_scale_bad_input_messages(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"stages": ["ir_r1_k4_s1_e6_c16"]}')
    cases = [
        (["scale", "b0", "--phi", "-1"], "phi must be >= 0"),
        (["scale", "b0", "--target-macs", "1e8"], "below the baseline's"),
        (["scale", "b0"], "exactly one of --phi, --target-macs"),
        (["scale", "b0", "--phi", "1", "--width", "2"], "exactly one of"),
        (["scale", str(bad), "--phi", "1"], "kernel must be an odd integer"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("effnet: error:"), err
    assert main(["scale", "b0", "--phi", "1", "--alpha", "2"]) == 0
    assert "effnet: warning: alpha * beta^2 * gamma^2 = 3.200, far from" in capsys.readouterr().err
