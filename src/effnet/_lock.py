"""One writer per run directory: a lock that every command writing a run or experiment directory holds.

`lock_directory(dir)` takes an exclusive `fcntl.flock` on ``dir/.effnet.lock``. The kernel drops a
flock when its holder dies, even by SIGKILL, so a lock file left behind is no lock: the next command
takes it (with a note) and no PID check can race. The file names its holder (PID, host, command) for
the refusal a second process gets at once. Under torchrun only rank 0 locks; a process that already
holds a directory may lock it again (counted); forked children (DataLoader workers) close the lock
they inherit, so a worker outliving its parent never keeps a directory locked. Read-only commands
(`eval --run`, `predict --run`, `rundir.load_run_model`) take no lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

from effnet._io import human, remove_stale_temp_files

LOCK_NAME = ".effnet.lock"


class DirectoryInUse(RuntimeError):
    """Another live process holds the directory's lock; the message names it and what to do."""


_held: dict[str, list[int]] = {}  # realpath -> [fd, holders in this process]


class DirectoryLock:
    """A held lock (or nothing, where no lock is needed); `release()` or garbage collection lets it go."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self._finalizer = weakref.finalize(self, _release, key) if key is not None else None

    @property
    def held(self) -> bool:
        return self._finalizer is not None and self._finalizer.alive

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_directory(directory: str | Path, what: str = "run", *, main_process: bool = True) -> DirectoryLock:
    """Lock `directory` (created if missing) for this process, `what` (e.g. "training run") naming it in messages.

    Raises DirectoryInUse when another process holds it. Stale temp files of a killed writer are removed.
    `main_process` False (torchrun's other ranks, from `train.distributed.is_main_process`) takes no lock: rank 0
    writes the files and holds the lock for all.
    """
    if not main_process:
        return DirectoryLock(None)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(directory)
    if key in _held:
        _held[key][1] += 1
        return DirectoryLock(key)
    try:
        import fcntl
    except ImportError:  # not POSIX: no flock
        return DirectoryLock(None)
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: flock works on a read-only descriptor too (the holder is not recorded)
        fd = os.open(directory / LOCK_NAME, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DirectoryInUse(_refusal(directory, what, holder)) from None
    except OSError as err:  # a filesystem without locks (some network mounts)
        os.close(fd)
        warnings.warn(f"cannot lock {directory} ({err.strerror}); make sure no other effnet process writes there", stacklevel=2)
        return DirectoryLock(None)
    previous = _holder(fd)
    _write_holder(fd)
    _held[key] = [fd, 1]
    if previous:
        warnings.warn(
            f"{directory}: the lock of PID {previous.get('pid')} on {previous.get('host')} ({previous.get('command', '?')}) was left by a "
            "process that ended without releasing it (killed?); taken over",
            stacklevel=2,
        )
    stale = remove_stale_temp_files(directory)
    if stale:
        names = ", ".join(path.name for path, _ in stale[:3]) + (" ..." if len(stale) > 3 else "")
        warnings.warn(f"{directory}: removed {len(stale)} temporary file(s) a killed writer left ({human(sum(n for _, n in stale))}: {names})", stacklevel=2)
    return DirectoryLock(key)


def _holder(fd: int) -> dict[str, Any]:
    """Who wrote the lock file last (empty when it was released cleanly or is being written)."""
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {"pid": "?", "host": "?"}


def _write_holder(fd: int) -> None:
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    argv = ["effnet" if program == "__main__.py" else program, *sys.argv[1:]]  # `python -m effnet` reads as `effnet`
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(argv)[:300], "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    with contextlib.suppress(OSError):  # a read-only descriptor, a full disk: the lock holds without the note
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def _refusal(directory: Path, what: str, holder: dict[str, Any]) -> str:
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    command = f" ({holder['command']}, since {holder.get('since', '?')})" if holder.get("command") else ""
    return (
        f"{directory} is in use by another effnet process: PID {pid} on {host}{command} holds its lock ({directory / LOCK_NAME}). "
        f"Two processes writing one {what} directory would mix their files. Wait for it to finish, or stop it (kill {pid}) and "
        "continue with --resume, or choose another --out-dir."
    )


def _release(key: str) -> None:
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _held[key]
    fd = entry[0]
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)  # an empty lock file: released cleanly (a non-empty one was left by a killed holder)
    os.close(fd)  # closing drops the flock


def _forget_in_child() -> None:
    """After fork: the child closes its copies of the lock descriptors, so only the parent holds the locks."""
    for fd, _ in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
