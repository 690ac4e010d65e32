"""`effnet bench`: speed and memory against timm and torchvision (the work is `effnet.experiments.bench`'s)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from effnet.cli.common import CLIError, non_negative_int, positive_int


def cmd_bench(args: argparse.Namespace) -> int:
    """`effnet bench`: inference of effnet's paths against timm and torchvision; with --full also Table 4, AOT load and training."""
    try:
        from effnet.experiments import bench
    except ImportError as err:
        raise CLIError(f"benchmarking is not available ({err})") from None
    from effnet.core.zoo import canonical_name

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CLIError("--device cuda asked for, but torch sees no CUDA device; run on the CPU (the default)")
    try:
        if args.full:
            payload = bench.run_all(
                threads=args.threads,
                device=args.device,
                amp=args.amp,
                batch_sizes=tuple(args.batch_sizes),
                resolution=args.resolution,
                warmup=3 if args.warmup is None else args.warmup,
                repeats=20 if args.repeats is None else args.repeats,
                paths=tuple(args.paths or bench.PATHS),
                table4=not args.no_table4,
                aot_load=not args.no_aot,
                train_configs=bench.TRAIN_CONFIGS if args.train_configs is None else tuple(args.train_configs),
                train_batch_size=args.train_batch_size,
                train_steps=args.train_steps,
                train_rounds=args.train_rounds,
                out_dir=args.out,
            )
            print(bench.format_report(payload))
            if args.out:  # run_all already wrote them (after each section, and once more at the end)
                print("wrote " + ", ".join(str(p) for p in sorted(Path(args.out).glob(bench.REPORT_NAME + ".*"))))
            return 0
        if args.int8 and args.paths:
            raise CLIError("--int8 times its own paths (float eager, float compiled, INT8); drop --paths")
        kwargs: dict[str, Any] = {
            "model_names": tuple(canonical_name(n) for n in args.models),
            "batch_sizes": tuple(args.batch_sizes),
            "threads": args.threads,
            "resolution": args.resolution,
            "libraries": tuple(args.libraries),
            "channels_last": args.channels_last,
            "paths": bench.INT8_PATHS if args.int8 else tuple(args.paths) if args.paths else None,
            "device": args.device,
            "amp": args.amp,
        }
        if args.warmup is not None:
            kwargs["warmup"] = args.warmup
        if args.repeats is not None:
            kwargs["repeats"] = args.repeats
        results = bench.run_inference_bench(**kwargs)
    except ValueError as err:
        raise CLIError(str(err)) from None
    print(bench.format_int8(results) if args.int8 else bench.format_markdown(results))
    if args.out:
        json_path, markdown_path = bench.write_results(results, args.out)
        print(f"wrote {json_path} and {markdown_path}")
    return 0


def add_bench_command(command: Any) -> None:
    """Register bench with the CLI's `command(name, handler, summary, description, epilog)`."""
    p = command(
        "bench",
        cmd_bench,
        "speed and memory against timm and torchvision (inference; --full adds training, Table 4, AOT load)",
        "Time effnet's default and fast inference paths against timm's and torchvision's eager and compiled ones\n"
        "(same input, same threads, interleaved repetitions). --full is the whole proof: inference, the paper's\n"
        "Table 4 (B1 vs ResNet-152 at batch 1), a new process loading a saved compiled B0, and training speed and\n"
        "peak memory (effnet's lean options included); it writes bench.json, bench.md and bench.png to --out.",
        epilog="examples:\n  effnet bench --models efficientnet_b0 efficientnet_lite0 --batch-sizes 1 8 --out bench-results\n"
        "  effnet bench --paths effnet effnet-fast timm --channels-last\n"
        "  effnet bench --int8 --models efficientnet_lite0 efficientnet_b0 --batch-sizes 1 32\n"
        "  flock /tmp/effnet-heavy.lock effnet bench --full --out benchmarks/results/bench     # ~15 min on 2 CPU cores\n"
        "  effnet bench --full --device cuda --amp bf16 --batch-sizes 1 256 --train-batch-size 256 --out gpu-results",
    )
    p.add_argument("--models", nargs="+", default=["efficientnet_b0"], metavar="NAME", help="variants to time")
    p.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[1, 32], metavar="N", help="batch sizes to time")
    p.add_argument("--threads", type=positive_int, default=2, metavar="N", help="torch intra-op threads")
    p.add_argument("--resolution", type=positive_int, default=224, metavar="R", help="input resolution")
    p.add_argument("--libraries", nargs="+", default=["effnet", "timm", "torchvision"], metavar="LIB", help="implementations to compare (eager paths)")
    p.add_argument(
        "--paths",
        nargs="+",
        metavar="PATH",
        help="inference paths instead of --libraries: effnet, effnet-fast, effnet-fast-compiled, effnet-int8, timm, timm-compiled, torchvision, torchvision-compiled",
    )
    p.add_argument("--warmup", type=non_negative_int, metavar="N", help="untimed warm-up iterations (default: the benchmark's)")
    p.add_argument("--repeats", type=positive_int, metavar="N", help="timed iterations (default: the benchmark's)")
    p.add_argument("--channels-last", action="store_true", help="use channels_last memory format for inputs and models")
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu or cuda")
    p.add_argument("--amp", choices=("bf16", "fp16"), help="CUDA only: autocast every path to this dtype")
    p.add_argument("--int8", action="store_true", help="float eager, float compiled and INT8 (effnet quantize, onnxruntime) side by side, with file sizes")
    p.add_argument("--full", action="store_true", help="the whole proof: all paths (B0), Table 4, AOT load in a new process, training")
    p.add_argument(
        "--train-configs",
        nargs="*",
        metavar="CFG",
        help="--full: training configurations, LIBRARY[+lean][+ckpt][+compile[+budget]][+alloc] "
        "(default: effnet, timm and torchvision with and without each option; empty: skip training)",
    )
    p.add_argument("--train-batch-size", type=positive_int, default=32, metavar="N", help="--full: images per training step")
    p.add_argument("--train-steps", type=positive_int, default=4, metavar="N", help="--full: timed training steps per configuration")
    p.add_argument("--train-rounds", type=positive_int, default=1, metavar="N", help="--full: interleaved rounds over the training configurations")
    p.add_argument("--no-table4", action="store_true", help="--full: skip B1 vs ResNet-152")
    p.add_argument("--no-aot", action="store_true", help="--full: skip the saved-compiled-model load test")
    p.add_argument("--out", metavar="DIR", help="also write the results (JSON and Markdown; --full: bench.json/.md/.png) to DIR")
