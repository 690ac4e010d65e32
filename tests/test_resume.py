"""`--resume [DIR]`: the run directory alone is enough; options given again must match; short refusals."""

from __future__ import annotations

import argparse
import json

import pytest

from effnet.cli.resume import ResumableOptions
from effnet.experiments.saved_options import OPTIONS_FILE, ResumeError, save_options


def _command() -> tuple[ResumableOptions, argparse.ArgumentParser]:
    options = ResumableOptions("demo", "demo run", "state.json", may_change={"workers"}, not_saved={"json"})
    parser = argparse.ArgumentParser(prog="effnet demo")
    options.add(parser, "name", nargs="?", metavar="NAME", help="what to run")
    options.add(parser, "--step", type=float, default=0.05, help="grid step")
    options.add(parser, "--sizes", type=int, nargs="+", default=[1, 2], help="sizes")
    options.add(parser, "--workers", type=int, default=2, help="processes")
    options.add(parser, "--json", action="store_true", help="print JSON")
    options.add(parser, "--no-progress", dest="progress", action="store_false", default=True, help="no bar")
    parser.add_argument("--out-dir")
    options.add_resume(parser)
    return options, parser


def _start(tmp_path, argv: list[str]) -> None:
    """A run as a command would leave it: its marker file and its options."""
    options, parser = _command()
    run = options.resolve(parser.parse_args(argv))
    run.out_dir.mkdir(parents=True, exist_ok=True)
    (run.out_dir / "state.json").write_text("{}")
    save_options(run.out_dir, options.payload(run.values, contents={"spec": "saved"}))


def test_new_run_takes_defaults_and_given_options(tmp_path):
    options, parser = _command()
    run = options.resolve(parser.parse_args(["b0", "--step", "0.1", "--out-dir", str(tmp_path)]))
    assert not run.resuming and run.out_dir == tmp_path and run.saved is None
    assert vars(run.values) == {"name": "b0", "step": 0.1, "sizes": [1, 2], "workers": 2, "json": None, "progress": True}
    assert run.given == {"name": "b0", "step": 0.1}
    assert options.payload(run.values)["options"] == {"name": "b0", "step": 0.1, "sizes": [1, 2], "workers": 2, "progress": True}
    run = options.resolve(parser.parse_args(["--no-progress"]), default_out="runs/x")
    assert str(run.out_dir) == "runs/x" and run.values.progress is False


def test_resume_dir_alone_restores_every_option(tmp_path):
    out = tmp_path / "run"
    _start(tmp_path, ["b0", "--step", "0.1", "--sizes", "3", "4", "--workers", "1", "--no-progress", "--out-dir", str(out)])
    options, parser = _command()
    for argv in (["--resume", str(out)], ["--out-dir", str(out), "--resume"], ["b0", "--resume", str(out), "--step", "0.1", "--sizes", "3", "4"]):
        run = options.resolve(parser.parse_args(argv))
        assert run.resuming and run.out_dir == out
        assert vars(run.values) == {"name": "b0", "step": 0.1, "sizes": [3, 4], "workers": 1, "json": None, "progress": False}
        assert run.saved["contents"] == {"spec": "saved"}
    run = options.resolve(parser.parse_args(["--resume", str(out)]))
    assert run.from_saved("name") and not options.resolve(parser.parse_args(["b0", "--resume", str(out)])).from_saved("name")
    # execution options may change; output-only ones are never compared
    run = options.resolve(parser.parse_args(["--resume", str(out), "--workers", "8", "--json"]))
    assert run.values.workers == 8 and run.values.json is True and run.values.step == 0.1


def test_an_option_given_again_must_match_and_the_refusal_is_short(tmp_path):
    out = tmp_path / "run"
    _start(tmp_path, ["b0", "--step", "0.1", "--out-dir", str(out)])
    options, parser = _command()
    with pytest.raises(ResumeError) as info:
        options.resolve(parser.parse_args(["b1", "--resume", str(out), "--step", "0.05", "--sizes", "1", "2"]))
    message = str(info.value)
    # the default given explicitly (0.05) is a change too; --sizes equal to the saved value is not mentioned
    assert f"cannot resume {out} with other settings (NAME: saved b0, given b1; --step: saved 0.1, given 0.05)" in message
    assert "--sizes" not in message and len(message) < 200 + len(str(out))


