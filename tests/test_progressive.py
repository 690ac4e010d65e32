"""Progressive learning (EfficientNetV2 Algorithm 1): the schedule's values at every stage, the trainer following it,
and a resume in the middle of a stage that ends bit for bit where an uninterrupted run ends."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from effnet.train import preset, train
from effnet.train.progressive import schedule, stage_of

TINY = "ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e3_c24_se0.25"


def test_stage_values_are_algorithm_1s_linear_interpolation() -> None:
    # EfficientNetV2-S in the paper's Table 6: size 128 -> 300, RandAugment 5 -> 15, mixup 0 -> 0, dropout 0.1 -> 0.3
    stages = schedule(350, 4, resolution=(128, 300), magnitude=(5, 15), mixup=(0, 0.4), dropout=(0.1, 0.3))
    for i, stage in enumerate(stages):  # S_i = S_0 + (S_e - S_0) * i / (M - 1), the same for each regularization
        assert stage.resolution == round(128 + (300 - 128) * i / 3)
        assert stage.randaugment_magnitude == pytest.approx(5 + 10 * i / 3)
        assert stage.mixup == pytest.approx(0.4 * i / 3)
        assert stage.dropout == pytest.approx(0.1 + 0.2 * i / 3)
    assert [s.resolution for s in stages] == [128, 185, 243, 300]
    assert [(s.first_epoch, s.end_epoch) for s in stages] == [(0, 87), (87, 175), (175, 262), (262, 350)]
    assert stage_of(stages, 86).index == 0 and stage_of(stages, 87).index == 1 and stage_of(stages, 349).index == 3
    with pytest.raises(ValueError, match="need at least as many epochs"):
        schedule(3, 4, resolution=(64, 128), magnitude=(5, 9), mixup=(0, 0), dropout=(0.1, 0.2))


def _config(out_dir: Path, **changes):
    from effnet.core.spec import NetSpec

    spec = NetSpec.from_string(TINY, stem_channels=16, head_channels=64, resolution=64, dropout=0.3, name="tiny")
    values = {
        "resolution": 64,
        "num_classes": 4,
        "train_samples": 64,
        "val_samples": 32,
        "epochs": 4,
        "batch_size": 16,
        "workers": 0,
        "progress": False,
        "verbose": False,
        "deterministic": True,
        "auto_augment": "randaugment",
        "progressive_stages": 2,
        "progressive_start_resolution": 32,
        "mixup": 0.4,
        "out_dir": str(out_dir),
    }
    values.update(changes)
    return preset("proxy", **values), spec


def test_the_trainer_follows_the_stages_and_evaluates_at_the_final_size(tmp_path: Path, monkeypatch) -> None:
    from effnet.models.model import EfficientNet

    seen: list[tuple[bool, int, float]] = []
    forward = EfficientNet.forward

    def spy(self, x):
        seen.append((self.training, x.shape[-1], self.dropout.p))
        return forward(self, x)

    monkeypatch.setattr(EfficientNet, "forward", spy)
    config, spec = _config(tmp_path / "run")
    train(config, spec)
    training = [(size, p) for is_training, size, p in seen if is_training]
    evaluation = {size for is_training, size, _ in seen if not is_training}
    assert training[0] == (32, pytest.approx(0.1)) and training[-1] == (64, pytest.approx(0.3))  # first stage, last stage
    assert {size for size, _ in training} == {32, 64} and evaluation == {64}
    assert len(training) == 4 * 4  # 4 epochs x 4 steps; 2 per stage


def test_mixup_trains_on_soft_targets(tmp_path: Path, monkeypatch) -> None:
    import torch.nn.functional as F

    import effnet.train.trainer as trainer_module

    targets: list[torch.Tensor] = []
    real = F.cross_entropy

    def spy(logits, target, **kwargs):
        targets.append(target)
        return real(logits, target, **kwargs)

    monkeypatch.setattr(trainer_module.F, "cross_entropy", spy)
    config, spec = _config(tmp_path / "run", progressive_stages=0, epochs=1)
    train(config, spec)
    steps = targets[:4]  # 64 images at batch 16; the evaluation's calls (class indices) follow
    assert all(t.dtype == torch.float32 and t.shape == (16, 4) for t in steps)
    assert all((t.max(1).values < 1).any() for t in steps)  # mixed labels, not one-hot
    assert all(t.dtype == torch.int64 for t in targets[4:])


def test_resume_in_the_middle_of_a_stage_is_bitwise_equal(tmp_path: Path, monkeypatch) -> None:
    import effnet.train.writer as writer_module  # what writes a run's checkpoints

    snapshots: list[Path] = []
    real_save = writer_module.save_checkpoint

    def keep_copies(path, payload, rng=None):  # keep every checkpoint the uninterrupted run writes
        real_save(path, payload, rng=rng)
        copy = tmp_path / f"snapshot-{len(snapshots)}.pt"
        shutil.copyfile(path, copy)
        snapshots.append(copy)

    monkeypatch.setattr(writer_module, "save_checkpoint", keep_copies)
    config, spec = _config(tmp_path / "straight", checkpoint_every=3)
    straight = train(config, spec)
    monkeypatch.setattr(writer_module, "save_checkpoint", real_save)
    # the checkpoint at global step 9: epoch 3 (the second stage), step 1 of 4
    middle = torch.load(snapshots[[i for i, p in enumerate(snapshots) if torch.load(p, weights_only=True)["global_step"] == 9][0]], weights_only=True)
    assert (middle["epoch"], middle["step_in_epoch"], middle["progressive_stage"]) == (2, 1, 1)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    torch.save(middle, resumed_dir / "last.pt")
    config, spec = _config(resumed_dir, checkpoint_every=3, resume=True)
    resumed = train(config, spec)
    ours, theirs = load_file(str(resumed_dir / "model.safetensors")), load_file(str(tmp_path / "straight" / "model.safetensors"))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]


def test_progressive_needs_randaugment_not_autoaugment() -> None:
    from effnet.train.config import TrainConfig

    with pytest.raises(ValueError, match="--auto-augment randaugment"):
        TrainConfig(progressive_stages=4)
