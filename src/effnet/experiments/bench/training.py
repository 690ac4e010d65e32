"""Training speed and memory: EfficientNet-B0 in effnet (plain and lean options), timm and torchvision, each run in a fresh process.

`run_train_bench` starts one `effnet.experiments.bench.train_worker` process per configuration and round,
round-robin, and summarises images/s and peak memory with ratios to timm eager and compiled.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from effnet.experiments.bench.child import run_child
from effnet.experiments.bench.environment import busy_cpus
from effnet.experiments.bench.inference import LIBRARIES
from effnet.models.nn.lean import COMPILED_ACTIVATION_MEMORY_BUDGET

TRAIN_OPTIONS = ("lean", "ckpt", "compile", "budget", "alloc")
TRAIN_CONFIGS = (
    "effnet",
    "effnet+lean",
    "effnet+alloc",
    "effnet+lean+alloc",
    "effnet+ckpt",
    "effnet+lean+ckpt+alloc",
    "effnet+compile",
    "effnet+compile+budget",  # what `effnet train --memory-efficient-ops --compile` runs
    "effnet+lean+compile",
    "timm",
    "timm+alloc",
    "timm+compile",
    "timm+compile+alloc",
    "torchvision",
    "torchvision+compile",
)
WORKER_TIMEOUT_S = 1800.0
ACTIVATION_MEMORY_BUDGET = float(
    os.environ.get("EFFNET_ACTIVATION_MEMORY_BUDGET", str(COMPILED_ACTIVATION_MEMORY_BUDGET))
)  # +budget: fraction of activations compile may keep
OPTIMIZER = "RMSprop(lr=1e-3, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=1e-5)"
LOSS = "CrossEntropyLoss(label_smoothing=0.1)"


@dataclass(frozen=True)
class TrainBenchConfig:
    """One training configuration of the benchmark: a library's model with options (``effnet+lean+compile``)."""

    library: str
    lean: bool = False  # effnet only: memory-efficient ops (effnet.models.nn.lean)
    ckpt: bool = False  # effnet only: per-stage activation checkpointing
    compile: bool = False
    budget: bool = False  # torch.compile's activation memory budget (the partitioner recomputes more in backward)
    alloc: bool = False  # any library: effnet.models.allocator.tune_cpu_allocator() before anything is allocated (CPU)

    @property
    def key(self) -> str:
        return self.library + "".join(f"+{option}" for option in TRAIN_OPTIONS if getattr(self, option))

    @classmethod
    def parse(cls, key: str) -> TrainBenchConfig:
        library, *options = key.split("+")
        bad = [o for o in options if o not in TRAIN_OPTIONS]
        if library not in LIBRARIES or bad or len(set(options)) != len(options):
            raise ValueError(f"bad training configuration {key!r}; expected LIBRARY[+lean][+ckpt][+compile[+budget]][+alloc] with LIBRARY in {LIBRARIES}")
        if library != "effnet" and ({"lean", "ckpt"} & set(options)):
            raise ValueError(f"{key!r}: lean ops and checkpointing are effnet options")
        if "budget" in options and "compile" not in options:
            raise ValueError(f"{key!r}: +budget is a torch.compile setting; add +compile")
        return cls(library, **{option: option in options for option in TRAIN_OPTIONS})


