"""Noisy Student: the teacher labels un-noised, the student learns noised, balancing keeps its promise, every step resumes.

Everything runs on a generated 3-class colour task at 32 px with a tiny network: seconds per training.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import save_tiny_spec

from effnet.cli import main
from effnet.data import DataError, MixedSources, SourceMix, batch_split
from effnet.experiments.saved_options import ResumeError
from effnet.experiments.selftrain import Budget, LabelRecord, Noise, NoisyStudentConfig, balanced_counts, label_images, read_labels, run_noisy_student, select
from effnet.experiments.selftrain.balance import default_target
from effnet.experiments.selftrain.runner import NoisyStudentError
from effnet.experiments.trial_store import STATE_FILE, TrialStore
from effnet.train import TrainConfig, train
from effnet.train.rundir import load_run_model

CLASSES = ("blue", "green", "red")
COLOURS = {"blue": (40, 60, 200), "green": (40, 180, 60), "red": (210, 50, 40)}


def _write_images(folder: Path, name: str, count: int, rng: random.Random) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    base = COLOURS[name]
    for i in range(count):
        colour = tuple(max(0, min(255, c + rng.randint(-50, 50))) for c in base)
        image = Image.new("RGB", (40, 40), colour)
        for _ in range(30):  # speckles, so that crops and augmentation have something to change
            x, y = rng.randrange(40), rng.randrange(40)
            image.putpixel((x, y), tuple(rng.randrange(256) for _ in range(3)))
        image.save(folder / f"{name}_{i}.png")


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    """labeled/{train,val}/CLASS (8 + 4 per class), unlabeled/CLASS (12 per class) and one unreadable file."""
    root = tmp_path_factory.mktemp("task")
    rng = random.Random(0)
    for name in CLASSES:
        _write_images(root / "labeled" / "train" / name, name, 8, rng)
        _write_images(root / "labeled" / "val" / name, name, 4, rng)
        _write_images(root / "unlabeled" / name, name, 12, rng)
    (root / "unlabeled" / "red" / "broken.jpg").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory) -> str:
    """The tiny network at 32 px: the colour tasks here need no more."""
    return save_tiny_spec(tmp_path_factory.mktemp("spec"), resolution=32)


def tiny_options(**changes) -> dict:
    """TrainConfig options that keep a training to seconds: no loader workers, no progress bar, bitwise-reproducible."""
    return {"deterministic": True, "verbose": False, **changes}


@pytest.fixture(scope="module")
def teacher_run(task: Path, tiny_spec: str, tmp_path_factory) -> Path:
    """A teacher trained one epoch on the labelled images, with dropout and drop path set high: a noised pass would differ."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    config = TrainConfig(
        spec=tiny_spec,
        dataset="folder",
        data_dir=str(task / "labeled"),
        resolution=32,
        epochs=1,
        batch_size=8,
        optimizer="adamw",
        lr=3e-3,
        schedule="constant",
        warmup_epochs=0,
        ema_decay=0,
        auto_augment="none",
        bn_momentum=0.1,
        dropout=0.9,
        drop_path_rate=0.9,
        workers=0,
        progress=False,
        verbose=False,
        out_dir=str(out),
    )
    train(config)
    return out


def ns_config(task: Path, teacher: str, student: str, out: Path, **changes) -> NoisyStudentConfig:
    values = {
        "labeled": str(task / "labeled"),
        "unlabeled": str(task / "unlabeled"),
        "teacher": teacher,
        "student": student,
        "out_dir": str(out),
        "budget": Budget(epochs=1, batch_size=8, student_epochs=1),
        "resolution": 32,
        "train_options": tiny_options(),
        "label_batch_size": 8,
        "chunk_size": 8,
        "workers": 0,
        "progress": False,
    }
    values.update(changes)
    return NoisyStudentConfig(**values)


# ---------------------------------------------------------------------------- the teacher is not noised when it labels


