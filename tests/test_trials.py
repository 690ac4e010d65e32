"""The trial runner: results in order, failures recorded, atomic store, resume, parallel workers, Ray."""

from __future__ import annotations

import json
import os
import time

import pytest

from effnet.trials import Trial, TrialsError, TrialStore, run_trials


def square(params: dict) -> dict:
    """Module-level so that worker processes can import it."""
    if params["x"] < 0:
        raise ValueError("negative x")
    time.sleep(params.get("sleep", 0.0))
    return {"score": params["x"] ** 2, "pid": os.getpid(), "start": time.time()}


def items(values):
    return [(f"x={v}", {"x": v}) for v in values]


def test_in_process_results_in_order_and_failures_recorded(tmp_path):
    seen = []
    trials = run_trials(square, items([3, -1, 2, 3]), store=TrialStore(tmp_path, {"study": "t"}), progress=None, on_trial=seen.append)
    assert [t.key for t in trials] == ["x=3", "x=-1", "x=2"]  # the duplicate key ran once
    assert [t.result.get("score") for t in trials] == [9, None, 4]
    assert trials[1].status == "failed" and "ValueError: negative x" in trials[1].error
    assert [t.key for t in seen] == ["x=3", "x=-1", "x=2"]
    saved = json.loads((tmp_path / "trials.json").read_text())
    assert saved["identity"] == {"study": "t"} and len(saved["trials"]) == 3


def test_resume_skips_finished_trials(tmp_path):
    run_trials(square, items([1, 2]), store=TrialStore(tmp_path, {"study": "t"}), progress=None)
    calls = []

    def counting(params):
        calls.append(params["x"])
        return square(params)

    trials = run_trials(counting, items([1, 2, 5]), store=TrialStore(tmp_path, {"study": "t"}), progress=None)
    assert calls == [5]
    assert [t.result["score"] for t in trials] == [1, 4, 25]
    assert [t.index for t in trials] == [0, 1, 2]


def test_store_of_a_different_study_is_refused(tmp_path):
    TrialStore(tmp_path, {"study": "grid", "step": 0.05})
    with pytest.raises(TrialsError, match=r"different study \(step: stored 0.05, now 0.1\)"):
        TrialStore(tmp_path, {"study": "grid", "step": 0.1})
    (tmp_path / "trials.json").write_text("{not json")
    with pytest.raises(TrialsError, match="cannot read trial store"):
        TrialStore(tmp_path, {"study": "grid", "step": 0.05})


def test_non_dict_result_is_a_failure():
    trial = run_trials(lambda p: 3, [("a", {})], progress=None)[0]
    assert trial.status == "failed" and "must return a dict" in trial.error
    assert Trial.from_dict(trial.to_dict()) == trial


def test_process_pool_runs_trials_concurrently(tmp_path):
    trials = run_trials(square, [(f"x={v}", {"x": v, "sleep": 1.5}) for v in (1, 2)], workers=2, store=TrialStore(tmp_path, {"s": 1}), progress=None)
    assert [t.result["score"] for t in trials] == [1, 4]
    pids = {t.result["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids
    # both started before either could have finished: they overlapped
    assert abs(trials[0].result["start"] - trials[1].result["start"]) < 1.5


def test_ray_local_runtime_gives_the_same_results(tmp_path):
    pytest.importorskip("ray")
    trials = run_trials(square, items([1, -2, 3]), workers=2, ray_address="local", store=TrialStore(tmp_path, {"s": 1}), progress=None)
    assert [t.result.get("score") for t in trials] == [1, None, 9]
    assert trials[1].status == "failed" and "negative x" in trials[1].error


def test_bad_options():
    with pytest.raises(TrialsError, match="workers must be >= 1"):
        run_trials(square, items([1]), workers=0)


def test_in_process_threads_are_restored() -> None:
    import torch

    before = torch.get_num_threads()
    seen = run_trials(lambda p: {"threads": torch.get_num_threads()}, [("a", {})], threads_per_worker=1, progress=None)
    assert seen[0].result["threads"] == 1
    assert torch.get_num_threads() == before
