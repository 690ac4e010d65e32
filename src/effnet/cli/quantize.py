"""`effnet quantize`: static INT8 of a model or a fine-tuned run, calibrated on a folder and checked against float (the work is `effnet.int8`'s)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from effnet.cli.common import CLIError, add_run_options, add_tf_compat_option, load_model, positive_int


def cmd_quantize(args: argparse.Namespace) -> int:
    """`effnet quantize`: write the INT8 ONNX file, say which layers stayed float, and compare top-1 with float when there are labels."""
    try:
        from effnet import int8
    except ImportError as err:
        raise CLIError(f"INT8 quantization is not available ({err})") from None
    run = args.run or (args.model if (Path(args.model) / "config.json").is_file() else None)
    if run:
        from effnet.train.rundir import load_run_model

        model = load_run_model(run, args.run_weights)
    else:
        model = load_model(args.model, args.weights, args.tf_compat).eval()
        if args.weights == "none":
            print("effnet: note: --weights none quantizes a randomly initialised model; its labels are meaningless", file=sys.stderr)
    keep = () if args.keep_float == ["none"] else tuple(args.keep_float)
    result = int8.quantize(model, args.calibration, args.out, keep_float=keep, count=args.count)
    report: dict[str, Any] = {
        "out": str(result.path),
        "calibration_images": result.calibration_images,
        "int8_mib": result.size_bytes / 2**20,
        "float_onnx_mib": result.float_onnx_bytes / 2**20,
        "float_layers": result.float_layers.to_dict(),
    }
    if not args.json:
        print(f"calibrated on {result.calibration_images} images; weights INT8 per channel, activations INT8 (onnxruntime static QDQ)")
        print(f"kept float by rule: {result.float_layers.summary()}")
    comparison = _check(args, model, run, result.path)
    if comparison is not None:
        report["check"] = comparison.to_dict()
    if args.json:
        print(json.dumps(report, indent=2))
    print(
        f"wrote {result.path} (INT8 ONNX, {report['int8_mib']:.1f} MiB; the float ONNX is {report['float_onnx_mib']:.1f} MiB)",
        file=sys.stderr if args.json else sys.stdout,
    )
    return 0


def _check(args: argparse.Namespace, model: Any, run: str | None, path: Path) -> Any:
    """Float and INT8 top-1 on --val or the run's validation split, printed side by side; None without labelled images."""
    from effnet import int8
    from effnet.int8.check import MAX_DROP

    if args.val:
        spec = getattr(model, "spec", None)
        samples: Any = int8.labelled_folder(args.val, model.preprocessing, getattr(model, "class_names", None), int(getattr(spec, "num_classes", 0) or 0))
        where = args.val
    elif run:
        samples, where = int8.run_validation(run, model.preprocessing), f"{run}'s validation split"
    else:
        if not args.json:
            print("effnet: note: no --val DIR: the INT8 model's accuracy was not checked", file=sys.stderr)
        return None
    comparison = int8.compare(model, int8.load_int8(path), samples, model.preprocessing)
    if not args.json:
        print(f"check on {comparison.images} images of {where}" + (f" ({comparison.skipped} unreadable, skipped)" if comparison.skipped else ""))
        print(f"  {'':6} {'top-1 %':>8}")
        print(f"  {'float':6} {comparison.float_top1:8.2f}")
        print(
            f"  {'INT8':6} {comparison.int8_top1:8.2f}   ({comparison.int8_top1 - comparison.float_top1:+.2f} points; same top-1 as float on {comparison.agreement:.1f}% of images)"
        )
    if comparison.drop > MAX_DROP:
        bar = "!" * 72
        print(
            f"{bar}\neffnet: WARNING: INT8 loses {comparison.drop:.2f} points of top-1 (more than {MAX_DROP:g}): "
            f"{comparison.float_top1:.2f}% -> {comparison.int8_top1:.2f}%.\nKeep more layers float (--keep-float stem classifier squeeze_excite swish), "
            f"calibrate on more images like the deployment's, or deploy the float model.\n{bar}",
            file=sys.stderr,
        )
    return comparison


def add_quantize_command(command: Any) -> None:
    """Register quantize with the CLI's `command(name, handler, summary, description, epilog)`."""
    from effnet.int8.rule import DEFAULT_KEEP, KINDS

    p = command(
        "quantize",
        cmd_quantize,
        "static INT8 (ONNX Runtime QDQ), calibrated and checked against float",
        "Quantize a model or a fine-tuned run to static INT8: per-channel INT8 weights, INT8 activations whose ranges come\n"
        "from the calibration images. Layers that lose accuracy in INT8 stay float by rule (squeeze-excitation and swish;\n"
        "--keep-float adds the stem conv and the classifier); the output says which. With --val (or for a run, its own validation split) float\n"
        "and INT8 top-1 are printed side by side, with a loud warning when INT8 loses more than 1 point.\n"
        "The result is one ONNX file: run it with `effnet predict --weights FILE.onnx` or onnxruntime.",
        epilog="examples:\n  effnet quantize efficientnet_lite0 --calibration photos/ --val imagenet_val/ --out lite0_int8.onnx\n"
        "  effnet quantize runs/mine --calibration my_photos/train --out mine_int8.onnx     # checks on the run's validation split",
    )
    p.add_argument("model", metavar="MODEL_OR_RUN", help="model variant (with --weights), or a training run directory")
    add_run_options(p, "a training run to quantize (same as giving its directory as MODEL_OR_RUN)", "quantize")
    p.add_argument("--weights", default="pretrained", metavar="PATH|pretrained|none", help="weights of a named model")
    add_tf_compat_option(p)
    p.add_argument("--calibration", required=True, metavar="DIR", help="folder of calibration images (searched recursively; any photos for an ImageNet model)")
    p.add_argument("--count", type=positive_int, default=300, metavar="N", help="calibration images used at most (a random sample of a larger folder)")
    p.add_argument("--val", metavar="DIR", help="labelled check images, DIR/CLASS/*.jpg (CLASS: a class name of the model, or an ImageNet index 0..999)")
    p.add_argument("--out", required=True, metavar="FILE", help="the INT8 model to write (.onnx; written atomically)")
    p.add_argument(
        "--keep-float",
        nargs="+",
        default=list(DEFAULT_KEEP),
        choices=(*KINDS, "none"),
        metavar="KIND",
        help=f"layer kinds kept float: {', '.join(KINDS)}, or none (default: {' '.join(DEFAULT_KEEP)})",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
