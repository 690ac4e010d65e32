"""Faults a run survives: a second process in its directory, a full disk, a corrupt newest checkpoint, a torn log line."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import quick
from safetensors.torch import load_file

from effnet._io import WriteError, atomic_write_text
from effnet._lock import LOCK_NAME, DirectoryInUse, lock_directory
from effnet.cli import main
from effnet.cli.exit_status import WRITE_FAILED
from effnet.experiments.trials import Experiment, Trial, TrialsError, TrialStore, run_trials
from effnet.train import train
from effnet.train.checkpoint import PREVIOUS_NAME, load_checkpoint, save_checkpoint
from effnet.train.distributed import is_main_process

# a process that holds a directory's lock until its stdin closes, then writes a file there, as a run's last act
HOLD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from effnet._lock import lock_directory
    lock = lock_directory(sys.argv[1], "training run")
    print("locked", flush=True)
    sys.stdin.read()
    (Path(sys.argv[1]) / "finished.txt").write_text("intact")
    """
)


def _hold(directory: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


SMALL = {"epochs": 1, "train_samples": 32, "val_samples": 16, "checkpoint_every": 1}  # 2 steps, a checkpoint after each


@pytest.fixture(scope="module")
def finished_run(tiny_spec: str, tmp_path_factory) -> Path:
    """A finished tiny run: last.pt after step 2, previous.pt after step 1, and the weights."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(quick(tiny_spec, run, **SMALL))
    return run


def _cli(tiny_spec: str, run: Path, *extra: str) -> list[str]:
    small = ["--train-samples", "32", "--val-samples", "16", "--batch-size", "16", "--workers", "0", "--no-progress", "--out-dir", str(run)]
    return ["train", "--preset", "proxy", "--spec", tiny_spec, "--resolution", "64", "--num-classes", "4", *small, *extra]


def test_a_second_process_is_refused_at_once_and_the_first_finishes_intact(tiny_spec, finished_run, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.name != LOCK_NAME}
    child = _hold(run)
    try:
        started = time.perf_counter()
        assert main(_cli(tiny_spec, run, "--epochs", "2")) == 2
        assert main(["train", "--resume", str(run)]) == 2
        err = capsys.readouterr().err
        assert time.perf_counter() - started < 10  # refused before any data or model is built
        assert f"PID {child.pid} on {socket.gethostname()}" in err and "continue with --resume, or choose another --out-dir" in err
        assert err.count("effnet: error:") == 2 and "Traceback" not in err
        with pytest.raises(DirectoryInUse, match=f"PID {child.pid}"):
            Experiment.open(run, {"study": "demo"}, what="grid search")
        # read-only commands need no lock: the run's model is evaluated while the directory is held
        assert main(["eval", "--run", str(run), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)[0]["count"] == 16
        # under torchrun only rank 0 locks: the other ranks do not wait on it (callers pass is_main_process())
        monkeypatch.setenv("RANK", "1")
        assert not is_main_process()
        assert not lock_directory(run, main_process=is_main_process()).held
        monkeypatch.delenv("RANK")
    finally:
        child.stdin.close()
    assert child.wait(timeout=30) == 0
    assert (run / "finished.txt").read_text() == "intact"
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name not in (LOCK_NAME, "finished.txt")} == before
    with lock_directory(run) as lock:  # released cleanly: taken without a note
        assert lock.held


def test_a_lock_left_by_a_killed_process_is_taken_over_and_forked_children_do_not_keep_it(tmp_path):
    child = _hold(tmp_path)
    stale = tmp_path / ".last.pt.abcd1234.tmp"  # what atomic_write leaves when its process is killed mid-write
    stale.write_bytes(b"x" * 2048)
    child.kill()
    child.wait()
    with pytest.warns(UserWarning) as notes:
        lock = lock_directory(tmp_path)
    text = " ".join(str(n.message) for n in notes)
    assert f"lock of PID {child.pid}" in text and "taken over" in text and "removed 1 temporary file(s)" in text
    assert not stale.exists()
    assert lock_directory(tmp_path).held  # this process again: counted, not refused
    started, ready = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked worker (a DataLoader's) that outlives the lock's release
        os.write(ready, b"1")
        time.sleep(3)
        os._exit(0)
    try:
        os.read(started, 1)  # the child is past its fork hooks (until then it holds a copy of the descriptor)
        lock.release()
        lock_directory(tmp_path).release()  # released twice: free, although the forked child still runs
        assert json.loads((tmp_path / LOCK_NAME).read_text() or "{}") == {}
        probe = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path)], input="", capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_full_disk_at_a_checkpoint_says_so_keeps_the_last_one_and_resume_continues(tiny_spec, tmp_path, capsys, monkeypatch):
    import effnet._io
    import effnet.train.checkpoint as checkpoint

    real_save, saves = torch.save, []

    def fills_the_disk(obj, handle, *args, **kwargs):
        saves.append(1)
        if len(saves) < 3:
            return real_save(obj, handle, *args, **kwargs)
        handle.write(b"\0" * 1000)  # part of it written, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", fills_the_disk)
    monkeypatch.setattr(effnet._io, "free_bytes", lambda directory: 12_000)
    monkeypatch.setattr(checkpoint, "free_bytes", lambda directory: 12_000)
    run = tmp_path / "run"
    assert main(_cli(tiny_spec, run, "--epochs", "2", "--checkpoint-every", "1")) == WRITE_FAILED
    err = capsys.readouterr().err
    assert "effnet: warning:" in err and "two checkpoint generations of this run need about" in err  # before the first checkpoint
    error = err[err.index("effnet: error:") :].strip()
    assert "\n" not in error and "Traceback" not in err
    assert f"cannot write {run / 'last.pt'}: No space left on device. It needs " in error and "; 12 kB free there." in error
    assert "the previous last.pt is intact, no temporary file was left" in error and "--resume" in error
    # the checkpoint before the failed one is intact; the one before that made room for the new one, as it always does
    assert load_checkpoint(run / "last.pt")["global_step"] == 2 and not (run / PREVIOUS_NAME).exists()
    assert not list(run.glob(".*.tmp"))
    monkeypatch.setattr(checkpoint.torch, "save", real_save)  # space freed
    assert main(["train", "--resume", str(run)]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert [r["epoch"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1, 2]


def test_real_writers_hitting_a_size_limit_give_the_same_clear_error(tmp_path):
    """torch.save's C++ writer and safetensors' Rust writer fail for real (RLIMIT_FSIZE: EFBIG, as ENOSPC would)."""
    from effnet.models.weights import save_file

    state = {"w": torch.zeros(100_000)}
    save_checkpoint(tmp_path / "last.pt", {"model": {}, "global_step": 1})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
    try:
        with pytest.raises(
            WriteError, match=r"last.pt: File too large. It needs 4\d\d kB; .* free there. Nothing was lost: the previous last.pt is intact"
        ) as info:
            save_checkpoint(tmp_path / "last.pt", {"model": state, "global_step": 2})
        assert info.value.errno == errno.EFBIG and info.value.needed > 400_000
        with pytest.raises(WriteError, match=r"w.safetensors: File too large. It needs 400 kB; .* no partial w.safetensors was left"):
            save_file(state, tmp_path / "w.safetensors")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert load_checkpoint(tmp_path / "last.pt")["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints.json", "last.pt"]


def test_a_truncated_newest_checkpoint_resumes_from_the_previous_one_bit_for_bit(tiny_spec, finished_run, tmp_path):
    straight = load_file(str(finished_run / "model.safetensors"))
    run, reference = tmp_path / "run", tmp_path / "reference"
    shutil.copytree(finished_run, run)
    shutil.copytree(finished_run, reference)
    os.replace(reference / PREVIOUS_NAME, reference / "last.pt")  # a run resumed from that checkpoint directly
    newest = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(newest[: len(newest) // 3])
    with open(run / "metrics.jsonl", "a") as log:  # and a torn metrics line, as a kill mid-write leaves one
        log.write('{"epoch": 2, "train_lo')
    with pytest.warns(UserWarning) as notes:
        resumed = train(quick(tiny_spec, run, resume=True, **SMALL))
    text = " ".join(str(n.message) for n in notes)
    assert "last.pt is unreadable (RuntimeError) (kept as last.pt.unreadable); resuming from previous.pt instead" in text
    assert "epoch 1, step 1 (global step 1), the newest was at global step 2: 1 step(s) are trained again" in text
    assert "metrics.jsonl: its last line is torn" in text
    expected = train(quick(tiny_spec, reference, resume=True, **SMALL))
    ours, theirs = load_file(str(run / "model.safetensors")), load_file(str(reference / "model.safetensors"))
    assert ours.keys() == theirs.keys() == straight.keys()
    assert all(torch.equal(ours[k], theirs[k]) and torch.equal(ours[k], straight[k]) for k in ours)

    def timeless(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert timeless(resumed.history) == timeless(expected.history)
    assert timeless(map(json.loads, (run / "metrics.jsonl").read_text().splitlines())) == timeless(resumed.history)
    assert (run / "last.pt.unreadable").read_bytes() == newest[: len(newest) // 3]  # nothing overwritten
    assert load_checkpoint(run / "last.pt")["global_step"] == 2 and load_checkpoint(run / PREVIOUS_NAME)["global_step"] == 1


def _square(params: dict) -> dict:
    return {"score": params["x"] ** 2}


def test_a_torn_trial_store_keeps_its_complete_trials_and_reruns_the_rest(tmp_path):
    identity = {"study": "demo"}
    store = TrialStore(tmp_path, identity)
    for x in (1, 2, 3):
        store.add(Trial(f"x={x}", {"x": x}, result=_square({"x": x})))
    text = (tmp_path / "trials.json").read_text()
    cut = text.index('"x=3"') + 3
    (tmp_path / "trials.json").write_text(text[:cut])  # the last trial torn mid-write
    with pytest.warns(UserWarning, match=r"trials.json: its end is torn \(\d+ unreadable bytes after 2 complete trial\(s\).*trials.json.torn"):
        store = TrialStore(tmp_path, identity)
    assert [t.key for t in store.trials()] == ["x=1", "x=2"]
    assert (tmp_path / "trials.json.torn").read_text() == text[:cut]
    calls = []
    trials = run_trials(lambda p: calls.append(p["x"]) or _square(p), [(f"x={x}", {"x": x}) for x in (1, 2, 3)], store=store, progress=None)
    assert calls == [3] and [t.result["score"] for t in trials] == [1, 4, 9]
    assert len(json.loads((tmp_path / "trials.json").read_text())["trials"]) == 3
    atomic_write_text(tmp_path / "trials.json", text[: text.index('"identity"') + 20])  # the identity itself torn: refused
    with pytest.raises(TrialsError, match="cannot read trial store"):
        TrialStore(tmp_path, identity)
