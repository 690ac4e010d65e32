"""The results as files: Markdown tables, a PNG chart and JSON (with the machine and versions), written atomically."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from effnet._io import atomic_write, atomic_write_text
from effnet.experiments.bench.environment import environment
from effnet.experiments.bench.training import ACTIVATION_MEMORY_BUDGET

REPORT_NAME = "bench"  # run_all's bench.json / bench.md / bench.png
RESULTS_JSON = "inference_bench.json"
RESULTS_MARKDOWN = "inference_bench.md"


def _given(r: dict[str, Any], key: str, fmt: str, missing: str = "") -> str:
    """`r[key]` formatted, or `missing` where the result has no such number."""
    return format(r[key], fmt) if r.get(key) is not None else missing


def _ratio(r: dict[str, Any], key: str) -> str:
    return _given(r, key, ".2f", "n/a") + ("x" if r.get(key) is not None else "")


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
        lines += ["## Paper Table 4 in our setting: B1 vs ResNet-152, batch 1", "", format_table4(payload["table4"])]
    if payload.get("aot_load"):
        lines += ["## Compile once, start fast (AOTInductor package)", "", format_aot(payload["aot_load"])]
    if payload.get("train"):
        lines += ["## Training, EfficientNet-B0", "", format_train(payload["train"])]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines += [f"Machine: {env['cpu']} ({env['cpu_count']} logical CPUs){'; ' + env['gpu'] if env.get('gpu') else ''}; {versions}.", ""]
    return "\n".join(lines)


def format_table4(rows: list[dict[str, Any]]) -> str:
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


def format_aot(info: dict[str, Any]) -> str:
    if "error" in info:
        return f"Not available here: {info['error']}\n"
    return (
        f"B0 input {info['input_shape']} on {info['device']}: a new process went from spawn to its first batch's output in "
        f"**{info['process_to_first_batch_s']:.2f} s** (Python + torch import {info['import_s']:.2f} s, package load + first batch "
        f"{info['load_to_first_batch_s']:.2f} s; then {info['steady_batch_s']:.3f} s per batch, median of 3). Making the package took "
        f"{info['compile_seconds']:.0f} s ({'cache hit this run' if info['cache_hit'] else 'compiled this run'}); "
        f"package {info['package_mb']} MB; max |diff| / max |logit| vs plain effnet {info['max_rel_diff_vs_effnet']:.2e}.\n"
    )


def format_train(train: dict[str, Any]) -> str:
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

    for r in train["results"]:
        if r.get("skipped"):
            lines.append(f"| {r['config']} | failed: {r['note'][-120:].splitlines()[-1] if r['note'] else ''} | | | | | | | |")
            continue
        speed, speed_c, memory, memory_c = (_ratio(r, key) for key in ("speed_vs_timm", "speed_vs_timm_compiled", "memory_vs_timm", "memory_vs_timm_compiled"))
        lines.append(
            f"| {r['config']} | {r['images_per_s']:.2f} | {speed} | {speed_c} | {r['peak_rise_mb']:.0f} "
            f"| {memory} | {memory_c} | {r['first_step_s']:.1f} | {_given(r, 'cpu_share', '.2f')} |"
        )
    lines += [
        "",
        "+lean: effnet.models.nn.lean.use_memory_efficient_ops (BN+activation, the SE gate and the inputs of the depthwise and project "
        "convs recomputed in backward); +ckpt: per-stage activation checkpointing; +compile: torch.compile(model); "
        "+budget: with torch._functorch.config.activation_memory_budget "
        f"= {ACTIVATION_MEMORY_BUDGET}; +alloc (any library): effnet.models.allocator.tune_cpu_allocator() first in the process "
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


def format_int8(results: Sequence[dict[str, Any]]) -> str:
    """`effnet bench --int8`: float eager, float compiled and INT8 side by side, with speed-ups and file sizes."""
    first = results[0]
    lines = [
        f"CPU inference, {first['threads']} thread(s), {first['resolution']}x{first['resolution']} input, random weights (INT8 calibrated on the bundled photos); "
        f"{max(r.get('repeats') or 0 for r in results)} repetitions interleaved across paths.",
        "",
        "| model | batch | path | median ms | p90 ms | img/s | vs float eager | vs float compiled | file MiB | CPU share |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"effnet": "float eager", "effnet-fast": "float eager, fast kernels", "effnet-fast-compiled": "float compiled", "effnet-int8": "INT8 (onnxruntime)"}
    notes = []
    for r in results:
        path = names.get(r["path"], r["path"])
        if r.get("skipped"):
            lines.append(f"| {r['model']} | {r['batch_size']} | {path} | skipped | | | | | | |")
            notes.append(f"- {path} ({r['model']}): {r['note']}")
            continue
        ratios = [f"{r[k]:.2f}x" if r.get(k) else "n/a" for k in ("ratio_vs_effnet", "ratio_vs_effnet_compiled")]
        size = f"{r['file_mib']:.1f}" if r.get("file_mib") else ""
        share = _given(r, "cpu_share", ".2f")
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {path} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['throughput']:.1f} | {ratios[0]} | {ratios[1]} | {size} | {share} |"
        )
    lines += [
        "",
        "file MiB: float32 weights (safetensors) for the float paths, the INT8 ONNX file for INT8. CPU share well below 1: other processes took the cores.",
    ]
    return "\n".join(lines + notes) + "\n"


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
        ratio, ratio_c = _ratio(r, "ratio_vs_timm"), _ratio(r, "ratio_vs_timm_compiled")
        params = f"{r['params'] / 1e6:.2f}M" if r.get("params") else ""
        first_call, diff, share = _given(r, "first_call_s", ".2f"), _given(r, "max_rel_diff_vs_effnet", ".1e"), _given(r, "cpu_share", ".2f")
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
