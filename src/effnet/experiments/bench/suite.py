"""Everything in one run: B0 inference paths, the paper's Table 4, AOT package load in a new process, training."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from effnet.experiments.bench.aot_load import measure_aot_load
from effnet.experiments.bench.environment import busy_cpus, environment
from effnet.experiments.bench.inference import PATHS, run_inference_bench, run_table4_bench
from effnet.experiments.bench.report import write_report
from effnet.experiments.bench.training import TRAIN_CONFIGS, run_train_bench


def run_all(
    *,
    threads: int = 2,
    device: str = "cpu",
    amp: str | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    resolution: int = 224,
    warmup: int = 3,
    repeats: int = 20,
    paths: Sequence[str] = PATHS,
    table4: bool = True,
    aot_load: bool = True,
    train_configs: Sequence[str] = TRAIN_CONFIGS,
    train_batch_size: int = 32,
    train_steps: int = 4,
    train_warmup: int = 2,
    train_rounds: int = 1,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = print,
    out_dir: str | Path | None = None,
    order: Sequence[str] = ("inference", "table4", "aot_load", "train"),
) -> dict[str, Any]:
    """The whole proof in one run: B0 inference paths, Table 4, AOT package load in a new process, training; returns the payload.

    Sections run in `order`; with `out_dir`, the report is rewritten after each one, so a run
    cut short still leaves the finished sections behind.
    """
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    payload: dict[str, Any] = {"environment": environment(), "busy_cpus_at_start": busy_cpus() if device == "cpu" else None}
    payload["settings"] = {"threads": threads, "device": device, "amp": amp, "resolution": resolution, "warmup": warmup, "repeats": repeats}

    def inference() -> None:
        say(f"inference: {', '.join(paths)} at batch {list(batch_sizes)}")
        payload["inference"] = run_inference_bench(
            ("efficientnet_b0",), batch_sizes, threads, resolution, warmup, repeats, channels_last=True, paths=paths, device=device, amp=amp
        )

    def table() -> None:
        say("Table 4: B1 vs ResNet-152 at batch 1")
        payload["table4"] = run_table4_bench(threads, warmup, repeats, device, amp, compiled=any(p.endswith("compiled") for p in paths))

    def aot() -> None:
        say("AOT package: compile (or cache hit) and load in a new process")
        try:
            payload["aot_load"] = measure_aot_load("efficientnet_b0", max(batch_sizes), resolution, threads, device, cache_dir)
        except Exception as error:  # an unavailable compiler must not lose the other results
            payload["aot_load"] = {"error": f"{type(error).__name__}: {error}"[:2000]}

    def train() -> None:
        say(f"training: {', '.join(train_configs)}")
        payload["train"] = run_train_bench(
            train_configs, train_batch_size, resolution, threads, train_warmup, train_steps, train_rounds, device, amp, progress=progress
        )

    sections = {"inference": inference, "table4": table if table4 else None, "aot_load": aot if aot_load else None, "train": train if train_configs else None}
    unknown = sorted(set(order) - set(sections))
    if unknown:
        raise ValueError(f"unknown sections {unknown}; expected some of {sorted(sections)}")
    for section in order:
        run = sections[section]
        if run is None:
            continue
        run()
        if out_dir is not None:
            payload["wall_s"] = round(time.monotonic() - started, 1)
            write_report(payload, out_dir)
    payload["busy_cpus_at_end"] = busy_cpus() if device == "cpu" else None
    payload["wall_s"] = round(time.monotonic() - started, 1)
    if out_dir is not None:
        write_report(payload, out_dir)
    return payload
