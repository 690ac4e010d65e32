"""Run the battery: per set, `effnet finetune`'s defaults at --epochs 3 and at the default length, and the two plain anchors.

    python benchmarks/battery/run.py --data-root ~/battery-data --half tuning --seeds 0 1 2
    python benchmarks/battery/run.py --data-root ~/battery-data --sets eurosat --lengths 3 --seeds 0 --out /tmp/b

The sets are those `fetch.py` laid out (DATA_ROOT/NAME/{train,val}/CLASS). Per set, seed and length:

- **effnet finetune defaults**: `effnet finetune --dataset folder --data-dir SET --epochs E --seed S`, nothing else set
  (`benchmarks/finetune_real.py`'s `effnet_run`);
- **plain SGD loop**: issue 11's anchor, `finetune_real.plain_loop(mode="finetune")` (SGD 0.01, momentum 0.9, batch
  16, pretrained Lite0 with a zero head, BatchNorm training, constant LR);
- **plain AdamW loop**: issue 28's anchor, `plain_loop(mode="finetune_adamw")` (AdamW 1e-3, weight decay 0.05,
  cosine, batch 16, zero head, BatchNorm training).

The bar of a set at a length is the better plain loop there (by mean over seeds). Runs are appended to
OUT/trials.json (`benchmarks/common/run_log.py`, effnet's one store) as they finish; a rerun skips those done (same set, method, seed and epochs). OUT/battery.md is the
table: mean +- 95% t-interval over seeds per method, the bar, and effnet minus the bar, tuning and confirmation
halves apart. --out defaults to a scratch folder; results worth keeping are copied to benchmarks/results/battery/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from registry import SETS, get  # noqa: E402

EFFNET = "effnet finetune defaults"
PLAIN_SGD = "plain SGD loop"
PLAIN_ADAMW = "plain AdamW loop"
METHODS = {EFFNET: "effnet", PLAIN_SGD: "finetune", PLAIN_ADAMW: "finetune_adamw"}
ANCHORS = (PLAIN_SGD, PLAIN_ADAMW)


def default_epochs() -> int:
    from effnet.train.finetune import FINETUNE_RECIPE

    return int(FINETUNE_RECIPE["epochs"])


def run_one(data_dir: Path, out: Path, method: str, *, epochs: int, seed: int, workers: int, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """One training of `method` on one set (effnet's with `options` on top of its defaults): its validation top-1 per epoch and the seconds it took."""
    from common.plain_loops import plain_loop
    from finetune_real import effnet_run

    started = time.perf_counter()
    caps = {"train_cap": None, "val_cap": None, "workers": workers}
    if method == EFFNET:
        suffix = "".join(f"-{k}{v}" for k, v in sorted((options or {}).items()))
        run_dir = out / "runs" / f"{data_dir.name}-s{seed}-e{epochs}{suffix}"
        shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run of a killed battery: start it again
        run = effnet_run(data_dir, run_dir, mode="finetune", epochs=epochs, seed=seed, variant=dict(options or {}), **caps)
    else:
        run = plain_loop(data_dir, mode=METHODS[method], epochs=epochs, seed=seed, **caps)
    run["seconds"] = time.perf_counter() - started
    return run


def variant_name(method: str, options: dict[str, Any]) -> str:
    """effnet's method with `options` on top of its defaults is a method of its own in the tables."""
    return f"{EFFNET} + {', '.join(f'{k}={v}' for k, v in options.items())}" if method == EFFNET and options else method


def parse_options(items: list[str]) -> dict[str, Any]:
    """`--effnet-option KEY=JSON ...` as TrainConfig values."""
    return {k: json.loads(v) for k, v in (item.split("=", 1) for item in items)}


def run_and_record(log: Any, data_dir: Path, out: Path, *, row: dict[str, Any], options: dict[str, Any], workers: int, threads: int) -> dict[str, Any] | None:
    """Train `row`'s method (its set, method, seed, epochs; its half and kind for the table) on `data_dir` unless `log`
    holds that run already; store and print the finished run, and return its row (None: done before)."""
    if row in log:
        return None
    method = EFFNET if row["method"].startswith(EFFNET) else row["method"]
    run = run_one(data_dir, out, method, epochs=row["epochs"], seed=row["seed"], workers=workers, options=options)
    row = {**row, "val_top1": run["history"][-1]["val_top1"], "threads": threads, **run}
    log.add(row)
    by_epoch = " ".join(f"{h['val_top1']:.1f}" for h in run["history"])
    print(f"{row['set']} {row['epochs']} epochs seed {row['seed']} {row['method']}: top-1 by epoch {by_epoch} ({run['seconds']:.0f} s)", flush=True)
    return row


def _cell(values: list[float]) -> str:
    from effnet.experiments.study.stats import mean_ci

    return mean_ci(values).text(1) if values else ""


def summarise(rows: list[dict[str, Any]], default_length: int) -> str:
    """Markdown: per half, set and length, each method's last-epoch top-1, the bar (better plain loop) and effnet - bar."""
    from effnet.experiments.study.stats import mean_ci

    lines = []
    for half in ("tuning", "confirmation"):
        in_half = [r for r in rows if r["half"] == half]
        lines += [f"## {half.capitalize()} half", ""]
        if not in_half:
            lines += ["(not run)", ""]
            continue
        lines += [
            f"| set | kind | epochs | seeds | {EFFNET} | {PLAIN_SGD} | {PLAIN_ADAMW} | bar (better plain loop) | effnet - bar, paired by seed | >= bar - 1? |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---|",
        ]
        for name, epochs in sorted({(r["set"], r["epochs"]) for r in in_half}, key=lambda k: (k[0], k[1])):
            runs = [r for r in in_half if r["set"] == name and r["epochs"] == epochs]
            top1 = {m: {r["seed"]: r["val_top1"] for r in runs if r["method"] == m} for m in METHODS}
            means = {m: sum(v.values()) / len(v) for m, v in top1.items() if v}
            bar = max((m for m in ANCHORS if m in means), key=lambda m: means[m], default=None)
            paired = sorted(set(top1[EFFNET]) & set(top1[bar])) if bar else []
            diff = mean_ci([top1[EFFNET][s] - top1[bar][s] for s in paired]) if paired else None
            meets = "" if diff is None else ("yes" if diff.mean >= -1.0 else "no")
            length = f"{epochs}" + (" (default)" if epochs == default_length else "")
            seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in runs}))
            lines.append(
                f"| {name} | {runs[0]['kind']} | {length} | {seeds} | "
                + " | ".join(_cell(list(top1[m].values())) for m in METHODS)
                + f" | {bar or ''}{f' ({means[bar]:.1f})' if bar else ''} | {diff.text(1) if diff else ''} | {meets} |"
            )
        lines.append("")
    lines.append("Validation top-1 (%) at the last epoch, mean ± 95% t-interval over seeds (one seed: the value alone).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="where fetch.py laid the sets out")
    parser.add_argument("--sets", nargs="+", default=[], help="set names (default: every set of --half that is laid out)")
    parser.add_argument("--half", choices=("tuning", "confirmation"), default="tuning", help="which half (the confirmation half runs once, at the end)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lengths", nargs="+", default=["3", "default"], help="epochs per training: numbers, or 'default' (effnet finetune's)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD", help=f"any of: {', '.join(METHODS)}")
    parser.add_argument(
        "--effnet-option",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="a recipe variant on tuning sets: effnet finetune with these TrainConfig values on top of its defaults (a method of its own in the store)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "effnet-battery", help="trials.json (the runs), battery.md, effnet's run folders"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    entries = [get(n) for n in args.sets] or [s for s in SETS if s.half == args.half and (args.data_root / s.name / "battery.json").is_file()]
    if not entries:
        raise SystemExit(f"no {args.half} set is laid out under {args.data_root}; run benchmarks/battery/fetch.py first")
    missing = [e.name for e in entries if not (args.data_root / e.name / "battery.json").is_file()]
    if missing:
        raise SystemExit(f"not laid out under {args.data_root}: {', '.join(missing)}; run benchmarks/battery/fetch.py --sets {' '.join(missing)}")
    lengths = [default_epochs() if x == "default" else int(x) for x in args.lengths]
    options = parse_options(args.effnet_option)
    methods = [variant_name(m, options) for m in args.methods]
    args.out.mkdir(parents=True, exist_ok=True)
    from common.run_log import RunLog

    log = RunLog(args.out, "battery", ("set", "method", "seed", "epochs"))
    rows = log.rows()
    for entry in entries:
        for epochs in lengths:
            for seed in args.seeds:
                for method in methods:
                    row = {"set": entry.name, "half": entry.half, "kind": entry.kind, "method": method, "seed": seed, "epochs": epochs}
                    done = run_and_record(log, args.data_root / entry.name, args.out, row=row, options=options, workers=args.workers, threads=args.threads)
                    if done is not None:
                        rows.append(done)
    table = summarise(rows, default_epochs())
    (args.out / "battery.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