def test_where_a_resume_cannot_go(tmp_path):
    options, parser = _command()
    with pytest.raises(ResumeError, match=r"a bare --resume continues the demo run in --out-dir; give the run's directory: --resume DIR"):
        options.resolve(parser.parse_args(["--resume"]))
    with pytest.raises(ResumeError, match="--resume a and --out-dir b name two directories"):
        options.resolve(parser.parse_args(["--resume", "a", "--out-dir", "b"]))
    with pytest.raises(ResumeError, match=r"holds no demo run to continue \(no state.json\); start one with --out-dir"):
        options.resolve(parser.parse_args(["--resume", str(tmp_path)]))
    (tmp_path / "state.json").write_text("{}")
    (tmp_path / OPTIONS_FILE).write_text(json.dumps({"command": "search", "options": {}}))
    with pytest.raises(ResumeError, match="holds a run of `effnet search`, not of `effnet demo`"):
        options.resolve(parser.parse_args(["--resume", str(tmp_path)]))
    (tmp_path / OPTIONS_FILE).write_text("{broken")
    with pytest.raises(ResumeError, match="cannot read"):
        options.resolve(parser.parse_args(["--resume", str(tmp_path)]))
    # a run saved before options.json existed: the options given (and the defaults) are returned for the command's own identity check
    (tmp_path / OPTIONS_FILE).unlink()
    run = options.resolve(parser.parse_args(["b0", "--resume", str(tmp_path)]))
    assert run.resuming and run.saved is None and run.values.step == 0.05


def test_paths_are_saved_absolute_and_compared_resolved_from_any_directory(tmp_path, monkeypatch):
    from pathlib import Path

    def command() -> tuple[ResumableOptions, argparse.ArgumentParser]:
        options = ResumableOptions("demo", "demo run", "state.json")
        parser = argparse.ArgumentParser(prog="effnet demo")
        options.add(parser, "name", nargs="?", metavar="NAME_OR_SPEC", path=Path.is_file, help="a model name or a spec file")
        options.add(parser, "--data", metavar="DIR", path=True, help="images")
        parser.add_argument("--out-dir")
        options.add_resume(parser)
        return options, parser

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    for folder in (here / "photos", here / "other", elsewhere):
        folder.mkdir(parents=True)
    (here / "spec.json").write_text("{}")
    monkeypatch.chdir(here)
    options, parser = command()
    for name, saved_name in (("b0", "b0"), ("spec.json", str(here / "spec.json"))):  # a model name stays one; a spec file is a path
        out = here / f"run-{name}"
        run = options.resolve(parser.parse_args([name, "--data", "photos", "--out-dir", out.name]))
        out.mkdir()
        (out / "state.json").write_text("{}")
        save_options(out, options.payload(run.values))
        assert json.loads((out / OPTIONS_FILE).read_text())["options"] == {"name": saved_name, "data": str(here / "photos")}
    monkeypatch.chdir(elsewhere)  # the same run, resumed from another working directory with other spellings of its paths
    for argv in (
        ["--resume", "../here/run-b0"],
        ["b0", "--data", str(here / "photos"), "--resume", str(here / "run-b0")],
        ["--data", "../here/photos", "--resume", "../here/run-b0"],
    ):
        run = options.resolve(parser.parse_args(argv))
        assert run.resuming and vars(run.values) == {"name": "b0", "data": str(here / "photos")}
    run = options.resolve(parser.parse_args(["../here/spec.json", "--resume", "../here/run-spec.json", "--out-dir", str(here / "run-spec.json")]))
    assert run.values.name == str(here / "spec.json")
    with pytest.raises(ResumeError, match=r"--data: saved .*here/photos, given .*here/other"):
        options.resolve(parser.parse_args(["--data", "../here/other", "--resume", "../here/run-b0"]))
