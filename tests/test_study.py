"""The scaling study: t-intervals against a hand computation, matched MACs, the report, resume, bad input, one real training."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest

from effnet.core.profile import profile_spec
from effnet.core.spec import NetSpec
from effnet.experiments.proxy import evaluate_candidate
from effnet.experiments.study.invocation import device_name
from effnet.experiments.study.scaling_study import PRESETS, baseline_of, plan, run_study
from effnet.experiments.study.stats import _t_quantile_bisect, detectable_difference, mean_ci, paired_difference, seeds_for_half_width, t_quantile
from effnet.experiments.study.stopping import _wall_estimate, stopping_decision
from effnet.experiments.trials import TrialsError
from effnet.train.config import PRESETS as PRESETS_TRAIN

TINY = dataclasses.replace(
    PRESETS["mini"],
    name="tiny",
    seeds=2,
    width=(1.4,),
    depth=(2.0,),
    resolution=(1.3,),
    fig4_settings=((1.0, 1.0), (2.0, 1.3)),
    fig4_widths=(1.0, 1.4),
    targets=(4.0,),
    until_half_width=None,  # fixed seeds unless a test asks for the stopping rule
    budget_minutes=None,
)


def fake_training(params: dict) -> dict:
    """Accuracy a known function of the network: log of its MACs, plus a seed offset (module-level for worker processes)."""
    spec = NetSpec.from_dict(params["spec"])
    macs = profile_spec(spec).macs
    log = params["train"].get("log")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{params['label']}|{params['seed']}\n")
    return {"top1": 10 * math.log(macs / 1e6) + params["seed"], "macs": macs, "params": profile_spec(spec).params}


def test_t_interval_matches_a_hand_computation():
    # values 50, 53, 56: mean 53, sample std 3, t(0.975, 2 dof) = 4.302653 -> half width 4.302653 * 3 / sqrt(3) = 7.452417
    ci = mean_ci([50.0, 53.0, 56.0])
    assert ci.mean == 53.0 and ci.std == pytest.approx(3.0) and ci.n == 3
    assert ci.half_width == pytest.approx(7.452417, abs=1e-5)
    assert (ci.low, ci.high) == pytest.approx((45.547583, 60.452417), abs=1e-5)
    assert ci.text(1) == "53.0 ± 7.5"
    # the t quantiles from tables, with and without scipy
    for dof, value in ((1, 12.706205), (2, 4.302653), (4, 2.776445), (9, 2.262157), (29, 2.045230)):
        assert t_quantile(0.975, dof) == pytest.approx(value, abs=1e-5)
        assert _t_quantile_bisect(0.975, dof) == pytest.approx(value, abs=1e-5)
    one = mean_ci([42.0])
    assert one.mean == 42.0 and math.isnan(one.half_width) and one.text() == "42.0"
    # paired: differences 2, 4, 3 (seed 3 only in one of them, left out): mean 3, std 1, half 4.302653 / sqrt(3)
    diff = paired_difference({0: 52.0, 1: 55.0, 2: 50.0, 3: 99.0}, {0: 50.0, 1: 51.0, 2: 47.0})
    assert (diff.mean, diff.n) == (3.0, 3) and diff.half_width == pytest.approx(4.302653 / math.sqrt(3), abs=1e-5)


def test_detectable_difference_is_the_planning_formula_and_has_its_power():
    # std 10 over 6 seeds: (t(0.975, 5) + t(0.8, 5)) * 10 / sqrt(6), t values from tables (2.570582, 0.919544)
    spread = mean_ci([0.0, 10.0, 20.0, 5.0, 15.0, 10.0])
    assert spread.std == pytest.approx(7.071068, abs=1e-5)
    assert detectable_difference(spread) == pytest.approx((2.570582 + 0.919544) * 7.071068 / math.sqrt(6), abs=1e-4)
    assert math.isnan(detectable_difference(mean_ci([3.0])))
    # Monte Carlo: paired differences with that true mean and spread are called significant about 80% of the time
    # (a little less: the formula stands the central t in for the noncentral one)
    import torch

    generator, n, std = torch.Generator().manual_seed(0), 6, 7.0
    shift = detectable_difference(dataclasses.replace(spread, std=std))
    draws = shift + std * torch.randn(4000, n, generator=generator)
    half = t_quantile(0.975, n - 1) * draws.std(dim=1) / math.sqrt(n)
    power = ((draws.mean(dim=1) - half) > 0).float().mean().item()
    assert 0.74 < power < 0.84, power


def test_seeds_for_half_width_is_the_fewest_that_reach_it():
    # std 10, half width 4: n = 27 gives t(0.975, 26) * 10 / sqrt(27) = 3.956, n = 26 gives 4.039
    assert seeds_for_half_width(10.0, 4.0) == 27
    assert seeds_for_half_width(1.0, 4.0) == 3 and seeds_for_half_width(0.1, 4.0) == 2 and seeds_for_half_width(1e6, 1.0, most=50) == 50
    with pytest.raises(ValueError, match="half_width"):
        seeds_for_half_width(1.0, 0.0)


@pytest.mark.parametrize("name", ["mini", "gpu-table3", "small", "gpu"])
def test_matched_macs_rows_really_match(name):
    preset = PRESETS[name]
    baseline = baseline_of(preset, None, preset.num_classes)
    points = plan(preset, baseline)
    base = profile_spec(baseline).macs
    matched = [p for p in points if p.part == "matched"]
    assert {p.label for p in matched} == {"width only", "depth only", "resolution only", "compound"}
    for p in matched:
        assert p.macs == profile_spec(p.spec).macs
        assert abs(p.macs - p.target_macs) / p.target_macs < 0.03, (p.label, p.macs / base)
        # and each single-dimension row changed only its own dimension
        if p.label == "width only":
            assert p.spec.resolution == baseline.resolution and [s.repeats for s in p.spec.stages] == [s.repeats for s in baseline.stages]
        if p.label == "depth only":
            assert p.spec.resolution == baseline.resolution and p.spec.stem_channels == baseline.stem_channels
        if p.label == "resolution only":
            assert p.spec.stages == baseline.stages and p.spec.resolution > baseline.resolution
        if p.label == "compound":
            assert p.spec.resolution > baseline.resolution and p.spec.stem_channels > baseline.stem_channels and p.phi > 0
    assert {round(p.target_macs / base, 3) for p in matched} == {round(t, 3) for t in preset.targets}


def test_study_end_to_end_with_a_known_task_and_resume(tmp_path):
    log = tmp_path / "calls.txt"
    out = tmp_path / "study"
    result = run_study(TINY, out_dir=out, workers=1, train={"log": str(log)}, progress=False, log=None, evaluate=fake_training)
    unique = {p.key for p in result.points}
    calls = log.read_text().splitlines()
    assert len(calls) == len(unique) * 2  # networks shared between parts are trained once per seed
    base = result.baseline_point
    assert base.accuracy.mean == pytest.approx(10 * math.log(base.macs / 1e6) + 0.5)  # seeds 0 and 1
    assert base.accuracy.half_width == pytest.approx(t_quantile(0.975, 1) * math.sqrt(0.5) / math.sqrt(2))
    rows = result.matched_rows()
    comp = next(r["point"] for r in rows if r["point"].label == "compound")
    for row in rows:
        if row["point"] is not comp:  # same seed offsets cancel in the paired difference: it is exact
            diff = row["compound_minus"]
            assert diff.mean == pytest.approx(10 * math.log(comp.macs / row["point"].macs)) and diff.half_width == pytest.approx(0, abs=1e-9)
    report = (out / "report.md").read_text()
    for heading in ("(a) One dimension at a time", "(b) Width at several", "(c) Single dimension against compound", "## Verdict"):
        assert heading in report
    assert "compound − width only" in report and "off target" in report
    for png in ("fig3_single_dimension.png", "fig4_width_at_depth_resolution.png", "table3_matched_macs.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "study.json").read_text())
    assert len(saved["points"]) == len(result.points) and saved["machine"]["runs_trained_now"] == len(unique) * 2
    train = TINY.train  # every run sees epochs x the whole batches of its training images
    per_run = train["epochs"] * (train["train_samples"] // train["batch_size"]) * train["batch_size"]
    assert saved["machine"]["training_images"] == per_run * len(unique) * 2 and saved["machine"]["device"] == device_name(train)
    assert f"{per_run * len(unique) * 2} training images at" in report

    with pytest.raises(TrialsError, match="pass --resume"):
        run_study(TINY, out_dir=out, workers=1, train={"log": str(log)}, progress=False, log=None, evaluate=fake_training)
    # the proxy recipe is part of the study: trials trained under another recipe are not mixed in
    with pytest.MonkeyPatch.context() as patch, pytest.raises(TrialsError, match="recipe.train.zero_init_residual"):
        patch.setitem(PRESETS_TRAIN, "proxy", {**PRESETS_TRAIN["proxy"], "zero_init_residual": False})
        run_study(TINY, out_dir=out, workers=1, train={"log": str(log)}, resume=True, progress=False, log=None, evaluate=fake_training)
    with pytest.MonkeyPatch.context() as patch, pytest.raises(TrialsError, match="recipe.shapes_stripe_period"):
        patch.setattr("effnet.data.shapes.STRIPE_PERIOD", (2.2, 4.4))
        run_study(TINY, out_dir=out, workers=1, train={"log": str(log)}, resume=True, progress=False, log=None, evaluate=fake_training)
    again = run_study(TINY, out_dir=out, workers=1, train={"log": str(log)}, resume=True, progress=False, log=None, evaluate=fake_training)
    assert len(log.read_text().splitlines()) == len(calls)  # nothing trained twice
    assert again.machine["runs_resumed"] == len(unique) * 2
    assert [p.scores for p in again.points] == [p.scores for p in result.points]
    runs = json.loads((out / "study.json").read_text())["runs"]
    assert len(runs) == 1 and runs[0]["runs_trained_now"] == len(unique) * 2  # the resume trained nothing: the first run's record stays


def noisy_training(params: dict) -> dict:
    """fake_training plus seeded per-(network, seed) noise of std 6 for depth only and none for the others: only the
    compound - depth only comparison then has a spread to resolve (at 2 seeds it asks for 5)."""
    import random

    result = fake_training(params)
    noise = random.Random(f"{params['label']}-{params['seed']}").gauss(0.0, 6.0) if params["label"] == "depth only" else 0.0
    return {**result, "top1": result["top1"] + noise}


def test_the_stopping_rule_grows_only_the_unresolved_comparisons(tmp_path):
    log = tmp_path / "calls.txt"
    options = {"workers": 1, "parts": ("table3",), "train": {"log": str(log)}, "progress": False, "log": None, "evaluate": noisy_training}
    result = run_study(TINY, out_dir=tmp_path / "study", until_half_width=4.0, max_seeds=40, budget_minutes=0, **options)
    seeds = {p.label: len(p.scores) for p in result.points}
    assert seeds["depth only"] == seeds["compound"] > TINY.seeds  # the noisy comparison grew, both its networks
    assert seeds["baseline"] == seeds["width only"] == seeds["resolution only"] == TINY.seeds  # resolved ones did not
    diffs = {r["point"].label: r["compound_minus"] for r in result.matched_rows() if "compound_minus" in r}
    assert all(d.half_width <= 4.0 for d in diffs.values()) and diffs["depth only"].n == seeds["depth only"]
    assert result.stopping["met"] and result.stopping["seeds"]["depth only"] == seeds["depth only"]
    calls = log.read_text().splitlines()
    assert len(calls) == len(set(calls)) == sum(seeds.values())  # each round trained only its new runs
    report = (tmp_path / "study" / "report.md").read_text()
    assert "Stopping rule, fixed before the run: the seeds of each compound - row comparison grow" in report
    assert "Round 1: widest half-width" in report and f"grew depth only to {seeds['depth only']}" in report
    assert f"| depth only | 3.67 | 1 | 1 (64) | 36.86M | -1.6% | {seeds['depth only']} |" in report  # each network's seeds
    capped = run_study(TINY, out_dir=tmp_path / "capped", until_half_width=0.01, max_seeds=3, budget_minutes=0, **options)
    assert {len(p.scores) for p in capped.points if p.label == "depth only"} == {3} and not capped.stopping["met"]
    assert "3 seeds reached" in capped.stopping["reason"]
    with pytest.raises(ValueError, match="needs the table3 part"):
        run_study(TINY, out_dir=tmp_path / "x", until_half_width=4.0, **{**options, "parts": ("fig3",)})


def test_the_stopping_rule_keeps_to_its_time_budget(tmp_path):
    options = {"workers": 1, "parts": ("table3",), "progress": False, "log": None, "evaluate": noisy_training}
    result = run_study(TINY, out_dir=tmp_path / "study", **options)  # 2 fixed seeds: depth only's spread unresolved
    keys = {p.label: p.key for p in result.points}
    minute = {key: 60.0 for key in keys.values()}  # every run a minute
    _, unbounded = stopping_decision(result, 4.0, 40, run_seconds=minute, workers=2)
    assert unbounded == {keys["depth only"]: 5, keys["compound"]: 5}  # what the spread asks for
    # 90 s on 2 workers: one more seed of each of the two networks (2 one-minute runs side by side), and no more
    record, cut = stopping_decision(result, 4.0, 40, run_seconds=minute, workers=2, seconds_left=90)
    assert cut == {keys["depth only"]: 3, keys["compound"]: 3} and "cut to +1 by the time budget" in record["reason"]
    assert record["estimated_seconds"] == 60.0
    record, none = stopping_decision(result, 4.0, 40, run_seconds=minute, workers=2, seconds_left=59)
    assert none == {} and "time budget" in record["reason"] and not record["met"]
    # runs an earlier invocation finished (a resumed study) cost nothing: seed 2 of both is stored, seed 3 fits
    record, resumed = stopping_decision(result, 4.0, 40, run_seconds=minute, workers=2, seconds_left=90, stored=lambda key: key.endswith("-seed2"))
    assert resumed == {keys["depth only"]: 4, keys["compound"]: 4} and record["estimated_seconds"] == 60.0
    two_targets = run_study(TINY, out_dir=tmp_path / "two", targets=(4.0, 8.0), **options)
    record, _ = stopping_decision(two_targets, 4.0, 40)
    assert {"width only at 37.47M MACs", "width only at 74.95M MACs", "baseline"} <= set(record["seeds"])  # one entry per network
    assert _wall_estimate([60.0, 60.0, 60.0], 2) == 120.0 and _wall_estimate([90.0, 30.0, 30.0, 30.0], 2) == 90.0


def test_the_mini_preset_runs_its_stopping_rule_unless_told_otherwise(tmp_path):
    options = {"workers": 1, "parts": ("table3",), "progress": False, "log": None, "evaluate": noisy_training}
    mini = dataclasses.replace(PRESETS["mini"], seeds=2)
    assert (PRESETS["mini"].until_half_width, PRESETS["mini"].budget_minutes) == (4.0, 28.0)
    grown = run_study(mini, out_dir=tmp_path / "rule", **options)
    assert grown.stopping["met"] and max(len(p.scores) for p in grown.points) > 2
    fixed = run_study(mini, out_dir=tmp_path / "fixed", until_half_width=0, **options)
    assert fixed.stopping is None and {len(p.scores) for p in fixed.points} == {2}
    # fig3 alone has no comparison to resolve: the preset's rule stays out of the way
    assert run_study(mini, out_dir=tmp_path / "fig3", **{**options, "parts": ("fig3",)}).stopping is None


def test_only_the_parts_asked_for(tmp_path):
    out = tmp_path / "study"
    result = run_study(TINY, out_dir=out, workers=1, parts=("table3",), train={"epochs": 7}, progress=False, log=None, evaluate=fake_training)
    assert {p.part for p in result.points} == {"baseline", "matched"}
    report = (out / "report.md").read_text()
    assert "(c) Single dimension against compound" in report and "(a) One dimension" not in report and "(b) Width" not in report
    assert sorted(f.name for f in out.glob("*.png")) == ["table3_matched_macs.png"]
    assert '"epochs": 7' in report  # the report states the budget actually used, overrides included
    with pytest.raises(ValueError, match="unknown part"):
        run_study(TINY, out_dir=tmp_path / "x", parts=("fig5",), progress=False, log=None, evaluate=fake_training)


def test_bad_input_is_explained(tmp_path):
    with pytest.raises(ValueError, match=r"target x0.5 is not above the baseline's .* MACs: scaling up a dimension cannot reach it"):
        run_study(TINY, out_dir=tmp_path / "a", targets=(0.5,), progress=False, log=None, evaluate=fake_training)
    lines: list[str] = []
    with pytest.warns(UserWarning, match="far from 2"):
        run_study(
            dataclasses.replace(TINY, seeds=1, fig4_settings=(), targets=(2.0,)),
            out_dir=tmp_path / "b",
            workers=1,
            alpha=1.5,
            beta=1.3,
            gamma=1.3,
            progress=False,
            log=lines.append,
            evaluate=fake_training,
        )
    assert lines[0].startswith("warning: alpha * beta^2 * gamma^2 = 4.284 is far from 2")
    with pytest.raises(ValueError, match="--seeds must be >= 1"):
        run_study(TINY, out_dir=tmp_path / "c", seeds=0, progress=False, log=None, evaluate=fake_training)


def test_one_real_training_run(tmp_path):
    """The evaluator trains through effnet.train and reports the trained network's MACs (classifier sized for the task)."""
    spec = NetSpec.from_string("ds_r1_k3_s1_e1_c8-ir_r1_k3_s2_e4_c16_se0.25", resolution=32, stem_channels=8, head_channels=64)
    result = evaluate_candidate(
        {
            "spec": spec.to_dict(),
            "train": {"epochs": 1, "train_samples": 64, "val_samples": 32, "batch_size": 16, "num_classes": 3},
            "seed": 1,
            "run_root": str(tmp_path),
        }
    )
    assert 0.0 <= result["top1"] <= 100.0 and result["top1"] == result["score"]
    trained = spec.replace(num_classes=3)
    assert (result["macs"], result["params"]) == (profile_spec(trained).macs, profile_spec(trained).params)
    assert result["resolution"] == 32 and result["pid"] == os.getpid()
    assert list(tmp_path.iterdir()) == []  # the temporary run directory is removed