def run_train_bench(
    configs: Sequence[str] = TRAIN_CONFIGS,
    batch_size: int = 32,
    resolution: int = 224,
    threads: int = 2,
    warmup: int = 2,
    steps: int = 4,
    rounds: int = 1,
    device: str = "cpu",
    amp: str | None = None,
    channels_last: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time training steps of EfficientNet-B0 for each configuration, each run in a fresh subprocess; returns the payload.

    A step is forward -> cross-entropy (label smoothing 0.1) -> backward -> RMSprop step ->
    zero_grad on one fixed random batch (the same values for every library). Peak memory:
    on CPU the RSS rise over the RSS just before the first step (sampled every 5 ms by a
    background thread, so lazily created optimizer state and allocator growth count); on
    CUDA the rise of ``torch.cuda.max_memory_allocated``. Configurations run round-robin for
    `rounds` rounds and the median step time and peak of each are reported, with ratios to
    timm eager and timm compiled. Each library keeps its default dropout / drop path.
    """
    parsed = [TrainBenchConfig.parse(key) for key in configs]
    busy_start = busy_cpus()
    runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in parsed}
    started = time.monotonic()
    for round_index in range(rounds):
        shift = round_index % len(parsed)
        for config in parsed[shift:] + parsed[:shift]:
            options = {"config": config.key, "batch_size": batch_size, "resolution": resolution, "threads": threads, "warmup": warmup, "steps": steps}
            options |= {"device": device, "amp": amp, "channels_last": channels_last}
            busy = busy_cpus() if device == "cpu" else None
            try:
                result = {**run_child("effnet.experiments.bench.train_worker", options, threads, config.key, WORKER_TIMEOUT_S), "busy_cpus_before": busy}
            except RuntimeError as error:
                result = {"error": str(error)[-2000:], "busy_cpus_before": busy}
            runs[config.key].append(result)
            if progress:
                progress(
                    f"train {config.key}: "
                    + (f"{result['images_per_s']:.2f} img/s, peak rise {result['peak_rise_mb']:.0f} MB" if "error" not in result else "FAILED")
                )
    rows = [_train_summary(c, runs[c.key], batch_size) for c in parsed]
    _train_ratios(rows)
    return {
        "settings": {
            "batch_size": batch_size,
            "resolution": resolution,
            "threads": threads,
            "warmup": warmup,
            "steps": steps,
            "rounds": rounds,
            "device": device,
            "amp": amp,
            "channels_last": channels_last,
            "optimizer": OPTIMIZER,
            "loss": LOSS,
            "memory_measure": "CUDA: max_memory_allocated rise"
            if device.startswith("cuda")
            else "RSS rise (sampled every 5 ms) over RSS before the first step",
        },
        "busy_cpus_at_start": busy_start,
        "wall_s": round(time.monotonic() - started, 1),
        "results": rows,
        "runs": runs,
    }


def _train_summary(config: TrainBenchConfig, runs: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    row: dict[str, Any] = {"config": config.key, "library": config.library, "lean": config.lean, "ckpt": config.ckpt, "compile": config.compile}
    if not ok:
        return {**row, "skipped": True, "note": runs[0].get("error", "no runs")[-300:] if runs else "no runs", "images_per_s": None, "peak_rise_mb": None}
    step = statistics.median(r["median_step_s"] for r in ok)
    shares = [r["cpu_share"] for r in ok if r.get("cpu_share") is not None]
    return {
        **row,
        "skipped": False,
        "median_step_s": step,
        "images_per_s": batch_size / step,
        "images_per_s_rounds": [r["images_per_s"] for r in ok],
        "first_step_s": statistics.median(r["first_step_s"] for r in ok),
        "peak_rise_mb": statistics.median(r["peak_rise_mb"] for r in ok),
        "peak_rise_mb_rounds": [r["peak_rise_mb"] for r in ok],
        "cpu_share": min(shares) if shares else None,
        "busy_cpus_before": max((r["busy_cpus_before"] for r in ok if r.get("busy_cpus_before") is not None), default=None),
        "params": ok[0]["params"],
    }


def _train_ratios(rows: list[dict[str, Any]]) -> None:
    ref = {r["config"]: r for r in rows if not r.get("skipped")}
    for r in rows:
        for name, key in (("timm", "timm"), ("timm_compiled", "timm+compile")):
            base = ref.get(key)
            ok = base is not None and not r.get("skipped")
            r[f"speed_vs_{name}"] = r["images_per_s"] / base["images_per_s"] if ok else None
            r[f"memory_vs_{name}"] = r["peak_rise_mb"] / base["peak_rise_mb"] if ok and base["peak_rise_mb"] > 0 else None
