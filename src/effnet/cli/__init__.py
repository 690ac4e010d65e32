"""The `effnet` command line: models, profile, scale, predict, export, quantize, convert, bench, demo, train, study, search, noisy-student.

Every command is a thin layer over the library, registered by its group's module:
`effnet.cli.models` (models, profile, scale), `effnet.cli.predict` (predict, export, convert,
demo), `effnet.cli.quantize` (quantize), `effnet.cli.bench` (bench), and `effnet.train.commands`, `effnet.experiments.study.commands`,
`effnet.experiments.search.commands`, `effnet.experiments.selftrain.commands` (train, finetune, eval; grid-search, study; search; noisy-student).
`main(argv)` returns the exit status (0 success, 1 nothing classified by `predict`, 2 usage or
input errors or a run directory in use, 4 a file that could not be written, e.g. on a full disk) and
prints expected errors as one line ``effnet: error: ...`` instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from effnet.cli.common import CLIError, HelpFormatter
from effnet.cli.exit_status import INTERRUPTED, USAGE, WRITE_FAILED

__all__ = ["CLIError", "build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `effnet` command (all subcommands)."""
    from effnet._version import __version__
    from effnet.cli.bench import add_bench_command
    from effnet.cli.models import add_model_commands
    from effnet.cli.predict import add_demo_command, add_predict_commands
    from effnet.cli.quantize import add_quantize_command
    from effnet.experiments.search.commands import add_search_commands
    from effnet.experiments.selftrain.commands import add_selftrain_commands
    from effnet.experiments.study.commands import add_study_commands
    from effnet.train.commands import add_train_commands

    parser = argparse.ArgumentParser(
        prog="effnet",
        description="EfficientNet (Tan & Le, ICML 2019) as data: inspect, profile, scale, train, search, run, convert and export the models.",
        epilog="Start with `effnet demo`. Each command has its own --help.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"effnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def command(name: str, handler: Callable[[argparse.Namespace], int], summary: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=description, epilog=epilog, formatter_class=HelpFormatter)
        p.set_defaults(handler=handler)
        return p

    # in the order `effnet --help` lists them
    add_model_commands(command)
    add_predict_commands(command)
    add_quantize_command(command)
    add_bench_command(command)
    add_demo_command(command)
    add_train_commands(command)
    add_study_commands(command)
    add_search_commands(command)
    add_selftrain_commands(command)
    return parser


def _error_text(err: BaseException) -> str:
    """One line for an expected error (multi-line reports are joined with '; ')."""
    if isinstance(err, OSError) and err.filename is not None:
        reason = "file not found" if isinstance(err, FileNotFoundError) else (err.strerror or str(err))
        return f"{err.filename}: {reason}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    # weight mismatch reports run to ~5 lines; compiler errors (TorchScript) to dozens
    head, rest = lines[0], lines[1:6]
    more = " ..." if len(lines) > 6 else ""
    return head + (" " + "; ".join(rest) if rest else "") + more


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `effnet` command line with `argv` (default: sys.argv[1:]) and return the exit status."""
    from effnet._io import WriteError
    from effnet._lock import DirectoryInUse
    from effnet.core.spec import SpecError
    from effnet.core.zoo import UnknownModelError
    from effnet.models.weights import WeightsError
    from effnet.train.checkpoint import CheckpointError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on usage errors (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return USAGE
    saved_showwarning, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return args.handler(args)
    except WriteError as err:  # a full disk: the message says what was needed, what is free and that nothing was lost
        print(f"effnet: error: {err}", file=sys.stderr)
        return WRITE_FAILED
    except (CLIError, SpecError, WeightsError, UnknownModelError, CheckpointError, DirectoryInUse, OSError, ValueError) as err:
        if isinstance(err, BrokenPipeError):
            return _broken_pipe()
        print(f"effnet: error: {_error_text(err)}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("effnet: interrupted", file=sys.stderr)
        return INTERRUPTED
    finally:
        warnings.showwarning = saved_showwarning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None) -> None:
    """Warnings of our own code read as CLI messages; those of other libraries keep their origin."""
    origin = "" if "effnet" in filename else f" ({Path(filename).name}:{lineno})"
    print(f"effnet: warning: {message}{origin}", file=file or sys.stderr)


def _broken_pipe() -> int:
    """Output piped into `head` and the like: stop quietly, as Unix tools do."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout may not be a real file (tests capture it)
        pass
    return 1


def run() -> None:
    """Process entry point (console script and `python -m effnet`): run `main` and exit with its status.

    After an interrupt that was handled (checkpoint saved, message printed), exit with 130 at
    once: CPython's shutdown can otherwise re-raise SIGINT on itself and die with -2 instead,
    which a CI run of the Ctrl-C test saw once (likely the same interrupt, half handled inside a
    library, that effnet.train.interrupts now defers). The streams are flushed first; every file
    the trainer writes is already closed.
    """
    import os

    status = main()
    if status == INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(INTERRUPTED)
    sys.exit(status)


if __name__ == "__main__":
    run()