def test_the_teacher_labels_in_eval_mode(teacher_run: Path, task: Path, tmp_path: Path) -> None:
    model = load_run_model(teacher_run)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        model.train()
        noised = model(images)
        model.eval()
        clean = model(images)
    assert not torch.allclose(noised, clean, atol=1e-3)  # dropout 0.9 and drop path 0.9 change a train-mode pass: the check below can fail

    model.train()  # handed over in train mode, as a careless caller would
    first = label_images(model, task / "unlabeled", tmp_path / "a.jsonl", batch_size=8, chunk_size=8, workers=0, progress=False)
    second = label_images(model, task / "unlabeled", tmp_path / "b.jsonl", batch_size=8, chunk_size=8, workers=0, progress=False)
    assert model.training  # the caller's mode is given back
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()  # two passes, identical outputs: no noise

    assert (first.images, first.labelled, len(first.unreadable)) == (37, 36, 1)
    assert first.unreadable[0].endswith("broken.jpg") and second.labelled == 36
    records = read_labels(tmp_path / "a.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert lines[0]["class"] == CLASSES[lines[0]["label"]]
    for record in records:
        assert abs(sum(record.probs) - 1) < 1e-3 and record.label == max(range(3), key=lambda c: record.probs[c])
        assert record.confidence == pytest.approx(max(record.probs), abs=1e-4)
    # the same as an eval-mode forward on the run's test-time preprocessing
    from effnet.data import eval_transform, load_image

    model.eval()
    with torch.no_grad():
        expected = model(eval_transform(model.preprocessing)(load_image(records[0].image))[None]).softmax(1)[0]
    assert list(records[0].probs) == pytest.approx(expected.tolist(), abs=1e-4)


# ---------------------------------------------------------------------------- class balancing


def _records(counts: list[int], seed: int = 0) -> list[LabelRecord]:
    rng = random.Random(seed)
    out = []
    for label, n in enumerate(counts):
        for i in range(n):
            confidence = round(rng.uniform(0.05, 1.0), 6)
            out.append(LabelRecord(f"/u/{label}/{i}.png", label, confidence, (confidence,)))
    rng.shuffle(out)
    return out


@pytest.mark.parametrize(
    ("counts", "threshold", "per_class"),
    [([10, 3, 0, 25], 0.0, 0), ([10, 3, 0, 25], 0.3, 0), ([7, 1, 2], 0.0, 5), ([1, 1, 40], 0.5, 12), ([5, 5, 5], 0.0, 5), ([3, 9], 0.2, 20)],
)
def test_balancing_gives_the_counts_it_promises(counts: list[int], threshold: float, per_class: int) -> None:
    records = _records(counts)
    selection = select(records, len(counts), threshold=threshold, per_class=per_class)
    available = [sum(1 for r in records if r.label == c and r.confidence >= threshold) for c in range(len(counts))]
    assert selection.available == available
    target = per_class or default_target(available)
    promised = balanced_counts(available, target)
    got = Counter(r.label for r in selection.records)
    assert [got[c] for c in range(len(counts))] == promised == selection.counts
    assert len(selection.records) == sum(promised)
    for c, n in enumerate(available):
        chosen = [r for r in selection.records if r.label == c]
        assert all(r.confidence >= threshold for r in chosen)
        ranked = sorted((r for r in records if r.label == c and r.confidence >= threshold), key=lambda r: -r.confidence)
        if n >= target:  # a common class keeps its most confident images, once each
            assert sorted(r.image for r in chosen) == sorted(r.image for r in ranked[:target])
        elif n:  # a rare class has every image, duplicated as evenly as it can be
            uses = Counter(r.image for r in chosen)
            assert set(uses) == {r.image for r in ranked} and max(uses.values()) - min(uses.values()) <= 1


def test_selection_without_balancing_and_its_errors() -> None:
    records = _records([4, 9])
    unbalanced = select(records, 2, threshold=0.0, balance=False)
    assert unbalanced.counts == [4, 9] and unbalanced.target is None
    assert default_target([10, 3, 0, 25]) == 10  # the mean over all classes, empty ones included
    with pytest.raises(ValueError, match="lower --confidence-threshold"):
        select(records, 2, threshold=0.9999999)
    with pytest.raises(ValueError, match="per-class target must be >= 1"):
        balanced_counts([1, 2], 0)


# ---------------------------------------------------------------------------- the data hook: pseudo labels mixed into every batch


def test_every_batch_mixes_the_two_sources_at_the_ratio() -> None:
    assert batch_split(16, 3.0) == (4, 12) and batch_split(8, 1.0) == (4, 4) and batch_split(4, 100.0) == (1, 3)
    mix = SourceMix((10, 45), batch_split(16, 3.0), seed=1)
    assert mix.batches_per_epoch == 4  # 45 pseudo-labelled images at 12 per batch; the 10 labelled ones come round again
    order = mix.order(epoch=0)
    assert order == mix.order(epoch=0) and order != mix.order(epoch=1)  # a pure function of the epoch (exact resume)
    total = 55
    for b in range(mix.batches_per_epoch):
        batch = [i % total for i in order[16 * b : 16 * (b + 1)]]
        assert sum(i < 10 for i in batch) == 4 and sum(i >= 10 for i in batch) == 12
    assert {i % total for i in order} == set(range(total))  # every image of both sources at least once
    repeated = [i for i in order if i < total and i < 10] + [i for i in order if i >= total]
    assert len(set(order)) == len(order)  # a repeat has its own index, so its own augmentation draw
    assert repeated  # the labelled images did repeat
    ranks = [mix.order(0, rank, 2) for rank in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1]) and len(ranks[0]) == len(ranks[1]) == 2 * 16
    wrapped = MixedSources([list(range(10)), list(range(100, 145))], ["a"])
    assert wrapped[55 + 3] == wrapped[3] == 3 and wrapped[10] == 100


# ---------------------------------------------------------------------------- the student learns noised


