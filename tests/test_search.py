"""Architecture search: space, reward, strategies, resumable runner, executors, bad input."""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from effnet.core.profile import measure, profile_spec
from effnet.core.spec import NetSpec
from effnet.core.zoo import get_spec
from effnet.data import DataError
from effnet.experiments.saved_options import ResumeError
from effnet.experiments.search import (
    DIMENSIONS,
    EvaluatorConfig,
    Reward,
    SearchConfig,
    SearchError,
    SearchSpace,
    SearchSpaceError,
    b0_encoding,
    default_space,
    make_strategy,
    run_search,
)
from effnet.experiments.search.commands import add_search_commands
from effnet.experiments.search.evaluators import score_candidate
from effnet.experiments.search.report import pareto_front
from effnet.experiments.search.space import parse_op
from effnet.models.model import build

# EfficientNet-B0 in the default space: per stage (op, kernel, se, skip, filters, layers) as choice indices;
# ops are (cv, ds, ir3, ir6), kernels (3, 5), se (0, 0.25), skip (yes, no), filters (0.75, 1, 1.25), layers (-1, 0, +1).
B0_ENCODING = (
    (1, 0, 1, 0, 1, 1),  # ds  k3 se0.25 skip x1.0 +0: MBConv1 k3x3, 16 ch, 1 layer
    (3, 0, 1, 0, 1, 1),  # ir6 k3 ... 24 ch, 2 layers
    (3, 1, 1, 0, 1, 1),  # ir6 k5 ... 40 ch, 2 layers
    (3, 0, 1, 0, 1, 1),  # ir6 k3 ... 80 ch, 3 layers
    (3, 1, 1, 0, 1, 1),  # ir6 k5 ... 112 ch, 3 layers
    (3, 1, 1, 0, 1, 1),  # ir6 k5 ... 192 ch, 4 layers
    (3, 0, 1, 0, 1, 1),  # ir6 k3 ... 320 ch, 1 layer
)


def toy_config(space: SearchSpace, strategy: str = "random", trials: int = 24, **changes) -> SearchConfig:
    """A search scored by the toy objective (fraction of decisions equal to a known target), reward = accuracy (w = 0)."""
    target = [i % n for i, n in enumerate(space.sizes)]
    evaluator = EvaluatorConfig(kind="toy", toy_target=target, resolution=32, **changes.pop("evaluator", {}))
    values = {
        "strategy": strategy,
        "trials": trials,
        "batch_size": 4,
        "seed": 3,
        "target_macs": 1e6,
        "w": 0.0,
        "space": space.to_dict(),
        "evaluator": evaluator,
    }
    return SearchConfig(**{**values, **changes})


def small_space() -> SearchSpace:
    """A narrower space (no cv, one kernel) so toy searches and proxies stay quick."""
    return SearchSpace.from_dict({"skeleton": "efficientnet_b0", "choices": {"op": ["ds", "ir3", "ir6"], "kernel": [3], "filters": [0.75, 1.0]}})


def quiet(line: str) -> None:
    pass


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: one thread is as fast as two, and much faster when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ space
def test_default_space_size_and_b0_is_a_point():
    space = default_space()
    assert space.sizes == (4, 2, 2, 2, 3, 3) * 7
    assert space.size == (4 * 2 * 2 * 2 * 3 * 3) ** 7  # 288^7 = 1.6e17
    flat = tuple(v for stage in B0_ENCODING for v in stage)
    assert b0_encoding() == flat
    b0 = get_spec("efficientnet_b0")
    assert space.decode(flat).to_string() == b0.to_string()
    assert space.decode(flat).stem_channels == b0.stem_channels and space.decode(flat).head_channels == b0.head_channels


def test_random_encodings_decode_to_valid_specs():
    space = default_space()
    rng = random.Random(0)
    b0 = get_spec("efficientnet_b0")
    seen_ops = set()
    for _ in range(300):
        encoding = [rng.randrange(n) for n in space.sizes]
        spec = space.decode(encoding)
        assert [s.stride for s in spec.stages] == [s.stride for s in b0.stages]  # strides fixed
        for stage, base, choice in zip(spec.stages, b0.stages, space.describe(encoding), strict=True):
            assert stage.repeats == max(1, base.repeats + choice["layers"])
            assert stage.out_channels % 8 == 0 and stage.out_channels >= 0.9 * base.out_channels * choice["filters"]
            seen_ops.add(choice["op"])
        assert profile_spec(spec).macs > 0
        assert space.decode(space.encode(spec)) == spec  # encode inverts decode (up to equal networks)
    assert seen_ops == {"cv", "ds", "ir3", "ir6"}


