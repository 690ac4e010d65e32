"""Ctrl-C and SIGTERM during training: a signal inside an optimizer step, a checkpoint or the epoch's plot waits for
its end, so the checkpoint written on the way out describes the weights exactly and no library is left half done."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import quick
from safetensors.torch import load_file

from effnet.train import train
from effnet.train.interrupts import InterruptGuard
from effnet.train.result import TrainingInterrupted
from effnet.train.trainer import Trainer


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    for _ in range(1000):  # Python runs the handler between bytecodes of the main thread: give it some
        time.sleep(0.0005)


def test_a_signal_inside_a_critical_stretch_is_raised_at_its_end() -> None:
    guard = InterruptGuard()
    before = signal.getsignal(signal.SIGINT)
    guard.install()
    try:
        finished = False
        with pytest.raises(KeyboardInterrupt), guard.critical():
            _signal_self(signal.SIGINT)
            finished = True  # not cut: the interrupt waited
        assert finished and not guard.pending
        with pytest.raises(KeyboardInterrupt):  # outside a critical stretch: at once
            _signal_self(signal.SIGTERM)
        reached = False
        with pytest.raises(KeyboardInterrupt), guard.critical():  # a second signal in the same stretch: the user insists
            _signal_self(signal.SIGINT)
            _signal_self(signal.SIGINT)
            reached = True
        assert not reached
    finally:
        guard.restore()
    assert signal.getsignal(signal.SIGINT) is before


def test_an_ignored_sigint_stays_ignored() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        guard = InterruptGuard()
        guard.install()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == guard._on_signal
        guard.restore()
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_during_the_epoch_plot_lets_it_finish_then_stops(tiny_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the CI failure this guards against: Ctrl-C during the first `import matplotlib` (the plot after epoch 1) was
    # swallowed there; the run trained on and crashed at exit
    import effnet.train.writer as writer

    real_plot, plotted = writer.plot_history, []

    def plot_with_a_ctrl_c(history, out_dir):
        _signal_self(signal.SIGINT)
        plotted.append(real_plot(history, out_dir))

    monkeypatch.setattr(writer, "plot_history", plot_with_a_ctrl_c)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match="interrupted at epoch 2, step 0"):
        train(quick(tiny_spec, run, epochs=2))
    assert plotted == [run / "training.png"] and plotted[0].exists()
    assert [row["epoch"] for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1]
    monkeypatch.setattr(writer, "plot_history", real_plot)
    resumed = train(quick(tiny_spec, run, epochs=2, resume=True))
    assert [row["epoch"] for row in resumed.history] == [1, 2]


def test_sigterm_inside_a_step_saves_that_step_whole_and_resume_is_bitwise(tiny_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {"epochs": 1, "drop_path_rate": 0.2}
    train(quick(tiny_spec, tmp_path / "straight", **settings))
    real_step, steps = Trainer._train_step, []

    def step_then_sigterm(self, micro_batches):
        result = real_step(self, micro_batches)  # the weights have moved; the step counter not yet
        steps.append(1)
        if len(steps) == 3:
            _signal_self(signal.SIGTERM)
        return result

    monkeypatch.setattr(Trainer, "_train_step", step_then_sigterm)
    run = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted, match="interrupted at epoch 1, step 3"):
        train(quick(tiny_spec, run, **settings))
    monkeypatch.setattr(Trainer, "_train_step", real_step)
    train(quick(tiny_spec, run, resume=True, **settings))
    ours, theirs = load_file(str(run / "model.safetensors")), load_file(str(tmp_path / "straight" / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
