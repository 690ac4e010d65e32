"""build(spec) -> nn.Module: the EfficientNet network (and its feature-pyramid variant) from a NetSpec."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from effnet._fields import reject_unknown
from effnet.core.spec import NetSpec, SpecError
from effnet.models.nn.blocks import make_block
from effnet.models.nn.layers import ConvBnAct


@dataclass(frozen=True)
class FeatureLevel:
    """One feature map that `features_only` can return."""

    stage: int  # index of the stage whose output this is
    channels: int
    reduction: int  # stride relative to the input


def feature_levels(spec: NetSpec) -> list[FeatureLevel]:
    """The last stage at each output stride (2, 4, 8, 16, 32 for EfficientNet), with its channels."""
    reduction = spec.stem_stride
    per_stage = []
    for index, stage in enumerate(spec.stages):
        reduction *= stage.stride
        per_stage.append(FeatureLevel(index, stage.out_channels, reduction))
    return [lvl for i, lvl in enumerate(per_stage) if i == len(per_stage) - 1 or per_stage[i + 1].reduction != lvl.reduction]


def _conv_settings(spec: NetSpec) -> dict[str, Any]:
    """What every conv-BN-activation of the stem and the blocks takes from the spec."""
    return {"activation": spec.activation, "bn_eps": spec.bn_eps, "bn_momentum": spec.bn_momentum, "padding": spec.padding}


def _stages(spec: NetSpec) -> nn.Sequential:
    """The stages as Sequential of Sequential of blocks; drop path rises linearly with block index."""
    stages: list[list[nn.Module]] = [[] for _ in spec.stages]
    for index, site in enumerate(spec.blocks()):
        stage = site.stage
        stages[site.stage_index].append(
            make_block(
                stage.block,
                site.in_channels,
                stage.out_channels,
                kernel=stage.kernel,
                stride=site.stride,
                expand_ratio=stage.expand_ratio,
                se_ratio=stage.se_ratio,
                skip=stage.skip,
                drop_path=spec.drop_path_rate * index / spec.num_blocks,
                **_conv_settings(spec),
            )
        )
    return nn.Sequential(*(nn.Sequential(*blocks) for blocks in stages))


def _stem(spec: NetSpec) -> ConvBnAct:
    """conv (stride 2) -> BN -> act, and ResNet's 3x3 stride-2 max pool when the spec asks for it."""
    stem = ConvBnAct(spec.in_chans, spec.stem_channels, spec.stem_kernel, 2, **_conv_settings(spec))
    if spec.stem_pool:
        stem.add_module("pool", nn.MaxPool2d(3, 2, 1))
    return stem


HEAD_INITS = ("zeros", "tf")


def init_classifier(linear: nn.Linear, how: str = "zeros") -> None:
    """Initialise a classifier layer.

    "zeros" (the default): every logit starts at 0, so a new head predicts uniformly (loss ln k)
    and sends no gradient into a pretrained backbone before it has learned anything (BiT and
    big_vision zero-initialise their heads for the same reason). "tf": the TF reference's
    uniform(+-1/sqrt(num_classes)); with few classes that is wide (+-0.71 for 2 classes) and
    starts far from uniform predictions, so use it only to reproduce a TF-initialised run.
    """
    if how not in HEAD_INITS:
        raise ValueError(f"unknown head init {how!r}; expected one of {', '.join(HEAD_INITS)}")
    if how == "tf":
        bound = 1.0 / linear.out_features**0.5
        nn.init.uniform_(linear.weight, -bound, bound)
    else:
        nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)


def _init_weights(module: nn.Module, head_init: str = "zeros") -> None:
    """Initialisation of the TF reference for convs and BN (fan-out normal, ones/zeros); the classifier by `init_classifier`."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init_classifier(m, head_init)


def zero_init_residuals(model: nn.Module) -> int:
    """Start every block that has an identity (or projection) shortcut as that shortcut: zero its branch's last BN
    scale. A deep network then starts as a shallow one, which is what lets depth-scaled proxy networks train within a
    few hundred steps. Returns how many blocks were changed. Not the TF reference's init: opt in (`--zero-init-residual`)."""
    from effnet.models.nn.blocks import _Residual

    return sum(block.zero_init_branch() for block in model.modules() if isinstance(block, _Residual))


