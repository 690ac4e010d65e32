"""CPU inference benchmark: effnet against timm and torchvision on the same input, same threads.

Every library gets the same input tensor and thread count, runs in eval mode under
`torch.inference_mode`, and its timed repetitions are interleaved round-robin with the
other libraries' (the starting library rotates each round), so CPU frequency changes,
thermal drift or a noisy neighbour affect all of them alike. timm and torchvision are
optional: a library that is not installed, or lacks the variant, is reported as skipped.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet._io import atomic_write_text

LIBRARIES = ("effnet", "timm", "torchvision")
RESULTS_JSON = "inference_bench.json"
RESULTS_MARKDOWN = "inference_bench.md"


def run_inference_bench(
    model_names: Sequence[str] = ("efficientnet_b0",),
    batch_sizes: Sequence[int] = (1, 32),
    threads: int = 2,
    resolution: int = 224,
    warmup: int = 3,
    repeats: int = 20,
    libraries: Sequence[str] = LIBRARIES,
    channels_last: bool = False,
) -> list[dict[str, Any]]:
    """Time eval-mode CPU inference of each model in each library at each batch size.

    Returns one dict per (model, batch size, library) with ``median_ms``, ``p10_ms`` and
    ``p90_ms`` latency of one forward pass, ``throughput`` (images/s at the median),
    ``ratio_vs_timm`` (this library's throughput / timm's; None without a timm row),
    ``params`` (to check the libraries build the same network) and ``note``. A skipped
    library has ``skipped: True``, None timings and the reason in ``note``. Two fields say
    whether the machine was quiet: ``busy_cpus_before`` (CPUs other processes used just
    before) and ``cpu_share`` (CPU time the benchmark threads got while timing, 1.0 = a core
    each); a RuntimeWarning flags runs where other processes competed for the cores. Models
    are randomly initialised: weights do not change the speed.
    """
    unknown = sorted(set(libraries) - set(LIBRARIES))
    if unknown:
        raise ValueError(f"unknown libraries {unknown}; choose from {LIBRARIES}")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    from effnet.zoo import canonical_name

    busy_before = _busy_warning(threads)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    try:
        for requested in model_names:
            name = canonical_name(requested)
            models: dict[str, nn.Module] = {}
            notes: dict[str, str] = {}
            for library in libraries:
                model, note = _build(library, name)
                if model is None:
                    notes[library] = note
                    continue
                model.eval()
                if channels_last:
                    model = model.to(memory_format=torch.channels_last)
                models[library] = model
            for batch_size in batch_sizes:
                x = torch.randn(batch_size, 3, resolution, resolution, generator=torch.Generator().manual_seed(batch_size))
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                times, cpu_share = _time_interleaved(models, x, warmup, repeats, threads)
                if cpu_share is not None and cpu_share < 0.8:
                    warnings.warn(
                        f"{name} batch {batch_size}: the benchmark threads got only {cpu_share:.0%} of their CPU time while timing "
                        "(other processes ran on the same cores); these latencies are inflated",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                for library in libraries:
                    row = {"model": name, "library": library, "batch_size": batch_size, "resolution": resolution, "threads": threads}
                    row.update(channels_last=channels_last, busy_cpus_before=busy_before, cpu_share=cpu_share)
                    if library in models:
                        row.update(_summary(times[library], batch_size), params=_params(models[library]))
                    else:
                        row.update(_summary([], batch_size), params=None, skipped=True, note=notes[library])
                    rows.append(row)
    finally:
        torch.set_num_threads(previous_threads)
    _add_ratios(rows)
    return rows


def format_markdown(results: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table (one row per model, batch size and library), notes below."""
    if not results:
        return "_no results_\n"
    first = results[0]
    repeats = max(r.get("repeats") or 0 for r in results)
    lines = [
        f"CPU inference, eval mode, torch.inference_mode; {first['threads']} thread(s), {first['resolution']}x{first['resolution']} input"
        + (", channels_last" if first.get("channels_last") else "")
        + f"; latency of one forward pass over {repeats} repetitions interleaved across libraries"
        + (f"; {first['busy_cpus_before']} CPUs busy with other work when it started." if first.get("busy_cpus_before") is not None else "."),
        "",
        "| model | batch | library | median ms | p10 ms | p90 ms | img/s | vs timm | params | CPU share |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for r in results:
        if r.get("skipped"):
            lines.append(f"| {r['model']} | {r['batch_size']} | {r['library']} | skipped | | | | | | |")
            notes.append(f"- {r['library']} ({r['model']}): {r['note']}")
            continue
        ratio = f"{r['ratio_vs_timm']:.2f}x" if r.get("ratio_vs_timm") is not None else "n/a"
        params = f"{r['params'] / 1e6:.2f}M" if r.get("params") else ""
        share = f"{r['cpu_share']:.2f}" if r.get("cpu_share") is not None else ""
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {r['library']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | {r['p90_ms']:.2f} "
            f"| {r['throughput']:.1f} | {ratio} | {params} | {share} |"
        )
    lines += [
        "",
        "vs timm: throughput relative to timm's at the same batch size (> 1: faster than timm). CPU share: process CPU time /",
        "(wall time x threads) while timing; well below 1 means other processes took the cores and the latencies are inflated.",
    ]
    if notes:
        lines += ["", "Skipped:", *dict.fromkeys(notes)]
    return "\n".join(lines) + "\n"


def write_results(results: Sequence[dict[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Write the results as JSON (with a description of the machine and versions) and Markdown; returns both paths.

    Files: ``inference_bench.json`` and ``inference_bench.md`` in `out_dir`, written atomically.
    """
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / RESULTS_JSON, out_dir / RESULTS_MARKDOWN
    payload = {"environment": environment(), "results": list(results)}
    atomic_write_text(json_path, json.dumps(payload, indent=2) + "\n")
    env = payload["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    footer = f"\nMachine: {env['cpu']} ({env['cpu_count']} logical CPUs); {versions}.\n"
    atomic_write_text(md_path, format_markdown(results) + footer)
    return json_path, md_path


def environment() -> dict[str, Any]:
    """What the numbers depend on: CPU, core count, current load, library versions."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for module in ("timm", "torchvision"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    from effnet import __version__

    versions["effnet"] = __version__
    return {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "versions": versions,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ------------------------------------------------------------------ internals
def _busy_warning(threads: int) -> float | None:
    """How many CPUs other processes keep busy right now; warns when the benchmark threads would not get a core each.

    With more runnable threads than cores, each of the hundreds of parallel regions in a
    forward pass can wait a whole scheduler time slice for a descheduled worker: 2 threads
    next to one busy process measured over 10x slower than 1 thread on a 2-core machine.
    """
    busy = busy_cpus()
    cores = os.cpu_count() or threads
    if busy is not None and busy + threads > cores + 0.5:
        warnings.warn(
            f"{busy:.1f} of {cores} CPUs are busy with other processes: they compete with the {threads} benchmark thread(s), "
            "so latencies will be inflated and noisy (ratios between libraries less so, as runs are interleaved)",
            RuntimeWarning,
            stacklevel=3,
        )
    return busy


def busy_cpus(interval: float = 0.5) -> float | None:
    """CPUs in use over the next `interval` seconds (Linux /proc/stat), else the 1-minute load average."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    elapsed = max(total1 - total0, 1)
    return round((1 - (idle1 - idle0) / elapsed) * (os.cpu_count() or 1), 2)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build(library: str, name: str) -> tuple[nn.Module | None, str]:
    """The library's model for `name`, randomly initialised, or None and why not."""
    if library == "effnet":
        import effnet

        return effnet.create_model(name), ""
    try:
        module = __import__(library)
    except ImportError:
        return None, f"{library} is not installed (pip install {library})"
    if library == "timm":
        if name not in module.list_models(name):
            return None, f"timm {module.__version__} has no model named {name!r}"
        return module.create_model(name, pretrained=False), ""
    import torchvision.models

    try:
        return torchvision.models.get_model(name, weights=None), ""
    except ValueError:
        return None, f"torchvision {module.__version__} has no model named {name!r}"


def _time_interleaved(models: dict[str, nn.Module], x: torch.Tensor, warmup: int, repeats: int, threads: int) -> tuple[dict[str, list[float]], float | None]:
    """Seconds per forward pass for each model, and the CPU share the process got while timing.

    Round r starts at library r mod n, so no library always runs first. The share is
    process CPU time / (wall time x threads): near 1 when every thread had a core to itself,
    well below when other processes took turns on them (the timings are then inflated).
    """
    order = list(models)
    times: dict[str, list[float]] = {library: [] for library in order}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection inside one library's timed call would be charged to it
    try:
        with torch.inference_mode():
            for round_index in range(warmup + repeats):
                if round_index == warmup:
                    wall0, cpu0 = time.perf_counter(), time.process_time()
                shift = round_index % len(order) if order else 0
                for library in order[shift:] + order[:shift]:
                    elapsed = _time_once(models[library], x)
                    if round_index >= warmup:
                        times[library].append(elapsed)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        if gc_was_enabled:
            gc.enable()
    share = round(cpu / (wall * threads), 3) if order and wall > 0 else None
    return times, share


def _time_once(model: Callable[[torch.Tensor], Any], x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def _summary(seconds: list[float], batch_size: int) -> dict[str, Any]:
    if not seconds:
        return {"median_ms": None, "p10_ms": None, "p90_ms": None, "throughput": None, "repeats": 0, "skipped": False, "note": ""}
    ms = sorted(s * 1e3 for s in seconds)
    median = statistics.median(ms)
    if len(ms) >= 2:
        deciles = statistics.quantiles(ms, n=10, method="inclusive")
        p10, p90 = deciles[0], deciles[-1]
    else:
        p10 = p90 = ms[0]
    return {
        "median_ms": median,
        "p10_ms": p10,
        "p90_ms": p90,
        "throughput": batch_size / (median / 1e3),
        "repeats": len(ms),
        "skipped": False,
        "note": "",
    }


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    timm_throughput = {(r["model"], r["batch_size"]): r["throughput"] for r in rows if r["library"] == "timm" and r["throughput"]}
    for r in rows:
        reference = timm_throughput.get((r["model"], r["batch_size"]))
        r["ratio_vs_timm"] = r["throughput"] / reference if reference and r["throughput"] else None
