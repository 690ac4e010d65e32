"""A fine-tuned run from a folder of photos to a deployed model, without a silent wrong result: `effnet export --run`
keeps the run's classifier, class names and preprocessing (ONNX through onnxruntime agrees with `effnet predict
--run`), and weights that do not fit a model are an error naming the tensors and their shapes, never a dropped head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import effnet
from effnet.cli import main
from effnet.models.weights import WeightsError, load_file, save_file

CLASSES = ["cat", "coffee", "rocket"]  # the tiny photo task's folders, the tuned run's classes


def _val_images(photos: Path) -> list[Path]:
    return [photos / "val" / name / f"{i}.jpg" for name in CLASSES for i in (1, 2)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_export_of_a_run_predicts_its_classes_as_predict_run_does(tuned_run: tuple[Path, str], tiny_photos: Path, capsys) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    from effnet.core.preprocessing import Preprocessing
    from effnet.models.export import read_metadata
    from effnet.models.predict import read_image

    run, _ = tuned_run
    images = _val_images(tiny_photos)
    assert main(["predict", *map(str, images), "--run", str(run), "--topk", "3", "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)

    # static batch: one onnxruntime check instead of two keeps the test short; the class handling is the same
    assert main(["export", "--run", str(run), "--format", "onnx", "--static-batch", "--batch-size", str(len(images))]) == 0
    out, err = capsys.readouterr()
    onnx_file = run / "model.onnx"  # beside the run's weights by default
    assert f"wrote {onnx_file} (onnx, " in out and f"model weights of the run {run}; input (6, 3, 128, 128) -> logits (6, 3)" in out
    assert "outputs verified against PyTorch" in out and "classes: cat, coffee, rocket;" in out and "warning" not in err
    assert json.loads((run / "model.classes.json").read_text()) == CLASSES
    metadata = read_metadata(onnx_file)
    assert metadata["class_names"] == CLASSES and metadata["num_classes"] == 3
    assert metadata["preprocessing"] == json.loads((run / "preprocessing.json").read_text())  # the run's, 128 px

    # a deployment with nothing but the file: its preprocessing and labels from the metadata, onnxruntime for the model
    transform = Preprocessing.from_dict(metadata["preprocessing"]).eval_transform()
    batch = torch.stack([transform(read_image(path)) for path in images]).numpy()
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": batch})
    assert logits.shape == (6, 3)
    probs = torch.from_numpy(logits).softmax(-1)
    labels = [metadata["class_names"][i] for i in probs.argmax(-1).tolist()]
    assert labels == [row["top"][0]["label"] for row in expected]  # (whether they are right: test_finetune.py)
    for row, p in zip(expected, probs, strict=True):
        for entry in row["top"]:
            assert p[entry["index"]].item() == pytest.approx(entry["probability"], abs=1e-4)


def test_weights_of_a_run_in_an_imagenet_model_are_an_error_naming_the_shapes(tuned_run: tuple[Path, str], capsys) -> None:
    run, _ = tuned_run
    weights = run / "model.safetensors"
    imagenet = "classifier.weight ours (1000, 1280) vs file (3, 1280), classifier.bias ours (1000,) vs file (3,)"
    synthetic = "classifier.weight ours (10, 1280) vs file (3, 1280)"  # eval's default task has 10 classes
    for argv, shapes in (
        (["predict", "--model", "efficientnet_lite0"], imagenet),
        (["export", "efficientnet_lite0", "--format", "onnx"], imagenet),
        (["eval", "--model", "efficientnet_lite0", "--val-samples", "4", "--workers", "0"], synthetic),
    ):
        assert main([*argv, "--weights", str(weights)]) == 2
        err = capsys.readouterr().err
        assert shapes in err and f"use --run {run}" in err and "the file has 3 classes" in err, (argv, err)

    with pytest.raises(WeightsError, match=r"(?s)classifier.weight ours \(1000, 1280\) vs file \(3, 1280\).*num_classes=3"):
        effnet.create_model("efficientnet_lite0", pretrained=weights)
    state = load_file(weights)
    with pytest.raises(WeightsError, match="shape mismatch: classifier.weight"):  # not even strict=False drops a tensor
        effnet.load_state_dict(effnet.create_model("efficientnet_lite0"), state, strict=False)


def test_weights_that_fit_load_whole_and_missing_tensors_are_named(tuned_run: tuple[Path, str], tiny_photos: Path, tmp_path: Path, capsys) -> None:
    from effnet.train.rundir import load_run_model

    run, _ = tuned_run
    weights = run / "model.safetensors"
    loaded = effnet.create_model("efficientnet_lite0", pretrained=weights, num_classes=3).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in load_run_model(run).state_dict().items())
    # the matching case on the command line: the run's classifier, without its names (and a note pointing at --run)
    image = str(_val_images(tiny_photos)[0])
    assert main(["predict", image, "--weights", str(weights), "--num-classes", "3", "--topk", "3", "--json"]) == 0
    out, err = capsys.readouterr()
    assert sorted(entry["label"] for entry in json.loads(out)[0]["top"]) == ["class 0", "class 1", "class 2"]
    assert f"note: {weights} holds the weights of the training run {run}: use --run {run}" in err
    # --num-classes asks for a file's classifier, not for a new one on pretrained weights
    assert main(["predict", image, "--num-classes", "3"]) == 2 and "--num-classes 3 needs --weights FILE" in capsys.readouterr().err

    partial = {k: v for k, v in load_file(weights).items() if k != "head.bn.running_var"}
    partial["extra.weight"] = torch.zeros(2)
    save_file(partial, tmp_path / "partial.safetensors")
    assert main(["predict", image, "--weights", str(tmp_path / "partial.safetensors"), "--num-classes", "3"]) == 2
    err = capsys.readouterr().err
    assert "missing: head.bn.running_var (1280,)" in err and "unexpected: extra.weight (2,)" in err


def test_export_refuses_class_names_that_do_not_match_the_outputs(tmp_path: Path) -> None:
    from effnet.models.export import ExportError, export_onnx

    model = effnet.create_model("efficientnet_lite0")
    model.class_names = CLASSES  # as a run's, but the model has an ImageNet classifier
    with pytest.raises(ExportError, match="the model has 1000 outputs but 3 class names"):
        export_onnx(model, tmp_path / "wrong.onnx", resolution=32)
    assert not (tmp_path / "wrong.onnx").exists()


def test_a_zero_classifier_is_told_apart_from_a_trained_one(tuned_run: tuple[Path, str]) -> None:
    """What `effnet export` warns of (the logits of a dropped, zero-initialised head do not depend on the image)."""
    from effnet.cli.predict import _outputs_ignore_the_input
    from effnet.train.rundir import load_run_model

    assert _outputs_ignore_the_input(effnet.create_model("efficientnet_lite0", num_classes=3), 3, 32)
    assert not _outputs_ignore_the_input(load_run_model(tuned_run[0]), 3, 32)


def test_the_readme_api_lines_run_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    """The README's Python API block, run in an empty directory, except the lines that need a file or a download."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## The API in a few lines", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    paragraphs = block.split("\n\n")
    offline = [p for p in paragraphs if "timm_b0.pth" not in p and ".torchvision" not in p]
    assert len(paragraphs) - len(offline) == 2  # the timm file and the torchvision download: nothing else is skipped
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with torch.no_grad():
        exec(compile("\n\n".join(offline), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    from effnet.models.predict import load_class_names

    probs = namespace["probs"]
    assert probs.shape == (1, 1000) and np.isclose(probs.sum().item(), 1.0, atol=1e-5)
    assert load_class_names()[probs.argmax().item()] in {"tabby", "tiger cat", "Egyptian cat"}
    assert namespace["net"].spec.num_classes == 10 and namespace["backbone"].channels() == [16, 24, 40, 112, 320]
