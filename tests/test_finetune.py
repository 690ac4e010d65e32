"""Fine-tuning that works out of the box: a new head starts at uniform predictions, the recipe adapts to the
data, a real-photo task is learned in seconds, FixRes adapts to a test resolution, and `effnet eval --run`
reports what training reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import effnet
from effnet.cli import main
from effnet.models.predict import sample_images
from effnet.train.finetune import BATCH_RANGE, FINETUNE_RECIPE, MIN_STEPS_PER_EPOCH, WARMUP_FRACTION, finetune_values, plan_finetune


def _photo_batch(resolution: int = 224) -> torch.Tensor:
    from PIL import Image

    prep = effnet.core.zoo.get_preprocessing("efficientnet_lite0").replace(resolution=resolution)
    return torch.stack([prep.eval_transform()(Image.open(path)) for path in sample_images()])


@pytest.mark.parametrize("classes", [2, 10, 1000])
def test_a_fresh_head_starts_at_uniform_predictions(classes: int) -> None:
    images = _photo_batch()
    tuned = effnet.create_model("efficientnet_lite0", pretrained=True, num_classes=classes if classes != 1000 else 2).eval()
    if classes == 1000:  # 1000 classes would load the pretrained head: replace it explicitly
        tuned.reset_classifier(1000)
    scratch = effnet.create_model("efficientnet_b0", num_classes=classes).eval()
    with torch.no_grad():
        for model in (tuned, scratch):
            logits = model(images)
            assert logits.shape == (3, classes)
            assert logits.abs().max().item() < 1.0
            loss = torch.nn.functional.cross_entropy(logits, torch.zeros(3, dtype=torch.long))
            assert loss.item() == pytest.approx(torch.log(torch.tensor(float(classes))).item(), rel=0.05)


def test_tf_head_init_is_kept_as_an_option_and_is_far_from_uniform() -> None:
    images = _photo_batch()
    model = effnet.create_model("efficientnet_lite0", pretrained=True, num_classes=2, head_init="tf").eval()
    with torch.no_grad():
        logits = model(images)
    assert logits.abs().max().item() > 1.0  # why it is not the default: two classes start confidently wrong or right
    bound = 1 / 2**0.5
    weight = model.classifier.weight
    assert weight.abs().max().item() <= bound and weight.std().item() > 0.3 * bound


def test_the_plan_gives_enough_steps_per_epoch_and_warm_up_in_steps() -> None:
    plan = plan_finetune(245, epochs=3)
    assert (plan.batch_size, plan.steps_per_epoch, plan.total_steps) == (16, 15, 45)
    assert plan.warmup_steps == round(WARMUP_FRACTION * 45)
    assert plan.warmup_epochs * plan.steps_per_epoch == pytest.approx(plan.warmup_steps)
    for images in (20, 80, 245, 1000, 5000, 100_000):
        plan = plan_finetune(images, epochs=10)
        assert BATCH_RANGE[0] <= plan.batch_size <= BATCH_RANGE[1]
        if images >= MIN_STEPS_PER_EPOCH * BATCH_RANGE[0] and plan.batch_size < BATCH_RANGE[1]:
            assert plan.steps_per_epoch >= MIN_STEPS_PER_EPOCH
    assert plan_finetune(245, epochs=3, world_size=2).batch_size == 8  # per process
    assert plan_finetune(5, epochs=1).batch_size == 5  # fewer images than the smallest batch: one step of all of them
    values, _ = finetune_values(245, {"batch_size": 32, "epochs": 2})
    assert (values["batch_size"], values["epochs"]) == (32, 2)  # the user's choice wins


def test_short_runs_stretch_the_cosine_and_the_plan_line_says_why() -> None:
    from effnet.train.config import TrainConfig
    from effnet.train.finetune import FEW_SHOT_IMAGES_PER_CLASS, SHORT_RUN_IMAGES_SEEN, SHORT_RUN_SCHEDULE, describe
    from effnet.train.optim import make_scheduler

    span = SHORT_RUN_SCHEDULE["cosine_min_steps"]
    few, plan = finetune_values(228, {"epochs": 3}, classes=30)  # 7.6 per class: caltech101_fewshot's shape
    assert few["cosine_min_steps"] == span and plan.few_shot and plan.total_steps < span
    line = describe(plan, TrainConfig.from_dict(few))
    assert line.startswith("228 images in 30 classes -> batch 16") and f"cosine spanning {span} steps (7.6 images per class)" in line
    # the last step of the 3-epoch run is still well up the stretched cosine, not at zero
    config = TrainConfig.from_dict(few)
    scheduler = make_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), config, plan.steps_per_epoch)
    last = scheduler.lr_lambdas[0](plan.total_steps - 1)
    assert 0.5 < last < 1.0
    # 40 images per class, but 163 x 3 = 489 images seen in all (the imbalanced check): stretched, and said why
    short, short_plan = finetune_values(163, {"epochs": 3}, classes=4)
    assert not short_plan.few_shot and short_plan.short_run and short["cosine_min_steps"] == span
    assert f"cosine spanning {span} steps (489 images seen in the run)" in describe(short_plan, TrainConfig.from_dict(short))
    # at the boundaries (20 per class; 1,000 images seen), with many images, or when the user sets the span: unchanged
    assert finetune_values(FEW_SHOT_IMAGES_PER_CLASS * 50, {"epochs": 3}, classes=50)[0].get("cosine_min_steps", 0) == 0
    assert finetune_values(SHORT_RUN_IMAGES_SEEN // 2, {"epochs": 2}, classes=10)[0].get("cosine_min_steps", 0) == 0
    assert finetune_values(SHORT_RUN_IMAGES_SEEN // 2 - 1, {"epochs": 2}, classes=10)[0]["cosine_min_steps"] == span
    assert finetune_values(500, {"epochs": 3}, classes=10)[0].get("cosine_min_steps", 0) == 0
    assert finetune_values(500, {"epochs": 3})[0].get("cosine_min_steps", 0) == 0
    assert finetune_values(163, {"epochs": 3, "cosine_min_steps": 0}, classes=4)[0]["cosine_min_steps"] == 0
    # runs long enough for the span are the plain cosine, and their line does not claim a stretch
    for images, classes in ((228, 30), (163, 4)):
        long, long_plan = finetune_values(images, {"epochs": 10}, classes=classes)
        assert long_plan.total_steps >= span and ", cosine;" in describe(long_plan, TrainConfig.from_dict(long))


def test_finetune_defaults_learn_a_tiny_real_photo_task(tuned_run: tuple[Path, str]) -> None:
    run, printed = tuned_run
    config = json.loads((run / "config.json").read_text())
    # 48 images: the plan picks batch 8 (>= MIN_STEPS_PER_EPOCH is impossible above the smallest batch), and says so
    assert "48 images in 3 classes -> batch 8, 6 steps/epoch" in printed
    assert "pretrained features separate the classes" in printed and "BN statistics trained" in printed  # chosen, and said
    assert f"gradient norm <= {FINETUNE_RECIPE['clip_grad_norm']:g}" in printed and config["clip_grad_norm"] == FINETUNE_RECIPE["clip_grad_norm"] > 0
    assert (config["model"], config["pretrained"], config["batch_size"], config["head_init"]) == ("efficientnet_lite0", "default", 8, "zeros")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and printed.count('{"epoch"') == 2  # --no-progress keeps the epoch lines
    untrained = 100 / 3  # the zero head predicts one class for every image
    assert rows[-1]["val_top1"] >= 90.0 > untrained + 50
    assert rows[-1]["val_loss"] < 0.5 * torch.log(torch.tensor(3.0)).item()


def test_eval_of_a_pretrained_folder_run_equals_training_validation(tuned_run: tuple[Path, str], capsys) -> None:
    run, _ = tuned_run
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert main(["eval", "--run", str(run), "--workers", "0", "--json"]) == 0
    rows = {row["weights"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["model"]["resolution"] == 128 and rows["model"]["count"] == 24
    assert rows["model"]["top1"] == pytest.approx(last["val_top1"], abs=1e-9)
    assert rows["model"]["loss"] == pytest.approx(last["val_loss"], rel=1e-4)
    prep = json.loads((run / "preprocessing.json").read_text())
    assert prep["mean"] == pytest.approx([127 / 255] * 3)  # the Lite weights' (TF) statistics, not ImageNet's


def test_fixres_adapts_statistics_and_head_only(tuned_run: tuple[Path, str], capsys) -> None:
    from effnet.models.weights import load_file

    run, printed = tuned_run
    outcome = json.loads((run / "fixres.json").read_text())
    assert (outcome["resolution"], outcome["train_resolution"], outcome["images"]) == (160, 128, 48)
    assert "FixRes at 160 px" in printed
    before, after = load_file(str(run / "model.safetensors")), load_file(str(run / "fixres.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {"classifier.weight", "classifier.bias", "head.bn.weight", "head.bn.bias"} <= changed
    # the tiny photos' classes separate in the pretrained features, so the run trained BN statistics (chosen from the
    # data); FixRes then re-estimates every BatchNorm's at the test resolution
    assert json.loads((run / "config.json").read_text())["freeze_bn"] is False
    assert {k for k in changed if k.endswith("running_mean")} == {k for k in before if k.endswith("running_mean")}
    assert not any(k.endswith(".conv.weight") or k.endswith("conv_dw.weight") or k.endswith("conv_pwl.weight") for k in changed)
    # eval --run evaluates the FixRes weights at their resolution, with the result FixRes reported
    assert main(["eval", "--run", str(run), "--workers", "0", "--json"]) == 0
    rows = {row["weights"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["fixres"]["resolution"] == 160
    assert rows["fixres"]["top1"] == pytest.approx(outcome["after"]["top1"], abs=1e-9)
    assert rows["fixres"]["loss"] == pytest.approx(outcome["after"]["loss"], rel=1e-4)


def test_fixres_after_frozen_statistics_re_estimates_only_the_batchnorm_before_pooling() -> None:
    from effnet.train.fixres import head_norm, recompute_batchnorm_statistics

    model = effnet.create_model("efficientnet_lite0", num_classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("running_mean")}
    batches = [(torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))]
    assert recompute_batchnorm_statistics(model, batches, torch.device("cpu"), only=[head_norm(model)]) == 4
    after = model.state_dict()
    assert {k for k in before if not torch.equal(before[k], after[k])} == {"head.bn.running_mean"}
    recompute_batchnorm_statistics(model, batches, torch.device("cpu"))
    assert all(not torch.equal(before[k], model.state_dict()[k]) for k in before)


def test_predict_with_a_run_uses_its_classes_and_preprocessing(tuned_run: tuple[Path, str], tiny_photos: Path, capsys) -> None:
    from effnet.train.rundir import load_run_model

    run, _ = tuned_run
    model = load_run_model(run)
    assert model.class_names == ["cat", "coffee", "rocket"] and model.preprocessing.resolution == 128
    assert load_run_model(run, "fixres").preprocessing.resolution == 160
    images = [tiny_photos / "val" / name / "0.jpg" for name in ("cat", "coffee", "rocket")]
    assert main(["predict", *map(str, images), "--run", str(run), "--topk", "1", "--json"]) == 0
    labels = [row["top"][0]["label"] for row in json.loads(capsys.readouterr().out)]
    assert labels == ["cat", "coffee", "rocket"]


def test_finetune_prepares_the_run_once_and_trains_the_network_it_measured(tiny_photos: Path, tmp_path: Path, monkeypatch) -> None:
    """The folder is scanned once and the pretrained network built once, for the plan, the separability measure and the
    trainer; the trainer then starts exactly as one that built everything itself (same weights, same RNG state)."""
    import effnet.data
    import effnet.models.factory
    from effnet.train.finetune import prepare_finetune
    from effnet.train.trainer import Trainer

    scans, builds = [], []
    real_scan, real_create = effnet.data.image_folder_splits, effnet.models.factory.create_model
    monkeypatch.setattr(effnet.data, "image_folder_splits", lambda root, **k: scans.append(str(root)) or real_scan(root, **k))
    monkeypatch.setattr(effnet.models.factory, "create_model", lambda name, **k: builds.append(name) or real_create(name, **k))
    given = {"data_dir": str(tiny_photos), "resolution": 64, "epochs": 1, "workers": 0, "progress": False, "out_dir": str(tmp_path / "run")}
    run, plan = prepare_finetune(given)
    measured = run.model()
    shared = Trainer(run)
    shared.lock.release()
    assert shared.model is measured and shared.data is run.data
    assert scans == [str(tiny_photos)] and builds == ["efficientnet_lite0"]
    assert plan.images == len(shared.data.train) == 48 and plan.separability is not None and plan.separability.images == 48
    rng_shared = torch.get_rng_state()
    fresh = Trainer(run.config)  # prepares the run again: a second scan and build
    fresh.lock.release()
    assert torch.equal(torch.get_rng_state(), rng_shared)
    assert all(torch.equal(a, b) for a, b in zip(shared.model.state_dict().values(), fresh.model.state_dict().values(), strict=True))


def test_trained_batchnorm_statistics_follow_the_weights_within_a_short_run(tuned_run: tuple[Path, str], tiny_photos: Path) -> None:
    """Where fine-tuning trains BN statistics, the running mean the run evaluates with has moved most of the way from
    ImageNet's to the statistics of the training images (12 steps: at TF's momentum 0.01 it would have moved 11%)."""
    from torchvision.datasets import ImageFolder

    from effnet.train.rundir import load_run_model

    run, printed = tuned_run
    assert "BN statistics trained (momentum 0.1)" in printed
    tuned = load_run_model(run)
    pretrained = effnet.create_model("efficientnet_lite0", pretrained=True, num_classes=3).eval()
    images = ImageFolder(str(tiny_photos / "train"), transform=tuned.preprocessing.eval_transform())
    batch = torch.stack([image for image, _ in images])
    with torch.no_grad():
        data_mean = tuned.stem.conv(batch).mean(dim=(0, 2, 3))  # what the stem's BN sees, under the tuned weights
    before, after = pretrained.stem.bn.running_mean, tuned.stem.bn.running_mean
    moved = torch.dot(after - before, data_mean - before) / torch.dot(data_mean - before, data_mean - before)
    assert 0.5 < moved.item() < 1.1


def test_a_run_that_learned_nothing_says_so(tiny_photos: Path, tmp_path: Path, capsys) -> None:
    """At a learning rate of 1e-12 the zero-initialised head keeps uniform predictions: the run ends at chance, and says so
    (on stderr and in summary.json) instead of finishing quietly; a run that learned says nothing."""
    from effnet.train.result import at_chance_warning

    run = tmp_path / "stuck"
    args = ["finetune", "--data-dir", str(tiny_photos), "--epochs", "1", "--resolution", "64", "--workers", "0", "--no-progress"]
    assert main([*args, "--lr", "1e-12", "--out-dir", str(run)]) == 0
    warning = json.loads((run / "summary.json").read_text())["warning"]
    assert warning.startswith("the run ended at chance") and "warning: the run ended at chance" in capsys.readouterr().err
    assert at_chance_warning({"train_loss": 1.09, "val_top1": 33.3}, 3)
    assert not at_chance_warning({"train_loss": 0.30, "val_top1": 95.0}, 3)
    assert not at_chance_warning({"train_loss": 1.09, "val_top1": 90.0}, 3)  # a high loss alone (mixup, soft labels) is not chance
    assert not at_chance_warning({"train_loss": 0.2}, 3)  # no validation: nothing to say
