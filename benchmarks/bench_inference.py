"""Inference benchmark: effnet's default and fast paths vs timm and torchvision, eager and compiled (same input, same threads, interleaved runs).

    python benchmarks/bench_inference.py --models efficientnet_b0 --batch-sizes 1 32 --threads 2 --repeats 30
    flock /tmp/effnet-heavy.lock python benchmarks/bench_inference.py --paths effnet effnet-fast effnet-fast-compiled timm timm-compiled --channels-last
    python benchmarks/bench_inference.py --paths effnet effnet-fast-compiled timm-compiled --device cuda --amp bf16 --batch-sizes 1 256

For the whole proof (inference, Table 4, AOT load, training, chart) use `effnet bench --full`.

Prints a Markdown table and writes inference_bench.json / inference_bench.md to --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from effnet.experiments.bench import LIBRARIES, PATHS, format_markdown, run_inference_bench, write_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_b0"], help="variants to time (default: efficientnet_b0)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32], help="batch sizes (default: 1 32)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads for every library (default: 2)")
    parser.add_argument("--resolution", type=int, default=224, help="input height and width (default: 224)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds per library first (default: 5)")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per library and batch size (default: 30)")
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES, help="libraries to compare (default: all)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, help="inference paths instead of --libraries (fast and compiled ones included)")
    parser.add_argument("--channels-last", action="store_true", help="run models and input in channels_last memory format")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--amp", choices=("bf16", "fp16"), help="CUDA: autocast every path to this dtype")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/bench_inference"),
        help="output directory (default: out/bench_inference, a scratch folder; committed results live in benchmarks/results)",
    )
    args = parser.parse_args(argv)

    results = run_inference_bench(
        model_names=args.models,
        batch_sizes=args.batch_sizes,
        threads=args.threads,
        resolution=args.resolution,
        warmup=args.warmup,
        repeats=args.repeats,
        libraries=args.libraries,
        channels_last=args.channels_last,
        paths=args.paths,
        device=args.device,
        amp=args.amp,
    )
    json_path, md_path = write_results(results, args.out)
    print(format_markdown(results))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