def test_a_handful_of_decoded_specs_build_and_run_with_the_profiled_macs():
    space = default_space(resolution=32, num_classes=3)
    rng = random.Random(1)
    for index in range(4):
        encoding = [rng.randrange(n) for n in space.sizes]
        encoding[0] = index  # each op in the first stage at least once
        spec = space.decode(encoding)
        model = build(spec).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 3) and torch.isfinite(out).all()
        params, macs = measure(model, 32)
        profile = profile_spec(spec)
        assert (params, macs) == (profile.params, profile.macs)


def test_mbconv_with_expansion_one_is_the_depthwise_separable_block():
    assert parse_op("ir1") == ("ds", 1.0) and parse_op("ir6") == ("ir", 6.0) and parse_op("cv") == ("cv", 1.0)
    space = SearchSpace.from_dict({"choices": {"op": ["ir1", "ir6"]}})
    assert space.decode([0] * space.num_decisions).stages[0].block == "ds"
    with pytest.raises(SearchSpaceError, match="same network twice"):
        SearchSpace.from_dict({"choices": {"op": ["ds", "ir1"]}})


def test_space_file_with_global_and_per_stage_choices(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        textwrap.dedent(
            """
            skeleton: efficientnet_b0
            resolution: 96
            choices:
              op: [ds, ir3, ir6]
              kernel: [3, 5, 7]
            stages:
              1: {op: [ds], layers: [0]}
              7: {filters: [1.0]}
            """
        )
    )
    space = SearchSpace.from_file(path)
    per_stage = [math.prod(s.sizes()) for s in space.stages]
    assert per_stage[0] == 1 * 3 * 2 * 2 * 3 * 1 and per_stage[1] == 3 * 3 * 2 * 2 * 3 * 3 and per_stage[6] == 3 * 3 * 2 * 2 * 1 * 3
    assert space.size == math.prod(per_stage)
    assert space.decode([0] * space.num_decisions).resolution == 96
    json_path = tmp_path / "space.json"
    json_path.write_text(json.dumps(space.to_dict()))
    assert SearchSpace.from_file(json_path) == space


@pytest.mark.parametrize(
    "choices, message",
    [
        ({"op": ["ds", "conv7"]}, "unknown op 'conv7'"),
        ({"kernel": []}, "empty choice list"),
        ({"kernels": [3]}, "unknown dimension"),
        ({"kernel": [4]}, "odd integers"),
    ],
)
def test_bad_space_files_give_clear_messages(tmp_path, choices, message):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"choices": choices}))
    with pytest.raises(SearchSpaceError, match=message) as info:
        SearchSpace.from_file(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------ reward
def test_reward_formula_soft_and_hard():
    target = 400e6
    soft = Reward.soft(target)
    assert soft(0.8, target) == pytest.approx(0.8)
    assert soft(0.8, 2 * target) == pytest.approx(0.8 * 2**-0.07) and pytest.approx(0.9526, abs=1e-4) == 2**-0.07
    assert soft(0.8, target / 2) == pytest.approx(0.8 * 2**0.07)
    # the soft reward ranks models the same for any T: T only scales every reward by T^0.07
    assert soft(0.7, 3e8) / soft(0.6, 5e8) == pytest.approx(Reward.soft(1e6)(0.7, 3e8) / Reward.soft(1e6)(0.6, 5e8))
    hard = Reward.hard(target)
    assert hard(0.8, target / 4) == pytest.approx(0.8) and hard(0.8, target) == pytest.approx(0.8)
    assert hard(0.8, 2 * target) == pytest.approx(0.4)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="target MACs must be a positive number"):
            Reward.soft(bad)