def test_verdict_says_when_nothing_was_learned():
    from effnet.experiments.study.report import verdict
    from effnet.experiments.study.scaling_study import StudyResult

    baseline = baseline_of(TINY, None, 4)
    points = plan(dataclasses.replace(TINY, width=(), depth=(), resolution=(), fig4_settings=()), baseline)
    for p in points:  # compound 2 points above the others on every seed: a clear, paired win
        p.scores = {s: 27.0 + s + (2.0 if p.label == "compound" else 0.0) for s in range(3)}
    result = StudyResult(TINY, baseline, points, [0, 1, 2], 1.2, 1.1, 1.15, "synthetic")
    lines = verdict(result)
    assert "compound − width only: 2.0 ± 0.0 points top-1 over 3 seeds (the 95% interval excludes 0: compound is better;" in lines[1]
    assert lines[-1].startswith("- Caution: the best network's mean top-1 is 30.0%, within 10 points of chance (25%)")


def test_verdict_names_the_smallest_detectable_difference_and_the_seeds_to_resolve():
    from effnet.experiments.study.report import verdict
    from effnet.experiments.study.scaling_study import StudyResult

    baseline = baseline_of(TINY, None, 4)
    points = plan(dataclasses.replace(TINY, width=(), depth=(), resolution=(), fig4_settings=()), baseline)
    for p in points:  # compound - every row: 0, 10, 20 over seeds 0-2 (mean 10, std 10)
        p.scores = {s: 60.0 + (10.0 * s if p.label == "compound" else 0.0) for s in range(3)}
    lines = verdict(StudyResult(TINY, baseline, points, [0, 1, 2], 1.2, 1.1, 1.15, "shapes"))
    # (t(0.975, 2) + t(0.8, 2)) * 10 / sqrt(3) = (4.302653 + 1.060660) * 5.773503 = 30.97
    assert "compound − width only: 10.0 ± 24.8 points" in lines[1] and "detect 80% of the time: 31.0 points" in lines[1]
    # std 10 needs 27 seeds for a 4-point half-width (test_seeds_for_half_width_is_the_fewest_that_reach_it)
    assert lines[-1].startswith("- Resolution: the widest half-width is 24.8 points") and "about 27 seeds" in lines[-1]


