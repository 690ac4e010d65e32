"""The one check of every `from_dict`: keys that are no field of the dataclass are an error naming them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


def reject_unknown(keys: Iterable[str], cls: type, what: str, *, hint: str | None = None, error: type[Exception] = ValueError) -> None:
    """Raise `error` ("unknown WHAT [...]; HINT") when a key is no field of the dataclass `cls`.

    `hint` says how to find the right names; by default the known fields are listed."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise error(f"unknown {what} {unknown}; {hint or f'known: {sorted(known)}'}")