# ------------------------------------------------------------------ strategies
def toy_objective(sizes):
    target = [i % n for i, n in enumerate(sizes)]
    return lambda e: sum(a == b for a, b in zip(e, target, strict=True)) / len(e)


@pytest.mark.parametrize("name", ["ppo", "reinforce", "random", "evolution"])
def test_each_strategy_improves_over_its_first_batch_on_a_known_optimum(name):
    sizes = default_space().sizes
    score = toy_objective(sizes)  # optimum 1.0 at the target encoding; a uniform sample scores ~0.39 on average
    strategy = make_strategy(name, sizes, seed=0)
    batches = []
    entropies = [strategy.entropy()] if name in ("ppo", "reinforce") else []
    for _ in range(40):
        batch = strategy.ask(8)
        batches.append([score(e) for e in batch])
        strategy.tell(batch, batches[-1])
    if entropies:
        entropies.append(strategy.entropy())
    first_best, best = max(batches[0]), max(max(b) for b in batches)
    late_mean = sum(sum(b) for b in batches[-5:]) / 40
    assert best > first_best
    if name == "random":
        assert abs(late_mean - sum(batches[0]) / 8) < 0.15  # random does not learn: it only gets lucky
    else:
        assert late_mean > sum(batches[0]) / 8 + 0.15  # the sampling distribution moved towards the optimum
    if name in ("ppo", "reinforce"):
        uniform = sum(math.log(n) for n in sizes)
        assert entropies[0] == pytest.approx(uniform, rel=1e-3)  # the controller starts uniform
        assert entropies[-1] < 0.8 * entropies[0]  # and concentrates its sampling as it learns


@pytest.mark.parametrize("name", ["ppo", "reinforce", "random", "evolution"])
def test_strategy_state_round_trips_through_a_weights_only_file(name, tmp_path):
    sizes = small_space().sizes
    score = toy_objective(sizes)
    a = make_strategy(name, sizes, seed=5, **({"population": 6, "sample": 2} if name == "evolution" else {}))
    for _ in range(3):
        batch = a.ask(4)
        a.tell(batch, [score(e) for e in batch])
    torch.save(a.state_dict(), tmp_path / "s.pt")
    b = make_strategy(name, sizes, seed=99, **({"population": 6, "sample": 2} if name == "evolution" else {}))
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    for _ in range(3):
        batch_a, batch_b = a.ask(4), b.ask(4)
        assert batch_a == batch_b
        a.tell(batch_a, [score(e) for e in batch_a])
        b.tell(batch_b, [score(e) for e in batch_b])


def test_zero_cost_warm_start_seeds_every_strategy():
    sizes = default_space().sizes
    score = toy_objective(sizes)
    rng = random.Random(0)
    encodings = [tuple(rng.randrange(n) for n in sizes) for _ in range(64)]
    scores = [score(e) for e in encodings]
    best_first = sorted(encodings, key=score, reverse=True)
    for name in ("random", "evolution"):
        strategy = make_strategy(name, sizes, seed=0, **({"population": 6, "sample": 2} if name == "evolution" else {}))
        strategy.warm_start(encodings, scores, keep=6)
        assert [score(e) for e in strategy.ask(4) + strategy.ask(2)] == [score(e) for e in best_first[:6]]  # the 6 best come first
        assert strategy.queue == []
    for name in ("ppo", "reinforce"):
        cold, warm = make_strategy(name, sizes, seed=0), make_strategy(name, sizes, seed=0)
        warm.warm_start(encodings, scores, keep=8)  # pretrained on the ranks of the cheap scores
        mean = lambda strategy: sum(score(e) for e in strategy.ask(200)) / 200  # noqa: E731
        assert mean(warm) > mean(cold) + 0.03
        assert warm.baseline is None  # the real rewards start their own baseline


