"""Why B0's INT8 file is slow at batch 32, and what each float-layer rule costs: timings, onnxruntime profiles, agreement.

For one model (default B0, random weights: speed does not depend on them), builds one INT8
file per rule variant with `effnet.int8.quantize` (calibrated on the bundled photos) and
- times them interleaved round-robin with effnet's float eager and float compiled paths
  (`effnet.experiments.bench`'s harness) at each batch size;
- profiles each file with onnxruntime at the largest batch size: kernel time by operator
  type, and the operators of the graph onnxruntime actually runs (after its QDQ fusions);
- measures how often each file's top-1 agrees with the float model on crops of the bundled
  photos, and the correlation of their logits. With random weights this is not accuracy:
  it shows how much each rule perturbs the network, nothing about ImageNet top-1.

Usage: python benchmarks/int8_b0_speed.py --out DIR [--model efficientnet_b0] [--batch-sizes 1 32]
Writes DIR/int8_b0_speed.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import onnxruntime
import torch

import effnet
import effnet.int8.quantizer as quantizer
from effnet.experiments.bench.inference import build_path
from effnet.experiments.bench.timing import latency_summary, time_interleaved
from effnet.int8 import labelled_folder, load_int8, quantize
from effnet.models.model import init_classifier
from effnet.models.predict import sample_images

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_accuracy import crops  # noqa: E402  (benchmarks/int8_accuracy.py: crops and flips of the bundled photos)

# name: (layer kinds kept float, what it means). A kept-float swish is fused into one QuickGelu node by `quantize`;
# "default-unfused" switches that off (Sigmoid + Mul, as before the fusion) to measure what it gains.
VARIANTS = {
    "default-unfused": (("squeeze_excite", "swish"), "SE and swish float, swish as Sigmoid + Mul"),
    "default": (("squeeze_excite", "swish"), "SE and swish float (DEFAULT_KEEP), swish fused"),
    "se": (("squeeze_excite",), "SE float, swish INT8"),
    "swish": (("swish",), "swish float (fused), SE INT8"),
    "none": ((), "everything INT8 (--keep-float none)"),
}


def profile(path: Path, batch: int, threads: int, runs: int = 3) -> dict:
    """Kernel time by operator type (ms per run) and the operator counts of the graph onnxruntime runs."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    options.optimized_model_filepath = str(path.with_suffix(".optimized.onnx"))
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).random((batch, 3, 224, 224), dtype=np.float32)}
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    kernel_us: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernel_us[event["args"]["op_name"]] += event["dur"]
    import onnx

    ops = collections.Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)
    total = sum(kernel_us.values())
    by_op = {op: {"ms_per_run": round(us / runs / 1e3, 1), "share": round(us / total, 3)} for op, us in kernel_us.most_common()}
    return {"batch_size": batch, "kernel_ms_per_run": round(total / runs / 1e3, 1), "by_op": by_op, "graph_ops": dict(ops.most_common())}


