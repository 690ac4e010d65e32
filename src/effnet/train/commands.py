"""`effnet train`, `effnet finetune` and `effnet eval`: argument parsing and the eval-at-many-resolutions job.

The train options are generated from TrainConfig's fields, so `--help` always lists every
option of the recipe with its default, and a YAML/JSON `--config` file can set any of them
(command-line options win over the file).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from effnet.train.config import PRESETS, TrainConfig, read_config_file

# Fine-tuning starts from pretrained weights and needs far fewer epochs and less warm-up.
FINETUNE_DEFAULTS = {"pretrained": "default", "epochs": 10, "warmup_epochs": 1.0, "lr_per_256": 0.004, "drop_path_rate": 0.1}


def add_train_commands(command: Any) -> None:
    """Register train, finetune and eval with the CLI's `command(name, handler, summary, description, epilog)`."""
    p = command(
        "train",
        run_train,
        "train a model with the paper's recipe",
        "Train a named model or a spec file. Defaults are the paper's recipe (RMSProp TF, 0.016 per 256 images,\n"
        "x0.97 every 2.4 epochs, label smoothing 0.1, EMA 0.9999, drop path 0.2, AutoAugment).\n"
        "Without --dataset, the built-in synthetic proxy task is used.",
        epilog="examples:\n  effnet train --model efficientnet_b0 --resolution 96 --epochs 5 --batch-size 32 --out-dir runs/b0\n"
        "  torchrun --nproc-per-node 2 -m effnet train --dataset folder --data-dir DATA --sync-bn\n"
        "  effnet train --out-dir runs/b0 --resume",
    )
    add_config_options(p)
    p = command(
        "finetune",
        lambda args: run_train(args, FINETUNE_DEFAULTS),
        "fine-tune pretrained weights on your images",
        "Train from pretrained weights with a new classifier for your classes (train with fine-tuning defaults).",
        epilog="example:\n  effnet finetune --model efficientnet_lite0 --dataset folder --data-dir my_photos --freeze-backbone",
    )
    add_config_options(p, FINETUNE_DEFAULTS)
    p = command(
        "eval",
        run_eval,
        "top-1/top-5, loss and per-class accuracy, at one or more test resolutions",
        "Evaluate a training run (raw and EMA weights) or a model with weights, at several test resolutions in one call.",
        epilog="example:\n  effnet eval --run runs/b0 --resolutions 96 112 128",
    )
    add_eval_options(p)


def add_config_options(parser: argparse.ArgumentParser, defaults: dict[str, Any] | None = None) -> None:
    """One option per TrainConfig field (plus --config FILE); defaults shown in --help."""
    defaults = defaults or {}
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of options (command-line options override it)")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="starting point: 'paper' (the recipe, for long runs) or 'proxy' (minutes-long CPU runs: AdamW 3e-3, cosine, "
        "BN momentum 0.1, 5 epochs); other options override it (default: paper)",
    )
    for f in dataclasses.fields(TrainConfig):
        default = defaults.get(f.name, f.default)
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})"
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(
                flag,
                type=type(f.default),
                default=argparse.SUPPRESS,
                choices=f.metadata.get("choices"),
                metavar=None if f.metadata.get("choices") else f.name.upper(),
                help=help_text,
            )


