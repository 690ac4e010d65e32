"""Exit statuses of the command line, shared by every command (torch-free, so the CLI starts fast)."""

USAGE = 2  # bad arguments or input: `effnet: error: ...`
DIVERGED = 3  # training stopped on a NaN/inf loss; the last good checkpoint is intact
WRITE_FAILED = 4  # a file could not be written (disk full, no permission); the previous state is intact, --resume continues
INTERRUPTED = 130  # Ctrl-C / SIGTERM (128 + SIGINT), as shells report it; a checkpoint was saved