@torch.inference_mode()
def agreement(model: torch.nn.Module, int8: torch.nn.Module, samples: list, preprocessing) -> dict:
    """Top-1 agreement with the float model (percent) and the mean per-image Pearson correlation of the logits."""
    from effnet.data.folders import load_image

    transform = preprocessing.eval_transform()
    x = torch.stack([transform(load_image(path)) for path, _ in samples])
    a, b = model(x), int8(x)
    same = float((a.argmax(1) == b.argmax(1)).float().mean()) * 100
    correlation = float(np.mean([np.corrcoef(u.numpy(), v.numpy())[0, 1] for u, v in zip(a, b, strict=True)]))
    return {"images": len(samples), "top1_agreement": round(same, 1), "logit_correlation": round(correlation, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, nargs="+", default=[20, 8], help="timed rounds per batch size")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = effnet.create_model(args.model).eval()
    init_classifier(model.classifier, "tf")  # effnet zero-initialises the head: all-equal logits would agree trivially
    report: dict = {"model": args.model, "threads": args.threads, "weights": "random (seed 0)", "variants": {}, "timings": []}
    with tempfile.TemporaryDirectory(prefix="int8-b0-") as tmp:
        tmp = Path(tmp)
        crops(tmp / "check", 20, 1, by_class=True)
        samples = labelled_folder(tmp / "check", model.preprocessing, None, 1000)
        int8 = {}
        for name in args.variants:
            keep, meaning = VARIANTS[name]
            start = time.perf_counter()
            with mock.patch.object(quantizer, "fuse_swish", lambda proto: 0) if name.endswith("-unfused") else contextlib.nullcontext():
                result = quantize(model, sample_images(), tmp / f"{name}.onnx", keep_float=keep)
            int8[name] = load_int8(result.path, threads=args.threads)
            entry = {
                "meaning": meaning,
                "keep_float": list(keep),
                "float_layers": result.float_layers.summary(),
                "int8_mib": round(result.size_bytes / 2**20, 2),
            }
            entry |= {"quantize_s": round(time.perf_counter() - start, 1), "agreement": agreement(model, int8[name], samples, model.preprocessing)}
            entry["profile"] = profile(result.path, max(args.batch_sizes), args.threads)
            report["variants"][name] = entry
            print(name, json.dumps({k: v for k, v in entry.items() if k != "profile"}), flush=True)
        floats = {path: build_path(path, args.model, cpu, False, None).fn for path in ("effnet", "effnet-fast-compiled")}
        repeats_per_batch = (args.repeats + args.repeats[-1:] * len(args.batch_sizes))[: len(args.batch_sizes)]
        for batch, repeats in zip(args.batch_sizes, repeats_per_batch, strict=True):
            x = torch.rand(batch, 3, 224, 224)
            entries = {path: (fn, x) for path, fn in floats.items()} | {f"int8-{name}": (m, x) for name, m in int8.items()}
            timing = time_interleaved(entries, args.warmup, repeats, args.threads, cpu)
            for path in entries:
                row = {"batch_size": batch, "path": path, "cpu_share": timing.cpu_share} | latency_summary(timing.times.get(path, []), batch)
                report["timings"].append(row)
            print(
                f"batch {batch}: cpu share {timing.cpu_share}",
                {p: round(latency_summary(t, batch)["median_ms"], 1) for p, t in timing.times.items()},
                flush=True,
            )
    (out / "int8_b0_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))


def table(report: dict) -> str:
    """Median ms per variant and batch size, with the ratio to float compiled; then the top operators at the largest batch."""
    rows = {(r["batch_size"], r["path"]): r for r in report["timings"]}
    batches = sorted({b for b, _ in rows})
    lines = ["| path | " + " | ".join(f"batch {b} ms (vs compiled)" for b in batches) + " | top-1 agreement / logit corr. | top kernels at the largest batch |"]
    lines.append("|---" * (len(batches) + 3) + "|")
    for path in ["effnet", "effnet-fast-compiled"] + [f"int8-{n}" for n in report["variants"]]:
        cells = []
        for b in batches:
            row, compiled = rows.get((b, path)), rows.get((b, "effnet-fast-compiled"))
            if row is None or row["median_ms"] is None:
                cells.append("-")
                continue
            ratio = f" ({compiled['median_ms'] / row['median_ms']:.2f}x)" if compiled and compiled["median_ms"] else ""
            cells.append(f"{row['median_ms']:.1f}{ratio}")
        variant = report["variants"].get(path.removeprefix("int8-"))
        agree = f"{variant['agreement']['top1_agreement']}% / {variant['agreement']['logit_correlation']}" if variant else "-"
        top = ", ".join(f"{op} {v['share']:.0%}" for op, v in list(variant["profile"]["by_op"].items())[:4]) if variant else "-"
        lines.append(f"| {path} | " + " | ".join(cells) + f" | {agree} | {top} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
