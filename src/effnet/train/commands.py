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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from effnet.train.config import DATASET_DEFAULT_HELP, PRESETS, TrainConfig, absolute_paths, read_config_file
from effnet.train.finetune import FINETUNE_RECIPE

# What `finetune` starts from when --preset names a recipe instead of the adaptive one: pretrained weights.
FINETUNE_BASE = {key: FINETUNE_RECIPE[key] for key in ("model", "pretrained", "epochs", "out_dir")}
# Options that may differ when a run is resumed: they change how it runs, not what it computes.
RESUME_MAY_CHANGE = frozenset({"progress", "verbose", "workers", "device", "checkpoint_minutes", "checkpoint_every", "resume", "out_dir"})


def add_train_commands(command: Any) -> None:
    """Register train, finetune and eval with the CLI's `command(name, handler, summary, description, epilog)`."""
    p = command(
        "train",
        lambda args: run_train(args, "train"),
        "train a model with the paper's recipe",
        "Train a named model or a spec file. Defaults are the paper's recipe (RMSProp TF, 0.016 per 256 images,\n"
        "x0.97 every 2.4 epochs, label smoothing 0.1, EMA 0.9999, drop path 0.2, AutoAugment), made for 350 epochs\n"
        "of ImageNet; --preset proxy is the recipe for minutes-long runs. --data-dir DIR trains on the image folders in\n"
        "DIR; with neither --data-dir nor --dataset, on the built-in synthetic proxy task. A folder of at most 50,000\n"
        "training images, without --preset or --pretrained, is trained with the small-folder recipe instead (AdamW 3e-3,\n"
        "cosine, no auto-augment, crops >= 0.25 of the image, residual branches starting at zero, 30 epochs, batch and\n"
        "warm-up from the image count), printed at start and saved in config.json; --preset paper keeps the paper's.",
        epilog="examples:\n  effnet train --preset proxy --model efficientnet_b0 --resolution 96 --epochs 5 --out-dir runs/b0\n"
        "  effnet train --resume runs/b0\n"
        "  torchrun --nproc-per-node 2 -m effnet train --data-dir DATA --sync-bn",
    )
    add_config_options(p)
    p = command(
        "finetune",
        lambda args: run_train(args, "finetune"),
        "fine-tune pretrained weights on your images",
        "Fine-tune pretrained weights (EfficientNet-Lite0 by default, shipped offline) with a new classifier for your\n"
        "classes. The transfer recipe adapts to the data: batch size and warm-up come from the number of training images\n"
        "(at least 10 steps per epoch), the new head starts at uniform predictions, augmentation is mild, SGD with a\n"
        "cosine schedule. BatchNorm is chosen from the data: where the pretrained features already separate the training\n"
        "images' classes (nearest class mean), its statistics train and the backbone learns at the head's rate; otherwise\n"
        "its pretrained statistics are kept and the backbone learns at x0.25 (--freeze-bn / --no-freeze-bn decide it).\n"
        "The choices are printed at start and saved in config.json. --preset paper uses the paper's ImageNet recipe\n"
        "instead. --fixres RES adapts the result to a larger test resolution (FixRes). See docs/finetuning.md.",
        epilog="examples:\n  effnet finetune --data-dir my_photos --out-dir runs/mine\n"
        "  effnet finetune --data-dir my_photos --fixres 288 --out-dir runs/mine-fixres\n"
        "  effnet finetune --resume runs/mine",
    )
    add_config_options(p, FINETUNE_RECIPE, finetune=True)
    p = command(
        "eval",
        run_eval,
        "top-1/top-5, loss and per-class accuracy, at one or more test resolutions",
        "Evaluate a training run (raw and EMA weights) or a model with weights, at several test resolutions in one call.",
        epilog="example:\n  effnet eval --run runs/b0 --resolutions 96 112 128",
    )
    add_eval_options(p)


# finetune chooses these from the data unless given (effnet.train.finetune.BN_TRAINING)
BN_FROM_DATA = ("freeze_bn", "backbone_lr_scale")
BN_FROM_DATA_HELP = (
    "chosen from the data: BN statistics frozen and the backbone at x0.25, unless the pretrained features already separate "
    "the training images' classes (then BN trains and the backbone learns at the head's rate)"
)


