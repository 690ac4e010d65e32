"""Side-by-side speed and memory: effnet's default and fast paths against timm's and torchvision's eager and compiled paths.

Inference (`run_inference_bench`): every *path* (a library's model run one way) gets the
same input tensor and thread count, runs in eval mode under `torch.inference_mode`, and its
timed repetitions are interleaved round-robin with the other paths' (the starting path
rotates each round), so CPU frequency changes, thermal drift or a noisy neighbour affect
all of them alike. Paths:

- ``effnet``, ``timm``, ``torchvision``: the library's model in eval mode (eager);
- ``effnet-fast``: `effnet.optimize(model)` (BN folded, no dropout, channels-last, CUDA autocast);
- ``effnet-fast-compiled``: `effnet.optimize(model, compile=True)` (+ torch.compile with freezing);
- ``timm-compiled``, ``torchvision-compiled``: ``torch.compile(model)`` (CUDA: mode="reduce-overhead").

`run_table4_bench` is the paper's Table 4 comparison in our setting (B1 against ResNet-152 at
batch 1), `measure_aot_load` times a new process loading a saved compiled model, and
`run_train_bench` times training steps (images/s, peak memory) of each library and of
effnet's lean options, each configuration in a fresh subprocess. `run_all` runs them all and
`write_report` writes bench.json, bench.md and bench.png. timm and torchvision are optional:
a library that is not installed, or lacks the variant, is reported as skipped.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet._io import atomic_write, atomic_write_text

LIBRARIES = ("effnet", "timm", "torchvision")
PATHS = ("effnet", "effnet-fast", "effnet-fast-compiled", "timm", "timm-compiled", "torchvision", "torchvision-compiled")
RESULTS_JSON = "inference_bench.json"
RESULTS_MARKDOWN = "inference_bench.md"
REPORT_NAME = "bench"  # run_all's bench.json / bench.md / bench.png
TRAIN_CONFIGS = (
    "effnet",
    "effnet+lean",
    "effnet+alloc",
    "effnet+lean+alloc",
    "effnet+ckpt",
    "effnet+lean+ckpt+alloc",
    "effnet+compile",
    "effnet+lean+compile",
    "timm",
    "timm+alloc",
    "timm+compile",
    "timm+compile+alloc",
    "torchvision",
    "torchvision+compile",
)
TRAIN_OPTIONS = ("lean", "ckpt", "compile", "budget", "alloc")
RESULT_PREFIX = "EFFNET_BENCH_RESULT "  # marks a worker's JSON line on stdout
WORKER_TIMEOUT_S = 1800.0
SAMPLE_INTERVAL_S = 0.005
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 1024.0 * 1024.0
ACTIVATION_MEMORY_BUDGET = float(os.environ.get("EFFNET_ACTIVATION_MEMORY_BUDGET", "0.5"))  # +budget: fraction of activations compile may keep


# ------------------------------------------------------------------ inference
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
    from effnet.zoo import canonical_name

    dev = torch.device(device)
    amp_dtype = _amp_dtype(amp, dev)
    busy_before = _busy_warning(threads) if dev.type == "cpu" else None
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    try:
        for requested in model_names:
            name = canonical_name(requested)
            built = {path: _build_path(path, name, dev, channels_last, amp_dtype) for path in paths}
            for batch_size in batch_sizes:
                x = _input(batch_size, resolution, dev, channels_last)
                entries = {path: (b.fn, x) for path, b in built.items() if b.fn is not None}
                timing = _time_interleaved(entries, warmup, repeats, threads, dev)
                _warn_contended(timing.cpu_share, f"{name} batch {batch_size}")
                for path, reason in timing.failed.items():
                    built[path] = _Built(None, built[path].params, reason)
                diffs = _output_diffs({p: b for p, b in built.items() if b.fn is not None}, x)
                for path in paths:
                    b = built[path]
                    row = {"model": name, "path": path, "library": _library(path), "batch_size": batch_size, "resolution": resolution, "threads": threads}
                    row.update(channels_last=channels_last, device=str(dev), amp=str(amp_dtype).replace("torch.", "") if amp_dtype else None)
                    row.update(busy_cpus_before=busy_before, cpu_share=timing.cpu_share)
                    if b.fn is not None:
                        row.update(_summary(timing.times[path], batch_size), params=b.params, first_call_s=round(timing.first[path], 3))
                        row["max_rel_diff_vs_effnet"] = diffs.get(path)
                    else:
                        row.update(_summary([], batch_size), params=None, first_call_s=None, skipped=True, note=b.note)
                        row["max_rel_diff_vs_effnet"] = None
                    rows.append(row)
            del built
            gc.collect()
    finally:
        torch.set_num_threads(previous_threads)
    _add_ratios(rows)
    return rows


@dataclass
class _Built:
    fn: Callable[[torch.Tensor], Any] | None
    params: int | None = None
    note: str = ""


def _library(path: str) -> str:
    return path.split("-", 1)[0]


def _build_path(path: str, name: str, device: torch.device, channels_last: bool, amp_dtype: torch.dtype | None) -> _Built:
    """A callable running `name` along `path`, or the reason it cannot."""
    library, _, mode = path.partition("-")
    torch.manual_seed(0)  # every path of a library gets the same weights, so their outputs can be compared
    model, note = _build(library, name)
    if model is None:
        return _Built(None, note=note)
    model = model.eval().to(device)
    params = _params(model)
    if mode.startswith("fast"):
        from effnet.fast import optimize

        fast = optimize(model, compile=mode == "fast-compiled", inplace=True, dtype=amp_dtype if device.type == "cuda" else None)
        return _Built(fast, params)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fn: Callable[[torch.Tensor], Any] = model
    if mode == "compiled":
        # the peers' documented compiled path; on CUDA with CUDA graphs, as our fast path uses them
        fn = torch.compile(model, mode="reduce-overhead") if device.type == "cuda" else torch.compile(model)
    if amp_dtype is not None:
        fn = _autocast(fn, device.type, amp_dtype)
    return _Built(fn, params)


def _autocast(fn: Callable[[torch.Tensor], Any], device_type: str, dtype: torch.dtype) -> Callable[[torch.Tensor], Any]:
    def run(x: torch.Tensor) -> Any:
        with torch.autocast(device_type, dtype=dtype):
            return fn(x)

    return run


def _amp_dtype(amp: str | None, device: torch.device) -> torch.dtype | None:
    if amp in (None, "none", "fp32"):
        return None
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"unknown amp {amp!r}; expected 'bf16', 'fp16' or None")
    if device.type != "cuda":
        raise ValueError("amp is only benchmarked on CUDA (on CPU float32 is the fast path here); drop --amp or use --device cuda")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _input(batch_size: int, resolution: int, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = torch.randn(batch_size, 3, resolution, resolution, generator=torch.Generator().manual_seed(batch_size)).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _output_diffs(built: dict[str, _Built], x: torch.Tensor) -> dict[str, float]:
    """Largest |output - plain effnet output| of each effnet path on `x` (the fast paths' correctness, re-checked on the bench input)."""
    if "effnet" not in built:
        return {}
    with torch.inference_mode():
        reference = built["effnet"].fn(x).float().clone()
        # relative to the largest logit: randomly initialised B0 has logits of ~1e-13, so absolute differences say nothing
        scale = float(reference.abs().max()) or 1.0
        return {path: float((b.fn(x).float() - reference).abs().max()) / scale for path, b in built.items() if path.startswith("effnet")}


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
    amp_dtype = _amp_dtype(amp, dev)
    busy = _busy_warning(threads) if dev.type == "cpu" else None
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        plan = [("efficientnet_b1", "effnet", 240), ("efficientnet_b1", "effnet-fast", 240)]
        plan += [("efficientnet_b1", "effnet-fast-compiled", 240)] if compiled else []
        plan += [("resnet152", "torchvision", 224)] + ([("resnet152", "torchvision-compiled", 224)] if compiled else [])
        entries, meta = {}, {}
        for name, path, resolution in plan:
            b = _build_path(path, name, dev, True, amp_dtype)
            key = f"{name}:{path}"
            meta[key] = (name, path, resolution, b)
            if b.fn is not None:
                entries[key] = (b.fn, _input(1, resolution, dev, True))
        timing = _time_interleaved(entries, warmup, repeats, threads, dev)
        _warn_contended(timing.cpu_share, "Table 4 (B1 vs ResNet-152)")
        for key, reason in timing.failed.items():
            name, path, resolution, b = meta[key]
            meta[key] = (name, path, resolution, _Built(None, b.params, reason))
    finally:
        torch.set_num_threads(previous)
    rows = []
    for key, (name, path, resolution, b) in meta.items():
        row = {"model": name, "path": path, "library": _library(path), "batch_size": 1, "resolution": resolution, "threads": threads, "device": str(dev)}
        row.update(busy_cpus_before=busy, cpu_share=timing.cpu_share, params=b.params)
        if b.fn is not None:
            row.update(_summary(timing.times[key], 1), first_call_s=round(timing.first[key], 3))
        else:
            row.update(_summary([], 1), skipped=True, note=b.note, first_call_s=None)
        rows.append(row)
    reference = next((r["median_ms"] for r in rows if r["path"] == "torchvision" and r["median_ms"]), None)
    for r in rows:
        r["speedup_vs_resnet152_eager"] = reference / r["median_ms"] if reference and r["median_ms"] else None
    return rows


# ------------------------------------------------------------------ compile once, start fast
_LOAD_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[3]))
from effnet.fast import load_compiled
t1 = time.perf_counter()
model = load_compiled(sys.argv[1])
x = torch.randn(*json.loads(sys.argv[2]), device=model.info.device)
out = model(x)
if x.is_cuda:
    torch.cuda.synchronize()
