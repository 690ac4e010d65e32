"""The timing harness: interleaved round-robin repetitions of several callables, latency statistics, AMP settings."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Timing:
    times: dict[str, list[float]]
    first: dict[str, float]
    cpu_share: float | None
    failed: dict[str, str]


def time_interleaved(
    entries: dict[str, tuple[Callable[[torch.Tensor], Any], torch.Tensor]], warmup: int, repeats: int, threads: int, device: torch.device
) -> Timing:
    """Seconds per forward pass for each entry (callable, input), the first call's time, and the CPU share while timing.

    Round r starts at entry r mod n, so no path always runs first. The share is process CPU
    time / (wall time x threads): near 1 when every thread had a core to itself, well below
    when other processes took turns on them (the timings are then inflated). The first call
    of each path is always made (and kept out of the timings), so compiling never counts.
    """
    order = list(entries)
    times: dict[str, list[float]] = {key: [] for key in order}
    first: dict[str, float] = {}
    failed: dict[str, str] = {}
    cuda = device.type == "cuda"
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection inside one path's timed call would be charged to it
    wall = cpu = 0.0
    try:
        with torch.inference_mode():
            for key in list(order):
                fn, x = entries[key]
                try:
                    first[key] = time_once(fn, x, cuda)
                except Exception as error:  # e.g. a compiler failing on this machine: report it, time the others
                    failed[key] = f"first call failed: {type(error).__name__}: {str(error)[:300]}"
                    order.remove(key)
                    del times[key]
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for round_index in range(max(warmup - 1, 0) + repeats):
                if round_index == max(warmup - 1, 0):
                    wall0, cpu0 = time.perf_counter(), time.process_time()
                shift = round_index % len(order) if order else 0
                for key in order[shift:] + order[:shift]:
                    fn, x = entries[key]
                    elapsed = time_once(fn, x, cuda)
                    if round_index >= max(warmup - 1, 0):
                        times[key].append(elapsed)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        if gc_was_enabled:
            gc.enable()
    share = round(cpu / (wall * threads), 3) if order and wall > 0 and not cuda else None
    return Timing(times, first, share, failed)


def time_once(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, cuda: bool = False) -> float:
    start = time.perf_counter()
    fn(x)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def latency_summary(seconds: list[float], batch_size: int) -> dict[str, Any]:
    """Median and p10/p90/p99 latency in ms, throughput at the median; None timings for no measurements."""
    if not seconds:
        return {"median_ms": None, "p10_ms": None, "p90_ms": None, "p99_ms": None, "throughput": None, "repeats": 0, "skipped": False, "note": ""}
    ms = sorted(s * 1e3 for s in seconds)
    median = statistics.median(ms)
    if len(ms) >= 2:
        deciles = statistics.quantiles(ms, n=10, method="inclusive")
        p10, p90 = deciles[0], deciles[-1]
        p99 = statistics.quantiles(ms, n=100, method="inclusive")[-1]
    else:
        p10 = p90 = p99 = ms[0]
    return {
        "median_ms": median,
        "p10_ms": p10,
        "p90_ms": p90,
        "p99_ms": p99,
        "throughput": batch_size / (median / 1e3),
        "repeats": len(ms),
        "skipped": False,
        "note": "",
    }


def amp_dtype(amp: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype an --amp setting names (None: float32), checked against the device."""
    if amp in (None, "none", "fp32"):
        return None
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"unknown amp {amp!r}; expected 'bf16', 'fp16' or None")
    if device.type != "cuda":
        raise ValueError("amp is only benchmarked on CUDA (on CPU float32 is the fast path here); drop --amp or use --device cuda")
    return torch.bfloat16 if amp == "bf16" else torch.float16