# ------------------------------------------------------------------ runner
def test_search_writes_reports_and_never_retrains_a_repeat(tmp_path):
    # a space of 4 architectures: a 12-trial search must repeat some, and each is evaluated once
    only = {"kernel": [3], "se": [0.25], "skip": [True], "filters": [1.0], "layers": [0]}
    space = SearchSpace.from_dict({"choices": {"op": ["ds", "ir6"], **only}, "stages": {str(i): {"op": ["ir6"]} for i in range(3, 8)}})
    assert space.size == 4
    calls = []

    def counted(params):
        calls.append(params["spec"]["stages"])
        return score_candidate(params)

    result = run_search(toy_config(space, "evolution", trials=12, strategy_options={"population": 4, "sample": 2}), tmp_path, fn=counted, log=quiet)
    keys = [r["key"] for r in result.history]
    assert len(keys) == 12 and len(calls) == len(set(keys)) <= 4
    assert [r["cached"] for r in result.history] == [k in keys[:i] for i, k in enumerate(keys)]
    assert result.best["reward"] == max(r["reward"] for r in result.history)
    best = NetSpec.load(tmp_path / "best_spec.json")
    assert best.to_string() == result.best["key"]
    for name in ("summary.md", "top.md", "history.csv", "rewards.png", "pareto.png", "trials.json", "state.pt", "search.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "Best architecture" in (tmp_path / "summary.md").read_text()


def test_pareto_front():
    records = [{"macs": m, "accuracy": a} for m, a in [(1, 0.5), (2, 0.4), (2, 0.6), (3, 0.6), (4, 0.9), (5, 0.1)]]
    assert [(r["macs"], r["accuracy"]) for r in pareto_front(records)] == [(1, 0.5), (2, 0.6), (4, 0.9)]


def test_failed_candidates_are_recorded_and_the_search_goes_on(tmp_path):
    space = small_space()
    result = run_search(toy_config(space, "ppo", trials=16, evaluator={"toy_fail_first": 0}), tmp_path, log=quiet)
    failed = [r for r in result.history if r["status"] == "failed"]
    assert len(result.history) == 16 and failed and len(failed) < 16
    assert all(r["reward"] is None and r["accuracy"] is None and "simulated failure" in r["error"] for r in failed)
    assert all(r["encoding"][0] == 0 for r in failed)
    assert all(r["reward"] is not None for r in result.history if r["encoding"][0] != 0)


def _search_script(directory: Path, config: SearchConfig) -> str:
    return textwrap.dedent(
        f"""
        import json
        from effnet.experiments.search import SearchConfig, run_search
        config = SearchConfig.from_dict(json.loads({json.dumps(json.dumps(config.to_dict()))}))
        run_search(config, {str(directory)!r}, log=lambda line: None, report=False)
        """
    )


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_trials_of_an_uninterrupted_run(tmp_path):
    config = toy_config(small_space(), "ppo", trials=40, evaluator={"toy_sleep": 0.03})
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", _search_script(killed, config)])
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                done = len(json.loads((killed / "trials.json").read_text())["trials"])
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= 10:  # mid-search, most likely mid-batch
                break
            assert process.poll() is None, "the search ended before it could be killed"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    stored_before = len(json.loads((killed / "trials.json").read_text())["trials"])
    assert 10 <= stored_before < 40
    resumed = run_search(None, killed, resume=True, log=quiet, report=False)
    straight = run_search(config, tmp_path / "straight", log=quiet, report=False)
    pairs = lambda result: [(r["key"], r["reward"], r["cached"]) for r in result.history]  # noqa: E731
    assert pairs(resumed) == pairs(straight)
    assert resumed.evaluated == len({r["key"] for r in resumed.history}) - stored_before  # none lost, none redone
    stored = json.loads((killed / "trials.json").read_text())["trials"]
    assert sorted(t["key"] for t in stored) == sorted({r["key"] for r in straight.history})


@pytest.mark.slow
def test_local_processes_and_ray_give_the_same_search(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed")
    del ray
    config = toy_config(small_space(), "evolution", trials=8, batch_size=4, strategy_options={"population": 4, "sample": 2})
    here = run_search(config, tmp_path / "here", log=quiet, report=False)
    on_ray = run_search(config, tmp_path / "ray", workers=2, ray_address="local", threads_per_worker=1, log=quiet, report=False)
    pairs = lambda result: [(r["key"], r["reward"]) for r in result.history]  # noqa: E731
    assert pairs(on_ray) == pairs(here)


# ------------------------------------------------------------------ evaluators
def test_proxy_training_and_naswot_score_a_real_candidate():
    space = SearchSpace.from_dict({"choices": {"op": ["ds"], "kernel": [3], "se": [0.0], "skip": [True], "filters": [0.75], "layers": [-1]}})
    spec = space.decode([0] * space.num_decisions).replace(resolution=32, num_classes=3)
    proxy = EvaluatorConfig(kind="proxy", num_classes=3, resolution=32, train_samples=32, val_samples=24, epochs=1, batch_size=16)
    result = score_candidate({"evaluator": proxy.to_dict(), "spec": spec.to_dict(), "encoding": []})
    assert 0 <= result["accuracy"] <= 1 and round(result["accuracy"] * 24) == pytest.approx(result["accuracy"] * 24)
    # the proxy evaluator's one result type, shared with the grid search and the study: top-1 in percent, cost, the spec
    assert result["top1"] == pytest.approx(100 * result["accuracy"]) and result["curve"] == [result["top1"]]
    assert (result["spec"], result["macs"], result["params"]) == (spec.to_string(), profile_spec(spec).macs, profile_spec(spec).params)
    naswot = EvaluatorConfig(kind="naswot", num_classes=3, resolution=32, naswot_batch=8)
    score = score_candidate({"evaluator": naswot.to_dict(), "spec": spec.to_dict(), "encoding": []})["accuracy"]
    # K is PSD with every diagonal entry = the number of units U, so Hadamard's inequality bounds log|K| by 8 log U
    counted = []
    model = build(spec).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.SiLU):
            module.register_forward_pre_hook(lambda module, inputs: counted.append(inputs[0][0].numel()))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    units = sum(counted)
    assert 0 < score <= 8 * math.log(units) + 1e-6


# ------------------------------------------------------------------ bad input
def test_target_zero_and_unreadable_dataset_fail_before_anything_is_written(tmp_path):
    space = small_space()
    with pytest.raises(SearchError, match="target MACs must be a positive number"):
        toy_config(space, target_macs=0)
    proxy = EvaluatorConfig(kind="proxy", dataset="folder", data_dir=str(tmp_path / "no-such-dir"))
    out = tmp_path / "out"
    with pytest.raises(DataError, match="cannot read the 'folder' dataset"):
        run_search(SearchConfig(trials=2, space=space.to_dict(), evaluator=proxy), out, log=quiet)
    assert not out.exists()


def test_resume_of_a_different_search_is_refused_and_changes_nothing(tmp_path):
    space = small_space()
    run_search(toy_config(space, "random", trials=8), tmp_path, log=quiet, report=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(SearchError, match=r"different search: seed \(saved 3, now 4\)"):
        run_search(toy_config(space, "random", trials=8, seed=4), tmp_path, resume=True, log=quiet)
    with pytest.raises(SearchError, match="already holds a search"):
        run_search(toy_config(space, "random", trials=8), tmp_path, log=quiet)
    with pytest.raises(SearchError, match="holds no search to resume"):
        run_search(None, tmp_path / "empty", resume=True, log=quiet)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # a larger budget is allowed: the search goes on from where it stopped
    longer = run_search(toy_config(space, "random", trials=12), tmp_path, resume=True, log=quiet, report=False)
    assert len(longer.history) == 12 and longer.evaluated == len({r["key"] for r in longer.history}) - 8


# ------------------------------------------------------------------ CLI
def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="effnet")
    sub = parser.add_subparsers(dest="command")

    def command(name, handler, summary, description, epilog=""):
        p = sub.add_parser(name, help=summary, description=description, epilog=epilog)
        p.set_defaults(handler=handler)
        return p

    add_search_commands(command)
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_search_with_zero_cost_score_and_resume(tmp_path, capsys):
    out = tmp_path / "search"
    space_file = tmp_path / "space.json"  # small nets, so the zero-cost scores take little time
    space_file.write_text(json.dumps({"choices": {"op": ["ds", "ir3"], "filters": [0.75], "layers": [-1]}}))
    argv = ["search", "--strategy", "evolution", "--evaluator", "naswot", "--space", str(space_file), "--resolution", "32", "--num-classes", "3"]
    argv += [
        "--trials",
        "3",
        "--batch-size",
        "2",
        "--target-macs",
        "5e6",
        "--warm-start",
        "3",
        "--population",
        "2",
        "--tournament",
        "1",
        "--threads-per-worker",
        "1",
    ]
    assert _cli([*argv, "--out-dir", str(out)]) == 0
    assert "best reward" in capsys.readouterr().out
    # the warm start scored 3 random nets; evolution's initial population (2) is the best two of them
    warm = json.loads((out / "warm_start" / "trials.json").read_text())["trials"]
    ranked = [t["key"] for t in sorted(warm, key=lambda t: -t["result"]["accuracy"])]
    history = [line.split(",")[-2] for line in (out / "history.csv").read_text().splitlines()[1:]]
    assert len(warm) == 3 and history[:2] == ranked[:2]
    spec = NetSpec.load(out / "best_spec.json")
    assert spec.resolution == 32 and spec.num_classes == 3
    assert SearchSpace.from_file(space_file).encode(spec)  # the best net is a point of the space
    # the best spec is what `effnet scale` and `effnet train --spec` read
    from effnet.cli import main
    from effnet.train.config import TrainConfig
    from effnet.train.network import make_model

    assert main(["scale", str(out / "best_spec.json"), "--phi", "0.5"]) == 0
    model = make_model(TrainConfig(spec=str(out / "best_spec.json")), 3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert _cli(["search", "--resume", str(out), "--trials", "4"]) == 0
    assert len(json.loads((out / "search.json").read_text())) and len(json.loads((out / "trials.json").read_text())["trials"]) <= 4
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 4
    # given again, an option must equal the saved one: the refusal names it, saved and given, in one short line
    with pytest.raises(ResumeError, match=r"other settings \(--strategy: saved evolution, given random\); leave the option\(s\) out"):
        _cli(["search", "--resume", str(out), "--strategy", "random"])
    assert _cli(["search", "--out-dir", str(out), "--resume", "--evaluator", "naswot"]) == 0  # the bare form, with an equal option
    # a search saved before options.json: only search.json decides (the defaults do not count as given)
    (out / "options.json").unlink()
    assert _cli(["search", "--resume", str(out)]) == 0
    assert not (out / "options.json").exists()
    with pytest.raises(SearchError, match=r"different search: strategy \(saved evolution, now random\)"):
        _cli(["search", "--resume", str(out), "--strategy", "random"])
    with pytest.raises(SearchError, match="target MACs must be a positive number"):
        _cli(["search", "--target-macs", "0", "--out-dir", str(tmp_path / "zero")])
    assert not (tmp_path / "zero").exists()


def test_dimension_names_are_stable():
    # the encoding order is part of saved searches: changing it would silently scramble them
    assert DIMENSIONS == ("op", "kernel", "se", "skip", "filters", "layers")


def test_accuracy_printed_in_percent_and_a_ranking_of_ties_is_flagged(tmp_path, capsys):
    """The issue's case: every trial at 10% on 10 classes; the best is just the cheapest net, and the search says so."""
    lines: list[str] = []
    proxy = EvaluatorConfig(kind="proxy", resolution=32, val_samples=500)
    config = SearchConfig(strategy="random", trials=4, batch_size=2, seed=1, space=small_space().to_dict(), evaluator=proxy, target_macs=5e6)
    result = run_search(config, tmp_path, fn=lambda params: {"accuracy": 0.1}, log=lines.append)
    assert all("top-1 10.00%" in line for line in lines) and len(lines) == 4
    assert "(top-1 10.00%, " in result.summary()
    # chance is 10%; 500 validation images give it a standard error of 1.34 points: the margin is 2.7 points
    assert result.warning.startswith("every architecture scored within 2.7 points of chance (10.0%; best 10.00%): the ranking says nothing")
    assert f"**Warning:** {result.warning}." in (tmp_path / "summary.md").read_text()
    assert "| top-1 % |" in (tmp_path / "top.md").read_text() and "| 10.00 |" in (tmp_path / "top.md").read_text()
    learned = run_search(config, tmp_path / "learned", fn=lambda params: {"accuracy": 0.5 + 0.1 * params["encoding"][0]}, log=quiet)
    assert learned.warning is None
