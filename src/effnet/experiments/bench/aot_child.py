"""The new process of `measure_aot_load`: import torch, load an AOTInductor package, run batches, report the times.

    python -m effnet.experiments.bench.aot_child --package PATH.pt2 --shape 32 3 224 224 --threads 2

torch is imported inside `main`, after the clock starts, so ``import_s`` counts it; this
module and the packages above it import only the standard library and effnet's torch-free layer.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from effnet.experiments.bench.child import emit


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m effnet.experiments.bench.aot_child", description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True, help="the .pt2 package written by effnet.models.fast.compile_cached / save_compiled")
    parser.add_argument("--shape", type=int, nargs="+", required=True, help="input shape, e.g. 32 3 224 224")
    parser.add_argument("--threads", type=int, required=True, help="torch intra-op threads")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    from effnet.models.fast import load_compiled

    t1 = time.perf_counter()
    model = load_compiled(args.package)
    x = torch.randn(*args.shape, device=model.info.device)
    model(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    first_batch_at = time.time()
    later = []
    for _ in range(3):
        start = time.perf_counter()
        model(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        later.append(time.perf_counter() - start)
    emit({"import_s": t1 - t0, "load_to_first_batch_s": t2 - t1, "first_batch_at": first_batch_at, "later_batches_s": later})


if __name__ == "__main__":
    main()
