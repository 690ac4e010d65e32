"""`effnet train` on a small image folder trains with the from-scratch recipe (effnet.train.scratch), not the paper's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import two_colour_folder

from effnet.cli import main
from effnet.train import scratch
from effnet.train.scratch import SCRATCH_RECIPE, describe_scratch, prepare_scratch, scratch_values, uses_scratch_recipe


def test_the_plan_comes_from_the_image_count_and_the_user_options_win() -> None:
    values, plan = scratch_values(500, {})
    # 500 images: batch 32 (fine-tuning's plan would take 32 too; 1,000 would be 64 there, 32 here), 15 steps/epoch
    assert (plan.batch_size, plan.steps_per_epoch, values["epochs"]) == (32, 15, 30)
    assert values["warmup_epochs"] == pytest.approx(round(0.05 * 15 * 30) / 15)  # 5% of all steps
    assert (values["optimizer"], values["auto_augment"], values["zero_init_residual"]) == ("adamw", "none", True)
    assert scratch_values(1000, {})[1].batch_size == 32
    assert scratch_values(40, {})[1].batch_size == 8  # >= 10 steps an epoch would need 4; the plan's floor is 8
    values, plan = scratch_values(500, {"batch_size": 16, "epochs": 2, "warmup_epochs": 0.0, "optimizer": "sgd"})
    assert (plan.batch_size, values["epochs"], values["warmup_epochs"], values["optimizer"]) == (16, 2, 0.0, "sgd")


def test_only_a_folder_without_pretrained_weights_takes_it() -> None:
    assert uses_scratch_recipe({"data_dir": "photos"}) and uses_scratch_recipe({"dataset": "folder", "data_dir": "photos", "pretrained": "none"})
    assert not uses_scratch_recipe({})  # the built-in synthetic task
    assert not uses_scratch_recipe({"data_dir": "photos", "pretrained": "default"})
    assert not uses_scratch_recipe({"dataset": "cifar10", "data_dir": "photos"})


def test_a_folder_larger_than_the_limit_keeps_the_papers_recipe(tmp_path: Path, monkeypatch) -> None:
    photos = two_colour_folder(tmp_path / "photos", per_class=5)
    monkeypatch.setattr(scratch, "SMALL_FOLDER_MAX_IMAGES", 7)  # 10 images, 8 of them training images
    run, plan = prepare_scratch({"data_dir": str(photos), "out_dir": str(tmp_path / "run")})
    assert plan is None and (run.config.optimizer, run.config.epochs, run.config.auto_augment) == ("rmsprop_tf", 350, "autoaugment")
    assert len(run.data.train) == 8 and "paper's ImageNet recipe" in describe_scratch(plan, run.config)
    monkeypatch.setattr(scratch, "SMALL_FOLDER_MAX_IMAGES", 8)
    run, plan = prepare_scratch({"data_dir": str(photos), "out_dir": str(tmp_path / "run")})
    assert plan is not None and plan.images == 8 and run.config.optimizer == "adamw"


def test_effnet_train_on_a_folder_prints_and_saves_the_recipe(tiny_spec: str, tmp_path: Path, capsys) -> None:
    photos = two_colour_folder(tmp_path / "photos", per_class=5)
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(photos), "--spec", tiny_spec, "--resolution", "32", "--epochs", "1", "--out-dir", str(run), "--workers", "0"]
    assert main([*argv, "--no-progress"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("small-folder recipe from scratch: 8 images -> batch 8, 1 steps/epoch")
    saved = json.loads((run / "config.json").read_text())
    assert {k: saved[k] for k in SCRATCH_RECIPE if k != "epochs"} == {k: v for k, v in SCRATCH_RECIPE.items() if k != "epochs"}
    assert (saved["epochs"], saved["batch_size"]) == (1, 8)
    # --preset paper: the paper's recipe on the same folder, nothing adapted
    assert main([*argv, "--out-dir", str(tmp_path / "paper"), "--preset", "paper", "--batch-size", "4", "--no-progress"]) == 0
    assert not capsys.readouterr().out.startswith("small-folder")
    assert json.loads((tmp_path / "paper" / "config.json").read_text())["optimizer"] == "rmsprop_tf"
