"""Side-by-side speed and memory: effnet's default and fast paths against timm's and torchvision's eager and compiled paths.

One concern per module:

- `timing`: the harness (interleaved round-robin repetitions, latency statistics);
- `environment`: machine and versions, CPUs busy with other work, RSS sampling;
- `inference`: `run_inference_bench` and the paper's Table 4 (`run_table4_bench`);
- `training`: `run_train_bench`, each configuration in a fresh `train_worker` process;
- `aot_load`: `measure_aot_load`, a fresh `aot_child` process loading a compiled package;
- `child`: how a parent runs those processes (``python -m``, named options) and reads their result;
- `report`: Markdown, PNG and JSON (`format_report`, `format_markdown`, `write_report`, `write_results`);
- `suite`: `run_all`, everything in one run.

Names are imported on first use, so the benchmark's child processes start without torch
and time its import themselves.
"""

from __future__ import annotations

from effnet._lazy import lazy_names

_NAMES = {
    "effnet.experiments.bench.inference": ("INT8_PATHS", "LIBRARIES", "PATHS", "run_inference_bench", "run_table4_bench"),
    "effnet.experiments.bench.training": ("TRAIN_CONFIGS", "TRAIN_OPTIONS", "TrainBenchConfig", "run_train_bench"),
    "effnet.experiments.bench.aot_load": ("measure_aot_load",),
    "effnet.experiments.bench.environment": ("busy_cpus", "environment"),
    "effnet.experiments.bench.report": (
        "REPORT_NAME",
        "RESULTS_JSON",
        "RESULTS_MARKDOWN",
        "format_int8",
        "format_markdown",
        "format_report",
        "format_train",
        "plot_report",
        "write_report",
        "write_results",
    ),
    "effnet.experiments.bench.suite": ("run_all",),
}
__all__, __getattr__, __dir__ = lazy_names(__name__, _NAMES, globals())
