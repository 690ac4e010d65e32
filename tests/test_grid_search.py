"""The α/β/γ grid search: the grid, the known best on a fake task, parallel workers, resume after SIGKILL, bad input."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from effnet.core.spec import NetSpec, SpecError
from effnet.experiments.saved_options import ResumeError, short
from effnet.experiments.study.grid import grid_candidates, grid_search
from effnet.experiments.trials import TrialsError

TESTS = Path(__file__).parent
# a small baseline: the grid search never builds it when the evaluator is fake
BASELINE = NetSpec.from_string("ds_r1_k3_s1_e1_c16-ir_r2_k3_s2_e6_c24_se0.25-ir_r3_k5_s2_e6_c40_se0.25", resolution=96, head_channels=320, num_classes=4)
OPTIMUM = (1.2, 1.1, 1.15)  # on the 0.05 grid, α·β²·γ² = 1.92: inside a 0.1 tolerance


def fake_accuracy(params: dict) -> dict:
    """A task whose answer is known: accuracy peaks at (d, w, r) = OPTIMUM (module-level: worker processes import it)."""
    d, w, r = params["depth"], params["width"], params["resolution"]
    top1 = 90.0 - 100.0 * ((d - OPTIMUM[0]) ** 2 + (w - OPTIMUM[1]) ** 2 + (r - OPTIMUM[2]) ** 2) + 0.01 * params["seed"]
    log = params["train"].get("log")
    if log:
        time.sleep(params["train"].get("sleep", 0.0))
        with open(log, "a") as handle:  # one line per finished evaluation; O_APPEND keeps lines whole
            handle.write(json.dumps({"a": params["alpha"], "b": params["beta"], "g": params["gamma"], "pid": os.getpid()}) + "\n")
    return {"top1": top1, "macs": 1000}


def timed(params: dict) -> dict:
    """Records which process ran a candidate and when."""
    start = time.time()
    time.sleep(0.6)
    return {"top1": params["alpha"], "pid": os.getpid(), "start": start, "end": time.time()}


def brute_force(step: float, tolerance: float) -> set[tuple[float, float, float]]:
    """The grid by a different route: every point of a box, filtered."""
    values = [round(1 + k * step, 6) for k in range(int(1.5 / step) + 2)]
    return {(a, b, g) for a in values for b in values for g in values if abs(a * b * b * g * g - 2) <= tolerance + 1e-9}


def test_grid_is_every_point_under_the_constraint():
    grid = grid_candidates(step=0.05, tolerance=0.05)
    assert {tuple(round(v, 6) for v in c) for c in grid} == brute_force(0.05, 0.05)
    assert len(grid) == len(set(grid)) > 20  # no point twice
    assert all(min(c) >= 1 and abs(c[0] * c[1] ** 2 * c[2] ** 2 - 2) <= 0.05 + 1e-9 for c in grid)
    assert (1.2, 1.1, 1.15) in grid_candidates(step=0.05, tolerance=0.1)  # the paper's answer is on the grid
    assert {tuple(round(v, 6) for v in c) for c in grid_candidates(step=0.1, tolerance=0.1)} == brute_force(0.1, 0.1)


def test_finds_the_known_best_and_ranks(tmp_path, capsys):
    result = grid_search(BASELINE, evaluate=fake_accuracy, step=0.05, tolerance=0.1, workers=1, progress=False, out_dir=tmp_path)
    grid = grid_candidates(step=0.05, tolerance=0.1)
    assert len(result.ranking) == len(grid)
    best = result.best
    assert (best.alpha, best.beta, best.gamma) == OPTIMUM
    assert best.accuracy.mean == pytest.approx(90.0)
    means = [c.accuracy.mean for c in result.ranking]
    assert means == sorted(means, reverse=True)
    assert f"{len(grid)} (α, β, γ) candidates" in capsys.readouterr().out
    saved = json.loads((tmp_path / "grid.json").read_text())
    assert saved["best"] == {"alpha": 1.2, "beta": 1.1, "gamma": 1.15} and saved["candidates"] == len(grid)
    assert "**Best: α = 1.2, β = 1.1, γ = 1.15**" in (tmp_path / "grid.md").read_text()
    # each candidate's spec is the baseline compound-scaled with φ = 1
    from effnet.core.scaling import compound

    assert best.spec == compound(BASELINE, 1.0, *OPTIMUM)


def test_candidates_run_in_parallel_processes(tmp_path):
    result = grid_search(BASELINE, evaluate=timed, step=0.1, tolerance=0.05, workers=2, progress=False, out_dir=tmp_path, log=None)
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    runs = [t["result"] for t in trials]
    assert len(runs) == len(result.ranking) >= 4
    assert len({r["pid"] for r in runs}) == 2 and os.getpid() not in {r["pid"] for r in runs}
    # two candidates were in flight at the same moment (intervals overlap), whatever the speed of the machine
    overlapping = any(a["pid"] != b["pid"] and a["start"] < b["end"] and b["start"] < a["end"] for a in runs for b in runs)
    assert overlapping


SEARCH_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_grid_search import BASELINE, fake_accuracy
    from effnet.experiments.study.grid import grid_search
    grid_search(BASELINE, evaluate=fake_accuracy, step=0.1, tolerance=0.1, workers=1, progress=False, out_dir={out!r},
                resume={resume}, train={{"log": {log!r}, "sleep": 0.25}}, log=None)
    """
)