t2 = time.perf_counter()
first_batch_at = time.time()
later = []
for _ in range(3):
    start = time.perf_counter()
    out = model(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    later.append(time.perf_counter() - start)
print("EFFNET_BENCH_RESULT " + json.dumps({"import_s": t1 - t0, "load_to_first_batch_s": t2 - t1, "first_batch_at": first_batch_at,
      "later_batches_s": later}), flush=True)
"""


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
    import effnet
    from effnet.fast import compile_cached, load_compiled

    torch.manual_seed(0)
    model = effnet.create_model(model_name).eval().to(device)
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
    load_compiled  # noqa: B018 (imported above so a broken install fails here, not in the child)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    spawn = time.time()  # wall clock: compared with the child's time.time() at its first batch (process teardown not counted)
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_CHILD, str(path), json.dumps(list(x.shape)), str(threads)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    result = _parse_worker(proc, "AOT load")
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


# ------------------------------------------------------------------ training
@dataclass(frozen=True)
class TrainConfig:
    """One training configuration: a library's model with options (``effnet+lean+compile``)."""

    library: str
    lean: bool = False  # effnet only: memory-efficient ops (effnet.nn.efficient)
    ckpt: bool = False  # effnet only: per-stage activation checkpointing
    compile: bool = False
    budget: bool = False  # torch.compile's activation memory budget (the partitioner recomputes more in backward)
    alloc: bool = False  # any library: effnet.allocator.tune_cpu_allocator() before anything is allocated (CPU)

    @property
    def key(self) -> str:
        return self.library + "".join(f"+{option}" for option in TRAIN_OPTIONS if getattr(self, option))

    @classmethod
    def parse(cls, key: str) -> TrainConfig:
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
    parsed = [TrainConfig.parse(key) for key in configs]
    busy_start = busy_cpus()
    runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in parsed}
    started = time.monotonic()
    for round_index in range(rounds):
        shift = round_index % len(parsed)
        for config in parsed[shift:] + parsed[:shift]:
            args = [config.key, str(batch_size), str(resolution), str(threads), str(warmup), str(steps), device, amp or "none", str(int(channels_last))]
            busy = busy_cpus() if device == "cpu" else None
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
            proc = subprocess.run(
                [sys.executable, "-m", "effnet.bench", "--train-worker", *args], capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT_S, check=False
            )
            try:
                result = {**_parse_worker(proc, config.key), "busy_cpus_before": busy}
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
            "optimizer": "RMSprop(lr=1e-3, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=1e-5)",
            "loss": "CrossEntropyLoss(label_smoothing=0.1)",
            "memory_measure": "CUDA: max_memory_allocated rise"
            if device.startswith("cuda")
            else "RSS rise (sampled every 5 ms) over RSS before the first step",
        },
        "busy_cpus_at_start": busy_start,
        "wall_s": round(time.monotonic() - started, 1),
        "results": rows,
        "runs": runs,
    }