@contextlib.contextmanager
def _bn_stats_frozen(module: nn.Module) -> Iterator[None]:
    """BatchNorm in train mode without touching running statistics (momentum 0, counter restored)."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.momentum is not None:
            saved.append((m, m.momentum, m.num_batches_tracked.clone()))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def _recompute_contexts(stage: nn.Module) -> tuple[Any, Any]:
    """Forward runs as usual; the backward-time recomputation must not update BN statistics a second time."""
    return contextlib.nullcontext(), _bn_stats_frozen(stage)


def _check_input(x: torch.Tensor, in_chans: int) -> None:
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(
            "expected a batch of images shaped (N, "
            + str(in_chans)
            + ", H, W), got shape "
            + str(list(x.shape))
            + "; convert grayscale/RGBA images to the model's channels or build the model with in_chans="
            + (str(x.shape[1]) if x.dim() == 4 else "C")
        )


class EfficientNet(nn.Module):
    """An EfficientNet-style network built from a `NetSpec` (`self.spec`).

    stem (3x3 stride 2) -> stages of blocks (MBConv for EfficientNet) -> 1x1 head conv ->
    global average pool -> dropout -> linear classifier. Runs at any input resolution.
    Baselines of other families (MobileNetV1/V2, ResNet) are specs built by the same class.
    """

    def __init__(self, spec: NetSpec, head_init: str = "zeros") -> None:
        super().__init__()
        self.spec = spec
        self.in_chans = spec.in_chans
        self.num_classes = spec.num_classes
        self.num_features = spec.num_features
        self.stem = _stem(spec)
        self.stages = _stages(spec)
        last = spec.stages[-1].out_channels
        norm = {"bn_eps": spec.bn_eps, "bn_momentum": spec.bn_momentum}
        self.head = ConvBnAct(last, spec.head_channels, 1, activation=spec.activation, **norm) if spec.head_channels else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(self.num_features, spec.num_classes) if spec.num_classes else nn.Identity()
        self.preprocessing: Any = None  # set by effnet.create_model / effnet.build
        self.grad_checkpointing = False  # recompute each stage in backward (saves activation memory)
        _init_weights(self, head_init)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in backward instead of keeping them (timm's name; sets `grad_checkpointing`).

        Trades compute for activation memory in training; gradients and BN statistics are the same as without.
        """
        self.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (after the head conv), before pooling."""
        _check_input(x, self.in_chans)
        x = self.stem(x)
        if self.grad_checkpointing and self.training and not torch.jit.is_scripting():  # noqa: SIM108 (TorchScript drops this branch)
            x = self._checkpointed_stages(x)
        else:
            x = self.stages(x)
        return self.head(x)

    @torch.jit.unused
    def _checkpointed_stages(self, x: torch.Tensor) -> torch.Tensor:
        """Stages whose activations are recomputed in backward; the recomputation leaves BN statistics alone."""
        for stage in self.stages:
            x = checkpoint(stage, x, use_reentrant=False, context_fn=partial(_recompute_contexts, stage))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout and classify a feature map; `pre_logits=True` returns the pooled features."""
        x = self.pool(x).flatten(1)
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, head_init: str = "zeros") -> None:
        """Replace the classifier with a fresh one for `num_classes` (0 removes it), initialised by `init_classifier`."""
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        if num_classes:
            init_classifier(self.classifier, head_init)
        self.spec = self.spec.replace(num_classes=num_classes)


class EfficientNetFeatures(nn.Module):
    """Backbone that returns feature maps at chosen strides (for detection/segmentation heads).

    `feature_info` lists, per returned map, its channels and reduction (stride).
    """

    def __init__(self, spec: NetSpec, out_indices: tuple[int, ...] | list[int] | None = None) -> None:
        super().__init__()
        levels = feature_levels(spec)
        if out_indices is None:
            out_indices = tuple(range(len(levels)))
        bad = [i for i in out_indices if not 0 <= i < len(levels)]
        if bad:
            raise SpecError(
                f"out_indices {bad} out of range: this network has {len(levels)} feature levels (0..{len(levels) - 1}) at strides {[lvl.reduction for lvl in levels]}"
            )
        self.spec = spec
        self.in_chans = spec.in_chans
        self.feature_info = [levels[i] for i in out_indices]
        self.return_stages = [lvl.stage for lvl in self.feature_info]
        self.stem = _stem(spec)
        # stages after the deepest requested level are dropped (built with the full net, so the
        # drop-path schedule and the state-dict names match the classifier model's)
        self.stages = _stages(spec)[: max(self.return_stages) + 1]
        _init_weights(self)

    def channels(self) -> list[int]:
        return [lvl.channels for lvl in self.feature_info]

    def reductions(self) -> list[int]:
        return [lvl.reduction for lvl in self.feature_info]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_input(x, self.in_chans)
        x = self.stem(x)
        features: list[torch.Tensor] = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.return_stages:
                features.append(x)
        return features


def build(
    spec: NetSpec | str,
    *,
    features_only: bool = False,
    out_indices: tuple[int, ...] | list[int] | None = None,
    head_init: str = "zeros",
    **overrides: Any,
) -> EfficientNet | EfficientNetFeatures:
    """Build the network a spec describes; `overrides` replace spec fields (num_classes, in_chans, dropout, ...).

    `head_init`: how the classifier starts, "zeros" (uniform predictions) or "tf" (see `init_classifier`).

    A string is a compact spec string (``ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e6_c24_se0.25``).
    """
    from effnet.core.preprocessing import Preprocessing

    if isinstance(spec, str):
        spec = NetSpec.from_string(spec)
    if overrides:
        reject_unknown(overrides, NetSpec, "option(s) for build() (it takes NetSpec fields)", error=SpecError)
        spec = spec.replace(**overrides)
    if features_only:
        return EfficientNetFeatures(spec, out_indices)
    if out_indices is not None:
        raise SpecError("out_indices only applies with features_only=True")
    model = EfficientNet(spec, head_init)
    model.preprocessing = Preprocessing.for_resolution(spec.resolution)
    return model