def add_config_options(parser: argparse.ArgumentParser, defaults: dict[str, Any] | None = None, finetune: bool = False) -> None:
    """One option per TrainConfig field (plus --config FILE, --preset, --resume [DIR]); defaults shown in --help."""
    defaults = defaults or {}
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of options (command-line options override it)")
    presets = sorted(PRESETS)
    if finetune:
        preset_help = (
            "use a named recipe instead of the adaptive transfer recipe: 'paper' (the paper's ImageNet recipe) or 'proxy' "
            "(AdamW 3e-3, cosine, BN momentum 0.1); other options override it (default: the transfer recipe)"
        )
    else:
        preset_help = (
            "starting point: 'paper' (the recipe, for long runs) or 'proxy' (minutes-long CPU runs: AdamW 3e-3, cosine, "
            "BN momentum 0.1, 5 epochs); other options override it (default: paper)"
        )
    parser.add_argument("--preset", choices=presets, default=None, help=preset_help)
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=argparse.SUPPRESS,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (or in --out-dir) from its last checkpoint, with its saved options; options given again must equal the saved ones",
    )
    for f in dataclasses.fields(TrainConfig):
        if f.name == "resume":
            continue
        default = defaults.get(f.name, f.default)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            shown = flag if default else "--no-" + flag[2:]
            if finetune and f.name in BN_FROM_DATA:
                shown = BN_FROM_DATA_HELP
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=f"{f.metadata.get('help', '')} (default: {shown})")
        else:
            shown = repr(default)
            if f.name == "dataset":
                shown = DATASET_DEFAULT_HELP
            elif finetune and f.name in ("batch_size", "warmup_epochs"):
                shown = "set from the number of training images"
            elif finetune and f.name in BN_FROM_DATA:
                shown = BN_FROM_DATA_HELP
            parser.add_argument(
                flag,
                type=type(f.default),
                default=argparse.SUPPRESS,
                choices=f.metadata.get("choices"),
                metavar=None if f.metadata.get("choices") else f.name.upper(),
                help=f"{f.metadata.get('help', '')} (default: {shown})".replace("%", "%%"),
            )


def chosen_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options the user chose, in increasing priority: --preset, a --config file, explicit command-line options."""
    values: dict[str, Any] = {}
    if getattr(args, "preset", None):
        values.update(PRESETS[args.preset])
    if getattr(args, "config", None):
        values.update(read_config_file(args.config))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return values


def config_from_args(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from (in increasing priority) the recipe defaults, `defaults`, --preset, a --config file, explicit options."""
    return TrainConfig.from_dict({**(defaults or {}), **chosen_options(args)})


def resume_config(run_dir: str | Path, given: dict[str, Any]) -> TrainConfig:
    """The saved config of the run in `run_dir`, with `given` options that may change on resume; any other that differs is refused."""
    from effnet.cli.resume import refuse_changed
    from effnet.train.checkpoint import CheckpointError
    from effnet.train.rundir import RunLayout

    run = Path(run_dir)
    layout = RunLayout(run)
    if not layout.is_run():
        hint = f"it holds a {layout.checkpoint.name} but no {layout.config.name}" if layout.checkpoint.is_file() else "no run was started there"
        raise CheckpointError(f"cannot resume {run}: {hint}; give the run directory that an earlier `effnet train`/`finetune` wrote")
    saved = json.loads(layout.config.read_text())
    given = absolute_paths(given)  # compared as the run recorded them (a run from before: resolved from here)
    refuse_changed(run, absolute_paths(saved), given, RESUME_MAY_CHANGE, lambda name: "--" + name.replace("_", "-"))
    changes = {k: v for k, v in given.items() if k in RESUME_MAY_CHANGE}
    return TrainConfig.from_dict({**saved, **changes, "resume": True, "out_dir": str(run)})


def resolve_config(args: argparse.Namespace, command: str = "train") -> tuple[Any, str]:
    """The run, a TrainConfig or (for the adaptive fine-tune recipe) a `PreparedRun` that planning scanned once, and a
    line describing the adaptive choices ('' when there are none)."""
    from effnet.train.finetune import describe, prepare_finetune
    from effnet.train.scratch import describe_scratch, prepare_scratch, uses_scratch_recipe

    given = chosen_options(args)
    resume = vars(args).get("resume")
    if resume:
        run_dir = resume if isinstance(resume, str) else given.get("out_dir")
        if not run_dir:
            raise ValueError("--resume needs the run to continue: --resume RUN_DIR (or --out-dir RUN_DIR --resume)")
        return resume_config(run_dir, {k: v for k, v in given.items() if k != "out_dir" or not isinstance(resume, str)}), ""
    from effnet.train.distributed import world_size

    if command != "finetune":
        if getattr(args, "preset", None) or not uses_scratch_recipe(given):
            return TrainConfig.from_dict(given), ""
        run, scratch_plan = prepare_scratch(given, world_size())  # a folder: the small-folder recipe, if it is small
        return run, describe_scratch(scratch_plan, run.config)
    if getattr(args, "preset", None):  # a named recipe, with pretrained weights
        return TrainConfig.from_dict({**FINETUNE_BASE, **given}), ""
    run, plan = prepare_finetune(given, world_size())
    return run, "fine-tuning: " + describe(plan, run.config)


def run_until_stopped(call: Callable[[], Any], resume_hint: str = "") -> tuple[Any, int]:
    """`(call(), 0)`, or `(None, exit status)` with a message when the training in it was interrupted or diverged."""
    from effnet.cli.exit_status import DIVERGED, INTERRUPTED
    from effnet.train.trainer import TrainingDiverged, TrainingInterrupted

    try:
        return call(), 0
    except TrainingInterrupted as err:
        print(f"effnet: {err}{resume_hint}", file=sys.stderr)
        return None, INTERRUPTED
    except TrainingDiverged as err:
        print(f"effnet: error: {err}", file=sys.stderr)
        return None, DIVERGED