def config_from_args(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from (in increasing priority) the recipe defaults, `defaults`, a --config file, explicit options."""
    values: dict[str, Any] = dict(defaults or {})
    if getattr(args, "preset", None):
        values.update(PRESETS[args.preset])
    if getattr(args, "config", None):
        values.update(read_config_file(args.config))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig.from_dict(values)


def run_train(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> int:
    """Train (or fine-tune) and print the summary; interrupted and diverged runs end with a message."""
    from effnet.cli import INTERRUPTED
    from effnet.train.trainer import TrainingDiverged, TrainingInterrupted, train

    config = config_from_args(args, defaults)
    try:
        result = train(config)
    except TrainingInterrupted as err:
        print(f"effnet: {err}", file=sys.stderr)
        return INTERRUPTED
    except TrainingDiverged as err:
        print(f"effnet: error: {err}", file=sys.stderr)
        return 3
    print(result.summary())
    return 0


def add_eval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", metavar="DIR", help="a training run directory: evaluates its model.safetensors and ema.safetensors with its config")
    parser.add_argument("--model", default="efficientnet_b0", help="model name (default: %(default)s)")
    parser.add_argument("--spec", default="", help="NetSpec file instead of a model name")
    parser.add_argument("--weights", default="", help="weights file, or 'default' for the model's pretrained weights")
    parser.add_argument("--dataset", default="synthetic", help="synthetic, folder, cifar10 or cifar100 (default: %(default)s)")
    parser.add_argument("--data-dir", default="", help="dataset root (for folder and torchvision datasets)")
    parser.add_argument("--num-classes", type=int, default=0, help="classes (0: from the dataset)")
    parser.add_argument("--val-samples", type=int, default=500, help="synthetic task: validation images (default: %(default)s)")
    parser.add_argument(
        "--resolutions", type=int, nargs="+", default=None, help="test resolutions; accuracy often peaks above the training one (default: the model's)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic task (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def evaluate_at_resolutions(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Top-1/top-5/loss/per-class accuracy of raw (and EMA, for a run) weights at each test resolution."""
    from torch.utils.data import DataLoader

    from effnet.data import build_datasets
    from effnet.train.distributed import resolve_device
    from effnet.train.evaluate import evaluate
    from effnet.train.trainer import _preprocessing_of, make_model
    from effnet.weights import load_file, load_state_dict

    if args.run:
        run = Path(args.run)
        if not (run / "config.json").is_file():
            raise FileNotFoundError(f"{run} is not a training run directory (no config.json)")
        config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
        config = dataclasses.replace(config, pretrained="", spec=str(run / "spec.json"))
        weights = {name: run / f"{name}.safetensors" for name in ("model", "ema") if (run / f"{name}.safetensors").is_file()}
        if not weights:
            raise FileNotFoundError(f"{run} holds no model.safetensors yet (the run has not finished); evaluate its checkpoint after it ends")
    else:
        config = TrainConfig(
            model=args.model,
            spec=args.spec,
            pretrained="",
            dataset=args.dataset,
            data_dir=args.data_dir,
            num_classes=args.num_classes,
            val_samples=args.val_samples,
            seed=args.seed,
        )
        weights = {"model": args.weights} if args.weights else {}

    def validation_data(resolution: int) -> Any:
        return build_datasets(
            config.dataset,
            data_dir=config.data_dir or None,
            resolution=resolution,
            preprocessing=_preprocessing_of(config, resolution),
            auto_augment="none",
            seed=config.seed,
            num_classes=config.num_classes or None,
            train_samples=1,
            val_samples=config.val_samples,
            val_fraction=config.val_fraction,
        )

    device = resolve_device("auto")
    num_classes = config.num_classes or validation_data(config.resolution or 224).num_classes
    rows = []
    for label, source in weights.items() or [("random-init", None)]:
        model = make_model(dataclasses.replace(config, pretrained="default" if source == "default" else ""), num_classes).to(device)
        if source and source != "default":
            load_state_dict(model, load_file(source))
        for resolution in args.resolutions or [config.resolution or model.spec.resolution]:
            data = validation_data(resolution)
            loader = DataLoader(data.val, batch_size=args.batch_size, num_workers=args.workers, collate_fn=data.collate_fn)
            result = evaluate(model, loader, device, num_classes)
            rows.append({"weights": label, "resolution": resolution, **result.to_dict()})
    return rows


def run_eval(args: argparse.Namespace) -> int:
    rows = evaluate_at_resolutions(args)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'weights':<12} {'resolution':>10} {'top-1 %':>8} {'top-5 %':>8} {'loss':>8} {'images':>7}")
    for row in rows:
        print(f"{row['weights']:<12} {row['resolution']:>10} {row['top1']:>8.2f} {row['top5']:>8.2f} {row['loss']:>8.4f} {row['count']:>7}")
    worst = min(rows, key=lambda r: r["top1"])
    per_class = ", ".join(f"{i}: {v:.0f}" for i, v in enumerate(worst["per_class"]))
    print(f"per-class top-1 % ({worst['weights']} at {worst['resolution']} px): {per_class}")
    return 0