@pytest.mark.slow
def test_resumes_after_sigkill_without_redoing_finished_candidates(tmp_path):
    out, log = tmp_path / "search", tmp_path / "calls.jsonl"
    script = SEARCH_SCRIPT.format(tests=str(TESTS), out=str(out), log=str(log), resume=False)
    proc = subprocess.Popen([sys.executable, "-c", script])
    state = out / "trials.json"
    deadline = time.time() + 60
    finished_before: list[str] = []
    while time.time() < deadline and proc.poll() is None:
        if state.exists():
            try:
                finished_before = [t["key"] for t in json.loads(state.read_text())["trials"]]
            except json.JSONDecodeError:  # never half-written (atomic), but be safe about the read
                finished_before = []
            if len(finished_before) >= 3:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the search finished before it could be killed; raise the sleep"
    stored = [t["key"] for t in json.loads(state.read_text())["trials"]]
    total = len(grid_candidates(step=0.1, tolerance=0.1))
    assert 3 <= len(stored) < total
    calls_before = len(log.read_text().splitlines())

    # fresh start in the same directory without --resume is refused
    with pytest.raises(TrialsError, match="pass --resume"):
        grid_search(BASELINE, evaluate=fake_accuracy, step=0.1, tolerance=0.1, workers=1, progress=False, out_dir=out, log=None)
    # a different search in the same directory is refused too
    with pytest.raises(TrialsError, match="different study"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tolerance 0.2 warns; not the point here
        grid_search(BASELINE, evaluate=fake_accuracy, step=0.1, tolerance=0.2, workers=1, progress=False, out_dir=out, resume=True, log=None)

    resumed = grid_search(
        BASELINE,
        evaluate=fake_accuracy,
        step=0.1,
        tolerance=0.1,
        workers=1,
        progress=False,
        out_dir=out,
        resume=True,
        train={"log": str(log), "sleep": 0.25},
        log=None,
    )
    calls_after = [json.loads(line) for line in log.read_text().splitlines()[calls_before:]]
    redone = {f"a{c['a']:g}-b{c['b']:g}-g{c['g']:g}-seed0" for c in calls_after} & set(stored)
    assert not redone, f"finished candidates were trained again: {redone}"
    assert len(calls_after) == total - len(stored)
    fresh = grid_search(BASELINE, evaluate=fake_accuracy, step=0.1, tolerance=0.1, workers=1, progress=False, log=None)
    assert [(c.alpha, c.beta, c.gamma, c.accuracy.mean) for c in resumed.ranking] == [(c.alpha, c.beta, c.gamma, c.accuracy.mean) for c in fresh.ranking]


def test_bad_input_is_explained(tmp_path):
    with pytest.raises(SpecError, match="phi must be >= 0"):
        grid_search(BASELINE, evaluate=fake_accuracy, phi=-1, progress=False, log=None)
    with pytest.raises(SpecError, match="phi = 0 scales nothing"):
        grid_search(BASELINE, evaluate=fake_accuracy, phi=0, progress=False, log=None)
    with pytest.raises(ValueError, match=r"grid step must be in \(0, 1\]"):
        grid_candidates(step=0)
    with pytest.raises(ValueError, match="raise --tolerance or lower --step"):
        grid_search(BASELINE, evaluate=fake_accuracy, step=0.3, tolerance=0.001, progress=False, log=None)
    lines: list[str] = []
    with pytest.warns(UserWarning, match="far from 2"):
        grid_search(BASELINE, evaluate=fake_accuracy, step=0.2, tolerance=0.5, workers=1, progress=False, log=lines.append)
    assert any(line.startswith("warning: tolerance 0.5 admits candidates") for line in lines)
    with pytest.raises(TrialsError, match="holds no grid search to continue"):
        grid_search(BASELINE, evaluate=fake_accuracy, step=0.1, tolerance=0.1, progress=False, out_dir=tmp_path / "none", resume=True, log=None)


def _parser() -> argparse.ArgumentParser:
    """The study commands under a parser made the way effnet.cli makes its own."""
    from effnet.experiments.study.commands import add_study_commands

    parser = argparse.ArgumentParser(prog="effnet")
    sub = parser.add_subparsers(dest="command")

    def command(name, handler, summary, description, epilog=""):
        p = sub.add_parser(name, help=summary, description=description, epilog=epilog)
        p.set_defaults(handler=handler)
        return p

    add_study_commands(command)
    return parser


def test_cli_rejects_bad_spec_file_and_negative_phi(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"stages": ["ir_r2_k3_s2_e6_c24_se0.25", "zz_r1"]}')
    args = _parser().parse_args(["grid-search", str(bad), "--out-dir", str(tmp_path / "g")])
    with pytest.raises(SpecError, match=r"bad\.json: bad block kind 'zz'"):
        args.handler(args)
    args = _parser().parse_args(["grid-search", "efficientnet_b0", "--phi", "-0.5"])
    with pytest.raises(SpecError, match="--phi must be >= 0, got -0.5"):
        args.handler(args)
    args = _parser().parse_args(["grid-search", "not_a_model"])
    with pytest.raises(SpecError, match="neither a spec file, a block string nor a model name"):
        args.handler(args)
    args = _parser().parse_args(["grid-search", "efficientnet_b0", "--list", "--step", "0.1", "--tolerance", "0.05"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{len(grid_candidates(0.1, 0.05))} candidates") and "α=1.2" in out


def test_cli_grid_search_trains_real_candidates(tmp_path, capsys, monkeypatch):
    """The command end to end with real (tiny) trainings: ranking printed, best named, files written; then resumed from its directory."""
    monkeypatch.chdir(tmp_path)
    Path("tiny.txt").write_text("ds_r1_k3_s1_e1_c8-ir_r1_k3_s2_e4_c16_se0.25")
    out = tmp_path / "grid"
    settings = ["--resolution-base", "32", "--step", "0.5", "--tolerance", "0.3", "--epochs", "1"]
    settings += ["--train-samples", "32", "--val-samples", "16", "--batch-size", "16"]
    argv = ["grid-search", "tiny.txt", *settings, "--workers", "1", "--no-progress", "--out-dir", str(out)]
    args = _parser().parse_args(argv)
    assert args.handler(args) == 0
    captured = capsys.readouterr()
    assert "warning: tolerance 0.3 admits candidates" in captured.err and "3 (α, β, γ) candidates" in captured.err
    saved = json.loads((out / "grid.json").read_text())
    assert {(c["alpha"], c["beta"], c["gamma"]) for c in saved["ranking"]} == {(2.0, 1.0, 1.0), (1.0, 1.5, 1.0), (1.0, 1.0, 1.5)}
    assert all(c["accuracy"] is not None and 0 <= c["accuracy"]["mean"] <= 100 for c in saved["ranking"])
    by = {(c["alpha"], c["beta"], c["gamma"]): c for c in saved["ranking"]}
    assert by[(1.0, 1.0, 1.5)]["resolution"] == 48 and by[(2.0, 1.0, 1.0)]["spec"].startswith("ds_r2_")
    # the best line names a command that runs as printed, from any directory: the spec file's path is recorded absolute
    best = saved["best"]
    command = f"effnet scale {tmp_path / 'tiny.txt'} --phi 1 --alpha {best['alpha']:g} --beta {best['beta']:g} --gamma {best['gamma']:g}"
    assert f"scale with it: `{command}`" in captured.out
    from effnet.cli import main

    assert main(command.split()[1:]) == 0
    capsys.readouterr()
    # 4 classes, 16 validation images: every candidate is within 2 standard errors (21.7 points) of chance, and the run says so
    assert saved["warning"].startswith("every candidate scored within 21.7 points of chance (25.0%")
    assert f"effnet: warning: {saved['warning']}" in captured.err and saved["warning"] in (out / "grid.md").read_text()

    # --list shows the MACs the result rows show (the classifier sized for the 4 synthetic classes, not ImageNet's 1000)
    args = _parser().parse_args(["grid-search", "tiny.txt", *settings, "--list"])
    assert args.handler(args) == 0
    listed = capsys.readouterr().out
    for c in saved["ranking"]:
        assert f"{c['macs'] / 1e6:9.2f}M MACs" in listed

    # resume from the directory alone: a lost candidate (as after a kill) is trained again, nothing else
    state = json.loads((out / "trials.json").read_text())
    lost = state["trials"].pop()
    (out / "trials.json").write_text(json.dumps(state))
    args = _parser().parse_args(["grid-search", "--resume", str(out)])
    assert args.handler(args) == 0
    assert "resuming: 2 training run(s) already finished" in capsys.readouterr().err
    again = json.loads((out / "trials.json").read_text())["trials"]
    assert [t["key"] for t in again] == [t["key"] for t in state["trials"]] + [lost["key"]]
    assert json.loads((out / "grid.json").read_text())["ranking"] == saved["ranking"]  # the same training: the same results
    # an option given again must equal the saved one; the refusal names it in one short line
    args = _parser().parse_args(["grid-search", "efficientnet_b0", "--out-dir", str(out), "--resume", "--step", "0.05"])
    with pytest.raises(ResumeError) as info:
        args.handler(args)
    spec_file = short(str(tmp_path / "tiny.txt"))  # recorded absolute; a long path is shown by its end
    assert spec_file.endswith("/tiny.txt") and f"(NAME_OR_SPEC: saved {spec_file}, given efficientnet_b0; --step: saved 0.5, given 0.05)" in str(info.value)
    assert len(str(info.value)) < 250 + len(str(out))
