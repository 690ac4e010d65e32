"""A run's saved options and identity: `options.json`, and the refusal of a resume that changes them.

Every resumable experiment (the studies, the searches, Noisy Student) and the command line share these rules:
a run saves its options once its directory has been checked (`save_options`); resuming with an option that
differs from the saved one is refused in one line naming the option, the saved value and the new one
(`refuse_changed`; `changed_keys` for nested identities). The command-line side (`--resume [DIR]`, which
options a command registers) is `effnet.cli.resume`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from effnet._io import atomic_write_text

OPTIONS_FILE = "options.json"
OPTIONS_VERSION = 1


class ResumeError(ValueError):
    """A run cannot be resumed as asked (no run there, another command's run, an option that differs)."""


def short(value: Any, limit: int = 40) -> str:
    """A value as it would be typed, cut to `limit` characters (error messages name values, never dump them)."""
    if isinstance(value, (list, tuple)):
        text = " ".join(str(v) for v in value)
    elif isinstance(value, dict) or value == "":
        text = json.dumps(value)
    else:
        text = str(value)
    if len(text) <= limit:
        return text
    return "..." + text[3 - limit :] if text.startswith(("/", "~")) else text[: limit - 3] + "..."  # a path differs at its end


def refuse_changed(out: str | Path, saved: dict[str, Any], given: dict[str, Any], may_change: Iterable[str], flag: Any) -> None:
    """Raise ResumeError, in one line, when an option given again differs from the saved run's (every long command's rule).

    `flag(name)` is how the option is typed; options in `may_change`, and ones the run never saved, are not compared.
    """
    allowed = set(may_change)
    differ = [
        f"{flag(name)}: saved {short(saved[name])}, given {short(value)}"
        for name, value in given.items()
        if name not in allowed and name in saved and value != saved[name]
    ]
    if differ:
        raise ResumeError(
            f"cannot resume {out} with other settings ({'; '.join(differ)}); leave the option(s) out to use the saved values, "
            "or start a new run in another --out-dir"
        )


def load_options(directory: str | Path) -> dict[str, Any] | None:
    """The options.json of a run directory, or None when there is none."""
    path = Path(directory) / OPTIONS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ResumeError(f"cannot read {path}: {err}; give the run's options again after moving the file away") from None
    if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
        raise ResumeError(f"{path} is not an effnet options file; move it away and give the run's options again")
    return data


def save_options(directory: str | Path, payload: dict[str, Any] | None) -> None:
    """Write a run's options (from `ResumableOptions.payload`) atomically; None writes nothing (library calls)."""
    if payload is not None:
        atomic_write_text(Path(directory) / OPTIONS_FILE, json.dumps(payload, indent=1) + "\n")


def plain_json(value: Any) -> Any:
    """JSON's view of a value (tuples become lists), so that parsed and saved values compare equal."""
    return json.loads(json.dumps(value))


def changed_keys(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any, Any]]:
    """(dotted key, saved value, new value) for every leaf that differs between two nested dicts."""
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            yield from changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            yield f"{prefix}{key}", a, b