def run_train(args: argparse.Namespace, command: str = "train") -> int:
    """Train (or fine-tune) and print the summary; interrupted and diverged runs end with a message."""
    from effnet.train.distributed import is_main_process
    from effnet.train.trainer import train

    run, plan_line = resolve_config(args, command)
    if plan_line and is_main_process():
        print(plan_line, flush=True)
    result, status = run_until_stopped(lambda: train(run))
    if status:
        return status
    print(result.summary())
    return 0


def add_eval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", metavar="DIR", help="a training run directory: evaluates its model.safetensors and ema.safetensors with its config")
    parser.add_argument("--model", default="efficientnet_b0", help="model name (default: %(default)s)")
    parser.add_argument("--spec", default="", help="NetSpec file instead of a model name")
    parser.add_argument("--weights", default="", help="weights file, or 'default' for the model's pretrained weights")
    parser.add_argument(
        "--dataset", default="", help=f"synthetic, shapes (generated proxy tasks), folder, cifar10 or cifar100 (default: {DATASET_DEFAULT_HELP})"
    )
    parser.add_argument("--data-dir", default="", help="dataset root (for folder and torchvision datasets)")
    parser.add_argument("--num-classes", type=int, default=0, help="classes (0: from the dataset)")
    parser.add_argument("--val-samples", type=int, default=0, help="validation images (0: 500 of the synthetic task, all of a real dataset)")
    parser.add_argument(
        "--resolutions", type=int, nargs="+", default=None, help="test resolutions; accuracy often peaks above the training one (default: the model's)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic task (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def evaluate_at_resolutions(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Top-1/top-5/loss/per-class accuracy (and the class names) of raw (and EMA, FixRes, for a run) weights at each test resolution.

    A run is evaluated exactly as its training evaluated it: its spec, its saved preprocessing (the
    pretrained weights' statistics, e.g. TF's for Lite) and its validation split.
    """
    from torch.utils.data import DataLoader

    from effnet.train import rundir
    from effnet.train.distributed import resolve_device
    from effnet.train.evaluate import evaluate
    from effnet.train.network import make_model

    native: dict[str, int] = {}
    if args.run:
        run = rundir.check_run(args.run)
        config = rundir.read_config(run)
        base = rundir.run_preprocessing(run)
        weights = {kind: str(path) for kind, path in rundir.weights_of(run).items()}
        if not weights:
            raise FileNotFoundError(f"{run} holds no model.safetensors yet (the run has not finished); evaluate its checkpoint after it ends")
        if "fixres" in weights:
            native["fixres"] = rundir.fixres_resolution(run)

        def new_model(num_classes: int, source: str) -> Any:
            return rundir.load_run_model(run, Path(source).stem)

    else:
        config = TrainConfig(
            model=args.model,
            spec=args.spec,
            pretrained="default" if args.weights == "default" else "",
            dataset=args.dataset,
            data_dir=args.data_dir,
            num_classes=args.num_classes,
            val_samples=args.val_samples,
            seed=args.seed,
        )
        base = rundir.config_preprocessing(config, config.resolution or 224)
        weights = {"model": args.weights} if args.weights else {}
        onnx_model = None
        if args.weights.endswith(".onnx"):  # an `effnet quantize` file: its own preprocessing, at the one resolution it was written for
            from effnet.int8 import load_int8

            onnx_model = load_int8(args.weights)
            base = onnx_model.preprocessing or base
            native["model"] = base.resolution

        def new_model(num_classes: int, source: str) -> Any:
            if onnx_model is not None:
                return onnx_model
            model = make_model(dataclasses.replace(config, pretrained="default" if source == "default" else ""), num_classes)
            if source and source != "default":
                rundir.load_weights(model, source)
            return model

    def validation_data(resolution: int) -> Any:
        return rundir.validation_data(config, base, resolution)

    device = resolve_device("auto")
    num_classes = config.num_classes or validation_data(config.resolution or 224).num_classes
    rows = []
    for label, source in weights.items() or [("random-init", None)]:
        model = new_model(num_classes, source or "").to(device)
        default_resolutions = [native.get(label) or config.resolution or model.spec.resolution]
        for resolution in args.resolutions or default_resolutions:
            data = validation_data(resolution)
            loader = DataLoader(data.val, batch_size=args.batch_size, num_workers=args.workers, collate_fn=data.collate_fn)
            result = evaluate(model, loader, device, num_classes)
            rows.append(
                {"weights": label, "resolution": resolution, **result.to_dict(), "class_names": list(getattr(model, "class_names", None) or data.class_names)}
            )
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
    per_class = ", ".join(f"{name}: {v:.0f}" for name, v in zip(worst["class_names"], worst["per_class"], strict=True))
    print(f"per-class top-1 % ({worst['weights']} at {worst['resolution']} px): {per_class}")
    return 0
