"""Ctrl-C and SIGTERM during training: stop at once, but never in the middle of something that must finish.

A KeyboardInterrupt raised anywhere leaves whatever was running half done. Inside an optimizer step
that is a model whose weights and step counter disagree (the checkpoint written next would resume
that step twice); inside a library call it can be worse: an interrupted first `import matplotlib`
(the plot written after each epoch) leaves the module half imported, and the interrupt can be
swallowed there, so the run trains on and fails later or crashes at exit. So the training loop
marks such stretches `critical()`: a signal that arrives inside one waits for its end. A second
signal inside the same stretch raises at once (the user insists; something may be stuck).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class InterruptGuard:
    """SIGINT/SIGTERM handling for one training run: `install()` before the loop, `restore()` after it."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle SIGINT and SIGTERM here (main thread only: Python runs handlers there; a SIGINT ignored stays ignored,
        as in a job started in the background of a non-interactive shell)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signum == signal.SIGINT and signal.getsignal(signum) == signal.SIG_IGN:
                continue
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        """Put back the handlers `install()` replaced."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.depth > 0 and not self.pending:
            self.pending = True
            return
        self.pending = False
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A stretch that must not be cut: a signal inside it is raised as KeyboardInterrupt when it ends."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0 and self.pending:
            self.pending = False
            raise KeyboardInterrupt
