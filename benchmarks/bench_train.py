"""CPU training benchmark: throughput and peak memory of EfficientNet-B0 in effnet vs timm vs torchvision.

    python benchmarks/bench_train.py --batch-size 32 --resolution 224 --threads 2 --warmup 2 --steps 6 --rounds 2

A training step is forward -> cross-entropy (label smoothing 0.1) -> backward -> RMSprop
step -> zero_grad, on one fixed random batch (the same tensor values and labels for every
library). Each (library, memory format) configuration runs in its own fresh subprocess so
its peak memory is clean: RSS is sampled every ~5 ms by a background thread reading
/proc/self/statm, and the peak rise is reported over the RSS measured just before the
first training step (warm-up steps included, so the lazily created optimizer state and
the allocator's growth count). ``ru_maxrss`` is recorded next to it as a cross-check.
Configurations run round-robin for --rounds rounds (the starting one rotates each round)
and the per-round medians are combined by taking the median across rounds.

Prints a Markdown table with throughput and memory ratios vs timm (same memory format)
and writes train_bench.json / train_bench.md to --out.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet.bench import busy_cpus  # CPUs busy over the next 0.5 s, from /proc/stat

RESULTS_JSON = "train_bench.json"
RESULTS_MARKDOWN = "train_bench.md"
LOAD_LIMIT = 1.5  # 1-minute load average above which we wait before timing
LOAD_WAIT_S = 60.0  # longest wait for the load to drop
BUSY_LIMIT = 0.5  # CPUs other processes may keep busy right before a run without us waiting
SAMPLE_INTERVAL_S = 0.005  # RSS sampling period of the background thread
WORKER_TIMEOUT_S = 1800.0  # a single configuration's subprocess is killed after this
RESULT_PREFIX = "BENCH_TRAIN_RESULT "  # marks the worker's JSON line on stdout
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 1024.0 * 1024.0


@dataclass(frozen=True)
class Config:
    """One benchmarked configuration: a library's model in one memory format."""

    library: str  # effnet, timm or torchvision
    channels_last: bool
    grad_checkpointing: bool = False  # effnet only: recompute each stage in backward

    @property
    def key(self) -> str:
        """Stable identifier, also the worker's command-line argument (e.g. ``effnet+ckpt:channels_last``)."""
        return f"{self.label}:{self.memory_format}"

    @property
    def label(self) -> str:
        """Library name as shown in the table."""
        return self.library + ("+ckpt" if self.grad_checkpointing else "")

    @property
    def memory_format(self) -> str:
        """``channels_last`` or ``nchw``."""
        return "channels_last" if self.channels_last else "nchw"

    @classmethod
    def parse(cls, key: str) -> Config:
        """Inverse of `key`."""
        label, memory_format = key.split(":")
        library, _, suffix = label.partition("+")
        if library not in ("effnet", "timm", "torchvision") or suffix not in ("", "ckpt") or memory_format not in ("channels_last", "nchw"):
            raise ValueError(f"bad configuration {key!r}")
        if suffix and library != "effnet":
            raise ValueError(f"gradient checkpointing is only benchmarked for effnet, got {key!r}")
        return cls(library, memory_format == "channels_last", suffix == "ckpt")


CONFIGS: tuple[Config, ...] = tuple(
    Config(library, channels_last, ckpt)
    for channels_last in (True, False)
    for library, ckpt in (("effnet", False), ("effnet", True), ("timm", False), ("torchvision", False))
)


# ------------------------------------------------------------------ machine state
def load_average() -> float:
    """The 1-minute load average from /proc/loadavg (os.getloadavg elsewhere)."""
    try:
        with open("/proc/loadavg") as handle:
            return float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]


def wait_for_quiet(limit: float = LOAD_LIMIT, max_wait_s: float = LOAD_WAIT_S, poll_s: float = 5.0) -> dict[str, Any]:
    """Wait up to `max_wait_s` for the 1-minute load average to drop to `limit`; returns what was seen."""
    start = time.monotonic()
    initial = current = load_average()
    while current > limit and time.monotonic() - start < max_wait_s:
        time.sleep(poll_s)
        current = load_average()
    waited = round(time.monotonic() - start, 1)
    if current > limit:
        print(f"warning: load average still {current:.2f} > {limit} after {waited:.0f} s; timings will be inflated", file=sys.stderr)
    return {"initial": initial, "at_start": current, "waited_s": waited, "limit": limit, "quiet": current <= limit}


