"""Compile once, start fast: time a new process from spawn to the first batch of a saved AOTInductor package."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from effnet.experiments.bench.child import run_child
from effnet.experiments.bench.environment import MB

CHILD_TIMEOUT_S = 600.0


def measure_aot_load(
    model_name: str = "efficientnet_b0",
    batch_size: int = 32,
    resolution: int = 224,
    threads: int = 2,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Compile (or find in the cache) an AOTInductor package of the fast model, then time a new process loading it.

    Returns ``process_to_first_batch_s`` (wall clock from spawning a fresh Python to its first
    batch's output, interpreter and torch import included), the child's own ``import_s`` and
    ``load_to_first_batch_s``, ``steady_batch_s`` (median of the next 3 batches), whether the package was a cache hit and
    how long making it took (``compile_seconds``, from its sidecar).
    """
    from effnet.models.factory import create_model
    from effnet.models.fast import compile_cached

    torch.manual_seed(0)
    model = create_model(model_name, head_init="tf").eval().to(device)
    x = torch.randn(batch_size, 3, resolution, resolution, device=device)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        compiled = compile_cached(model, x, cache_dir=cache_dir)
    finally:
        torch.set_num_threads(previous)
    here_s = time.perf_counter() - started
    with torch.no_grad():
        reference = model(x).float()
        diff = float((compiled(x).float() - reference).abs().max()) / (float(reference.abs().max()) or 1.0)
    path = compiled.path
    del compiled
    spawn = time.time()  # wall clock: compared with the child's time.time() at its first batch (process teardown not counted)
    result = run_child(
        "effnet.experiments.bench.aot_child", {"package": path, "shape": list(x.shape), "threads": threads}, threads, "AOT load", CHILD_TIMEOUT_S
    )
    total = result.pop("first_batch_at") - spawn
    later = result.pop("later_batches_s")
    info = json.loads(path.with_suffix(".json").read_text())
    return {
        "model": model_name,
        "input_shape": list(x.shape),
        "device": device,
        "threads": threads,
        "package": str(path),
        "package_mb": round(path.stat().st_size / MB, 1),
        "cache_hit": here_s < 0.8 * info["compile_seconds"],
        "compile_seconds": info["compile_seconds"],
        "max_rel_diff_vs_effnet": diff,
        "process_to_first_batch_s": round(total, 3),
        **{k: round(v, 3) for k, v in result.items()},
        "later_batches_s": [round(v, 3) for v in later],
        "steady_batch_s": round(statistics.median(later), 3),
    }
