"""One training configuration, timed in this fresh process (started by `run_train_bench`).

    python -m effnet.experiments.bench.train_worker --config effnet+lean --batch-size 32 --resolution 224 --threads 2 \
        --warmup 2 --steps 4 --device cpu --channels-last

Prints one result line (`effnet.experiments.bench.child.emit`): step times, images/s, peak memory rise.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from effnet.experiments.bench.child import emit
from effnet.experiments.bench.environment import MB, RssSampler, rss_bytes
from effnet.experiments.bench.timing import amp_dtype
from effnet.experiments.bench.training import ACTIVATION_MEMORY_BUDGET, TrainBenchConfig


def measure_training(
    config: str,
    *,
    batch_size: int,
    resolution: int,
    threads: int,
    warmup: int,
    steps: int,
    device: str = "cpu",
    amp: str | None = None,
    channels_last: bool = True,
) -> dict[str, Any]:
    """Warm-up + timed training steps of one configuration in this process; returns timings and memory."""
    parsed = TrainBenchConfig.parse(config)
    dev = torch.device(device)
    allocator = None
    if parsed.alloc and dev.type == "cpu":  # first: PyTorch reads THP_MEM_ALLOC_ENABLE at its first allocation
        from effnet.models.allocator import tune_cpu_allocator

        allocator = tune_cpu_allocator().describe()
    dtype = amp_dtype(amp, dev)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = train_model(parsed).to(dev).train()
    generator = torch.Generator().manual_seed(1234)  # the same batch for every library
    images = torch.randn(batch_size, 3, resolution, resolution, generator=generator).to(dev)
    labels = torch.randint(0, 1000, (batch_size,), generator=generator).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=1e-5)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    if parsed.budget:
        torch._functorch.config.activation_memory_budget = ACTIVATION_MEMORY_BUDGET
    forward = torch.compile(model) if parsed.compile else model
    cuda = dev.type == "cuda"

    def step() -> float:
        with torch.autocast(dev.type, dtype=dtype) if dtype else contextlib.nullcontext():
            loss = criterion(forward(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())  # synchronises CUDA
        return value

    timed = _timed_steps(step, warmup, steps, cuda)
    median = statistics.median(timed.times)
    return {
        "config": parsed.key,
        "median_step_s": median,
        "step_s": timed.times,
        "first_step_s": timed.first,
        "images_per_s": batch_size / median,
        "peak_rise_mb": timed.peak_rise / MB,
        "cpu_share": round(timed.cpu / (timed.wall * threads), 3) if timed.wall > 0 and not cuda else None,
        "params": sum(p.numel() for p in model.parameters()),
        "first_loss": timed.losses[0],
        "last_loss": timed.losses[-1],
        "allocator": allocator,
    }


@dataclass
class _Timed:
    times: list[float]  # each timed step's seconds
    losses: list[float]  # every step's, warm-up included
    first: float  # the first step's seconds (compiles, allocates)
    wall: float  # seconds of the timed steps together
    cpu: float  # process CPU seconds of the timed steps
    peak_rise: float  # bytes: peak memory during the steps less the memory before them


def _timed_steps(step: Callable[[], float], warmup: int, steps: int, cuda: bool) -> _Timed:
    """Run `warmup` + `steps` steps with the garbage collector off; time the last `steps` and watch the memory."""
    gc.collect()
    gc.disable()  # a collection inside one step would be charged to it
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else rss_bytes()
    times, losses = [], []
    first = 0.0
    sampler = RssSampler() if not cuda else None
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
    return _Timed(times, losses, first, wall, cpu, peak - before)


def train_model(config: TrainBenchConfig) -> nn.Module:
    """The library's EfficientNet-B0 (1000 classes, random init, default regularisation) with the config's options."""
    if config.library == "effnet":
        from effnet.models.factory import create_model

        model = create_model("efficientnet_b0", num_classes=1000, head_init="tf")  # initialised as timm's and torchvision's
        model.set_grad_checkpointing(config.ckpt)
        if config.lean:
            from effnet.models.nn.lean import use_memory_efficient_ops

            use_memory_efficient_ops(model)
        return model
    if config.library == "timm":
        import timm

        return timm.create_model("efficientnet_b0")
    import torchvision

    return torchvision.models.efficientnet_b0()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m effnet.experiments.bench.train_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="LIBRARY[+lean][+ckpt][+compile[+budget]][+alloc]")
    for name in ("batch-size", "resolution", "threads", "warmup", "steps"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=("bf16", "fp16"), help="CUDA autocast dtype (default: float32)")
    parser.add_argument("--channels-last", action="store_true", help="model and batch in channels-last memory format")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k != "config"}
    emit(measure_training(args.config, **options))


if __name__ == "__main__":
    main()
