"""`effnet predict`, `export`, `convert` and `demo`: running, exporting and converting models."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from effnet.cli.common import MACS_NOTE, PAPER_TABLE2, CLIError, add_run_options, add_tf_compat_option, count, load_model, positive_int, print_predictions
from effnet.cli.models import profile_table


def cmd_predict(args: argparse.Namespace) -> int:
    """`effnet predict`: top-k labels for image files (the bundled samples by default), of an ImageNet model or a training run."""
    from effnet.models.predict import predict, sample_images

    if args.run:
        from effnet.train.rundir import load_run_model

        if args.num_classes:
            raise CLIError("--run brings the run's classifier and class names; drop --num-classes")
        model = load_run_model(args.run, args.run_weights)
    elif args.weights.endswith(".onnx"):  # an INT8 (or float) file of `effnet quantize`: its preprocessing and labels travel in it
        from effnet.int8 import load_int8

        model = load_int8(args.weights)
    else:
        model = load_model(args.model, args.weights, args.tf_compat, num_classes=args.num_classes)
        if args.weights == "none":
            print("effnet: note: --weights none gives a randomly initialised model; its labels are meaningless", file=sys.stderr)
    images = args.images or sample_images()
    results = predict(model, images, topk=args.topk, batch_size=args.batch_size, class_names=getattr(model, "class_names", None))
    if args.json:
        for result in results:
            if result.error is not None:
                print(f"effnet: skipped {result.name}: {result.error}", file=sys.stderr)
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print_predictions(results, short_names=not args.images)
    return 0 if any(r.error is None for r in results) else 1


def cmd_export(args: argparse.Namespace) -> int:
    """`effnet export`: ONNX or TorchScript file of a named model or of a training run, with its class names."""
    try:
        from effnet.models import export
    except ImportError as err:
        raise CLIError(f"export support is not available ({err})") from None

    model, source, output = _model_to_export(args)
    resolution = args.resolution or (model.preprocessing.resolution if args.run else None)
    try:
        if args.format == "onnx":
            written = export.export_onnx(
                model,
                output,
                resolution=resolution,
                batch_size=args.batch_size,
                dynamic_batch=not args.static_batch,
                opset=args.opset,
                verify=not args.no_verify,
            )
        else:
            written = export.export_torchscript(model, output, method=args.method, resolution=resolution, verify=not args.no_verify)
        metadata = export.read_metadata(written)
    except (ImportError, export.ExportError) as err:  # missing onnx/onnxruntime, or the exported file failed verification
        raise CLIError(str(err)) from None
    _report_export(Path(written), args, source, metadata, model, resolution)
    if source == "random weights":
        print(
            f"effnet: note: the weights are random (no --pretrained or --weights): the file computes nothing useful; "
            f"export the trained model with `effnet export {args.name} --format {args.format} --pretrained`, --weights FILE or --run RUN_DIR",
            file=sys.stderr,
        )
    return 0


def _model_to_export(args: argparse.Namespace) -> tuple[Any, str, Path]:
    """The model `effnet export` writes, what its weights are (for the report) and the output path."""
    from effnet.core.zoo import canonical_name

    suffix = ".onnx" if args.format == "onnx" else ".pt"
    if args.run:
        from effnet.train.rundir import load_run_model

        given = [flag for flag, value in (("NAME", args.name), ("--pretrained", args.pretrained), ("--weights", args.weights)) if value]
        given += [flag for flag, value in (("--num-classes", args.num_classes), ("--tf-compat", args.tf_compat)) if value]
        if given:
            raise CLIError(f"--run brings the run's network, weights and classes; drop {', '.join(given)}")
        model = load_run_model(args.run, args.run_weights)
        output = Path(args.output) if args.output else Path(args.run) / f"{args.run_weights}{suffix}"
        return model, f"{args.run_weights} weights of the run {args.run}", output
    if not args.name:
        raise CLIError("name the model to export (e.g. efficientnet_lite0), or give a training run with --run RUN_DIR")
    name = canonical_name(args.name)
    weights = args.weights or ("pretrained" if args.pretrained else None)
    model = load_model(name, weights, args.tf_compat, num_classes=args.num_classes).eval()
    source = "random weights" if weights is None else "pretrained weights" if weights == "pretrained" else f"weights of {weights}"
    return model, source, Path(args.output) if args.output else Path(f"{name}{suffix}")


def _report_export(written: Path, args: argparse.Namespace, source: str, metadata: dict[str, Any], model: Any, resolution: int | None) -> None:
    """What was written: file, weights, input and output shapes, the class names (also beside the file), verification."""
    from effnet._io import atomic_write_text
    from effnet.models.export import input_shape

    size = written.stat().st_size / 2**20 if written.exists() else 0.0
    in_chans, pixels = input_shape(model, resolution)
    batch = args.batch_size if args.format == "onnx" and args.static_batch else "batch"
    shapes = f"input ({batch}, {in_chans}, {pixels}, {pixels})"
    names = metadata.get("class_names")
    if "num_classes" in metadata:
        shapes += f" -> logits ({batch}, {metadata['num_classes']})"
    verified = "" if args.no_verify else "; outputs verified against PyTorch"
    print(f"wrote {written} ({args.format}, {size:.1f} MiB, {source}; {shapes}{verified})")
    if names is not None:
        sidecar = written.with_name(f"{written.stem}.classes.json")
        atomic_write_text(sidecar, json.dumps(names) + "\n")
        shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
        print(f"classes: {shown}; in output order in {sidecar} and, with the preprocessing, in the file's metadata")
    if source != "random weights" and _outputs_ignore_the_input(model, in_chans, min(pixels, 64)):
        print("effnet: warning: the model gives the same logits for every input: its classifier looks untrained (as a zero-initialised one)", file=sys.stderr)


def _outputs_ignore_the_input(model: Any, in_chans: int, resolution: int) -> bool:
    """True for a model whose logits do not depend on the image (a zero classifier, as a dropped head would leave)."""
    import torch

    with torch.no_grad():
        logits = model.eval()(torch.randn(2, in_chans, resolution, resolution, generator=torch.Generator().manual_seed(0)))
    return isinstance(logits, torch.Tensor) and bool(torch.equal(logits[0], logits[1]))


def cmd_convert(args: argparse.Namespace) -> int:
    """`effnet convert`: foreign weights (timm, torchvision, EfficientNet-PyTorch) to effnet safetensors."""
    from effnet.core.zoo import canonical_name, get_spec
    from effnet.models.factory import create_model
    from effnet.models.weights import convert_state_dict, detect_layout, guess_variant, load_file, load_state_dict, save_file, unwrap

    output = Path(args.output)
    if output.suffix != ".safetensors":
        raise CLIError(f"output {str(output)!r} must end in .safetensors (effnet reads files by their suffix)")
    if output.resolve() == Path(args.input).resolve():
        raise CLIError("input and output are the same file")
    state = unwrap(load_file(args.input))
    layout = detect_layout(state) if args.source == "auto" else args.source
    if args.model:
        name = canonical_name(args.model)
    else:
        name = guess_variant(state)
        if name is None:
            raise CLIError("cannot tell which model these weights belong to from their parameter count; pass --model NAME")
    converted = convert_state_dict(state, get_spec(name), layout)
    # a fine-tuned or headless checkpoint: build the model with the file's classifier and stem sizes
    classifier = converted.get("classifier.weight")
    stem = converted.get("stem.conv.weight")
    num_classes = int(classifier.shape[0]) if classifier is not None else 0
    in_chans = int(stem.shape[1]) if stem is not None and stem.dim() == 4 else 3
    model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    load_state_dict(model, converted, source="effnet", strict=True)
    own = model.state_dict()
    tensors = {k: v for k, v in converted.items() if k in own}
    metadata = {"format": "pt", "effnet_model": name, "converted_from": layout, "num_classes": str(num_classes), "in_chans": str(in_chans)}
    save_file(tensors, output, metadata=metadata)
    print(f"converted {len(tensors)} tensors of {name} ({layout} layout -> effnet); wrote {output}")
    if layout == "efficientnet_pytorch":
        print(
            "note: EfficientNet-PyTorch weights are ports of TensorFlow checkpoints; "
            f"load them with create_model({name!r}, pretrained=PATH, tf_compat=True) (TF 'same' padding, BN eps 1e-3)"
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """`effnet demo`: the B0-B7 profile table, then the bundled photos classified by pretrained Lite0."""
    from effnet.core.profile import profile_spec
    from effnet.core.zoo import get_info, get_spec
    from effnet.models.predict import predict, sample_images

    print("EfficientNet-B0 to B7, computed from their specs (compare the paper's Table 2):")
    print()
    print(profile_table([profile_spec(get_spec(n)) for n in PAPER_TABLE2]))
    print(MACS_NOTE)
    print()
    info = get_info("efficientnet_lite0")
    top1 = info.weights[0].top1 if info.weights else None
    quality = f", ImageNet top-1 {top1}%" if top1 else ""
    print(f"Classifying the bundled sample photos with pretrained EfficientNet-Lite0 ({count(profile_spec(info.spec).params)} params{quality}):")
    print()
    model = load_model("efficientnet_lite0", "pretrained")
    results = predict(model, sample_images(), topk=args.topk)
    print_predictions(results, short_names=True)
    print()
    print("Next: `effnet predict YOUR_PHOTO.jpg`, `effnet profile all --stages`, `effnet models`.")
    return 0 if any(r.error is None for r in results) else 1


def add_predict_commands(command: Any) -> None:
    """Register predict, export and convert with the CLI's `command(name, handler, summary, description, epilog)`."""
    p = command(
        "predict",
        cmd_predict,
        "classify images (ImageNet top-k, or a fine-tuned run's classes)",
        "Classify images with an ImageNet model, or with the model a training run produced (--run), and print the\n"
        "top-k labels with probabilities.\n"
        "Files that cannot be read are reported on stderr and skipped; the exit status is 0 if at\n"
        "least one image was classified, 1 if none, 2 for usage errors.",
        epilog="examples:\n  effnet predict                       # the bundled sample photos\n  effnet predict photo.jpg photos/ --topk 3\n"
        "  effnet predict photo.jpg --model efficientnet_b0 --weights b0.safetensors\n"
        "  effnet predict photos/ --run runs/finetune   # a fine-tuned model, its preprocessing and class names",
    )
    add_run_options(p, "use the model of a training run (its spec, weights, preprocessing and class names)", "use")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or directories (default: the bundled sample photos)")
    p.add_argument("--model", default="efficientnet_lite0", metavar="NAME", help="model variant")
    p.add_argument(
        "--weights",
        default="pretrained",
        metavar="PATH|pretrained|none",
        help="weights file (safetensors or PyTorch state dict of any supported layout; an .onnx file of `effnet quantize` runs in onnxruntime), "
        "'pretrained' for the variant's default weights, or 'none' for random init",
    )
    p.add_argument("--num-classes", type=positive_int, metavar="K", help="classifier outputs of a --weights FILE, labelled 'class N' (default: 1000, ImageNet)")
    add_tf_compat_option(p)
    p.add_argument("--topk", type=positive_int, default=5, metavar="K", help="labels to print per image")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="images per forward pass")
    p.add_argument("--json", action="store_true", help="print JSON (path, top labels, error per input)")

    p = command(
        "export",
        cmd_export,
        "write an ONNX or TorchScript file (of a named model or a training run)",
        "Export a model to ONNX or TorchScript; by default the output is checked against PyTorch.\n"
        "The class names (in output order) and the eval preprocessing go into the file's metadata, and the\n"
        "class names also into OUTPUT.classes.json beside it.\n"
        "Without --pretrained, --weights or --run the weights are random (a note says so).",
        epilog="examples:\n  effnet export lite0 --format onnx --pretrained\n  effnet export b0 --format torchscript --resolution 256 --output b0.pt\n"
        "  effnet export --run runs/mine --format onnx      # a fine-tuned model: runs/mine/model.onnx, its classes",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="model variant, e.g. efficientnet_b0 (not with --run)")
    add_run_options(p, "export the model of a training run (its network, weights, classes and preprocessing)", "export")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"), help="output format (required)")
    p.add_argument("--output", metavar="PATH", help="output file (default: NAME.onnx or NAME.pt in the current directory; RUN_DIR/model.onnx for a run)")
    p.add_argument(
        "--resolution", type=positive_int, metavar="R", help="input resolution of the example input (default: the model's native resolution, a run's own)"
    )
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", action="store_true", help="load the variant's default pretrained weights (default: random init)")
    weights.add_argument("--weights", metavar="PATH", help="load weights from a file of any supported layout (every tensor must fit the model)")
    p.add_argument("--num-classes", type=positive_int, metavar="K", help="classifier outputs of a --weights FILE (default: 1000, ImageNet)")
    add_tf_compat_option(p, "automatic for TF-trained default weights")
    p.add_argument("--batch-size", type=positive_int, default=1, metavar="N", help="ONNX: batch size of the example input")
    p.add_argument("--static-batch", action="store_true", help="ONNX: fix the batch dimension (default: dynamic batch)")
    p.add_argument("--opset", type=positive_int, metavar="N", help="ONNX: opset version (default: the exporter's)")
    p.add_argument("--method", choices=("script", "trace"), default="script", help="TorchScript: torch.jit.script or torch.jit.trace")
    p.add_argument("--no-verify", action="store_true", help="skip comparing the exported model's outputs with PyTorch's")

    p = command(
        "convert",
        cmd_convert,
        "convert timm/torchvision/EfficientNet-PyTorch weights to effnet safetensors",
        "Read weights safely (safetensors, or a PyTorch file with weights_only), rename them to effnet's keys,\n"
        "check that they load strictly into the named model, and write a safetensors file.",
        epilog="example:\n  effnet convert efficientnet_b0_rwightman-7f5810bc.pth b0.safetensors --model efficientnet_b0",
    )
    p.add_argument("input", metavar="IN", help="weights file (.safetensors, .pth, .pt, .bin)")
    p.add_argument("output", metavar="OUT", help="output file, must end in .safetensors")
    p.add_argument(
        "--from",
        dest="source",
        default="auto",
        choices=("auto", "timm", "torchvision", "efficientnet_pytorch", "effnet"),
        help="key layout of IN; auto detects it from the stem's key",
    )
    p.add_argument("--model", metavar="NAME", help="the variant the weights belong to (default: guessed from the parameter count)")


def add_demo_command(command: Any) -> None:
    """Register demo with the CLI's `command(name, handler, summary, description, epilog)`."""
    p = command(
        "demo",
        cmd_demo,
        "profile table of B0-B7, then classify the bundled photos",
        "Print the B0-B7 params/MACs table, then classify the bundled sample photos with pretrained EfficientNet-Lite0.",
    )
    p.add_argument("--topk", type=positive_int, default=3, metavar="K", help="labels to print per photo")
