"""Atomic file writes (a crash, Ctrl-C or a full disk never leaves a half-written file behind), and paths as runs record them.

Every file effnet writes that matters (checkpoints, metrics, weights, trial stores, pseudo labels,
reports) goes through `atomic_write`: the new content goes to a temp file in the same directory,
which is renamed over the target only once it is complete. A write that fails (disk full, quota,
no permission, I/O error) removes the temp file and raises one `WriteError` that names the file,
the bytes it needed and the space left, and says that the previous version is intact.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

# what torch's and safetensors' writers raise when the disk fills (they do not raise OSError)
_FAILED_WRITE = re.compile(r"unexpected pos|file write failed|os error \d+|No space left|StorageFull|Disk quota", re.IGNORECASE)
_OS_ERROR = re.compile(r"os error (\d+)")
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what atomic_write's mkstemp names look like
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_WRITABLE = "make the directory writable or choose another --out-dir"
_CANNOT_WRITE = {
    errno.EACCES: _WRITABLE,
    errno.EPERM: _WRITABLE,
    errno.EROFS: "the filesystem is read-only; choose another --out-dir",
    errno.EIO: "the disk reports an I/O error",
}


class WriteError(OSError):
    """A file could not be written (disk full, no permission, I/O error); its previous version is intact, no temp file is left.

    `errno` is the cause's (None when the writer did not say), `filename` the file, `needed` and `free` are bytes.
    """

    def __init__(self, message: str, path: Path, code: int | None, needed: int | None, free: int | None) -> None:
        super().__init__(message)
        self.errno, self.filename, self.needed, self.free = code, str(path), needed, free

    def __str__(self) -> str:
        return str(self.args[0])


def atomic_write(
    path: str | Path,
    write: Callable[[str], None],
    *,
    size: int | None = None,
    verify: Callable[[str], None] | None = None,
    keep: str | Path | None = None,
) -> None:
    """Call `write(tmp_path)`, then rename the temp file over `path` (same directory, so atomic).

    `size`: the bytes the file will take, if known (named when the disk is full). `verify(tmp_path)`
    checks the written file before it replaces anything (raise to refuse it). `keep`: move the file it
    replaces there first (the previous generation), instead of dropping it.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if verify is not None:
            verify(tmp)
        if keep is not None and path.exists():
            _keep(path, Path(keep))
        os.replace(tmp, path)
    except BaseException as err:
        written = _remove(tmp)
        failure = write_failure(err, path, size if size is not None else written, exact=size is not None)
        if failure is not None:
            raise failure from err
        raise


def _keep(path: Path, keep: Path) -> None:
    """Make `keep` the current `path` (a hard link: `path` never goes missing), before `path` is replaced."""
    keep.unlink(missing_ok=True)
    try:
        os.link(path, keep)
    except OSError:  # a filesystem without hard links: for a moment there is no `path` (a resume then reads `keep`)
        os.replace(path, keep)


def _remove(tmp: str | None) -> int:
    """Delete the temp file; the bytes it had reached."""
    if tmp is None or not os.path.exists(tmp):
        return 0
    written = os.path.getsize(tmp)
    os.unlink(tmp)
    return written


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to `path` atomically."""
    data = text.encode()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), size=len(data))


def error_code(err: BaseException) -> int | None:
    """The errno behind `err`: its own, a chained OSError's, or the 'os error N' of a Rust writer (safetensors)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        match = _OS_ERROR.search(str(seen))
        if match:
            return int(match.group(1))
        seen = seen.__cause__ or seen.__context__
    return None


def write_failure(err: BaseException, path: Path, needed: int, exact: bool = True) -> WriteError | None:
    """`err`, raised while writing `path`, as a WriteError; None when it is not a failed write (a bug, an interrupt)."""
    if isinstance(err, WriteError):
        return err
    code = error_code(err)
    if code is None and not (isinstance(err, Exception) and _FAILED_WRITE.search(str(err))):
        return None
    if code is not None and code not in DISK_FULL and code not in _CANNOT_WRITE:
        return None  # e.g. a missing directory: the error says it as it is
    free = free_bytes(path.parent)
    kept = f"the previous {path.name} is intact" if path.exists() else f"no partial {path.name} was left"
    if code in DISK_FULL or code is None:
        reason = os.strerror(code) if code is not None else f"the write failed ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        amount = human(needed) if exact else f"more than the {human(needed)} written when it failed" if needed else "more than is free"
        space = f"{human(free)} free there" if free is not None else "free space unknown"
        message = (
            f"cannot write {path}: {reason}. It needs {amount}; {space}. Nothing was lost: {kept}, no temporary file was left. "
            "Free some space (or move the directory to a larger disk), then run the command again; with --resume a run, "
            "study or search continues from its last saved state."
        )
    else:
        message = f"cannot write {path}: {os.strerror(code)}. Nothing was lost: {kept}, no temporary file was left; {_CANNOT_WRITE[code]}"
    return WriteError(message, path, code, needed, free)


def free_bytes(directory: str | Path) -> int | None:
    """Free bytes on the filesystem of `directory` (or of its nearest existing parent); None when unknown."""
    directory = Path(directory).absolute()
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def human(n: int | None) -> str:
    """Bytes as a short human-readable size: 812 B, 41.5 kB, 39.6 MB, 1.21 GB."""
    if n is None:
        return "an unknown amount"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def remove_stale_temp_files(directory: str | Path) -> list[tuple[Path, int]]:
    """Delete the temp files `atomic_write` left in `directory` when its process was killed mid-write (SIGKILL, power loss).

    Call only while holding the directory's lock (`effnet._lock`): then no live writer owns them. Returns (path, bytes) of each.
    """
    removed = []
    for path in Path(directory).iterdir():
        if _TEMP_NAME.match(path.name) and path.is_file():
            removed.append((path, path.stat().st_size))
            path.unlink(missing_ok=True)
    return removed


def absolute_path(value: str, when: Callable[[Path], bool] | None = None) -> str:
    """`value` as an absolute, resolved path, so that a run records (and compares on resume) the same spelling from any
    working directory; "" stays "". With `when`, only a path it accepts (a model name or block string stays as it is)."""
    if not value:
        return value
    path = Path(value).expanduser()
    if when is not None and not when(path):
        return value
    return str(path.resolve())
