"""The trial runner: results in order, failures recorded, atomic store, resume, parallel workers, Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from effnet.experiments.ranking import ranking_warning
from effnet.experiments.trial_store import stored_identity
from effnet.experiments.trials import Experiment, Trial, TrialsError, TrialStore, evaluator_name, run_trials


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


def test_a_reader_of_a_store_never_writes_it_and_a_driver_reads_its_identity_first(tmp_path):
    """torchrun's other ranks open a store rank 0 writes (writer=False); a driver with its own refusal rule (Noisy
    Student's refuse_changed) reads the stored identity before opening the store."""
    reader = TrialStore(tmp_path / "none", {"study": "demo"}, writer=False)
    reader.add(Trial("a", {}, result={"top1": 1.0}))
    assert "a" in reader and not (tmp_path / "none").exists()  # no directory, no file
    writer = TrialStore(tmp_path, {"study": "demo", "lr": 0.1})
    writer.add(Trial("a", {}, result={"top1": 1.0}))
    before = (tmp_path / "trials.json").read_text()
    reader = TrialStore(tmp_path, {"study": "demo", "lr": 0.1}, writer=False)
    reader.add(Trial("b", {}, result={"top1": 2.0}))
    assert [t.key for t in reader.trials()] == ["a", "b"] and (tmp_path / "trials.json").read_text() == before
    assert stored_identity(tmp_path) == {"study": "demo", "lr": 0.1}
    (tmp_path / "trials.json").write_text(before[: before.index('"key"')])  # torn inside the first trial: the identity is kept
    assert stored_identity(tmp_path) == {"study": "demo", "lr": 0.1}


def test_the_experiment_skeleton_opens_by_identity_runs_and_resumes(tmp_path):
    out = tmp_path / "exp"
    identity = {"study": "demo", "evaluator": evaluator_name(square)}
    with pytest.raises(TrialsError, match=r"--resume: .* holds no demo study to continue \(no trials.json\); drop --resume"):
        Experiment.open(out, identity, what="demo study", resume=True)
    first = Experiment.open(out, identity, what="demo study", options={"command": "demo", "options": {}})
    assert json.loads((out / "options.json").read_text())["command"] == "demo"
    assert {k: t.result["score"] for k, t in first.run(square, items([2, 3])).items()} == {"x=2": 4, "x=3": 9}
    first.write("result.txt", "done\n")
    assert (out / "result.txt").read_text() == "done\n"
    with pytest.raises(TrialsError, match=r"already holds a demo study \(.*trials.json\); pass --resume"):
        Experiment.open(out, identity, what="demo study")
    with pytest.raises(TrialsError, match="different study"):
        Experiment.open(out, {**identity, "study": "other"}, what="demo study", resume=True)
    again = Experiment.open(out, identity, what="demo study", resume=True)
    calls = []
    trials = again.run(lambda params: calls.append(params["x"]) or square(params), items([2, 3, 4]))
    assert again.stored(items([2, 3, 4, 5])) == {"x=2", "x=3", "x=4"} and calls == [4] and list(trials) == ["x=2", "x=3", "x=4"]
    in_memory = Experiment.open(None, identity, what="demo study", resume=True)  # no directory: nothing checked, stored or written
    assert in_memory.store is None and in_memory.stored(items([2])) == set() and len(in_memory.run(square, items([2]))) == 1
    in_memory.write("result.txt", "nothing\n")


def test_a_store_of_another_evaluator_is_refused(tmp_path):
    from effnet.experiments.proxy import evaluate_candidate

    assert evaluator_name(evaluate_candidate) == "effnet.experiments.proxy.evaluate_candidate"
    identity = {"study": "scaling", "evaluator": evaluator_name(evaluate_candidate)}
    TrialStore(tmp_path, identity).add(Trial("k", {}, result={"top1": 50.0}))
    assert TrialStore(tmp_path, dict(identity)).get("k").result == {"top1": 50.0}
    with pytest.raises(TrialsError, match="different study"):
        TrialStore(tmp_path, {**identity, "evaluator": "tests.some_other_evaluator"})


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


@pytest.mark.slow
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


# ------------------------------------------------------------------ workers die with their parent
def announce_and_sleep(params: dict) -> dict:
    """Write this worker's pid to a file, then sleep: a trial that would outlive its parent by a minute."""
    with open(params["log"], "a") as handle:
        handle.write(f"{os.getpid()}\n")
    time.sleep(params["sleep"])
    return {"score": 0}


KILLED_PARENT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_trials import announce_and_sleep
    from effnet.experiments.trials import run_trials
    items = [(f"t{{i}}", {{"log": {log!r}, "sleep": 60, "i": i}}) for i in range(4)]
    run_trials(announce_and_sleep, items, workers=2, threads_per_worker=1, progress=None)
    """
)


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a process from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (name) "
    return int(fields[1]), fields[0], fields[19]


def _descendants(root: int) -> dict[int, str]:
    """Every process below `root` (pid -> start time), found through the parent pids in /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, (ppid, _, start) in parents.items():
            if ppid == pid and child not in found:
                found[child] = start
                frontier.append(child)
    return found