def _train_worker(argv: Sequence[str]) -> dict[str, Any]:
    """One training configuration in this (fresh) process: warm-up + timed steps; returns timings and memory."""
    key, batch_size, resolution, threads, warmup, steps, device, amp, channels_last = argv
    config = TrainConfig.parse(key)
    batch_size, resolution, threads, warmup, steps = int(batch_size), int(resolution), int(threads), int(warmup), int(steps)
    dev = torch.device(device)
    allocator = None
    if config.alloc and dev.type == "cpu":  # first: PyTorch reads THP_MEM_ALLOC_ENABLE at its first allocation
        from effnet.allocator import tune_cpu_allocator

        allocator = tune_cpu_allocator().describe()
    amp_dtype = _amp_dtype(None if amp == "none" else amp, dev)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = _train_model(config).to(dev).train()
    generator = torch.Generator().manual_seed(1234)  # the same batch for every library
    images = torch.randn(batch_size, 3, resolution, resolution, generator=generator).to(dev)
    labels = torch.randint(0, 1000, (batch_size,), generator=generator).to(dev)
    if channels_last == "1":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=1e-5)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    if config.budget:
        torch._functorch.config.activation_memory_budget = ACTIVATION_MEMORY_BUDGET
    forward = torch.compile(model) if config.compile else model
    cuda = dev.type == "cuda"

    def step() -> float:
        with torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
            loss = criterion(forward(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())  # synchronises CUDA
        return value

    gc.collect()
    gc.disable()  # a collection inside one step would be charged to it
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else _rss_bytes()
    times, losses = [], []
    first = 0.0
    sampler = _RssSampler() if not cuda else None
    with sampler if sampler else contextlib.nullcontext():
        for index in range(warmup + steps):
            if index == warmup:
                wall0, cpu0 = time.perf_counter(), time.process_time()
            start = time.perf_counter()
            losses.append(step())
            elapsed = time.perf_counter() - start
            if index == 0:
                first = elapsed
            if index >= warmup:
                times.append(elapsed)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    gc.enable()
    peak = torch.cuda.max_memory_allocated() if cuda else sampler.peak
    median = statistics.median(times)
    return {
        "config": config.key,
        "median_step_s": median,
        "step_s": times,
        "first_step_s": first,
        "images_per_s": batch_size / median,
        "peak_rise_mb": (peak - before) / MB,
        "cpu_share": round(cpu / (wall * threads), 3) if wall > 0 and not cuda else None,
        "params": sum(p.numel() for p in model.parameters()),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "allocator": allocator,
    }


def _train_model(config: TrainConfig) -> nn.Module:
    """The library's EfficientNet-B0 (1000 classes, random init, default regularisation) with the config's options."""
    if config.library == "effnet":
        import effnet

        model = effnet.create_model("efficientnet_b0", num_classes=1000)
        model.grad_checkpointing = config.ckpt
        if config.lean:
            from effnet.nn.efficient import use_memory_efficient_ops

            use_memory_efficient_ops(model)
        return model
    if config.library == "timm":
        import timm

        return timm.create_model("efficientnet_b0")
    import torchvision

    return torchvision.models.efficientnet_b0()


def _train_summary(config: TrainConfig, runs: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
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


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE


class _RssSampler:
    """Background thread recording the highest RSS (torch releases the GIL in its kernels, so it samples during a step)."""

    def __init__(self, interval: float = SAMPLE_INTERVAL_S) -> None:
        self.interval = interval
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _parse_worker(proc: subprocess.CompletedProcess, what: str) -> dict[str, Any]:
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


# ------------------------------------------------------------------ everything, and the report
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


def write_report(payload: dict[str, Any], out_dir: str | Path, name: str = REPORT_NAME) -> list[Path]:
    """Write ``<name>.json``, ``<name>.md`` and (with matplotlib) ``<name>.png`` into `out_dir` atomically; returns the paths."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    atomic_write_text(paths[0], json.dumps(payload, indent=2) + "\n")
    atomic_write_text(paths[1], format_report(payload))
    png = out_dir / f"{name}.png"
    if plot_report(payload, png):
        paths.append(png)
    return paths


def format_report(payload: dict[str, Any]) -> str:
    """The run_all payload as Markdown: inference, Table 4, AOT load and training tables, with the machine state."""
    s, env = payload["settings"], payload["environment"]
    lines = [
        f"# effnet bench ({s['device']}{', AMP ' + s['amp'] if s.get('amp') else ''}, {s['threads']} thread(s))",
        "",
        f"Other processes kept {payload.get('busy_cpus_at_start')} CPUs busy at the start and {payload.get('busy_cpus_at_end')} at the end; "
        f"wall time {payload.get('wall_s')} s. Ratios compare rows of this run only.",
        "",
    ]
    if payload.get("inference"):
        lines += ["## Inference, EfficientNet-B0", "", format_markdown(payload["inference"])]
    if payload.get("table4"):
        lines += ["## Paper Table 4 in our setting: B1 vs ResNet-152, batch 1", "", _format_table4(payload["table4"])]
    if payload.get("aot_load"):
        lines += ["## Compile once, start fast (AOTInductor package)", "", _format_aot(payload["aot_load"])]
    if payload.get("train"):
        lines += ["## Training, EfficientNet-B0", "", _format_train(payload["train"])]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines += [f"Machine: {env['cpu']} ({env['cpu_count']} logical CPUs){'; ' + env['gpu'] if env.get('gpu') else ''}; {versions}.", ""]
    return "\n".join(lines)


def _format_table4(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | path | resolution | median ms | p10 ms | p90 ms | speedup vs ResNet-152 eager | first call s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['model']} | {r['path']} | {r['resolution']} | skipped: {r['note']} | | | | |")
            continue
        speed = f"{r['speedup_vs_resnet152_eager']:.2f}x" if r.get("speedup_vs_resnet152_eager") else "n/a"
        lines.append(
            f"| {r['model']} | {r['path']} | {r['resolution']} | {r['median_ms']:.1f} | {r['p10_ms']:.1f} | {r['p90_ms']:.1f} | {speed} | {r['first_call_s']:.1f} |"
        )
    lines += ["", "The paper (Table 4, one CPU core) reports B1 0.098 s vs ResNet-152 0.554 s: 5.7x.", ""]
    return "\n".join(lines)


def _format_aot(info: dict[str, Any]) -> str:
    if "error" in info:
        return f"Not available here: {info['error']}\n"
    return (
        f"B0 input {info['input_shape']} on {info['device']}: a new process went from spawn to its first batch's output in "
        f"**{info['process_to_first_batch_s']:.2f} s** (Python + torch import {info['import_s']:.2f} s, package load + first batch "
        f"{info['load_to_first_batch_s']:.2f} s; then {info['steady_batch_s']:.3f} s per batch, median of 3). Making the package took "
        f"{info['compile_seconds']:.0f} s ({'cache hit this run' if info['cache_hit'] else 'compiled this run'}); "
        f"package {info['package_mb']} MB; max |diff| / max |logit| vs plain effnet {info['max_rel_diff_vs_effnet']:.2e}.\n"
    )


def _format_train(train: dict[str, Any]) -> str:
    s = train["settings"]
    lines = [
        f"Batch {s['batch_size']}, {s['resolution']}x{s['resolution']}, {s['threads']} thread(s), {s['device']}"
        + (f", AMP {s['amp']}" if s.get("amp") else "")
        + (", channels-last" if s["channels_last"] else "")
        + f"; {s['warmup']} warm-up + {s['steps']} timed steps per run, {s['rounds']} round(s), each run in a fresh process. "
        f"Step: forward, {s['loss']}, backward, {s['optimizer']}, zero_grad. Memory: {s['memory_measure']}.",
        "",
        "| config | img/s | vs timm | vs timm compiled | peak rise MB | mem vs timm | mem vs timm compiled | first step s | CPU share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(v: float | None) -> str:
        return f"{v:.2f}x" if v is not None else "n/a"

    for r in train["results"]:
        if r.get("skipped"):
            lines.append(f"| {r['config']} | failed: {r['note'][-120:].splitlines()[-1] if r['note'] else ''} | | | | | | | |")
            continue
        share = f"{r['cpu_share']:.2f}" if r.get("cpu_share") is not None else ""
        lines.append(
            f"| {r['config']} | {r['images_per_s']:.2f} | {ratio(r['speed_vs_timm'])} | {ratio(r['speed_vs_timm_compiled'])} | {r['peak_rise_mb']:.0f} "
            f"| {ratio(r['memory_vs_timm'])} | {ratio(r['memory_vs_timm_compiled'])} | {r['first_step_s']:.1f} | {share} |"
        )
    lines += [
        "",
        "+lean: effnet.nn.efficient.use_memory_efficient_ops (BN+activation, the SE gate and the inputs of the depthwise and project "
        "convs recomputed in backward); +ckpt: per-stage activation checkpointing; +compile: torch.compile(model); "
        "+budget: with torch._functorch.config.activation_memory_budget "
        f"= {ACTIVATION_MEMORY_BUDGET}; +alloc (any library): effnet.allocator.tune_cpu_allocator() first in the process "
        "(tensors of 4 MiB or more on transparent huge pages, unmapped when freed). Each library keeps its default dropout / drop path "
        "(effnet and torchvision 0.2 / 0.2, timm 0 / 0). First step includes compiling.",
        "",
    ]
    return "\n".join(lines)


def plot_report(payload: dict[str, Any], path: str | Path) -> bool:
    """A PNG bar chart: inference throughput per path and batch size, training img/s and peak memory. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    inference = [r for r in payload.get("inference", []) if not r.get("skipped")]
    train = [r for r in payload.get("train", {}).get("results", []) if not r.get("skipped")]
    panels = sorted({r["batch_size"] for r in inference}) + (["train", "memory"] if train else [])
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "train":
            labels, values, title, unit = (
                [r["config"] for r in train],
                [r["images_per_s"] for r in train],
                "training, batch " + str(payload["train"]["settings"]["batch_size"]),
                "images/s",
            )
        elif panel == "memory":
            labels, values, title, unit = [r["config"] for r in train], [r["peak_rise_mb"] for r in train], "training peak memory rise", "MB"
        else:
            rows = [r for r in inference if r["batch_size"] == panel]
            labels, values, title, unit = [r["path"] for r in rows], [r["throughput"] for r in rows], f"inference, batch {panel}", "images/s"
        colors = ["tab:blue" if label.startswith("effnet") else "tab:gray" if label.startswith("timm") else "tab:orange" for label in labels]
        ax.barh(labels, values, color=colors)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel(unit)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.1f}" if v < 100 else f" {v:.0f}", va="center", fontsize=8)
    env = payload["environment"]
    fig.suptitle(f"effnet vs timm vs torchvision, {payload['settings']['device']}, {payload['settings']['threads']} threads ({env['cpu']})", fontsize=10)
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return True


# ------------------------------------------------------------------ the inference table (kept for `write_results`)
def format_markdown(results: Sequence[dict[str, Any]]) -> str:
    """The inference results as a Markdown table (one row per model, batch size and path), notes below."""
    if not results:
        return "_no results_\n"
    first = results[0]
    repeats = max(r.get("repeats") or 0 for r in results)
    device = first.get("device", "cpu")
    lines = [
        f"{device.upper() if device == 'cpu' else device} inference, eval mode, torch.inference_mode; {first['threads']} thread(s), "
        f"{first['resolution']}x{first['resolution']} input"
        + (", channels_last" if first.get("channels_last") else "")
        + (f", AMP {first['amp']}" if first.get("amp") else "")
        + f"; latency of one forward pass over {repeats} repetitions interleaved across paths"
        + (f"; {first['busy_cpus_before']} CPUs busy with other work when it started." if first.get("busy_cpus_before") is not None else "."),
        "",
        "| model | batch | path | median ms | p10 ms | p90 ms | img/s | vs timm | vs timm compiled | first call s | max rel diff | params | CPU share |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for r in results:
        path = r.get("path", r["library"])
        if r.get("skipped"):
            lines.append(f"| {r['model']} | {r['batch_size']} | {path} | skipped | | | | | | | | | |")
            notes.append(f"- {path} ({r['model']}): {r['note']}")
            continue
        ratio = f"{r['ratio_vs_timm']:.2f}x" if r.get("ratio_vs_timm") is not None else "n/a"
        ratio_c = f"{r['ratio_vs_timm_compiled']:.2f}x" if r.get("ratio_vs_timm_compiled") is not None else "n/a"
        params = f"{r['params'] / 1e6:.2f}M" if r.get("params") else ""
        share = f"{r['cpu_share']:.2f}" if r.get("cpu_share") is not None else ""
        first_call = f"{r['first_call_s']:.2f}" if r.get("first_call_s") is not None else ""
        diff = f"{r['max_rel_diff_vs_effnet']:.1e}" if r.get("max_rel_diff_vs_effnet") is not None else ""
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {path} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | {r['p90_ms']:.2f} "
            f"| {r['throughput']:.1f} | {ratio} | {ratio_c} | {first_call} | {diff} | {params} | {share} |"
        )
    lines += [
        "",
        "vs timm / vs timm compiled: throughput relative to timm eager / timm + torch.compile at the same batch size (> 1: faster).",
        "first call s: the first, untimed call (compiling, for compiled paths). max rel diff: largest |logit - plain effnet logit| / largest |plain logit| on the bench input.",
        "CPU share: process CPU time / (wall time x threads) while timing; well below 1 means other processes took the cores.",
    ]
    if notes:
        lines += ["", "Skipped:", *dict.fromkeys(notes)]
    return "\n".join(lines) + "\n"


def write_results(results: Sequence[dict[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Write inference results as JSON (with a description of the machine and versions) and Markdown; returns both paths.

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
    """What the numbers depend on: CPU, GPU, core count, current load, library versions."""
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
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
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


def _warn_contended(cpu_share: float | None, what: str) -> None:
    if cpu_share is not None and cpu_share < 0.8:
        warnings.warn(
            f"{what}: the benchmark threads got only {cpu_share:.0%} of their CPU time while timing "
            "(other processes ran on the same cores); these latencies are inflated",
            RuntimeWarning,
            stacklevel=3,
        )


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
        from effnet.zoo import UnknownModelError

        try:
            return effnet.create_model(name), ""
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


@dataclass
class _Timing:
    times: dict[str, list[float]]
    first: dict[str, float]
    cpu_share: float | None
    failed: dict[str, str]


def _time_interleaved(
    entries: dict[str, tuple[Callable[[torch.Tensor], Any], torch.Tensor]], warmup: int, repeats: int, threads: int, device: torch.device
) -> _Timing:
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
                    first[key] = _time_once(fn, x, cuda)
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
                    elapsed = _time_once(fn, x, cuda)
                    if round_index >= max(warmup - 1, 0):
                        times[key].append(elapsed)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        if gc_was_enabled:
            gc.enable()
    share = round(cpu / (wall * threads), 3) if order and wall > 0 and not cuda else None
    return _Timing(times, first, share, failed)


def _time_once(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, cuda: bool = False) -> float:
    start = time.perf_counter()
    fn(x)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _summary(seconds: list[float], batch_size: int) -> dict[str, Any]:
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


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    for reference_path, field in (("timm", "ratio_vs_timm"), ("timm-compiled", "ratio_vs_timm_compiled")):
        reference = {(r["model"], r["batch_size"]): r["throughput"] for r in rows if r.get("path", r["library"]) == reference_path and r["throughput"]}
        for r in rows:
            base = reference.get((r["model"], r["batch_size"]))
            r[field] = r["throughput"] / base if base and r["throughput"] else None


if __name__ == "__main__":  # the training worker: python -m effnet.bench --train-worker KEY BATCH RES THREADS WARMUP STEPS DEVICE AMP CL
    if len(sys.argv) == 11 and sys.argv[1] == "--train-worker":
        print(RESULT_PREFIX + json.dumps(_train_worker(sys.argv[2:])), flush=True)
    else:
        sys.exit("usage: python -m effnet.bench --train-worker KEY BATCH RES THREADS WARMUP STEPS DEVICE AMP CHANNELS_LAST (internal; use `effnet bench`)")