def test_the_student_trains_with_noise_on_labelled_and_pseudo_labelled_images(teacher_run: Path, task: Path, tiny_spec: str, tmp_path: Path) -> None:
    from torchvision.transforms import v2

    from effnet.experiments.selftrain import student_config
    from effnet.train.trainer import Trainer

    label_images(teacher_run, task / "unlabeled", tmp_path / "labels.jsonl", batch_size=8, workers=0, progress=False)
    selection = select(read_labels(tmp_path / "labels.jsonl"), 3, threshold=0.0)
    from effnet.experiments.selftrain.balance import write_selection

    write_selection(selection, tmp_path / "selected.jsonl", list(CLASSES))
    pseudo = len(selection.records)
    config, line = student_config(
        tiny_spec,
        labeled=str(task / "labeled"),
        labeled_images=24,
        pseudo_file=str(tmp_path / "selected.jsonl"),
        pseudo_images=pseudo,
        out_dir=str(tmp_path / "student"),
        budget=Budget(epochs=1, batch_size=8, student_epochs=1),
        resolution=32,
        extra=tiny_options(workers=0, progress=False),
    )
    assert (config.auto_augment, config.randaugment_magnitude, config.dropout, config.drop_path_rate) == ("randaugment", 27.0, 0.5, 0.2)
    assert "RandAugment 27, dropout 0.5, drop path 0.2" in line
    assert config.pseudo_label_ratio == min(3.0, pseudo / 24)  # the paper's 3, or fewer when there are few pseudo-labelled images
    split = batch_split(8, config.pseudo_label_ratio)
    trainer = Trainer(config)
    seen = []

    def record(module, inputs):
        blocks = [m for m in module.modules() if type(m).__name__ == "StochasticDepth"]
        seen.append((module.training, module.dropout.p, max(m.p for m in blocks), all(m.training for m in blocks), inputs[0].shape[0]))

    trainer.model.register_forward_pre_hook(record)
    steps = []
    step = trainer._train_step

    def spy(micro_batches):
        steps.append([labels for _, labels, _ in micro_batches])
        return step(micro_batches)

    trainer._train_step = spy
    result = trainer.run()
    assert seen and all(training and p == 0.5 and rate > 0.15 and on for training, p, rate, on, _ in seen[: len(steps)])
    blocks = trainer.model.spec.num_blocks
    assert max(m.p for m in trainer.model.modules() if type(m).__name__ == "StochasticDepth") == pytest.approx(0.2 * (blocks - 1) / blocks)
    assert any(isinstance(t, v2.RandAugment) and t.magnitude == 27 for t in trainer.data.train.transform.transforms)
    assert trainer.mix.per_batch == list(split) and trainer.data.sources == (24, pseudo)
    for (labels,) in steps:  # every batch: one-hot labels (labelled images) and soft ones (pseudo-labelled), at the split
        assert labels.shape == (8, 3)
        assert int((labels.max(1).values == 1).sum()) >= split[0] and int((labels.max(1).values < 1).sum()) >= 1
    assert len(steps) == trainer.steps_per_epoch == SourceMix((24, pseudo), split).batches_per_epoch and "val_top1" in result.final


# ---------------------------------------------------------------------------- kills and resumes


def _stored(out: Path) -> dict:
    """A noisy-student run's store (trials.json): its identity and the steps done."""
    return json.loads((out / "trials.json").read_text())


def _steps_done(out: Path) -> list[str]:
    return [trial["key"] for trial in _stored(out)["trials"]]


