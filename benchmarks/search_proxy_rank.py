"""Does the search's proxy rank architectures as longer training does? Kendall's tau, with a bootstrap interval.

Samples architectures from the search study's space (B0's first four stages as the skeleton, every per-stage
decision drawn uniformly, seeded), scores each three ways on the shapes proxy task:

- proxy: the search's evaluator, a short training (`effnet.experiments.search.evaluators`, kind "proxy");
- longer: the same network trained on more images for more epochs, evaluated on other validation images;
- NASWOT: the zero-cost score of the untrained network (kind "naswot"),

and reports Kendall's tau-b of proxy and of NASWOT against the longer training's top-1, with a 95% percentile
bootstrap interval over architectures. Every scored network is a run in OUT/trials.json (common/run_log.py; a rerun skips them).

    python benchmarks/search_proxy_rank.py --out benchmarks/results/search_proxy_rank
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from effnet.experiments.search.evaluators import EvaluatorConfig, score_candidate
from effnet.experiments.search.space import SearchSpace
from effnet.experiments.study.stats import kendall_tau_b, kendall_tau_interval

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common.run_log import RunLog  # noqa: E402
from search_study import SKELETON  # noqa: E402  (the search study's space: B0's first four stages)


def evaluator(args: argparse.Namespace, kind: str, longer: bool) -> EvaluatorConfig:
    return EvaluatorConfig(
        kind=kind,
        dataset="shapes",
        num_classes=args.classes,
        resolution=args.resolution,
        epochs=args.longer_epochs if longer else args.epochs,
        train_samples=args.longer_train_samples if longer else args.train_samples,
        val_samples=args.val_samples,
        batch_size=args.batch_size,
        seed=1 if longer else 0,  # other images for the longer training and its validation
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/search_proxy_rank"), help="output directory (default: a scratch folder)")
    p.add_argument("--architectures", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="which architectures are drawn")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2, help="proxy: epochs")
    p.add_argument("--train-samples", type=int, default=1000, help="proxy: training images")
    p.add_argument("--longer-epochs", type=int, default=6)
    p.add_argument("--longer-train-samples", type=int, default=2000)
    p.add_argument("--val-samples", type=int, default=1000)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = RunLog(args.out, "search_proxy_rank", ("index", "kind"))

    space = SearchSpace.from_dict({"skeleton": SKELETON.to_dict(), "resolution": args.resolution, "num_classes": args.classes})
    rng = random.Random(args.seed)
    encodings = [[rng.randrange(size) for size in space.sizes] for _ in range(args.architectures)]
    jobs = (("proxy", evaluator(args, "proxy", False)), ("longer", evaluator(args, "proxy", True)), ("naswot", evaluator(args, "naswot", False)))
    for index, encoding in enumerate(encodings):
        spec = space.decode(encoding)
        for kind, config in jobs:
            if {"index": index, "kind": kind} in log:
                continue
            started = time.perf_counter()
            score = score_candidate({"spec": spec.to_dict(), "evaluator": config.to_dict()})["accuracy"]
            row = {"index": index, "kind": kind, "encoding": encoding, "score": score, "seconds": time.perf_counter() - started}
            log.add(row)
            print(f"architecture {index} {kind}: {score:.4f} ({row['seconds']:.0f} s)", flush=True)

    rows = log.rows()
    scores = {(r["index"], r["kind"]): r["score"] for r in rows}
    indices = [i for i in range(args.architectures) if all((i, k) in scores for k, _ in jobs)]
    longer = [scores[i, "longer"] for i in indices]
    lines = [
        "# The search's proxy against longer training: rank correlation",
        "",
        f"{len(indices)} architectures drawn uniformly (seed {args.seed}) from the search study's space (B0's first four stages), "
        f"shapes task, {args.classes} classes, {args.resolution} px, batch {args.batch_size}. Proxy: {args.epochs} epochs x "
        f"{args.train_samples} images (the search's evaluator). Longer: {args.longer_epochs} epochs x {args.longer_train_samples} "
        f"other images. {args.val_samples} validation images each. Kendall tau-b against the longer training's top-1, "
        "95% percentile bootstrap interval over architectures (2,000 draws). Made with `benchmarks/search_proxy_rank.py`.",
        "",
        "| score | Kendall tau-b vs longer training | 95% interval |",
        "|---|---:|---|",
    ]
    for kind in ("proxy", "naswot"):
        values = [scores[i, kind] for i in indices]
        low, high = kendall_tau_interval(values, longer)
        lines.append(f"| {kind} | {kendall_tau_b(values, longer):+.3f} | [{low:+.3f}, {high:+.3f}] |")
    lines += ["", "| architecture | proxy top-1 | longer top-1 | NASWOT |", "|---:|---:|---:|---:|"]
    for i in indices:
        lines.append(f"| {i} | {100 * scores[i, 'proxy']:.1f} | {100 * scores[i, 'longer']:.1f} | {scores[i, 'naswot']:.1f} |")
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
