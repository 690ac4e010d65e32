"""The runs of a benchmark script, in the store every experiment of effnet keeps (`effnet.experiments.trial_store.TrialStore`).

OUT/trials.json holds one trial a finished run, keyed by what identifies the run (its set, method, seed, ...), written
atomically as each finishes; a rerun skips the runs there, and a store cut short keeps its complete runs. One process
at a time per OUT (the directory is locked), as for every experiment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from effnet._lock import lock_directory
from effnet.experiments.trial_store import Trial, TrialStore


class RunLog:
    """`benchmark`'s finished runs in `out`; a run's key is the values of `key_fields` in its row (None where a row has
    no such field)."""

    def __init__(self, out: Path, benchmark: str, key_fields: Sequence[str]) -> None:
        self.lock = lock_directory(out, f"{benchmark} benchmark")
        self.store = TrialStore(out, {"benchmark": benchmark})
        self.key_fields = tuple(key_fields)

    def key(self, **fields: Any) -> str:
        return json.dumps([fields.get(name) for name in self.key_fields])

    def __contains__(self, fields: dict[str, Any]) -> bool:
        return self.key(**fields) in self.store

    def add(self, row: dict[str, Any]) -> None:
        """Store a finished run (`row` holds its key fields) before returning."""
        params = {name: row.get(name) for name in self.key_fields}
        self.store.add(Trial(self.key(**params), params, result=row, index=len(self.store)))

    def rows(self) -> list[dict[str, Any]]:
        """Every finished run's row, in the order they finished."""
        return [trial.result for trial in self.store.trials()]
