"""Atomic file writes (a crash or Ctrl-C never leaves a half-written file behind), and paths as runs record them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, then rename the temp file over `path` (same directory, so atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to `path` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def absolute_path(value: str, when: Callable[[Path], bool] | None = None) -> str:
    """`value` as an absolute, resolved path, so that a run records (and compares on resume) the same spelling from any
    working directory; "" stays "". With `when`, only a path it accepts (a model name or block string stays as it is)."""
    if not value:
        return value
    path = Path(value).expanduser()
    if when is not None and not when(path):
        return value
    return str(path.resolve())