def test_users_dataset_and_baseline(tmp_path):
    """--dataset folder: the classifier is sized for its classes before MACs are matched; --baseline: the user's spec as is."""
    from PIL import Image

    for name in ("cat", "dog", "owl"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(tmp_path / "data" / name / f"{i}.png")
    mine = NetSpec.from_string("ds_r1_k3_s1_e1_c16-ir_r2_k3_s2_e6_c24_se0.25-ir_r2_k5_s2_e6_c40_se0.25", resolution=64, head_channels=320, name="mine")
    result = run_study(
        dataclasses.replace(TINY, seeds=1, train={**TINY.train, "data_on_device": True}),  # a GPU preset's on-device data: generated tasks only
        out_dir=tmp_path / "study",
        baseline_spec=mine,
        dataset="folder",
        data_dir=str(tmp_path / "data"),
        parts=("table3",),
        workers=1,
        progress=False,
        log=None,
        evaluate=fake_training,
    )
    assert result.baseline == mine.replace(num_classes=3)
    identity = json.loads((tmp_path / "study" / "trials.json").read_text())["identity"]
    assert identity["train"]["dataset"] == "folder" and identity["baseline"]["num_classes"] == 3
    assert "data_on_device" not in identity["train"]  # real images go through the loader
    base = profile_spec(mine.replace(num_classes=3)).macs
    assert {p.target_macs for p in result.part("matched")} == {round(4.0 * base)}  # 4x the 3-class baseline's MACs


def test_cli_study_resumes_from_its_directory_alone(tmp_path, capsys, monkeypatch):
    """`effnet study scaling --resume DIR`: the saved options are used; a changed one is refused, naming it; --seeds may grow."""
    import argparse
    import functools

    from effnet.experiments.saved_options import ResumeError
    from effnet.experiments.study import scaling_study
    from effnet.experiments.study.commands import add_study_commands

    monkeypatch.setitem(PRESETS, "tiny", dataclasses.replace(TINY, seeds=1))
    monkeypatch.setattr(scaling_study, "run_study", functools.partial(run_study, evaluate=fake_training))

    def cli(*argv: str) -> int:
        parser = argparse.ArgumentParser(prog="effnet")
        sub = parser.add_subparsers(dest="command")

        def command(name, handler, summary, description, epilog=""):
            p = sub.add_parser(name, help=summary, description=description, epilog=epilog)
            p.set_defaults(handler=handler)
            return p

        add_study_commands(command)
        args = parser.parse_args(["study", "scaling", *argv])
        return args.handler(args)

    out = tmp_path / "study"
    assert cli("--preset", "tiny", "--parts", "table3", "--alpha", "1.2", "--epochs", "3", "--workers", "1", "--no-progress", "--out-dir", str(out)) == 0
    first = json.loads((out / "trials.json").read_text())["trials"]
    assert len(first) == 5  # baseline + 3 single dimensions + compound, one seed
    capsys.readouterr()
    assert cli("--resume", str(out)) == 0  # nothing else given: preset, parts, epochs, workers come from the run
    assert "(5 already done)" in capsys.readouterr().err
    assert json.loads((out / "trials.json").read_text())["trials"] == first
    with pytest.raises(ResumeError, match=r"other settings \(--preset: saved tiny, given mini; --epochs: saved 3, given 4\)"):
        cli("--resume", str(out), "--preset", "mini", "--epochs", "4")
    assert cli("--resume", str(out), "--seeds", "2") == 0  # the study grows: a second seed for every network
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert len(trials) == 10 and trials[:5] == first
    assert json.loads((out / "options.json").read_text())["options"]["seeds"] == 2  # the next resume keeps two seeds
    with pytest.raises(TrialsError, match="holds no study to continue"):
        run_study(TINY, out_dir=tmp_path / "none", resume=True, progress=False, log=None, evaluate=fake_training)


def record_options(params: dict) -> dict:
    """fake_training that also returns the training options it was given (module-level for worker processes)."""
    return {**fake_training(params), "train": params["train"]}


def test_the_study_runs_on_the_shapes_task_with_the_presets_classes(tmp_path):
    result = run_study(TINY, out_dir=tmp_path / "s", workers=1, parts=("table3",), dataset="shapes", progress=False, log=None, evaluate=record_options)
    trained = json.loads((tmp_path / "s" / "trials.json").read_text())["trials"]
    assert {(t["result"]["train"]["dataset"], t["result"]["train"]["num_classes"]) for t in trained} == {("shapes", TINY.num_classes)}
    assert result.points[0].spec.num_classes == TINY.num_classes == 4  # the classifier is sized for the preset's classes


def test_the_mini_preset_trains_on_shapes_unless_told_otherwise(tmp_path):
    """The mini preset's task is shapes (4 classes, batch 32: at batch 16 its baseline stays near chance); --dataset overrides it."""
    mini = PRESETS["mini"]
    assert (mini.dataset, mini.num_classes, mini.train["batch_size"], mini.seeds, mini.train.get("data_on_device")) == ("shapes", 4, 32, 3, None)
    run_study(TINY, out_dir=tmp_path / "own", workers=1, parts=("table3",), progress=False, log=None, evaluate=record_options)
    trained = json.loads((tmp_path / "own" / "trials.json").read_text())["trials"]
    assert {t["result"]["train"]["dataset"] for t in trained} == {"shapes"}
    run_study(TINY, out_dir=tmp_path / "synth", workers=1, parts=("table3",), dataset="synthetic", progress=False, log=None, evaluate=record_options)
    trained = json.loads((tmp_path / "synth" / "trials.json").read_text())["trials"]
    assert {t["result"]["train"].get("dataset", "synthetic") for t in trained} == {"synthetic"}


def test_kendall_tau_b_matches_hand_counts_and_its_bootstrap_brackets_it():
    from effnet.experiments.study.stats import kendall_tau_b, kendall_tau_interval

    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant pairs, 1 discordant
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(3 * 2))  # a tie in x: tau-b's correction
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0 and math.isnan(kendall_tau_b([1, 1], [2, 2]))
    x = [0.1, 0.4, 0.35, 0.8, 0.5, 0.9, 0.2, 0.6]
    y = [0.2, 0.5, 0.3, 0.7, 0.65, 0.95, 0.1, 0.4]
    low, high = kendall_tau_interval(x, y, draws=500)
    assert -1 <= low < kendall_tau_b(x, y) < high <= 1
    assert all(math.isnan(v) for v in kendall_tau_interval([1, 2, 3], [5, 5, 5], draws=20))
