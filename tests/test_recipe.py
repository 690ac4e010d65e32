"""The paper's recipe: TF-semantics RMSProp against a hand computation, the LR schedule in closed form,
weight-decay groups, EMA warm-up, and the config's validation."""

from __future__ import annotations

import math

import pytest
import torch

import effnet
from effnet.train.config import TrainConfig
from effnet.train.ema import ModelEMA
from effnet.train.optim import RMSpropTF, lr_factor, make_optimizer, make_scheduler, parameter_groups


def test_rmsprop_tf_matches_hand_computed_update() -> None:
    lr, decay, momentum, eps = 0.1, 0.9, 0.9, 1e-3
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = RMSpropTF([p], lr=lr, decay=decay, momentum=momentum, eps=eps)
    grads = [(0.5, 1.0), (-0.3, 0.2)]
    # by hand, TF semantics: ms starts at 1, eps inside the sqrt, lr inside the momentum
    expected = [1.0, -2.0]
    ms, mom = [1.0, 1.0], [0.0, 0.0]
    for g in grads:
        for i in range(2):
            ms[i] = decay * ms[i] + (1 - decay) * g[i] ** 2
            mom[i] = momentum * mom[i] + lr * g[i] / math.sqrt(ms[i] + eps)
            expected[i] -= mom[i]
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    assert p.detach().tolist() == pytest.approx(expected, abs=1e-12)
    # first step by the formula written out: 1 - 0.1 * 0.5 / sqrt(0.9 + 0.025 + 0.001)
    assert expected[0] != 1.0
    # it is not PyTorch's RMSprop (eps outside the sqrt, ms from 0, lr outside momentum)
    q = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    torch_opt = torch.optim.RMSprop([q], lr=lr, alpha=decay, momentum=momentum, eps=eps)
    for g in grads:
        q.grad = torch.tensor(g, dtype=torch.float64)
        torch_opt.step()
    assert not torch.allclose(p, q)


def test_weight_decay_is_l2_on_the_gradient() -> None:
    p = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = RMSpropTF([p], lr=0.5, decay=0.9, momentum=0.0, eps=1e-3, weight_decay=0.1)
    p.grad = torch.tensor([0.0], dtype=torch.float64)
    opt.step()
    g = 0.1 * 2.0
    assert p.item() == pytest.approx(2.0 - 0.5 * g / math.sqrt(0.9 + 0.1 * g * g + 1e-3))


def test_exponential_schedule_closed_form() -> None:
    kwargs = {"steps_per_epoch": 100, "total_steps": 35000, "schedule": "exponential", "warmup_epochs": 5}
    assert lr_factor(0, **kwargs) == 0.0
    assert lr_factor(250, **kwargs) == pytest.approx(0.5)  # halfway through the 5-epoch warm-up
    assert lr_factor(500, **kwargs) == pytest.approx(0.97**2)  # floor(500 / 240) = 2 decays
    assert lr_factor(1000, **kwargs) == pytest.approx(0.97**4)
    assert lr_factor(34999, **kwargs) == pytest.approx(0.97 ** math.floor(34999 / 240))
    cosine = {**kwargs, "schedule": "cosine"}
    assert lr_factor(500, **cosine) == pytest.approx(1.0)
    assert lr_factor(500 + 34500 // 2, **cosine) == pytest.approx(0.5)
    assert lr_factor(35000, **cosine) == pytest.approx(0.0, abs=1e-12)


def test_linear_probe_then_fine_tune_keeps_the_backbone_still_first() -> None:
    """LP-FT: the backbone's LR is exactly 0 for the probe's steps, then follows the schedule compressed into the rest."""
    config = TrainConfig(optimizer="sgd", schedule="cosine", epochs=3, warmup_epochs=0.0, linear_probe_epochs=1, backbone_lr_scale=0.5)
    model = effnet.build(effnet.get_spec("efficientnet_b0").replace(stages=effnet.get_spec("efficientnet_b0").stages[:2]), num_classes=3)
    optimizer = make_optimizer(model, config, peak_lr=0.1)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=10)
    head = [g for g in optimizer.param_groups if g["is_head"]]
    backbone = [g for g in optimizer.param_groups if not g["is_head"]]
    seen = []
    for _ in range(30):
        seen.append((head[0]["lr"], backbone[0]["lr"]))
        optimizer.step()
        scheduler.step()
    assert all(b == 0.0 for _, b in seen[:10]) and all(h > 0 for h, _ in seen[:10])
    assert seen[10][1] == pytest.approx(0.05)  # the backbone starts its own cosine at its peak (0.1 x 0.5)
    assert seen[20][1] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 10 / 20)))
    assert seen[20][0] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 20 / 30)))  # the head's schedule spans the whole run


