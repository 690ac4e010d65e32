"""Checkpoints that are never half-written and never unpickle code.

A checkpoint holds everything needed to continue bit for bit: model, EMA, optimizer,
scheduler and grad-scaler states, every RNG state, the position in the epoch, the
running epoch statistics and the config. It is written to a temp file and renamed over
`last.pt`, so a crash (even SIGKILL) leaves the previous checkpoint intact; it is read with
`torch.load(weights_only=True)`, so only tensors and plain containers come back.

Two generations: the new checkpoint is read back before it replaces `last.pt`, and the one it
replaces becomes `previous.pt`, so at most two are on disk at any time. `load_newest` falls back to
`previous.pt` when `last.pt` is unreadable, saying how many steps that costs (`checkpoints.json`
records where the newest one was).
"""

from __future__ import annotations

import json
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effnet._io import atomic_write, atomic_write_text, free_bytes, human
from effnet.train.rundir import CHECKPOINT_NAME, POSITIONS_NAME, PREVIOUS_NAME  # noqa: F401 (names of a run directory: rundir's)

FORMAT_VERSION = 1
POSITION_KEYS = ("epoch", "step_in_epoch", "global_step")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (truncated, foreign, or for another model); the message says why."""


class UnreadableCheckpoint(CheckpointError):
    """The file is missing, truncated or no checkpoint at all (not merely another run's)."""


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop draws from, as weights_only-loadable values."""
    np_state = np.random.get_state()
    py_version, py_keys, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "python": list(py_keys),
        "python_version": py_version,
        "python_gauss": py_gauss,
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], state["numpy_gauss"][0], state["numpy_gauss"][1]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def previous_of(path: str | Path) -> Path:
    """Where the generation before `path` is kept."""
    return Path(path).with_name(PREVIOUS_NAME)


RECORD_BYTES = 320  # what torch.save adds per tensor (zip record, alignment, pickle): measured on a tiny net's checkpoint


def state_bytes(state: Any) -> int:
    """About the bytes a checkpoint of `state` (nested dicts and lists of tensors) takes on disk."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size() + RECORD_BYTES
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return len(state) if isinstance(state, str) else 0


def atomic_torch_save(path: str | Path, obj: Any, **options: Any) -> None:
    """`torch.save(obj)` to `path` with `effnet._io.atomic_write` (and its `options`), through a file object: a full disk
    then surfaces as the OSError it is (saving to a path, torch's writer says only "unexpected pos")."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)

    atomic_write(path, write, **options)


def save_checkpoint(path: str | Path, payload: dict[str, Any], rng: dict[str, Any] | None = None) -> None:
    """Write `payload` (plus format version and RNG states, `rng` or the current ones) atomically to `path`.

    The file is read back (weights_only) before it replaces `path`; the checkpoint it replaces is kept as
    previous.pt. The older previous.pt goes first, so that two checkpoints at most are on disk at any time.
    A failed write (disk full) raises `effnet._io.WriteError` and leaves `path` as it was.
    """
    path = Path(path)
    payload = {**payload, "format_version": FORMAT_VERSION, "rng": rng if rng is not None else rng_state()}
    position = {key: payload[key] for key in POSITION_KEYS if key in payload}
    known = _positions(path)
    replaced = known.get("last") if path.exists() else known.get("previous") if previous_of(path).exists() else None
    if path.exists():
        previous_of(path).unlink(missing_ok=True)
    atomic_torch_save(path, payload, size=state_bytes(payload), verify=lambda tmp: _read_back(tmp, position), keep=previous_of(path))
    atomic_write_text(path.with_name(POSITIONS_NAME), json.dumps({"last": position, "previous": replaced}) + "\n")


def _read_back(tmp: str, position: dict[str, Any]) -> None:
    """Refuse a written checkpoint that does not load (a failing disk or filesystem) before it replaces the last good one."""
    try:
        data = torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)
        ok = isinstance(data, dict) and all(data.get(key) == value for key, value in position.items())
    except Exception as err:  # noqa: BLE001 - whatever the reader says, the file is not a good checkpoint
        ok, position = False, {"error": f"{type(err).__name__}: {err}"}
    if not ok:
        raise CheckpointError(
            f"the checkpoint just written does not read back ({position}): the disk or filesystem is failing; the previous checkpoint is intact"
        )


def _positions(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.with_name(POSITIONS_NAME).read_text())
    except (OSError, ValueError):
        return {}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; clear errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableCheckpoint(f"no checkpoint at {path}; start without --resume, or point --out-dir at the run to continue")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UnreadableCheckpoint(
            f"checkpoint {path} is unreadable ({type(err).__name__}): it is truncated or not an effnet checkpoint. "
            "Nothing was overwritten; restore a copy or start a new run in another --out-dir."
        ) from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION or "model" not in data:
        raise UnreadableCheckpoint(f"{path} is not an effnet training checkpoint (format {FORMAT_VERSION})")
    return data


def load_newest(path: str | Path, set_aside: bool = True) -> tuple[dict[str, Any], Path]:
    """The checkpoint at `path`, or where that one is unreadable or missing, the previous generation (with a warning
    that says what the fall-back costs). Returns the data and the file it came from.

    `set_aside`: move an unreadable `path` to last.pt.unreadable, so that the next save does not rotate it into
    previous.pt (under torchrun only rank 0 does; the others still find previous.pt, the readable one).
    """
    path = Path(path)
    previous = previous_of(path)
    try:
        return load_checkpoint(path), path
    except UnreadableCheckpoint as err:
        if not previous.is_file():
            raise
        newest_error = str(err).split(":")[0] if path.exists() else f"{path} is missing"
    try:
        data = load_checkpoint(previous)
    except UnreadableCheckpoint as err:
        raise UnreadableCheckpoint(f"{newest_error}, and the previous generation is unusable too: {err}") from None
    kept = _set_aside(path) if set_aside else None
    where = f" (kept as {kept.name})" if kept else ""
    warnings.warn(f"{newest_error}{where}; resuming from {previous.name} instead: {_fallback_cost(path, data)}", stacklevel=2)
    return data, previous


def _fallback_cost(path: Path, data: dict[str, Any]) -> str:
    at = f"epoch {data['epoch'] + 1}, step {data['step_in_epoch']} (global step {data['global_step']})"
    newest = _positions(path).get("last") or {}
    lost = newest.get("global_step", -1) - data["global_step"]
    if lost > 0:
        return f"it is at {at}, the newest was at global step {newest['global_step']}: {lost} step(s) are trained again"
    return f"it is at {at}; the steps after it are trained again"


def _set_aside(path: Path) -> Path | None:
    """Move an unreadable newest checkpoint out of the rotation (kept as last.pt.unreadable, for a look); the new path."""
    if not path.exists():
        return None
    target = path.with_name(path.name + ".unreadable")
    os.replace(path, target)
    return target


def check_space(directory: str | Path, checkpoint_bytes: int) -> str | None:
    """A warning when `directory` has less free space than two checkpoint generations of `checkpoint_bytes` need, else None."""
    directory = Path(directory)
    free = free_bytes(directory)
    held = sum(p.stat().st_size for p in (directory / CHECKPOINT_NAME, directory / PREVIOUS_NAME) if p.is_file())  # replaced, so reusable
    if free is None or free + held >= 2 * checkpoint_bytes:
        return None
    return (
        f"{directory} has {human(free)} free, but two checkpoint generations of this run need about {human(2 * checkpoint_bytes)} "
        f"({human(checkpoint_bytes)} each): a checkpoint may fail on a full disk. Free some space or choose another --out-dir."
    )


def check_compatible(data: dict[str, Any], config_dict: dict[str, Any], path: str | Path, spec_json: str | None = None) -> None:
    """Refuse to resume a run whose model or task differs from the checkpoint's.

    The network is compared by its spec (`spec_json`), not by the path of a spec file: a run directory may move.
    """
    saved = json.loads(data["config"])
    keys = ("model", "num_classes", "dataset", "optimizer")
    differ = [f"{k}: checkpoint {saved.get(k)!r}, now {config_dict.get(k)!r}" for k in keys if saved.get(k) != config_dict.get(k)]
    if spec_json is not None and "spec" in data and json.loads(data["spec"]) != json.loads(spec_json):
        differ.append("spec: the checkpoint's network differs from this one (compare its spec.json)")
    if differ:
        raise CheckpointError(f"checkpoint {path} belongs to another run ({'; '.join(differ)}); use another --out-dir or the same settings")