def wait_for_idle_cpus(limit: float = BUSY_LIMIT, max_wait_s: float = LOAD_WAIT_S) -> tuple[float | None, float]:
    """Wait up to `max_wait_s` until other processes use at most `limit` CPUs; returns (busy CPUs, seconds waited)."""
    start = time.monotonic()
    busy = busy_cpus()
    while busy is not None and busy > limit and time.monotonic() - start < max_wait_s:
        time.sleep(2.0)
        busy = busy_cpus()
    return busy, round(time.monotonic() - start, 1)


def rss_bytes() -> int:
    """Resident set size of this process now (from /proc/self/statm)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE


def max_rss_bytes() -> int:
    """Peak RSS of this process over its lifetime (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RssSampler:
    """Background thread recording the highest RSS seen, sampled every `interval` seconds.

    PyTorch releases the GIL inside its kernels and the autograd engine, so the thread
    keeps sampling while a step runs.
    """

    def __init__(self, interval: float = SAMPLE_INTERVAL_S) -> None:
        self.interval = interval
        self.peak = rss_bytes()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


# ------------------------------------------------------------------ worker (one configuration per process)
def build_model(config: Config) -> Any:
    """The library's EfficientNet-B0 with 1000 classes, randomly initialised, in its default configuration."""
    if config.library == "effnet":
        import effnet

        model = effnet.create_model("efficientnet_b0", num_classes=1000)
        model.grad_checkpointing = config.grad_checkpointing
        return model
    if config.library == "timm":
        import timm

        return timm.create_model("efficientnet_b0")
    import torchvision

    return torchvision.models.efficientnet_b0()


def regularisation(model: Any, library: str) -> dict[str, float | None]:
    """Classifier dropout and maximum stochastic-depth rate: they differ between the libraries' defaults."""
    if library == "timm":
        rates = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
        return {"dropout": float(model.drop_rate), "drop_path": max(rates, default=0.0)}
    import torch

    head = model.dropout if library == "effnet" else model.classifier  # effnet and torchvision use torchvision's StochasticDepth
    dropout = next((m.p for m in head.modules() if isinstance(m, torch.nn.Dropout)), None)
    rates = [m.p for m in model.modules() if type(m).__name__ == "StochasticDepth"]
    return {"dropout": dropout, "drop_path": max(rates, default=0.0)}


def run_worker(config: Config, batch_size: int, resolution: int, threads: int, warmup: int, steps: int) -> dict[str, Any]:
    """Train `config`'s model for `warmup` + `steps` steps in this process; returns timings and memory."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(config)
    model.train()
    generator = torch.Generator().manual_seed(1234)  # the same batch for every library
    images = torch.randn(batch_size, 3, resolution, resolution, generator=generator)
    labels = torch.randint(0, 1000, (batch_size,), generator=generator)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=1e-5)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step() -> float:
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    gc.collect()
    gc.disable()  # a collection inside one step would be charged to it
    rss_before = rss_bytes()
    max_rss_before = max_rss_bytes()
    times: list[float] = []
    losses: list[float] = []
    with RssSampler() as sampler:
        for index in range(warmup + steps):
            if index == warmup:
                wall0, cpu0 = time.perf_counter(), time.process_time()
            start = time.perf_counter()
            losses.append(step())
            if index >= warmup:
                times.append(time.perf_counter() - start)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    gc.enable()
    max_rss_after = max_rss_bytes()
    median = statistics.median(times)
    return {
        "config": config.key,
        "median_step_s": median,
        "step_s": times,
        "images_per_s": batch_size / median,
        "rss_before_mb": rss_before / MB,
        "peak_rss_mb": sampler.peak / MB,
        "peak_rise_mb": (sampler.peak - rss_before) / MB,
        "rss_samples": sampler.samples,
        # ru_maxrss cross-check; only meaningful when the training peak exceeds the peak before it
        "maxrss_rise_mb": (max_rss_after - rss_before) / MB if max_rss_after > max_rss_before else None,
        "cpu_share": round(cpu / (wall * threads), 3) if wall > 0 else None,
        "params": sum(p.numel() for p in model.parameters()),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "load_at_start": load_average(),
        **regularisation(model, config.library),
    }


# ------------------------------------------------------------------ driver
def run_config(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Run one configuration in a fresh subprocess of this script; returns the worker's result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", config.key]
    command += ["--batch-size", str(args.batch_size), "--resolution", str(args.resolution), "--threads", str(args.threads)]
    command += ["--warmup", str(args.warmup), "--steps", str(args.steps)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    busy, waited = wait_for_idle_cpus()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT_S, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return {**json.loads(line[len(RESULT_PREFIX) :]), "busy_cpus_before": busy, "waited_s": waited}
    raise RuntimeError(f"worker {config.key} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def run_benchmark(args: argparse.Namespace, configs: list[Config]) -> dict[str, Any]:
    """All configurations, round-robin for `args.rounds` rounds; returns the JSON payload."""
    load = wait_for_quiet()
    print(f"load average {load['initial']:.2f} at launch, {load['at_start']:.2f} when timing started (waited {load['waited_s']:.0f} s)", file=sys.stderr)
    runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in configs}
    started = time.monotonic()
    for round_index in range(args.rounds):
        shift = round_index % len(configs)
        for config in configs[shift:] + configs[:shift]:
            result = run_config(config, args)
            runs[config.key].append(result)
            print(
                f"round {round_index + 1}/{args.rounds} {config.key:28s} {result['images_per_s']:6.2f} img/s  "
                f"peak rise {result['peak_rise_mb']:7.1f} MB  CPU share {result['cpu_share']}  other CPUs busy before {result['busy_cpus_before']} "
                f"(waited {result['waited_s']:.0f} s)",
                file=sys.stderr,
            )
    rows = [summarise(config, runs[config.key], args.batch_size) for config in configs]
    add_ratios(rows)
    return {
        "settings": {
            "batch_size": args.batch_size,
            "resolution": args.resolution,
            "threads": args.threads,
            "warmup": args.warmup,
            "steps": args.steps,
            "rounds": args.rounds,
            "memory_measure": f"RSS sampled every {SAMPLE_INTERVAL_S * 1e3:.0f} ms from /proc/self/statm by a background thread; "
            "rise over RSS just before the first (warm-up) step; ru_maxrss rise recorded as maxrss_rise_mb",
            "optimizer": "RMSprop(lr=1e-3, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=1e-5)",
            "loss": "CrossEntropyLoss(label_smoothing=0.1)",
        },
        "load_average": {**load, "at_end": load_average()},
        "wall_s": round(time.monotonic() - started, 1),
        "environment": environment(),
        "results": rows,
        "runs": runs,
    }


def summarise(config: Config, runs: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """Median across rounds of each round's median step time and peak memory rise."""
    step = statistics.median(r["median_step_s"] for r in runs)
    rises = [r["peak_rise_mb"] for r in runs]
    first = runs[0]
    return {
        "config": config.key,
        "library": config.label,
        "memory_format": config.memory_format,
        "median_step_s": step,
        "images_per_s": batch_size / step,
        "images_per_s_rounds": [r["images_per_s"] for r in runs],
        "peak_rise_mb": statistics.median(rises),
        "peak_rise_mb_rounds": rises,
        "maxrss_rise_mb": statistics.median(r["maxrss_rise_mb"] for r in runs) if all(r["maxrss_rise_mb"] is not None for r in runs) else None,
        "cpu_share": statistics.median(r["cpu_share"] for r in runs if r["cpu_share"] is not None),
        "min_cpu_share": min(r["cpu_share"] for r in runs if r["cpu_share"] is not None),
        "params": first["params"],
        "dropout": first["dropout"],
        "drop_path": first["drop_path"],
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Throughput and memory of each row relative to timm's in the same memory format."""
    timm = {r["memory_format"]: r for r in rows if r["library"] == "timm"}
    for r in rows:
        ref = timm.get(r["memory_format"])
        r["throughput_vs_timm"] = r["images_per_s"] / ref["images_per_s"] if ref else None
        r["memory_vs_timm"] = r["peak_rise_mb"] / ref["peak_rise_mb"] if ref and ref["peak_rise_mb"] > 0 else None


def format_markdown(payload: dict[str, Any]) -> str:
    """The results as a Markdown table with the settings above and notes below."""
    s, load = payload["settings"], payload["load_average"]
    lines = [
        f"CPU training, EfficientNet-B0, batch {s['batch_size']}, {s['resolution']}x{s['resolution']}, {s['threads']} thread(s); "
        f"{s['warmup']} warm-up + {s['steps']} timed steps per run, median over {s['rounds']} interleaved round(s), each run in a fresh process.",
        f"Step: forward, {s['loss']}, backward, {s['optimizer']}, zero_grad.",
        f"Load average: {load['initial']:.2f} at launch, {load['at_start']:.2f} when timing started (waited {load['waited_s']:.0f} s), {load['at_end']:.2f} at the end.",
        "",
        "| library | memory format | step s | img/s | vs timm | peak rise MB | mem vs timm | ru_maxrss rise MB | CPU share | dropout / drop path |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in payload["results"]:
        speed = f"{r['throughput_vs_timm']:.2f}x" if r["throughput_vs_timm"] is not None else "n/a"
        memory = f"{r['memory_vs_timm']:.2f}x" if r["memory_vs_timm"] is not None else "n/a"
        maxrss = f"{r['maxrss_rise_mb']:.0f}" if r["maxrss_rise_mb"] is not None else "n/a"
        lines.append(
            f"| {r['library']} | {r['memory_format']} | {r['median_step_s']:.2f} | {r['images_per_s']:.2f} | {speed} "
            f"| {r['peak_rise_mb']:.0f} | {memory} | {maxrss} | {r['cpu_share']:.2f} | {_rate(r['dropout'])} / {_rate(r['drop_path'])} |"
        )
    lines += [
        "",
        "vs timm: relative to timm in the same memory format (throughput > 1: faster; memory < 1: less).",
        f"Peak rise: {s['memory_measure']}.",
        "CPU share: process CPU time / (wall time x threads) over the timed steps; well below 1 means other processes took the cores.",
        "+ckpt: effnet with model.grad_checkpointing = True (each stage recomputed in backward).",
        "dropout / drop path: each library's defaults (classifier dropout, largest per-block stochastic-depth rate); timm's are 0 unless asked for.",
    ]
    contended = [f"{key} round {i + 1} ({run['cpu_share']:.2f})" for key, rs in payload["runs"].items() for i, run in enumerate(rs) if run["cpu_share"] < 0.8]
    if contended:
        lines += ["", "**Contended runs** (CPU share < 0.8, other processes competed for the cores; their timings are inflated): " + ", ".join(contended) + "."]
    env = payload["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines += ["", f"Machine: {env['cpu']} ({env['cpu_count']} logical CPUs); {versions}."]
    return "\n".join(lines) + "\n"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def environment() -> dict[str, Any]:
    """CPU, core count and library versions the numbers depend on."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for module in ("torch", "effnet", "timm", "torchvision"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(), "versions": versions, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (also the per-configuration worker with --worker)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default: 32)")
    parser.add_argument("--resolution", type=int, default=224, help="input height and width (default: 224)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every run (default: 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per run (default: 2)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per run (default: 6)")
    parser.add_argument("--rounds", type=int, default=2, help="round-robin rounds over all configurations (default: 2)")
    parser.add_argument("--configs", nargs="+", default=[c.key for c in CONFIGS], help="subset of configurations (default: all 8)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results", help="output directory (default: benchmarks/results)")
    parser.add_argument("--worker", metavar="CONFIG", help=argparse.SUPPRESS)  # internal: run one configuration and print its result
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.resolution < 32 or args.threads < 1 or args.warmup < 0 or args.steps < 1 or args.rounds < 1:
        parser.error("need --batch-size >= 1, --resolution >= 32, --threads >= 1, --warmup >= 0, --steps >= 1, --rounds >= 1")

    if args.worker:
        result = run_worker(Config.parse(args.worker), args.batch_size, args.resolution, args.threads, args.warmup, args.steps)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    from effnet._io import atomic_write_text

    try:
        configs = [Config.parse(key) for key in args.configs]
    except ValueError as error:
        parser.error(str(error))
    payload = run_benchmark(args, configs)
    markdown = format_markdown(payload)
    atomic_write_text(args.out / RESULTS_JSON, json.dumps(payload, indent=2) + "\n")
    atomic_write_text(args.out / RESULTS_MARKDOWN, markdown)
    print(markdown)
    print(f"wrote {args.out / RESULTS_JSON} and {args.out / RESULTS_MARKDOWN}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
