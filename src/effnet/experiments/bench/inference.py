"""Inference speed: effnet's default and fast paths against timm's and torchvision's eager and compiled paths, and the paper's Table 4.

Every *path* (a library's model run one way) gets the same input tensor and thread count,
runs in eval mode under `torch.inference_mode`, and its timed repetitions are interleaved
round-robin with the other paths' (the starting path rotates each round), so CPU frequency
changes, thermal drift or a noisy neighbour affect all of them alike. Paths:

- ``effnet``, ``timm``, ``torchvision``: the library's model in eval mode (eager);
- ``effnet-fast``: `effnet.optimize(model)` (BN folded, no dropout, channels-last, CUDA autocast);
- ``effnet-fast-compiled``: `effnet.optimize(model, compile=True)` (+ torch.compile; on the CPU, batches above 8 in chunks of 8);
- ``timm-compiled``, ``torchvision-compiled``: ``torch.compile(model)`` (CUDA: mode="reduce-overhead");
- ``effnet-int8``: `effnet.int8.quantize` (static INT8, calibrated on the bundled photos) run by onnxruntime (CPU only).

timm and torchvision are optional: a library that is not installed, or lacks the variant, is
reported as skipped.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from effnet.experiments.bench.environment import busy_warning, warn_contended
from effnet.experiments.bench.timing import amp_dtype, latency_summary, time_interleaved

LIBRARIES = ("effnet", "timm", "torchvision")
PATHS = ("effnet", "effnet-fast", "effnet-fast-compiled", "effnet-int8", "timm", "timm-compiled", "torchvision", "torchvision-compiled")
INT8_PATHS = ("effnet", "effnet-fast", "effnet-fast-compiled", "effnet-int8")  # `effnet bench --int8`: float eager, compiled, INT8


def run_inference_bench(
    model_names: Sequence[str] = ("efficientnet_b0",),
    batch_sizes: Sequence[int] = (1, 32),
    threads: int = 2,
    resolution: int = 224,
    warmup: int = 3,
    repeats: int = 20,
    libraries: Sequence[str] = LIBRARIES,
    channels_last: bool = False,
    paths: Sequence[str] | None = None,
    device: str = "cpu",
    amp: str | None = None,
) -> list[dict[str, Any]]:
    """Time eval-mode inference of each model along each path at each batch size.

    `paths` (default: the eager path of each of `libraries`) are names from `PATHS`. Returns
    one dict per (model, batch size, path) with ``median_ms``, ``p10_ms``, ``p90_ms`` latency
    of one forward pass, ``throughput`` (images/s at the median), ``first_call_s`` (the first,
    untimed call: includes compiling), ``ratio_vs_timm`` (throughput / timm eager's, None
    without it), ``ratio_vs_timm_compiled``, ``params`` (of the unoptimized model, to check
    the libraries build the same network), ``max_rel_diff_vs_effnet`` (effnet paths: largest
    output difference from the plain effnet model on the same input, over its largest |output|) and ``note``. A skipped
    path has ``skipped: True``, None timings and the reason in ``note``. ``busy_cpus_before``
    (CPUs other processes used just before) and ``cpu_share`` (CPU time the benchmark threads
    got while timing, 1.0 = a core each) say whether the machine was quiet; a RuntimeWarning
    flags contended runs. `channels_last` applies to the eager and compiled paths of every
    library (the fast paths are always channels-last). On CUDA, `amp` ("bf16" or "fp16")
    autocasts every path. Models are randomly initialised: weights do not change the speed.
    """
    if paths is None:
        unknown = sorted(set(libraries) - set(LIBRARIES))
        if unknown:
            raise ValueError(f"unknown libraries {unknown}; choose from {LIBRARIES}")
        paths = tuple(libraries)
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise ValueError(f"unknown paths {unknown}; choose from {PATHS}")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    if any(b < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    from effnet.core.zoo import canonical_name

    dev = torch.device(device)
    dtype = amp_dtype(amp, dev)
    busy_before = busy_warning(threads) if dev.type == "cpu" else None
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    try:
        for requested in model_names:
            name = canonical_name(requested)
            built = {path: build_path(path, name, dev, channels_last, dtype, resolution) for path in paths}
            for batch_size in batch_sizes:
                x = _input(batch_size, resolution, dev, channels_last)
                entries = {path: (b.fn, x) for path, b in built.items() if b.fn is not None}
                timing = time_interleaved(entries, warmup, repeats, threads, dev)
                warn_contended(timing.cpu_share, f"{name} batch {batch_size}")
                for path, reason in timing.failed.items():
                    built[path] = Built(None, built[path].params, reason)
                diffs = _output_diffs({p: b for p, b in built.items() if b.fn is not None}, x)
                for path in paths:
                    b = built[path]
                    row = {"model": name, "path": path, "library": library_of(path), "batch_size": batch_size, "resolution": resolution, "threads": threads}
                    row.update(channels_last=channels_last, device=str(dev), amp=str(dtype).replace("torch.", "") if dtype else None)
                    row.update(busy_cpus_before=busy_before, cpu_share=timing.cpu_share)
                    if b.fn is not None:
                        row.update(latency_summary(timing.times[path], batch_size), params=b.params, first_call_s=round(timing.first[path], 3))
                        row["max_rel_diff_vs_effnet"] = diffs.get(path)
                        row["file_mib"] = b.file_bytes / 2**20 if b.file_bytes else None
                    else:
                        row.update(latency_summary([], batch_size), params=None, first_call_s=None, skipped=True, note=b.note)
                        row["max_rel_diff_vs_effnet"] = None
                    rows.append(row)
            del built
            gc.collect()
    finally:
        torch.set_num_threads(previous_threads)
    _add_ratios(rows)
    return rows


@dataclass
class Built:
    """A path ready to time (`fn`), or why it is not (`note`)."""

    fn: Callable[[torch.Tensor], Any] | None
    params: int | None = None
    note: str = ""
    file_bytes: int | None = None  # the deployed file: float32 weights (safetensors), or the INT8 ONNX file


def library_of(path: str) -> str:
    return path.split("-", 1)[0]


def build_path(path: str, name: str, device: torch.device, channels_last: bool, dtype: torch.dtype | None, resolution: int = 224) -> Built:
    """A callable running `name` along `path`, or the reason it cannot."""
    library, _, mode = path.partition("-")
    torch.manual_seed(0)  # every path of a library gets the same weights, so their outputs can be compared
    model, note = build_library_model(library, name)
    if model is None:
        return Built(None, note=note)
    model = model.eval().to(device)
    params = sum(p.numel() for p in model.parameters())
    if mode == "int8":
        return _int8_path(model, params, device, resolution)
    if mode.startswith("fast"):
        from effnet.models.fast import optimize

        fast = optimize(model, compile=mode == "fast-compiled", inplace=True, dtype=dtype if device.type == "cuda" else None)
        return Built(fast, params, file_bytes=4 * params)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fn: Callable[[torch.Tensor], Any] = model
    if mode == "compiled":
        # the peers' documented compiled path; on CUDA with CUDA graphs, as our fast path uses them
        fn = torch.compile(model, mode="reduce-overhead") if device.type == "cuda" else torch.compile(model)
    if dtype is not None:
        fn = _autocast(fn, device.type, dtype)
    return Built(fn, params, file_bytes=4 * params)


def _int8_path(model: nn.Module, params: int, device: torch.device, resolution: int) -> Built:
    """The model quantized to INT8 (calibrated on the bundled photos at `resolution`), run by onnxruntime; the file is kept until the process ends."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    if device.type != "cpu":
        return Built(None, params, note="the INT8 path runs on the CPU (onnxruntime's CPU provider)")
    from effnet.int8 import load_int8, quantize
    from effnet.models.predict import sample_images

    folder = Path(tempfile.mkdtemp(prefix="effnet-bench-int8-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    preprocessing = model.preprocessing.replace(resolution=resolution)
    result = quantize(model, sample_images(), folder / "int8.onnx", preprocessing=preprocessing)
    return Built(load_int8(result.path), params, file_bytes=result.size_bytes)


def build_library_model(library: str, name: str) -> tuple[nn.Module | None, str]:
    """The library's model for `name`, randomly initialised, or None and why not."""
    if library == "effnet":
        from effnet.core.zoo import UnknownModelError
        from effnet.models.factory import create_model

        try:
            return create_model(name, head_init="tf"), ""  # timm's and torchvision's random heads: outputs to compare, not zeros
        except UnknownModelError as error:
            return None, str(error)
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


def _autocast(fn: Callable[[torch.Tensor], Any], device_type: str, dtype: torch.dtype) -> Callable[[torch.Tensor], Any]:
    def run(x: torch.Tensor) -> Any:
        with torch.autocast(device_type, dtype=dtype):
            return fn(x)

    return run


def _input(batch_size: int, resolution: int, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = torch.randn(batch_size, 3, resolution, resolution, generator=torch.Generator().manual_seed(batch_size)).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _output_diffs(built: dict[str, Built], x: torch.Tensor) -> dict[str, float]:
    """Largest |output - plain effnet output| of each effnet path on `x` (the fast paths' correctness, re-checked on the bench input)."""
    if "effnet" not in built:
        return {}
    with torch.inference_mode():
        reference = built["effnet"].fn(x).float().clone()
        # relative to the largest logit: randomly initialised B0 has logits of ~1e-13, so absolute differences say nothing
        scale = float(reference.abs().max()) or 1.0
        return {path: float((b.fn(x).float() - reference).abs().max()) / scale for path, b in built.items() if path.startswith("effnet")}


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    pairs = (
        ("timm", "ratio_vs_timm"),
        ("timm-compiled", "ratio_vs_timm_compiled"),
        ("effnet", "ratio_vs_effnet"),
        ("effnet-fast-compiled", "ratio_vs_effnet_compiled"),
    )
    for reference_path, field in pairs:
        reference = {(r["model"], r["batch_size"]): r["throughput"] for r in rows if r.get("path", r["library"]) == reference_path and r["throughput"]}
        for r in rows:
            base = reference.get((r["model"], r["batch_size"]))
            r[field] = r["throughput"] / base if base and r["throughput"] else None


def run_table4_bench(
    threads: int = 2, warmup: int = 3, repeats: int = 20, device: str = "cpu", amp: str | None = None, compiled: bool = True
) -> list[dict[str, Any]]:
    """The paper's Table 4 in our setting: EfficientNet-B1 (240 px) against torchvision's ResNet-152 (224 px) at batch 1.

    Paths: effnet B1 eager, fast and (with `compiled`) fast-compiled; ResNet-152 eager and
    (with `compiled`) torch.compile'd; interleaved as in `run_inference_bench`. Each row has
    ``speedup_vs_resnet152_eager`` (ResNet-152 eager latency / this latency; the paper
    reports 0.554 s / 0.098 s = 5.7x on one CPU core).
    """
    dev = torch.device(device)
    dtype = amp_dtype(amp, dev)
    busy = busy_warning(threads) if dev.type == "cpu" else None
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        plan = [("efficientnet_b1", "effnet", 240), ("efficientnet_b1", "effnet-fast", 240)]
        plan += [("efficientnet_b1", "effnet-fast-compiled", 240)] if compiled else []
        plan += [("resnet152", "torchvision", 224)] + ([("resnet152", "torchvision-compiled", 224)] if compiled else [])
        entries, meta = {}, {}
        for name, path, resolution in plan:
            b = build_path(path, name, dev, True, dtype)
            key = f"{name}:{path}"
            meta[key] = (name, path, resolution, b)
            if b.fn is not None:
                entries[key] = (b.fn, _input(1, resolution, dev, True))
        timing = time_interleaved(entries, warmup, repeats, threads, dev)
        warn_contended(timing.cpu_share, "Table 4 (B1 vs ResNet-152)")
        for key, reason in timing.failed.items():
            name, path, resolution, b = meta[key]
            meta[key] = (name, path, resolution, Built(None, b.params, reason))
    finally:
        torch.set_num_threads(previous)
    rows = []
    for key, (name, path, resolution, b) in meta.items():
        row = {"model": name, "path": path, "library": library_of(path), "batch_size": 1, "resolution": resolution, "threads": threads, "device": str(dev)}
        row.update(busy_cpus_before=busy, cpu_share=timing.cpu_share, params=b.params)
        if b.fn is not None:
            row.update(latency_summary(timing.times[key], 1), first_call_s=round(timing.first[key], 3))
        else:
            row.update(latency_summary([], 1), skipped=True, note=b.note, first_call_s=None)
        rows.append(row)
    reference = next((r["median_ms"] for r in rows if r["path"] == "torchvision" and r["median_ms"]), None)
    for r in rows:
        r["speedup_vs_resnet152_eager"] = reference / r["median_ms"] if reference and r["median_ms"] else None
    return rows
