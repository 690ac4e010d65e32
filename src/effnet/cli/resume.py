"""`--resume [DIR]` for long commands: continue a run from its directory alone.

A resumable command registers its options here (`ResumableOptions`) and its run saves them in
``DIR/options.json`` once the run directory has been checked. Then:

- ``--resume DIR`` continues the run in DIR; a bare ``--resume`` continues the run in ``--out-dir``
  (so older command lines keep working);
- options left out are taken from the saved run; an option given again must equal the saved
  value, or the command is refused with one short line naming the option, the saved value and
  the new one. Execution options (how many workers, where to run) and options that only grow a
  run (more trials, more seeds) may change;
- paths (options registered with `path=`) are saved absolute and compared resolved, so a run
  resumes from any working directory, and `photos` given again as `/home/me/photos` is no change.

The saved file and the rule that refuses a changed option are `effnet.experiments.saved_options`, which the experiments
use too; this module is the command-line side.

Options are registered with a default of None, so that "given" can be told from "left out" (an
option given with its default value still counts as given and must match the saved run).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet._io import absolute_path
from effnet.experiments.saved_options import OPTIONS_VERSION, ResumeError, load_options, plain_json, refuse_changed


@dataclass
class Resolved:
    """Where a command runs and with which options, after `--resume` and the saved options are taken into account."""

    out_dir: Path | None
    resuming: bool
    values: argparse.Namespace  # every registered option: given, else saved, else its default
    given: dict[str, Any]  # the options given on this command line
    saved: dict[str, Any] | None  # the whole options.json of the run being resumed (None: a new run, or a run saved before options.json)

    def from_saved(self, name: str) -> bool:
        """True when option `name` was not given and its value comes from the saved run."""
        return self.saved is not None and name not in self.given


@dataclass
class ResumableOptions:
    """The options of one resumable command, their defaults, and which of them may change on resume."""

    command: str  # e.g. "grid-search"; saved, so that another command's run is not resumed by mistake
    what: str  # what a run is called in messages, e.g. "grid search"
    marker: str  # the file every run of the command has (e.g. trials.json): no marker, nothing to resume
    may_change: set[str] = field(default_factory=set)  # saved, but a resume may give other values
    not_saved: set[str] = field(default_factory=set)  # output-only options (--list, --json): never saved nor compared
    defaults: dict[str, Any] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # dest -> how the command line spells it (--step, NAME_OR_SPEC)
    paths: dict[str, Any] = field(default_factory=dict)  # dest -> None (always a path) or which values are paths (absolute_path's `when`)

    def add(self, parser: Any, *flags: str, default: Any = None, help: str = "", shown: str | None = None, path: Any = False, **kwargs: Any) -> argparse.Action:
        """`parser.add_argument` with a default of None; the real default is kept here and shown in --help as `shown` or itself.

        `path`: True for a path option, or a predicate on the `Path` for an option that may name a path (NAME_OR_SPEC):
        such values are made absolute (`effnet._io.absolute_path`) before they are compared or saved."""
        text = help
        if kwargs.get("action") not in ("store_true", "store_false") and (shown is not None or default not in (None, "", False)):
            shown_text = shown if shown is not None else (" ".join(str(v) for v in default) if isinstance(default, (list, tuple)) else str(default))
            text += f" (default: {shown_text.replace('%', '%%')})"
        action = parser.add_argument(*flags, default=None, help=text, **kwargs)
        self.defaults[action.dest] = default
        self.names[action.dest] = action.option_strings[-1] if action.option_strings else str(action.metavar or action.dest)
        if path:
            self.paths[action.dest] = None if path is True else path
        return action

    def _absolute(self, values: dict[str, Any]) -> dict[str, Any]:
        """`values` with the path options' values absolute (others as they are)."""
        return {k: absolute_path(v, self.paths[k]) if k in self.paths and isinstance(v, str) else v for k, v in values.items()}

    def add_resume(self, parser: Any) -> None:
        """The `--resume [DIR]` option (see the module docstring)."""
        parser.add_argument(
            "--resume",
            nargs="?",
            const="",
            default=None,
            metavar="DIR",
            help=f"continue the {self.what} in DIR (a bare --resume: the one in --out-dir) with its saved options; options given again must match them",
        )

    def resolve(self, args: argparse.Namespace, default_out: str | None = None) -> Resolved:
        """Apply `--resume` and the saved options to the parsed `args` (the rules in the module docstring)."""
        given = self._absolute({name: plain_json(getattr(args, name)) for name in self.defaults if getattr(args, name, None) is not None})
        resume = getattr(args, "resume", None)
        out_text = getattr(args, "out_dir", None)
        if resume is None:
            out = out_text or default_out
            return Resolved(Path(out) if out else None, False, argparse.Namespace(**{**self.defaults, **given}), given, None)
        if resume == "":
            out = out_text or default_out
            if not out:
                raise ResumeError(f"a bare --resume continues the {self.what} in --out-dir; give the run's directory: --resume DIR")
        else:
            if out_text and Path(out_text).expanduser().resolve() != Path(resume).expanduser().resolve():
                raise ResumeError(f"--resume {resume} and --out-dir {out_text} name two directories; give the run's directory once: --resume DIR")
            out = resume
        if not (Path(out) / self.marker).is_file():
            raise ResumeError(f"{out} holds no {self.what} to continue (no {self.marker}); start one with --out-dir {out}, without --resume")
        saved = load_options(out)
        if saved is None:  # a run from before options.json (or no run): the command's own identity check decides
            return Resolved(Path(out), True, argparse.Namespace(**{**self.defaults, **given}), given, None)
        if saved.get("command") != self.command:
            raise ResumeError(f"{out} holds a run of `effnet {saved.get('command')}`, not of `effnet {self.command}`; resume it with that command")
        options = saved.get("options", {})
        kept = self._absolute({name: plain_json(options.get(name, self.defaults[name])) for name in given})  # runs saved before paths were absolute
        refuse_changed(out, kept, given, self.may_change | self.not_saved, lambda name: self.names[name])
        values = {**self.defaults, **{k: v for k, v in options.items() if k in self.defaults}, **given}
        return Resolved(Path(out), True, argparse.Namespace(**values), given, saved)

    def payload(self, values: argparse.Namespace, **extra: Any) -> dict[str, Any]:
        """What `save_options` writes: the command, its options (output-only ones left out) and `extra` (e.g. the contents of input files)."""
        options = {name: plain_json(getattr(values, name)) for name in self.defaults if name not in self.not_saved}
        return {"version": OPTIONS_VERSION, "command": self.command, "options": options, **extra}
