"""Training benchmark: images/s and peak memory of EfficientNet-B0 in effnet (plain and lean options) vs timm vs torchvision.

    flock /tmp/effnet-heavy.lock python benchmarks/bench_train.py --batch-size 32 --steps 4 --rounds 1
    python benchmarks/bench_train.py --configs effnet effnet+lean timm timm+compile --device cuda --amp bf16 --batch-size 256

Each configuration (LIBRARY[+lean][+ckpt][+compile]) runs in a fresh subprocess on one fixed
random batch; see effnet.experiments.bench.run_train_bench for the step and how memory is measured.
Writes train_bench.json / train_bench.md to --out and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from effnet._io import atomic_write_text
from effnet.experiments.bench import TRAIN_CONFIGS, busy_cpus, environment, format_train, run_train_bench


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(TRAIN_CONFIGS), help="configurations, LIBRARY[+lean][+ckpt][+compile] (default: all ten)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default: 32)")
    parser.add_argument("--resolution", type=int, default=224, help="input height and width (default: 224)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every run (default: 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per run; the first includes compiling (default: 2)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run (default: 4)")
    parser.add_argument("--rounds", type=int, default=1, help="round-robin rounds over all configurations (default: 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--amp", choices=("bf16", "fp16"), help="CUDA: autocast dtype")
    parser.add_argument("--nchw", action="store_true", help="keep the default memory format instead of channels-last")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/bench_train"),
        help="output directory (default: out/bench_train, a scratch folder; committed results live in benchmarks/results)",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.resolution < 32 or args.threads < 1 or args.warmup < 1 or args.steps < 1 or args.rounds < 1:
        parser.error("need --batch-size >= 1, --resolution >= 32, --threads >= 1, --warmup >= 1, --steps >= 1, --rounds >= 1")
    try:
        payload = run_train_bench(
            args.configs,
            args.batch_size,
            args.resolution,
            args.threads,
            args.warmup,
            args.steps,
            args.rounds,
            args.device,
            args.amp,
            channels_last=not args.nchw,
            progress=lambda msg: print(msg, file=sys.stderr),
        )
    except ValueError as error:
        parser.error(str(error))
    payload["environment"] = environment()
    payload["busy_cpus_at_end"] = busy_cpus()
    env = payload["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    markdown = (
        f"Other processes kept {payload['busy_cpus_at_start']} CPUs busy at the start, {payload['busy_cpus_at_end']} at the end.\n\n"
        + format_train(payload)
        + f"\nMachine: {env['cpu']} ({env['cpu_count']} logical CPUs); {versions}.\n"
    )
    atomic_write_text(args.out / "train_bench.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(args.out / "train_bench.md", markdown)
    print(markdown)
    print(f"wrote {args.out / 'train_bench.json'} and {args.out / 'train_bench.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