def _kill_when(child: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not ready() and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_during_labelling_resumes_without_redoing_finished_chunks(teacher_run: Path, task: Path, tmp_path: Path) -> None:
    reference = tmp_path / "straight.jsonl"
    label_images(teacher_run, task / "unlabeled", reference, batch_size=4, chunk_size=4, workers=0, progress=False)
    killed = tmp_path / "killed.jsonl"
    script = textwrap.dedent(
        f"""
        import time, torch
        from effnet.experiments.selftrain.labels import label_images
        from effnet.train.rundir import load_run_model
        model = load_run_model({str(teacher_run)!r})
        model.register_forward_pre_hook(lambda module, inputs: time.sleep(0.3))
        label_images(model, {str(task / "unlabeled")!r}, {str(killed)!r}, batch_size=4, chunk_size=4, workers=0, progress=False)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = tmp_path / "killed.jsonl.parts"
    _kill_when(child, lambda: len(list(parts.glob("0*.jsonl"))) >= 3)
    finished = sorted(p.name for p in parts.glob("0*.jsonl"))
    assert 3 <= len(finished) < 10 and not killed.exists()  # 37 images in 10 chunks of 4: it was cut short
    model = load_run_model(teacher_run)
    forwarded = []
    model.register_forward_pre_hook(lambda module, inputs: forwarded.append(inputs[0].shape[0]))
    summary = label_images(model, task / "unlabeled", killed, batch_size=4, chunk_size=4, workers=0, progress=False)
    assert summary.chunks_resumed == len(finished)
    expected = 37 - 4 * len(finished) - (1 if "000009.jsonl" not in finished else 0)  # the broken image (last chunk) is never forwarded
    assert sum(forwarded) == expected  # finished chunks were not redone
    assert killed.read_text() == reference.read_text()  # and the result is that of an uninterrupted run
    assert not parts.exists()
    again = label_images(model, task / "unlabeled", killed, batch_size=4, chunk_size=4, workers=0, progress=False)
    assert sum(forwarded) == expected and again.fingerprint == summary.fingerprint  # a finished file is not labelled again


@pytest.mark.slow
def test_sigkill_during_a_student_epoch_resumes_from_the_iteration_state(teacher_run: Path, task: Path, tiny_spec: str, tmp_path: Path) -> None:
    options = {"train_options": tiny_options(checkpoint_every=1)}
    straight = run_noisy_student(ns_config(task, str(teacher_run), tiny_spec, tmp_path / "straight", **options))
    out = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import time
        from effnet.experiments.selftrain import Budget, NoisyStudentConfig, run_noisy_student
        from effnet.train.trainer import Trainer
        step = Trainer._train_step
        def slow(self, micro_batches):
            time.sleep(0.4)
            return step(self, micro_batches)
        Trainer._train_step = slow
        config = NoisyStudentConfig(**{{**{_config_literal(task, teacher_run, tiny_spec, out)}, "budget": Budget(epochs=1, batch_size=8, student_epochs=1)}})
        run_noisy_student(config)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _kill_when(child, lambda: (out / "iter1" / "student" / "last.pt").is_file())
    assert _steps_done(out) == ["iter1/labels", "iter1/selection"] and not (out / "iter1" / "student" / "model.safetensors").exists()
    labels_written = (out / "iter1" / "labels.jsonl").stat().st_mtime_ns
    resumed = run_noisy_student(ns_config(task, str(teacher_run), tiny_spec, out, **options), resume=True)
    assert (out / "iter1" / "labels.jsonl").stat().st_mtime_ns == labels_written  # labelling was not redone
    assert _steps_done(out) == ["iter1/labels", "iter1/selection", "iter1/student", "iter1/report"]
    from safetensors.torch import load_file

    ours, theirs = load_file(str(out / "iter1/student/model.safetensors")), load_file(str(tmp_path / "straight/iter1/student/model.safetensors"))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # the trainer's own resume: the same student as without the kill
    assert resumed.records[0]["student"]["val_top1"] == straight.records[0]["student"]["val_top1"]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_torchrun_processes_share_the_labelling(teacher_run: Path, task: Path, tmp_path: Path) -> None:
    reference = tmp_path / "one.jsonl"
    label_images(teacher_run, task / "unlabeled", reference, batch_size=4, chunk_size=4, workers=0, device="cpu", progress=False)
    script = tmp_path / "label.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, torch.distributed as dist
            from effnet.experiments.selftrain.labels import label_images
            for name in ("two.jsonl", "again.jsonl"):  # the second pass reuses the process group of the first
                summary = label_images({str(teacher_run)!r}, {str(task / "unlabeled")!r}, {str(tmp_path)!r} + "/" + name,
                                       batch_size=4, chunk_size=4, workers=0, device="cpu", progress=False)
                open({str(tmp_path)!r} + f"/rank{{os.environ['RANK']}}-{{name}}.txt", "w").write(str(summary.labelled))
            dist.destroy_process_group()
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = {path.name: path.read_text() for path in tmp_path.glob("rank*.txt")}
    assert seen == {f"rank{r}-{n}.jsonl.txt": "36" for r in (0, 1) for n in ("two", "again")}  # every process sees the merged result
    one = read_labels(reference)
    for name in ("two.jsonl", "again.jsonl"):
        two = read_labels(tmp_path / name)
        assert [(r.image, r.label) for r in two] == [(r.image, r.label) for r in one]
        assert all(a.probs == pytest.approx(b.probs, abs=2e-4) for a, b in zip(one, two, strict=True))
        assert json.loads((tmp_path / name).with_suffix(".json").read_text())["unreadable"][0].endswith("broken.jpg")


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_the_whole_run_under_torchrun(teacher_run: Path, task: Path, tiny_spec: str, tmp_path: Path) -> None:
    out = tmp_path / "ns"
    command = ["noisy-student", "--labeled", str(task / "labeled"), "--unlabeled", str(task / "unlabeled"), "--teacher", str(teacher_run)]
    command += ["--student", tiny_spec, "--resolution", "32", "--epochs", "1", "--batch-size", "4", "--label-batch-size", "4", "--chunk-size", "4"]
    command += ["--workers", "0", "--device", "cpu", "--no-progress", "--out-dir", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "effnet", *command],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("iteration 1: teacher") == 2  # rank 0's progress line and its summary; rank 1 prints nothing
    record = json.loads((out / "iter1" / "report.json").read_text())
    assert record["pseudo_labels"]["images"] == 36 and record["student"]["val_images"] == 12
    student_config = json.loads((out / "iter1" / "student" / "config.json").read_text())
    assert student_config["batch_size"] == 4 and list(out.rglob("*.tmp")) == []


def _config_literal(task: Path, teacher_run: Path, tiny_spec: str, out: Path) -> str:
    values = {
        "labeled": str(task / "labeled"),
        "unlabeled": str(task / "unlabeled"),
        "teacher": str(teacher_run),
        "student": tiny_spec,
        "out_dir": str(out),
        "resolution": 32,
        "train_options": tiny_options(checkpoint_every=1),
        "label_batch_size": 8,
        "chunk_size": 8,
        "workers": 0,
        "progress": False,
    }
    return repr(values)


# ---------------------------------------------------------------------------- the command, its report, bad input


def test_the_command_runs_reports_and_grows_by_resume(teacher_run: Path, task: Path, tiny_spec: str, tmp_path: Path, capsys, monkeypatch) -> None:
    import effnet.core.zoo
    import effnet.data
    import effnet.experiments.selftrain.runner

    scans, resolved = [], []  # the labelled folder is scanned once, the student resolved once, for every training and evaluation
    real_scan, real_resolve = effnet.data.image_folder_splits, effnet.core.zoo.resolve_spec
    for module in (effnet.data, effnet.experiments.selftrain.runner):
        monkeypatch.setattr(module, "image_folder_splits", lambda root, **k: scans.append(str(root)) or real_scan(root, **k))
    monkeypatch.setattr(effnet.core.zoo, "resolve_spec", lambda name, *a, **k: resolved.append(str(name)) or real_resolve(name, *a, **k))
    out = tmp_path / "ns"
    (tmp_path / "train.yaml").write_text("deterministic: true\nverbose: false\n")
    common = ["--resolution", "32", "--epochs", "1", "--batch-size", "8", "--label-batch-size", "8", "--workers", "0", "--no-progress"]
    status = main(
        ["noisy-student", "--labeled", str(task / "labeled"), "--unlabeled", str(task / "unlabeled"), "--teacher", str(teacher_run)]
        + ["--student", tiny_spec, "--train-config", str(tmp_path / "train.yaml"), "--out-dir", str(out), *common]
    )
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert scans == [str(task / "labeled")] and resolved.count(tiny_spec) == 1
    assert "iteration 1: teacher" in printed.out and "report:" in printed.out
    record = json.loads((out / "iter1" / "report.json").read_text())
    p = record["pseudo_labels"]
    assert (p["images"], p["with_truth"], p["soft"], p["threshold"]) == (36, 36, True, 0.3)
    assert p["accuracy_all"] is not None and 0 <= p["accuracy_all"] <= 100
    assert [row["class"] for row in record["classes"]] == list(CLASSES) and sum(row["selected"] for row in record["classes"]) == p["selected"]
    assert record["teacher"]["val_images"] == record["student"]["val_images"] == 12
    for name in ("report.md", "report.png", "labels.jsonl", "labels.json", "selected.jsonl", "selected.json", "student/model.safetensors"):
        assert (out / "iter1" / name).is_file(), name
    assert "| teacher | tiny |" in (out / "iter1" / "report.md").read_text() and (out / "report.png").is_file()
    saved = json.loads((out / "options.json").read_text())
    assert saved["command"] == "noisy-student" and saved["train_config_contents"] == {"deterministic": True, "verbose": False}
    assert json.loads((out / "iter1" / "student" / "config.json").read_text())["epochs"] == 2  # the student: twice the teacher's --epochs

    assert main(["noisy-student", "--resume", str(out), "--dropout", "0.3"]) == 2  # another noise level: refused, named
    assert "--dropout: saved None, given 0.3" in capsys.readouterr().err  # None: the default for the labelled set's size
    with pytest.raises(ResumeError, match=r"cannot resume .* \(.*confidence_threshold: saved 0.3, given 0.5"):  # the library says it too
        run_noisy_student(ns_config(task, str(teacher_run), tiny_spec, out, confidence_threshold=0.5), resume=True)
    # a run saved before --student-epochs existed (no such option or budget field) resumes, its students as long as then: --epochs
    for name, strip in (
        ("options.json", lambda d: d["options"].pop("student_epochs")),
        (STATE_FILE, lambda d: d["identity"]["config"]["budget"].pop("student_epochs")),
    ):
        data = json.loads((out / name).read_text())
        strip(data)
        (out / name).write_text(json.dumps(data))
    assert main(["noisy-student", "--resume", str(out), "--iterations", "2", "--workers", "0", "--no-progress"]) == 0
    assert json.loads((out / "iter2" / "student" / "config.json").read_text())["epochs"] == 1
    summary = json.loads((out / "report.json").read_text())["iterations"]
    assert [r["iteration"] for r in summary] == [1, 2]
    assert summary[1]["teacher"]["run"] == str(out / "iter1" / "student")  # the student became the teacher
    assert summary[1]["teacher"]["val_top1"] == pytest.approx(summary[0]["student"]["val_top1"])


def test_bad_input_gets_a_clear_message(teacher_run: Path, task: Path, tiny_spec: str, tmp_path: Path, capsys) -> None:
    from effnet.core.spec import NetSpec

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"unlabelled folder .*empty.* holds no image files \(looked recursively for .*\.jpg"):
        run_noisy_student(ns_config(task, str(teacher_run), tiny_spec, tmp_path / "a", unlabeled=str(empty)))

    two = tmp_path / "two"
    for name in CLASSES[:2]:
        _write_images(two / "train" / name, name, 2, random.Random(1))
        _write_images(two / "val" / name, name, 1, random.Random(2))
    with pytest.raises(DataError, match=r"the teacher predicts 3 classes but the labelled set .*two has 2 \(blue, green\)"):
        run_noisy_student(ns_config(task, str(teacher_run), tiny_spec, tmp_path / "b", labeled=str(two)))

    smaller = tmp_path / "smaller.json"
    NetSpec.from_string("ds_r1_k3_s1_e1_c8", stem_channels=8, head_channels=32, resolution=32, name="smaller").save(smaller)
    with pytest.warns(UserWarning, match=r"the student .*smaller.json \(0\.00M parameters\) is smaller than the teacher \(0\.04M\)"):
        from effnet.experiments.selftrain.recipe import resolve_network
        from effnet.experiments.selftrain.runner import check_student_size

        check_student_size(load_run_model(teacher_run).spec, resolve_network(str(smaller)), 3)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before anything was written

    with pytest.raises(NoisyStudentError, match="neither a training run directory .* nor a model name"):
        run_noisy_student(ns_config(task, "efficientnet_b99", tiny_spec, tmp_path / "c"))
    with pytest.raises(NoisyStudentError, match="holds no noisy-student run to continue"):
        run_noisy_student(ns_config(task, str(teacher_run), tiny_spec, tmp_path / "d"), resume=True)

    args = ["noisy-student", "--labeled", str(task / "labeled"), "--unlabeled", str(empty), "--teacher", str(teacher_run), "--student", tiny_spec]
    assert main([*args, "--out-dir", str(tmp_path / "e")]) == 2
    assert "effnet: error: unlabelled folder" in capsys.readouterr().err
    assert main([*args, "--no-noise", "--dropout", "0.1"]) == 2
    assert "--no-noise turns RandAugment, dropout and drop path off" in capsys.readouterr().err
    assert main(["noisy-student", "--labeled", str(task / "labeled")]) == 2
    assert "give --unlabeled, --teacher, --student" in capsys.readouterr().err


def test_no_noise_means_none() -> None:
    values = Noise(0, 0, 0).train_values()
    assert values == {"auto_augment": "none", "randaugment_magnitude": 0, "dropout": 0, "drop_path_rate": 0}
    assert Noise(0, 0, 0).describe() == "no noise (crops and flips only)"


def test_the_default_noise_is_milder_on_small_labelled_sets() -> None:
    from effnet.experiments.selftrain.recipe import PAPER_NOISE, SMALL_SET_IMAGES, SMALL_SET_NOISE

    assert Noise().resolved(200) == SMALL_SET_NOISE == Noise(9.0, 0.2, 0.1)
    assert Noise().resolved(SMALL_SET_IMAGES - 1) == SMALL_SET_NOISE and Noise().resolved(SMALL_SET_IMAGES) == PAPER_NOISE == Noise(27.0, 0.5, 0.2)
    assert Noise(dropout=0.4).resolved(200) == Noise(9.0, 0.4, 0.1)  # a setting given is kept, the others follow the size
    assert Noise(0, 0, 0).resolved(200).off
    with pytest.raises(ValueError, match="call .resolved"):
        Noise(dropout=0.4).train_values()


def _forced_evaluation(monkeypatch, top1_by_run: dict[str, float]) -> None:
    """Real evaluations, with top-1 replaced for the runs whose path ends with a key: a student made to lose or win."""
    from effnet.experiments.selftrain import runner

    real = runner.evaluate_run

    def forced(run, labeled, **kwargs):
        result = real(run, labeled, **kwargs)
        for end, top1 in top1_by_run.items():
            if str(run).endswith(end):
                result["val_top1"] = top1
        return result

    monkeypatch.setattr(runner, "evaluate_run", forced)


def test_a_student_that_loses_is_reported_and_the_teacher_kept(teacher_run: Path, task: Path, tiny_spec: str, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "ns"
    _forced_evaluation(monkeypatch, {str(teacher_run): 73.5, "iter1/student": 54.3})
    (tmp_path / "train.yaml").write_text("deterministic: true\nverbose: false\n")
    args = ["noisy-student", "--labeled", str(task / "labeled"), "--unlabeled", str(task / "unlabeled"), "--teacher", str(teacher_run)]
    args += [
        "--student",
        tiny_spec,
        "--train-config",
        str(tmp_path / "train.yaml"),
        "--out-dir",
        str(out),
        "--resolution",
        "32",
        "--epochs",
        "1",
        "--student-epochs",
        "1",
    ]
    assert main([*args, "--batch-size", "8", "--label-batch-size", "8", "--workers", "0", "--no-progress"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("student 54.3% < teacher 73.5%: kept the teacher; the result: ") and str(out / "best") in last
    result = json.loads((out / "result.json").read_text())
    assert (result["kept"], result["run"], result["student_lost"], result["val_top1"]) == ("teacher", str(teacher_run), True, 73.5)
    assert (out / "best" / "model.safetensors").read_bytes() == (teacher_run / "model.safetensors").read_bytes()
    assert (out / "iter1" / "student" / "model.safetensors").is_file()  # the losing student stays available
    assert "**Result: student 54.3% < teacher 73.5%: kept the teacher**" in (out / "report.md").read_text()
    assert load_run_model(out / "best").classifier.out_features == 3

    # a second iteration whose student beats the first teacher: it becomes the result
    _forced_evaluation(monkeypatch, {str(teacher_run): 73.5, "iter1/student": 54.3, "iter2/student": 80.0})
    assert main(["noisy-student", "--resume", str(out), "--iterations", "2", "--workers", "0", "--no-progress"]) == 0
    assert "best student 80.0% > teacher 73.5%: kept the student of iteration 2; the result: " in capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads((out / "result.json").read_text())
    assert (result["kept"], result["iteration"], result["student_lost"], result["val_top1"]) == ("student", 2, False, 80.0)
    assert (out / "best" / "model.safetensors").read_bytes() == (out / "iter2" / "student" / "model.safetensors").read_bytes()
    assert json.loads((out / "report.json").read_text())["result"]["run"] == str(out / "iter2" / "student")


def test_a_model_name_teacher_is_fine_tuned_on_the_labelled_images_first(task: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = Path("ns")  # relative: the run records it absolute
    config = ns_config(task, "efficientnet_lite0", "efficientnet_lite0", out, budget=Budget(steps=2, batch_size=8))
    result = run_noisy_student(config)
    teacher = json.loads((out / "teacher" / "config.json").read_text())
    assert (teacher["model"], teacher["pretrained"], teacher["auto_augment"], teacher["freeze_bn"]) == ("efficientnet_lite0", "default", "none", True)
    assert (teacher["epochs"], teacher["max_steps_per_epoch"], teacher["eval_every"]) == (1, 2, 1)  # 24 images at 8 a step: 3 steps/epoch, capped at 2
    first = _stored(out)["trials"][0]  # the teacher's step, where its run is
    assert (first["key"], first["result"]) == ("teacher", {"run": str((out / "teacher").resolve())})
    student = json.loads((out / "iter1" / "student" / "config.json").read_text())
    assert (student["pretrained"], student["pseudo_labels"]) == ("default", str((out / "iter1" / "selected.jsonl").resolve()))
    assert (student["randaugment_magnitude"], student["dropout"], student["drop_path_rate"]) == (9.0, 0.2, 0.1)  # 24 labelled images: the milder noise
    assert len(json.loads((out / "iter1" / "student" / "metrics.jsonl").read_text().splitlines()[-1])["val_per_class"]) == 3
    assert result.records[0]["teacher"]["run"] == str((out / "teacher").resolve())
    assert result.records[0]["student"]["run"] == str((out / "iter1" / "student").resolve())  # both absolute in the report
    assert json.loads((out / "report.json").read_text())["iterations"][0]["student"]["run"] == str((out / "iter1" / "student").resolve())


def test_steps_budget_is_the_number_of_optimizer_steps_trained(task: Path, tiny_spec: str, tmp_path: Path) -> None:
    """--steps 8 with 3 steps per epoch (24 labelled images at batch 8) trains 8 steps, not 3 epochs x 3 = 9."""
    import dataclasses

    from effnet.experiments.selftrain.recipe import teacher_config

    config, line = teacher_config(
        "efficientnet_lite0", labeled=str(task / "labeled"), images=24, out_dir=str(tmp_path / "t"), budget=Budget(steps=8, batch_size=8), extra=tiny_options()
    )
    assert "3 steps/epoch, 4 epochs x 2 steps = 8 optimizer steps" in line
    config = dataclasses.replace(config, model="tiny", spec=tiny_spec, pretrained="", resolution=32, workers=0, progress=False)
    result = train(config)
    assert result.history[-1]["step"] == 8 and len(result.history) == 4


def test_budgets_in_steps_and_the_pseudo_label_file_format(tmp_path: Path) -> None:
    from effnet.data.mixed import read_pseudo_labels

    assert Budget(epochs=4).values(10) == {"epochs": 4}
    assert Budget(epochs=4).student().values(10) == {"epochs": 8} and Budget(epochs=4, student_epochs=5).student().values(10) == {"epochs": 5}
    assert Budget(steps=25).student().values(10) == Budget(steps=25).values(10)  # a steps budget is every training's
    assert Budget(steps=25).values(10) == {"epochs": 5, "max_steps_per_epoch": 5, "eval_every": 5}  # 25 exactly, not 3 x 9 = 27
    assert Budget(steps=20).values(10) == {"epochs": 2, "max_steps_per_epoch": 0, "eval_every": 2}
    assert Budget(steps=20).values(7) == {"epochs": 4, "max_steps_per_epoch": 5, "eval_every": 4}  # not 3 x 7 = 21
    assert Budget(steps=23).values(7) == {"epochs": 4, "max_steps_per_epoch": 6, "eval_every": 4}  # prime: 24, the nearest in equal epochs
    for steps in range(1, 80):
        for per_epoch in range(1, 15):
            values = Budget(steps=steps).values(per_epoch)
            total = values["epochs"] * (values["max_steps_per_epoch"] or per_epoch)
            assert total == steps or values["epochs"] == -(-steps // per_epoch), (steps, per_epoch, values)
            assert abs(total - steps) < values["epochs"] and (values["max_steps_per_epoch"] or per_epoch) <= per_epoch
    good = tmp_path / "p.jsonl"
    good.write_text('{"image": "a.png", "probs": [0.2, 0.2, 0.4]}\n{"image": "/x/b.png", "label": 1}\n')
    (image_a, target_a), (image_b, target_b) = read_pseudo_labels(good, 3)
    assert image_a == str(tmp_path / "a.png") and image_b == "/x/b.png"  # relative to the file's folder
    assert target_a.tolist() == pytest.approx([0.25, 0.25, 0.5]) and target_b.tolist() == [0.0, 1.0, 0.0]
    bad = tmp_path / "bad.jsonl"
    for text, message in (
        ('{"image": "a.png", "probs": [0.5, 0.5]}', r"line 1: \"probs\" must be 3 non-negative numbers"),
        ('{"image": "a.png", "label": 7}', "label 7 is not a class index"),
        ('{"probs": [1, 0, 0]}', 'needs "image"'),
        ("not json", "is not JSON"),
    ):
        bad.write_text(text + "\n")
        with pytest.raises(DataError, match=message):
            read_pseudo_labels(bad, 3)
    with pytest.raises(ValueError, match="mixup needs class indices"):
        TrainConfig(pseudo_labels=str(good), mixup=0.2)


def test_a_run_records_absolute_paths_and_resumes_from_another_directory(teacher_run: Path, task: Path, tiny_spec: str, tmp_path: Path, monkeypatch) -> None:
    """Relative paths given in one directory and absolute (or other relative) ones in another name the same run."""
    import os

    from effnet.cli import build_parser
    from effnet.experiments.saved_options import save_options
    from effnet.experiments.selftrain.commands import _config
    from effnet.experiments.selftrain.runner import _Steps

    parse = build_parser().parse_args
    out = tmp_path / "ns"
    monkeypatch.chdir(task)
    relative = ["--teacher", os.path.relpath(teacher_run), "--student", os.path.relpath(tiny_spec), "--out-dir", os.path.relpath(out)]
    config, _, options = _config(parse(["noisy-student", "--labeled", "labeled", "--unlabeled", "unlabeled", *relative]))
    absolute = {"labeled": str(task / "labeled"), "unlabeled": str(task / "unlabeled"), "teacher": str(teacher_run), "student": tiny_spec, "out_dir": str(out)}
    assert {name: getattr(config, name) for name in absolute} == absolute
    assert {name: options["options"][name] for name in ("labeled", "unlabeled", "teacher", "student")} == {
        k: absolute[k] for k in ("labeled", "unlabeled", "teacher", "student")
    }
    out.mkdir()
    _Steps(out, config, resume=False)
    save_options(out, options)
    assert _stored(out)["identity"]["config"]["labeled"] == str(task / "labeled")

    monkeypatch.chdir(tmp_path)  # resumed from elsewhere: bare, with the absolute paths, or with other relative spellings
    for argv in (
        [],
        ["--labeled", str(task / "labeled"), "--teacher", str(teacher_run)],
        ["--unlabeled", os.path.relpath(task / "unlabeled"), "--student", tiny_spec],
    ):
        again, resuming, _ = _config(parse(["noisy-student", "--resume", "ns", *argv]))
        assert resuming and again.to_dict() == config.to_dict()
        _Steps(out, again, resume=True)  # the run's own identity check agrees
    with pytest.raises(ResumeError, match="other settings .*--labeled: saved .*/labeled, given .*/unlabeled"):
        _config(parse(["noisy-student", "--resume", "ns", "--labeled", str(task / "unlabeled")]))
    moved = NoisyStudentConfig(**{**config.to_dict(), "labeled": str(task / "unlabeled")})
    with pytest.raises(ResumeError, match="other settings"):
        _Steps(out, moved, resume=True)
    grown = NoisyStudentConfig(**{**config.to_dict(), "iterations": config.iterations + 1, "workers": 1})
    _Steps(out, grown, resume=True)  # what a resume may change is outside the store's identity
    TrialStore(tmp_path / "grid", {"study": "grid"})  # another experiment's store is no run to continue
    with pytest.raises(NoisyStudentError, match=r"trials.json is not a noisy-student run's"):
        _Steps(tmp_path / "grid", NoisyStudentConfig(**{**config.to_dict(), "out_dir": str(tmp_path / "grid")}), resume=True)
