"""Checkpoints that are never half-written and never unpickle code.

A checkpoint holds everything needed to continue bit for bit: model, EMA, optimizer,
scheduler and grad-scaler states, every RNG state, the position in the epoch, the
running epoch statistics and the config. It is written to a temp file and renamed over
`last.pt`, so a crash (even SIGKILL) leaves the previous checkpoint intact; it is read with
`torch.load(weights_only=True)`, so only tensors and plain containers come back.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effnet._io import atomic_write

CHECKPOINT_NAME = "last.pt"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (truncated, foreign, or for another model); the message says why."""


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


def save_checkpoint(path: str | Path, payload: dict[str, Any], rng: dict[str, Any] | None = None) -> None:
    """Write `payload` (plus format version and RNG states, `rng` or the current ones) atomically to `path`."""
    payload = {**payload, "format_version": FORMAT_VERSION, "rng": rng if rng is not None else rng_state()}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; clear errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; start without --resume, or point --out-dir at the run to continue")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(err).__name__}): it is truncated or not an effnet checkpoint. "
            "Nothing was overwritten; restore a copy or start a new run in another --out-dir."
        ) from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION or "model" not in data:
        raise CheckpointError(f"{path} is not an effnet training checkpoint (format {FORMAT_VERSION})")
    return data


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
