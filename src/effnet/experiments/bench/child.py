"""Measurements in a fresh process: the parent runs a module of this package with named options, the child prints one result line.

A child (`effnet.experiments.bench.train_worker`, `effnet.experiments.bench.aot_child`) ends with `emit(result)`; the
parent's `run_child` starts it with ``python -m MODULE --option value ...`` and returns that
result, or raises RuntimeError with the child's stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

RESULT_PREFIX = "EFFNET_BENCH_RESULT "  # marks a child's JSON line on stdout


def emit(result: Mapping[str, Any]) -> None:
    """Print the child's result for the parent (the last marked line of stdout wins)."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def child_argv(module: str, options: Mapping[str, Any]) -> list[str]:
    """``python -m module --name value ...``: True is a bare flag, False and None are left out, lists give several values."""
    argv = [sys.executable, "-m", module]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def run_child(module: str, options: Mapping[str, Any], threads: int, what: str, timeout: float) -> dict[str, Any]:
    """Run `module` in a fresh Python with `threads` OpenMP threads; its emitted result, or RuntimeError with its stderr."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    proc = subprocess.run(child_argv(module, options), capture_output=True, text=True, env=env, timeout=timeout, check=False)
    return parse_result(proc, what)


def parse_result(proc: subprocess.CompletedProcess, what: str) -> dict[str, Any]:
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