def _alive(pid: int, start: str) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == start and stat[1] not in ("Z", "X")  # same process (not a reused pid), not a zombie


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds processes through /proc")
def test_workers_die_when_the_parent_is_killed(tmp_path):
    """kill -9 of a process running trials on 2 workers: 10 s later no worker (nor the resource tracker) is alive."""
    log = tmp_path / "pids.txt"
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT.format(tests=str(Path(__file__).parent), log=str(log))])
    children: dict[int, str] = {}
    try:
        deadline = time.time() + 60
        while time.time() < deadline and parent.poll() is None and (not log.exists() or len(log.read_text().split()) < 2):
            time.sleep(0.1)
        workers = {int(pid) for pid in log.read_text().split()}
        children = _descendants(parent.pid)
        assert len(workers) == 2 and workers <= set(children), "the trials did not start on 2 worker processes"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(pid, start) for pid, start in children.items()):
            time.sleep(0.2)
        survivors = [pid for pid, start in children.items() if _alive(pid, start)]
        assert not survivors, f"{len(survivors)} of {len(children)} child processes outlived their killed parent by 10 s"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid, start in children.items():  # whatever the outcome, leave no process of this test behind
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)


def test_interrupted_pool_stops_its_running_trials(tmp_path):
    """An exception in the parent (Ctrl-C, a failing callback) ends the trials still running instead of waiting for them."""
    log = tmp_path / "pids.txt"
    items = [("quick", {"log": str(log), "sleep": 0.0}), ("slow", {"log": str(log), "sleep": 60.0})]

    def interrupt(trial: Trial) -> None:
        raise KeyboardInterrupt

    start = time.time()
    with pytest.raises(KeyboardInterrupt):
        run_trials(announce_and_sleep, items, workers=2, threads_per_worker=1, progress=None, on_trial=interrupt)
    assert time.time() - start < 30  # the slow trial (60 s) was not waited for
    deadline = time.time() + 5
    pids = [int(pid) for pid in log.read_text().split()]
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() and _stat(pid)[1] not in ("Z", "X") for pid in pids if _stat(pid)):
        time.sleep(0.1)
    assert not [pid for pid in pids if _stat(pid) is not None and _stat(pid)[1] not in ("Z", "X")]


WATCHED_CHILD = textwrap.dedent(
    """
    import os, subprocess, sys, time
    child = "import sys, threading, time\\nfrom effnet.experiments.trials import _watch_parent\\n"
    child += "threading.Thread(target=_watch_parent, args=(int(sys.argv[1]), 0.1), daemon=True).start()\\n"
    child += "open(sys.argv[2], 'w').close()\\ntime.sleep(60)"
    subprocess.Popen([sys.executable, "-c", child, str(os.getpid()), {ready!r}])
    time.sleep(60)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds processes through /proc")
def test_watchdog_fallback_ends_an_orphaned_worker(tmp_path):
    """Where no parent-death signal exists, the polling thread ends the worker once its parent is gone."""
    ready = tmp_path / "ready"
    parent = subprocess.Popen([sys.executable, "-c", WATCHED_CHILD.format(ready=str(ready))])
    children: dict[int, str] = {}
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not ready.exists():
            time.sleep(0.1)
        children = _descendants(parent.pid)
        assert len(children) == 1 and all(_alive(pid, start) for pid, start in children.items())
        time.sleep(0.3)
        assert all(_alive(pid, start) for pid, start in children.items())  # the watchdog keeps still while the parent lives
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(pid, start) for pid, start in children.items()):
            time.sleep(0.1)
        assert not any(_alive(pid, start) for pid, start in children.items())
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid, start in children.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ does a ranking mean anything?
def test_ranking_warning_near_chance_and_ties():
    # the case: 5 candidates at 25.00% on 4 classes
    text = ranking_warning([25.0] * 5, chance=25.0)
    assert text.startswith("every candidate scored within 2.0 points of chance (25.0%; best 25.00%): the ranking says nothing; train longer (--epochs)")
    # with 400 validation images, chance-level accuracy has a standard error of 100·sqrt(.25·.75/400) = 2.165 points: margin 4.33
    assert ranking_warning([26.0, 29.3], chance=25.0, samples=400) is not None
    assert ranking_warning([26.0, 29.4], chance=25.0, samples=400) is None
    assert ranking_warning([26.0, 26.9], chance=25.0) is not None and ranking_warning([26.0, 27.1], chance=25.0) is None  # no count: 2 points
    # far above chance, but every score the same: only the tie-break (fewer MACs) ranked them
    assert ranking_warning([80.0, 80.0, 80.0], chance=25.0) == (
        "every candidate scored 80.00%: the ranking only orders ties (by cost), it says nothing about accuracy; "
        "train longer (--epochs) or on more data (--train-samples)"
    )
    # nearly equal: within one standard error at their mean (100·sqrt(.8·.2/400) = 2.0 points), else within 0.5 points
    assert "within the noise of 400 validation images (±2.0 points)" in ranking_warning([79.0, 80.9], chance=25.0, samples=400)
    assert ranking_warning([79.0, 81.1], chance=25.0, samples=400) is None
    assert "within 0.5 points" in ranking_warning([80.0, 80.4]) and ranking_warning([80.0, 80.6]) is None
    # nothing to say: one candidate well above chance, no scores, failed (None / NaN) scores ignored
    assert ranking_warning([60.0], chance=25.0) is None and ranking_warning([]) is None
    assert ranking_warning([60.0, None, float("nan"), 70.0], chance=10.0) is None
    assert ranking_warning([10.5], chance=10.0, what="architecture").startswith("the only architecture scored within 2.0 points")