def test_cosine_min_steps_stops_a_short_run_part_way_down_the_longer_cosine() -> None:
    """A 30-step run whose cosine spans at least 100 steps follows that cosine's first 30 steps; a run as long or longer is unchanged."""
    model = torch.nn.Linear(2, 2)

    def lrs(epochs: int, min_steps: int) -> list[float]:
        config = TrainConfig(optimizer="sgd", schedule="cosine", epochs=epochs, warmup_epochs=0.0, cosine_min_steps=min_steps)
        optimizer = make_optimizer(model, config, peak_lr=1.0)
        scheduler = make_scheduler(optimizer, config, steps_per_epoch=10)
        seen = []
        for _ in range(epochs * 10):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return seen

    short = lrs(3, 100)
    assert short == pytest.approx([0.5 * (1 + math.cos(math.pi * step / 100)) for step in range(30)])
    assert short[-1] > 0.75  # the plain 30-step cosine ends near 0
    assert lrs(3, 0)[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 29 / 30)))
    assert lrs(10, 100) == pytest.approx(lrs(10, 0))


def test_lr_scales_with_global_batch_and_groups_skip_decay_on_bn_and_bias() -> None:
    config = TrainConfig(batch_size=64, grad_accum=2)
    assert config.peak_lr(world_size=2) == pytest.approx(0.016 * 256 / 256)
    model = effnet.create_model("efficientnet_b0", num_classes=10)
    groups = parameter_groups(model, weight_decay=1e-5, backbone_lr_scale=0.1)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.ndim > 1), name
    head = [g for g in groups if g["lr_scale"] == 1.0]
    assert sum(p.numel() for g in head for p in g["params"]) == 1280 * 10 + 10
    opt = make_optimizer(model, TrainConfig(backbone_lr_scale=0.1), peak_lr=1.0)
    assert sorted({g["lr"] for g in opt.param_groups}) == [0.1, 1.0]


def test_ema_follows_tf_warm_up() -> None:
    model = torch.nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9999)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    before = ema.module.weight.clone()
    ema.update(model)
    assert torch.allclose(ema.module.weight, before * 0.1 + 0.9)
    for _ in range(100000):
        ema.updates += 1
    assert ema.current_decay() == 0.9999


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "adam"}, "unknown optimizer 'adam'"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"dataset": "folder"}, "needs --data-dir"),
        ({"amp": "fp8"}, "unknown amp"),
    ],
)
def test_config_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_config_files(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text("epochs: 3\nbatch-size: 16\nschedule: cosine\n")
    config = TrainConfig.from_file(tmp_path / "c.yaml")
    assert (config.epochs, config.batch_size, config.schedule) == (3, 16, "cosine")
    (tmp_path / "c.json").write_text('{"epoch": 3}')
    with pytest.raises(ValueError, match="unknown config key"):
        TrainConfig.from_file(tmp_path / "c.json")


def test_a_config_file_overrides_only_the_keys_it_sets(tmp_path) -> None:
    import argparse

    from effnet.train.commands import add_config_options, config_from_args
    from effnet.train.finetune import FINETUNE_RECIPE

    (tmp_path / "c.yaml").write_text("batch-size: 16\noptimizer: adamw\n")
    parser = argparse.ArgumentParser()
    add_config_options(parser, FINETUNE_RECIPE, finetune=True)
    config = config_from_args(parser.parse_args(["--config", str(tmp_path / "c.yaml"), "--epochs", "4"]), FINETUNE_RECIPE)
    # fine-tune defaults survive the file, the file beats them, the command line beats both
    assert (config.pretrained, config.freeze_bn, config.optimizer, config.batch_size, config.epochs) == (
        "default",
        FINETUNE_RECIPE["freeze_bn"],
        "adamw",
        16,
        4,
    )
    config = config_from_args(parser.parse_args(["--preset", "proxy", "--config", str(tmp_path / "c.yaml")]))
    assert (config.optimizer, config.batch_size) == ("adamw", 16)


def test_loader_workers_default_to_none_on_a_two_core_cpu(monkeypatch) -> None:
    """On 2 cores the loader's processes take cores from the compute threads (benchmarks/results/finetune_real)."""
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert TrainConfig().loader_workers("cpu") == 0 and TrainConfig().loader_workers("cuda") == 1
    assert TrainConfig(workers=3).loader_workers("cpu") == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert TrainConfig().loader_workers("cpu") == 4 and TrainConfig().loader_workers("cuda") == 8
    with pytest.raises(ValueError, match="workers must be >= 0, or -1"):
        TrainConfig(workers=-2)
