"""The CPU bound of EfficientNet inference: this machine's fp32 GEMM ceiling, and where the fast paths' time goes.

    flock /work/runs/cpu.lock python benchmarks/cpu_bound.py --threads 2 --batch-sizes 1 32
    python benchmarks/cpu_bound.py --tried benchmarks/results/cpu_bound/cpu_bound_tried.json   # + the table of what was tried

(a) GEMM: ``torch.mm`` at `--threads` on every shape B0's 1x1 convs have at the largest
batch size (rows = batch x H x W, inner = input channels, columns = output channels) and on
a large square one; the best rate, divided by B0's forward FLOPs (2 x its MACs,
`effnet.core.profile`), is the img/s ceiling a network made only of GEMMs at that rate would
reach. A streaming copy gives the memory bandwidth, which bounds the depthwise convs and
elementwise passes (they do a few FLOPs per byte).

(b) Profile: each path (`effnet-fast`, `effnet-fast-compiled`, `timm`, `timm-compiled`, as
in `benchmarks/bench_inference.py`, channels-last) under ``torch.profiler`` at each batch
size; every top-level operator (or compiled kernel) is put into one kind: pointwise (1x1)
conv, depthwise conv, stem conv, head conv (+ classifier), SE (pooling, the two small
matmuls, sigmoid, the gate multiply; compiled kernels that contain the SE's mean or
sigmoid), activations / elementwise (SiLU, residual add, BN in unfolded models), pooling /
other (head pooling, copies, framework overhead: the forward's wall time not inside any
operator). Each kind gets its time share, its MACs and achieved GFLOP/s, and the ratio to
the GEMM ceiling. Profiling adds a few microseconds per operator, which shows at batch 1.

(c) Writes ``cpu_bound.json`` and ``cpu_bound.md`` to `--out`; `--tried` (a JSON list of
measured attempts: what, path, batch, ms, vs timm, kept, why) is rendered as a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

import effnet
from effnet._io import atomic_write_text
from effnet.experiments.bench.environment import environment
from effnet.experiments.bench.inference import _input, build_path

KINDS = ("pointwise conv", "depthwise conv", "stem conv", "head conv + classifier", "SE", "activation / elementwise", "pooling / other")
CONV_OPS = ("aten::conv2d", "aten::convolution", "aten::_convolution", "aten::mkldnn_convolution", "aten::thnn_conv2d", "mkldnn::_convolution_pointwise")
MM_OPS = ("aten::linear", "aten::addmm", "aten::mm", "aten::matmul", "mkldnn::_linear_pointwise", "mkl::_mkl_linear")
BMM_OPS = ("aten::bmm", "aten::baddbmm")  # the project conv with the SE gate folded into per-image weights
POOL_OPS = ("aten::mean", "aten::adaptive_avg_pool2d", "aten::avg_pool2d", "aten::_adaptive_avg_pool2d", "aten::sum")
ELEMENTWISE_OPS = ("aten::silu", "aten::silu_", "aten::add", "aten::add_", "aten::batch_norm", "aten::relu", "aten::relu_", "aten::mul_", "aten::hardtanh_")


# ------------------------------------------------------------------ (a) GEMM ceiling and bandwidth
def time_best(fn: Any, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pointwise_shapes(prof: effnet.Profile, batch: int) -> list[tuple[str, int, int, int]]:
    """(layer, M, K, N) of every 1x1 conv of the network as a GEMM at `batch` (stem and head included when 1x1)."""
    shapes = []
    for layer in prof.layers:
        if layer.kind != "conv":
            continue
        cout, h, w = layer.out_shape
        k = layer.params // cout
        if layer.macs != cout * h * w * k:  # a kxk conv (the stem): not a plain GEMM
            continue
        shapes.append((layer.name, batch * h * w, k, cout))
    return shapes


def measure_gemm(prof: effnet.Profile, batch: int, repeats: int) -> dict[str, Any]:
    """GFLOP/s of torch.mm on B0's 1x1-conv shapes at `batch` and on square ones; the ceiling in img/s."""
    rows = []
    total_time = 0.0
    total_flops = 0.0
    seen: dict[tuple[int, int, int], float] = {}
    for name, m, k, n in pointwise_shapes(prof, batch):
        if (m, k, n) not in seen:
            a, b = torch.randn(m, k), torch.randn(k, n)
            seen[(m, k, n)] = time_best(lambda a=a, b=b: torch.mm(a, b), repeats)
        seconds = seen[(m, k, n)]
        total_time += seconds
        total_flops += 2.0 * m * k * n
        rows.append({"layer": name, "m": m, "k": k, "n": n, "ms": seconds * 1e3, "gflops": 2.0 * m * k * n / seconds / 1e9})
    square = []
    for size in (1024, 2048, 4096):
        a, b = torch.randn(size, size), torch.randn(size, size)
        seconds = time_best(lambda a=a, b=b: torch.mm(a, b), max(2, repeats // 2))
        square.append({"size": size, "ms": seconds * 1e3, "gflops": 2.0 * size**3 / seconds / 1e9})
    peak = max(s["gflops"] for s in square)
    flops_per_image = 2.0 * prof.macs
    pointwise_gflops = total_flops / total_time / 1e9
    return {
        "batch": batch,
        "square": square,
        "peak_gflops": peak,
        "pointwise_layers": rows,
        "pointwise_gemm_gflops": pointwise_gflops,
        "pointwise_gemm_ms_per_batch": total_time * 1e3,
        "flops_per_image": flops_per_image,
        "ceiling_img_s": peak * 1e9 / flops_per_image,
        "ceiling_at_pointwise_rate_img_s": pointwise_gflops * 1e9 / flops_per_image,
    }


def measure_bandwidth(repeats: int) -> dict[str, Any]:
    """Streaming copy of 256 MiB (read + write counted): GB/s."""
    src = torch.randn(64 * 2**20)
    dst = torch.empty_like(src)
    seconds = time_best(lambda: dst.copy_(src), repeats)
    return {"bytes": 2 * src.numel() * 4, "ms": seconds * 1e3, "gb_s": 2 * src.numel() * 4 / seconds / 1e9}


# ------------------------------------------------------------------ (b) profile by kind
def macs_by_kind(prof: effnet.Profile) -> dict[str, int]:
    """MACs per image of each kind (effnet.core.profile's analytic count)."""
    out: dict[str, int] = defaultdict(int)
    for layer in prof.layers:
        if layer.kind == "dwconv":
            out["depthwise conv"] += layer.macs
        elif layer.kind == "se":
            out["SE"] += layer.macs
        elif layer.kind == "linear" or layer.name.startswith("head"):
            out["head conv + classifier"] += layer.macs
        elif layer.name.startswith("stem"):
            out["stem conv"] += layer.macs
        elif layer.kind == "conv":
            out["pointwise conv"] += layer.macs
    return dict(out)


class Classifier:
    """Puts a profiler event (operator or compiled kernel) into one of `KINDS`, or None to look at its children."""

    def __init__(self, batch: int, num_features: int, num_classes: int) -> None:
        self.batch, self.num_features, self.num_classes = batch, num_features, num_classes

    def __call__(self, event: Any) -> str | None:
        name = event.name
        shapes = [s for s in (event.input_shapes or [])]
        if name in CONV_OPS:
            index = 2 if name == "mkldnn::_convolution_pointwise" and len(shapes) > 2 and len(shapes[2]) == 4 else 1
            x, w = (shapes[0], shapes[index]) if len(shapes) > index else ([], [])
            if len(w) != 4 or len(x) != 4:
                return "pointwise conv"
            if x[2] == 1 and x[3] == 1:
                return "SE"  # a 1x1 conv on the pooled map (timm's and the unfolded SE)
            if w[1] == 1 and w[0] > 1:
                return "depthwise conv"
            if x[1] == 3:
                return "stem conv"
            if w[0] == self.num_features:
                return "head conv + classifier"
            return "pointwise conv" if w[2:] == [1, 1] else "stem conv"
        if name in MM_OPS:
            rows, inner, cols = self._mm_dims(name, shapes)
            if cols == self.num_classes and inner == self.num_features:
                return "head conv + classifier"
            if cols == self.num_features:
                return "head conv + classifier"  # the head 1x1 conv as a GEMM
            if rows is not None and rows <= self.batch:
                return "SE"
            return "pointwise conv"
        if name in BMM_OPS:
            return "pointwise conv"
        if name in POOL_OPS:
            x = shapes[0] if shapes else []
            if len(x) == 4 and x[1] == self.num_features:
                return "pooling / other"
            return "SE" if len(x) in (3, 4) else "pooling / other"  # (N, C, H, W) or the (N, H*W, C) view
        if name in ("aten::sigmoid", "aten::sigmoid_"):
            return "SE"
        if name in ("aten::mul", "aten::mul_"):
            # the gate times the map ((N, C, 1, 1) or (N, C) operands) or times the project weight (3-D operands)
            if any((len(s) == 4 and s[2:] == [1, 1]) or len(s) in (2, 3) for s in shapes):
                return "SE"
            return "activation / elementwise"
        if name in ELEMENTWISE_OPS:
            x = shapes[0] if shapes else []
            return "SE" if len(x) == 2 and x[0] <= self.batch else "activation / elementwise"  # 2-D with more rows: an (N*H*W, C) view
        if "cpp_fused" in name or name.startswith("kernel_cpp"):
            return "SE" if ("mean" in name or "sigmoid" in name) else "activation / elementwise"
        if name.startswith("aten::") or name.startswith("mkldnn::") or name.startswith("mkl::"):
            return "pooling / other"
        return None  # a wrapper (compiled region, module annotation): look inside

    @staticmethod
    def _mm_dims(name: str, shapes: list[list[int]]) -> tuple[int | None, int | None, int | None]:
        try:
            if name == "aten::addmm":
                (m, k), (_, n) = shapes[1], shapes[2]
            elif name in ("aten::mm", "aten::matmul"):
                (m, k), (_, n) = shapes[0][-2:], shapes[1][-2:]
            else:  # linear-like: X [..., K], W [N, K]
                x, w = shapes[0], shapes[1]
                m, k, n = (x[0] if len(x) == 2 else None), x[-1], w[0]
            return m, k, n
        except (IndexError, ValueError, TypeError):
            return None, None, None


def profile_path(fn: Any, x: torch.Tensor, classify: Classifier, iterations: int) -> dict[str, Any]:
    """Seconds per forward by kind (operator time; 'pooling / other' also gets the wall time outside operators)."""
    with torch.inference_mode():
        for _ in range(2):
            fn(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            start = time.perf_counter()
            for _ in range(iterations):
                fn(x)
            wall = (time.perf_counter() - start) / iterations
    seconds: dict[str, float] = defaultdict(float)
    names: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def visit(event: Any) -> None:
        kind = classify(event)
        if kind is None:
            for child in event.cpu_children:
                visit(child)
            return
        duration = event.cpu_time_total / 1e6
        seconds[kind] += duration
        names[kind][event.name] += duration

    for event in prof.events():
        if event.cpu_parent is None:
            visit(event)
    for kind in seconds:
        seconds[kind] /= iterations
    accounted = sum(seconds.values())
    seconds["pooling / other"] += max(wall - accounted, 0.0)
    top = {k: dict(sorted(((n, t / iterations * 1e3) for n, t in v.items()), key=lambda item: -item[1])[:4]) for k, v in names.items()}
    return {"wall_ms": wall * 1e3, "ms_by_kind": {k: seconds.get(k, 0.0) * 1e3 for k in KINDS}, "top_ops_ms": top}


def run_profiles(paths: list[str], batch_sizes: list[int], prof: effnet.Profile, peak: float, iterations: dict[int, int]) -> list[dict[str, Any]]:
    torch._inductor.config.cpp.enable_kernel_profile = True  # compiled kernels show up by name
    macs = macs_by_kind(prof)
    spec = effnet.get_spec("efficientnet_b0")
    rows = []
    for path in paths:
        built = build_path(path, "efficientnet_b0", torch.device("cpu"), True, None)
        if built.fn is None:
            rows.append({"path": path, "skipped": built.note})
            continue
        for batch in batch_sizes:
            x = _input(batch, prof.resolution, torch.device("cpu"), True)
            result = profile_path(built.fn, x, Classifier(batch, spec.num_features, spec.num_classes), iterations.get(batch, 5))
            kinds = []
            for kind in KINDS:
                ms = result["ms_by_kind"][kind]
                flops = 2.0 * macs.get(kind, 0) * batch
                gflops = flops / (ms / 1e3) / 1e9 if ms > 0 and flops else None
                kinds.append(
                    {
                        "kind": kind,
                        "ms": ms,
                        "share": ms / result["wall_ms"] if result["wall_ms"] else None,
                        "mmacs_per_image": macs.get(kind, 0) / 1e6,
                        "gflops": gflops,
                        "of_gemm_peak": gflops / peak if gflops else None,
                        "ms_at_gemm_peak": flops / (peak * 1e9) * 1e3,
                    }
                )
            rows.append(
                {
                    "path": path,
                    "batch": batch,
                    "wall_ms": result["wall_ms"],
                    "img_s": batch / result["wall_ms"] * 1e3,
                    "kinds": kinds,
                    "top_ops_ms": result["top_ops_ms"],
                }
            )
            print(f"profiled {path} batch {batch}: {result['wall_ms']:.1f} ms", file=sys.stderr)
        del built
    return rows


# ------------------------------------------------------------------ (c) the report
def format_report(payload: dict[str, Any]) -> str:
    g, bw = payload["gemm"], payload["bandwidth"]
    lines = [
        f"# CPU bound of EfficientNet-B0 inference ({payload['threads']} threads, fp32, channels-last)",
        "",
        "Made by `benchmarks/cpu_bound.py`. Profiling adds a few microseconds per operator, so the batch-1 walls here are above the bench's.",
        "",
        "## GEMM ceiling",
        "",
        f"B0: {payload['macs'] / 1e6:.1f} M MACs per image = {g['flops_per_image'] / 1e9:.3f} GFLOP. "
        f"Best `torch.mm` rate: **{g['peak_gflops']:.0f} GFLOP/s** → ceiling **{g['ceiling_img_s']:.0f} img/s** "
        f"(a network of GEMMs at that rate). B0's 1x1 convs as bare GEMMs at batch {g['batch']}: {g['pointwise_gemm_gflops']:.0f} GFLOP/s "
        f"({g['pointwise_gemm_ms_per_batch']:.0f} ms per batch) → {g['ceiling_at_pointwise_rate_img_s']:.0f} img/s if every MAC ran at that rate. "
        f"Memory bandwidth (streaming copy): {bw['gb_s']:.1f} GB/s.",
        "",
        "| GEMM | ms | GFLOP/s |",
        "|---|---:|---:|",
    ]
    lines += [f"| {s['size']}x{s['size']}x{s['size']} | {s['ms']:.1f} | {s['gflops']:.0f} |" for s in g["square"]]
    worst = sorted(g["pointwise_layers"], key=lambda r: r["gflops"])
    for r in worst[:3] + worst[-2:]:
        lines.append(f"| {r['layer']} ({r['m']}x{r['k']}x{r['n']}) | {r['ms']:.2f} | {r['gflops']:.0f} |")
    lines += ["", "(1x1-conv rows: the three slowest and the two fastest of B0's; all in the JSON.)", ""]
    lines += ["## Where the time goes", ""]
    for row in payload["profiles"]:
        if "skipped" in row:
            lines += [f"{row['path']}: skipped ({row['skipped']})", ""]
            continue
        lines += [
            f"### {row['path']}, batch {row['batch']}: {row['wall_ms']:.1f} ms per forward ({row['img_s']:.1f} img/s under the profiler)",
            "",
            "| kind | ms | share | M MACs / image | GFLOP/s | of GEMM peak | ms at GEMM peak |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for k in row["kinds"]:
            gf = f"{k['gflops']:.1f}" if k["gflops"] else ""
            of = f"{k['of_gemm_peak']:.1%}" if k["of_gemm_peak"] else ""
            lines.append(f"| {k['kind']} | {k['ms']:.2f} | {k['share']:.1%} | {k['mmacs_per_image']:.1f} | {gf} | {of} | {k['ms_at_gemm_peak']:.2f} |")
        lines.append("")
    if payload.get("tried"):
        lines += ["## What was tried", "", "| attempt | path | batch | ms (median) | vs timm ref | runs | kept | why |", "|---|---|---:|---|---|---:|---|---|"]
        for t in payload["tried"]:
            lines.append(f"| {t['what']} | {t['path']} | {t['batch']} | {t['ms']} | {t['vs_ref']} | {t.get('runs', '')} | {t['kept']} | {t['why']} |")
        lines.append("")
    if payload.get("conclusion"):
        lines += ["## Conclusion", "", payload["conclusion"], ""]
    env = payload["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines += [f"Machine: {env['cpu']} ({env['cpu_count']} logical CPUs); {versions}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--paths", nargs="+", default=["effnet-fast", "effnet-fast-compiled", "timm", "timm-compiled"])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per GEMM shape (default: 5)")
    parser.add_argument("--tried", type=Path, help="JSON list of measured attempts to render (what, path, batch, ms, vs_ref, runs, kept, why)")
    parser.add_argument("--conclusion", type=Path, help="a Markdown file with the conclusion to render")
    parser.add_argument("--render-only", action="store_true", help="re-render the report from --out's cpu_bound.json (no measuring)")
    parser.add_argument("--out", type=Path, default=Path("out/cpu_bound"), help="output directory (default: a scratch folder)")
    args = parser.parse_args(argv)

    json_path, md_path = args.out / "cpu_bound.json", args.out / "cpu_bound.md"
    if args.render_only:
        payload = json.loads(json_path.read_text())
    else:
        torch.set_num_threads(args.threads)
        prof = effnet.profile("efficientnet_b0")
        gemm = measure_gemm(prof, max(args.batch_sizes), args.repeats)
        print(f"GEMM peak {gemm['peak_gflops']:.0f} GFLOP/s, ceiling {gemm['ceiling_img_s']:.0f} img/s", file=sys.stderr)
        bandwidth = measure_bandwidth(args.repeats)
        profiles = run_profiles(args.paths, args.batch_sizes, prof, gemm["peak_gflops"], {1: 40, max(args.batch_sizes): 5})
        payload = {"threads": args.threads, "macs": prof.macs, "gemm": gemm, "bandwidth": bandwidth, "profiles": profiles, "environment": environment()}
    if args.tried:
        payload["tried"] = json.loads(args.tried.read_text())
    if args.conclusion:
        payload["conclusion"] = args.conclusion.read_text().strip()
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json_path, json.dumps(payload, indent=2) + "\n")
    atomic_write_text(md_path, format_report(payload))
    print(format_report(payload))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
