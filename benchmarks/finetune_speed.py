"""Images per second of one fine-tuning epoch, data loading included: `effnet finetune` against a plain loop.

Both train pretrained Lite0 on the same image folder, with the same batch, resolution, torch threads and
loader workers; the epoch's wall time is measured from the first batch requested to the last optimizer
step (evaluation excluded). Rows vary one thing at a time: loader workers, channels-last, AutoAugment,
the lean-memory ops. Run it alone on the machine; results go to OUT/finetune_speed.{json,md}.

    python benchmarks/finetune_speed.py --data-dir /path/to/photos --out benchmarks/results/finetune_real   # where the committed one is
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from effnet.train.finetune import prepare_finetune
from effnet.train.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common.plain_loops import plain_epoch  # noqa: E402


def effnet_epoch(data_dir: Path, out_dir: Path, *, batch: int, workers: int, train_cap: int, **changes: object) -> float:
    """Images/s of one `effnet finetune` epoch (the trainer's own count: data and steps, no evaluation)."""
    run, _ = prepare_finetune(
        {
            "dataset": "folder",
            "data_dir": str(data_dir),
            "epochs": 1,
            "batch_size": batch,
            "workers": workers,
            "out_dir": str(out_dir),
            "progress": False,
            "verbose": False,
            "train_samples": train_cap,
            "val_samples": 8,
            **changes,
        }
    )
    return train(run).images_per_second


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--train-cap", type=int, default=160, help="images per measured epoch")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    common = {"batch": args.batch_size, "train_cap": args.train_cap}
    rows: list[tuple[str, float]] = []

    def record(label: str, value: float) -> None:
        rows.append((label, value))
        print(f"{label}: {value:.2f} images/s", flush=True)

    run = 0

    def effnet_row(label: str, workers: int, **changes: object) -> None:
        nonlocal run
        run += 1
        record(label, effnet_epoch(args.data_dir, args.out / "runs" / str(run), workers=workers, **common, **changes))

    from effnet.train.config import TrainConfig

    default = TrainConfig().loader_workers("cpu")
    record(f"plain loop, {default} workers (effnet's default here)", plain_epoch(args.data_dir, workers=default, channels_last=False, **common))
    record(f"plain loop, {default} workers, channels-last", plain_epoch(args.data_dir, workers=default, channels_last=True, **common))
    effnet_row(f"effnet finetune defaults ({default} workers, channels-last)", -1)
    record("plain loop, 2 workers", plain_epoch(args.data_dir, workers=2, channels_last=False, **common))
    effnet_row("effnet, 2 workers", 2)
    effnet_row("effnet, 1 worker", 1)
    effnet_row("effnet, no channels-last", -1, channels_last=False)
    effnet_row("effnet, AutoAugment", -1, auto_augment="autoaugment")
    effnet_row("effnet, --memory-efficient-ops", -1, memory_efficient_ops=True)
    payload = {
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "batch_size": args.batch_size,
        "images": args.train_cap,
        "torch": torch.__version__,
        "rows": [{"config": label, "images_per_second": value} for label, value in rows],
    }
    (args.out / "finetune_speed.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [f"Lite0 fine-tuning at 224 px, batch {args.batch_size}, {args.threads} threads, {args.train_cap} images per epoch", ""]
    lines += ["| config | images/s |", "|---|---:|"] + [f"| {label} | {value:.2f} |" for label, value in rows]
    (args.out / "finetune_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
