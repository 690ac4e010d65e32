"""A directory's `trials.json`: every finished trial of one experiment, written atomically as each finishes.

The store is opened by the experiment's identity: another experiment's store is refused, naming what differs. A file
cut short (a full disk, a kill mid-write on a filesystem without atomic rename) is salvaged: every complete trial is
kept, the torn file is kept beside it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet._io import atomic_write_text
from effnet.experiments.saved_options import changed_keys, short

STATE_FILE = "trials.json"
STATE_VERSION = 1


class TrialsError(ValueError):
    """A trial store cannot be used as asked (different study, corrupt file, bad options)."""


@dataclass
class Trial:
    """One evaluated candidate: its input, outcome and cost."""

    key: str
    params: dict[str, Any]
    status: str = "ok"  # "ok" | "failed"
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    index: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class TrialStore:
    """A directory whose `trials.json` holds every finished trial of one study.

    `identity` describes the study (what is searched, on what data, with which budget);
    it is saved with the trials, and opening the directory with another identity raises
    `TrialsError` naming the keys that differ, so resuming a different study fails loudly
    instead of mixing results.
    """

    def __init__(self, directory: str | Path, identity: dict[str, Any], *, writer: bool = True) -> None:
        """`writer` False: a reader of a store another process writes (torchrun's other ranks); it records trials in
        memory only and never touches the file."""
        self.directory = Path(directory)
        self.identity = json.loads(json.dumps(identity))  # normalise (tuples -> lists) for comparison
        self.path = self.directory / STATE_FILE
        self.writer = writer
        self._trials: dict[str, Trial] = {}
        if self.path.exists():
            self._load()
        elif writer:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._write()

    def _load(self) -> None:
        data, torn = _read(self.path)
        saved = data["identity"]
        if saved != self.identity:
            changed = list(changed_keys(saved, self.identity))
            details = "; ".join(f"{key}: stored {short(old)}, now {short(new)}" for key, old, new in changed[:4]) + (" ..." if len(changed) > 4 else "")
            raise TrialsError(f"{self.directory} holds trials of a different study ({details}); resume with the same settings or choose a new directory")
        for item in data["trials"]:
            trial = Trial.from_dict(item)
            self._trials[trial.key] = trial
        if torn is not None and self.writer:
            kept = self.path.with_name(self.path.name + ".torn")
            os.replace(self.path, kept)
            self._write()
            warnings.warn(
                f"{self.path}: its end is torn ({torn - data['end']} unreadable bytes after {len(self._trials)} complete trial(s); a process killed "
                f"mid-write, or a copy cut short?); skipped: the complete trials are kept, the rest runs again (the torn file: {kept.name})",
                stacklevel=4,
            )

    def _write(self) -> None:
        if not self.writer:
            return
        payload = {"version": STATE_VERSION, "identity": self.identity, "trials": [t.to_dict() for t in self._trials.values()]}
        atomic_write_text(self.path, json.dumps(payload, indent=1) + "\n")

    def get(self, key: str) -> Trial | None:
        return self._trials.get(key)

    def add(self, trial: Trial) -> None:
        """Record a finished trial and write the store to disk before returning."""
        self._trials[trial.key] = trial
        self._write()

    def trials(self) -> list[Trial]:
        """All finished trials, in the order they finished."""
        return list(self._trials.values())

    def __len__(self) -> int:
        return len(self._trials)

    def __contains__(self, key: object) -> bool:
        return key in self._trials


def stored_identity(directory: str | Path) -> dict[str, Any]:
    """The identity of the store in `directory` (a torn store's too), for a driver that compares it with its own rule
    before opening the store; TrialsError when the store cannot be read."""
    return _read(Path(directory) / STATE_FILE)[0]["identity"]


def _read(path: Path) -> tuple[dict[str, Any], int | None]:
    """A store's content, and the length of its text when only a salvaged part of it could be read (else None)."""
    torn = None
    try:
        text = path.read_text()
        data = json.loads(text)
    except OSError as err:
        raise TrialsError(f"cannot read trial store {path}: {err}; move it away to start afresh") from None
    except json.JSONDecodeError as err:
        data, torn = _salvage(text), len(text)
        if data is None:
            raise TrialsError(f"cannot read trial store {path}: {err}; move it away to start afresh") from None
    if not isinstance(data, dict) or "identity" not in data or "trials" not in data:
        raise TrialsError(f"{path} is not an effnet trial store (no 'identity'/'trials'); use another directory")
    return data, torn


_TRIALS_START = re.compile(r'\s*,\s*"trials"\s*:\s*\[\s*')
_SEPARATOR = re.compile(r"\s*,\s*")


def _salvage(text: str) -> dict[str, Any] | None:
    """The identity and every complete trial of a store's text cut short anywhere, and where the readable part ends
    ('end'); None when the identity itself is lost. (`TrialStore._write` writes version, identity, then the trials.)"""
    decoder = json.JSONDecoder()
    start = re.search(r'"identity"\s*:\s*', text)
    try:
        identity, end = decoder.raw_decode(text, start.end()) if start else (None, 0)
    except json.JSONDecodeError:
        return None
    opening = _TRIALS_START.match(text, end) if start else None
    if opening is None:
        return None
    trials, end = [], opening.end()
    while True:
        try:
            item, after = decoder.raw_decode(text, end)
        except json.JSONDecodeError:
            break
        if not isinstance(item, dict):
            break
        trials.append(item)
        end = after
        separator = _SEPARATOR.match(text, end)
        if separator is None:
            break
        end = separator.end()
    return {"identity": identity, "trials": trials, "end": end}
