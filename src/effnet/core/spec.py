"""The architecture as data: `NetSpec` and `StageSpec`, their validation and codecs.

Every network in effnet is a `NetSpec`. Models (`effnet.build`), profiles
(`effnet.core.profile`) and scaling (`effnet.core.scaling`) are functions of specs.

A stage is one line of the paper's Table 1: one block design repeated `repeats`
times; the first block of a stage carries the stride and the channel change.
Stages are written in the TF/timm block-string style, one token list per stage::

    ds_r1_k3_s1_e1_c16_se0.25      depthwise-separable block (MBConv1)
    ir_r2_k3_s2_e6_c24_se0.25      MBConv6, k3x3, stride 2, 24 output channels, SE 0.25
    ir_r1_k3_s1_e6_c320_noskip     ... without the identity residual
    cv_r1_k3_s2_c32                regular 3x3 conv-BN-act (MnasNet's "regular conv")
    sep_r5_k3_s1_c512_noskip       MobileNetV1 depthwise-separable conv, 5 times, no residual
    bt_r3_k3_s1_e4_c256            ResNet bottleneck: 1x1 to 256/4, 3x3, 1x1 to 256
    fused_r4_k3_s2_e4_c48          Fused-MBConv4 (EfficientNetV2): 3x3 conv to 4x the input width, 1x1 project

Tokens: ``r`` repeats, ``k`` kernel, ``s`` stride, ``e`` the channel ratio: the
expansion of ``ir`` and ``fused`` (inner width = input channels x e) and the reduction of ``bt``
(inner width = c / e, `StageSpec.reduction`), ``c`` output channels, ``se``
squeeze-excitation ratio (of the block's input channels; absent means no SE),
``noskip`` drops the residual. ``e`` is required for ``ir``, ``fused`` and ``bt`` and is 1
for the others. The token stays ``e`` for ``bt`` (the TF/timm token of the channel ratio):
block strings are the architecture's key in saved specs and stored results.

``fused`` is EfficientNetV2's Fused-MBConv, named for what it does: timm spells it ``er``
("edge residual") and TF's block strings mark it ``c1`` (conv type 1). With ``e1`` it is one
kxk conv-BN-act, as in TF's reference (where SE, if any, comes before that conv).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet._fields import reject_unknown

BLOCK_KINDS = {
    "ds": "depthwise-separable block (MBConv1 without expansion conv)",
    "ir": "inverted residual bottleneck (MBConv)",
    "cv": "regular conv kxk-BN-act (MnasNet's regular conv)",
    "sep": "MobileNetV1 depthwise-separable conv (dw-BN-act, pw-BN-act)",
    "bt": "ResNet bottleneck (1x1 reduce to c / e, kxk, 1x1 restore, projection shortcut)",
    "fused": "Fused-MBConv of EfficientNetV2 (kxk conv to e x input width, SE, 1x1 project; e1: one kxk conv)",
}
_NO_EXPANSION = ("ds", "cv", "sep")  # kinds whose expand_ratio is always 1
_NEEDS_EXPANSION = ("ir", "bt", "fused")
ACTIVATIONS = ("swish", "relu6", "relu")
PADDINGS = ("symmetric", "tf_same")


class SpecError(ValueError):
    """A spec (or spec string) is malformed; the message says what and how to fix it."""


@dataclass(frozen=True, init=False)
class StageSpec:
    """One stage: a block design repeated `repeats` times (a row of the paper's Table 1).

    `expand_ratio` holds the stage's channel ratio. For ``ir`` it is the expansion; a ``bt``
    (ResNet bottleneck) stage narrows instead, so it is given and read as `reduction`
    (``StageSpec(block="bt", reduction=4, out_channels=256)``: inner width 256 / 4 = 64).
    """

    block: str = "ir"
    repeats: int = 1
    kernel: int = 3
    stride: int = 1
    expand_ratio: float = 6.0
    out_channels: int = 16
    se_ratio: float = 0.25
    skip: bool = True

    # Written out (not dataclass-generated) for the keyword `reduction`, which is stored in
    # `expand_ratio`: the fields, equality, hashing and codecs of stages stay as they were.
    def __init__(
        self,
        block: str = "ir",
        repeats: int = 1,
        kernel: int = 3,
        stride: int = 1,
        expand_ratio: float = 6.0,
        out_channels: int = 16,
        se_ratio: float = 0.25,
        skip: bool = True,
        *,
        reduction: float | None = None,
    ) -> None:
        if reduction is not None:  # wins over expand_ratio, which dataclasses.replace always passes
            _check(block == "bt", f"reduction applies to 'bt' (bottleneck) blocks only; the channel ratio of a {block!r} block is expand_ratio")
            expand_ratio = reduction
        for name, value in (("block", block), ("repeats", repeats), ("kernel", kernel), ("stride", stride), ("expand_ratio", expand_ratio)):
            object.__setattr__(self, name, value)
        for name, value in (("out_channels", out_channels), ("se_ratio", se_ratio), ("skip", skip)):
            object.__setattr__(self, name, value)
        self.__post_init__()

    @property
    def reduction(self) -> float | None:
        """A ``bt`` stage's bottleneck reduction (inner width = out_channels / reduction); None for other kinds."""
        return self.expand_ratio if self.block == "bt" else None

    def __repr__(self) -> str:
        ratio = f"reduction={self.expand_ratio!r}" if self.block == "bt" else f"expand_ratio={self.expand_ratio!r}"
        return (
            f"StageSpec(block={self.block!r}, repeats={self.repeats!r}, kernel={self.kernel!r}, stride={self.stride!r}, {ratio}, "
            f"out_channels={self.out_channels!r}, se_ratio={self.se_ratio!r}, skip={self.skip!r})"
        )

    def __post_init__(self) -> None:
        _check(self.block in BLOCK_KINDS, f"unknown block kind {self.block!r}; expected one of {sorted(BLOCK_KINDS)}")
        _check(isinstance(self.repeats, int) and self.repeats >= 1, f"repeats must be an integer >= 1, got {self.repeats!r}")
        _check(isinstance(self.kernel, int) and self.kernel >= 1 and self.kernel % 2 == 1, f"kernel must be an odd integer >= 1, got {self.kernel!r}")
        _check(self.stride in (1, 2), f"stride must be 1 or 2, got {self.stride!r}")
        _check(self.expand_ratio >= 1, f"{'reduction' if self.block == 'bt' else 'expand_ratio'} must be >= 1, got {self.expand_ratio!r}")
        _check(
            self.block not in _NO_EXPANSION or self.expand_ratio == 1,
            f"a {self.block!r} block has no expansion: expand_ratio must be 1, got {self.expand_ratio!r}",
        )
        _check(isinstance(self.out_channels, int) and self.out_channels >= 1, f"out_channels must be an integer >= 1, got {self.out_channels!r}")
        _check(0 <= self.se_ratio <= 1, f"se_ratio must be in [0, 1] (0 = no SE), got {self.se_ratio!r}")

    def to_string(self) -> str:
        """Encode as a block string, e.g. ``ir_r2_k3_s2_e6_c24_se0.25`` (the canonical form of the stage)."""
        parts = [self.block, f"r{self.repeats}", f"k{self.kernel}", f"s{self.stride}", f"e{_num(self.expand_ratio)}", f"c{self.out_channels}"]
        if self.se_ratio > 0:
            parts.append(f"se{_num(self.se_ratio)}")
        if not self.skip:
            parts.append("noskip")
        return "_".join(parts)

    @classmethod
    def from_string(cls, text: str) -> StageSpec:
        """Decode one block string; errors quote the bad token and say what was expected."""
        tokens = text.strip().split("_")
        if not tokens or tokens[0] not in BLOCK_KINDS:
            raise SpecError(
                f"bad block kind {tokens[0]!r} in stage string {text!r}: expected one of {', '.join(sorted(BLOCK_KINDS))}, e.g. 'ir_r2_k3_s2_e6_c24_se0.25'"
            )
        values: dict[str, Any] = {"block": tokens[0], "se_ratio": 0.0, "skip": True}
        if tokens[0] in _NO_EXPANSION:
            values["expand_ratio"] = 1.0
        seen: set[str] = set()
        for token in tokens[1:]:
            match = _TOKEN.fullmatch(token)
            if token == "noskip":
                values["skip"] = False
                continue
            if match is None:
                raise SpecError(
                    f"bad token {token!r} in stage string {text!r}: expected r<repeats>, k<kernel>, s<stride>, e<expansion or reduction>, c<channels>, se<ratio> or noskip"
                )
            key, number = match.group(1), match.group(2)
            if key in seen:
                raise SpecError(f"token {key!r} given twice in stage string {text!r}")
            seen.add(key)
            name, kind = _TOKEN_FIELDS[key]
            try:
                values[name] = kind(number)
            except ValueError:
                raise SpecError(f"bad number in token {token!r} of stage string {text!r}: {name} must be {kind.__name__}") from None
        missing = [k for k in ("r", "k", "s", "c") if k not in seen]
        if missing:
            raise SpecError(f"stage string {text!r} lacks token(s) {', '.join(missing)}; e.g. 'ir_r2_k3_s2_e6_c24_se0.25'")
        if tokens[0] in _NEEDS_EXPANSION and "e" not in seen:
            example = "e<ratio>, for bt the reduction (inner width = c / ratio), e.g. 'e4'" if tokens[0] == "bt" else "e<ratio>, e.g. 'e6'"
            raise SpecError(f"stage string {text!r} lacks the expansion token {example}")
        try:
            return cls(**values)
        except SpecError as err:
            raise SpecError(f"in stage string {text!r}: {err}") from None


_TOKEN = re.compile(r"(se|r|k|s|e|c)([0-9.]+)")
_TOKEN_FIELDS = {
    "r": ("repeats", int),
    "k": ("kernel", int),
    "s": ("stride", int),
    "e": ("expand_ratio", float),
    "c": ("out_channels", int),
    "se": ("se_ratio", float),
}


@dataclass(frozen=True)
class BlockSite:
    """One block of a network: where it is, its stage's design, its input channels and stride."""

    stage_index: int
    block_index: int
    stage: StageSpec
    in_channels: int
    stride: int

    @property
    def name(self) -> str:
        """The block's module name in a built model, e.g. ``stages.1.0``."""
        return f"stages.{self.stage_index}.{self.block_index}"


@dataclass(frozen=True)
class NetSpec:
    """A whole network: stem conv, stages, 1x1 head conv, pooling, dropout, classifier.

    `resolution` is the native input size (the paper's r); the model runs at any size.
    `bn_momentum` is in PyTorch's sense (TF's 0.99 decay is 0.01 here).
    `scale_stem_head=False` and `scale_first_last_repeats=False` are the Lite family's
    scaling rules (stem, head and the first/last stage repeats stay fixed).
    The stem is a `stem_kernel` conv with stride 2, followed by a 3x3 stride-2 max pool
    when `stem_pool` (ResNet's stem: kernel 7 and the pool).
    `head_channels=0` means no 1x1 head conv (MobileNetV1, ResNet).
    """

    stages: tuple[StageSpec, ...]
    stem_channels: int = 32
    stem_kernel: int = 3
    stem_pool: bool = False
    head_channels: int = 1280
    activation: str = "swish"
    resolution: int = 224
    dropout: float = 0.2
    drop_path_rate: float = 0.2
    num_classes: int = 1000
    in_chans: int = 3
    bn_eps: float = 1e-5
    bn_momentum: float = 0.01
    padding: str = "symmetric"
    scale_stem_head: bool = True
    scale_first_last_repeats: bool = True
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))
        _check(len(self.stages) >= 1, "a NetSpec needs at least one stage")
        _check(all(isinstance(s, StageSpec) for s in self.stages), "stages must be StageSpec objects")
        _check(self.activation in ACTIVATIONS, f"unknown activation {self.activation!r}; expected one of {ACTIVATIONS}")
        _check(self.padding in PADDINGS, f"unknown padding {self.padding!r}; expected one of {PADDINGS}")
        _check(
            isinstance(self.stem_kernel, int) and self.stem_kernel >= 1 and self.stem_kernel % 2 == 1,
            f"stem_kernel must be an odd integer >= 1, got {self.stem_kernel!r}",
        )
        for name in ("stem_channels", "resolution", "in_chans"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"{name} must be an integer >= 1, got {value!r}")
        _check(
            isinstance(self.head_channels, int) and self.head_channels >= 0,
            f"head_channels must be an integer >= 0 (0 = no head conv), got {self.head_channels!r}",
        )
        _check(
            isinstance(self.num_classes, int) and self.num_classes >= 0, f"num_classes must be an integer >= 0 (0 = no classifier), got {self.num_classes!r}"
        )
        _check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout!r}")
        _check(0 <= self.drop_path_rate < 1, f"drop_path_rate must be in [0, 1), got {self.drop_path_rate!r}")
        _check(self.bn_eps > 0, f"bn_eps must be > 0, got {self.bn_eps!r}")
        _check(0 < self.bn_momentum <= 1, f"bn_momentum (PyTorch sense) must be in (0, 1], got {self.bn_momentum!r}")

    # -- derived facts -------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        """Total number of blocks over all stages (the drop-path schedule runs over these)."""
        return sum(s.repeats for s in self.stages)

    @property
    def stem_stride(self) -> int:
        """Downsampling of the stem: 2 from its conv, 4 with the max pool."""
        return 4 if self.stem_pool else 2

    def blocks(self) -> Iterator[BlockSite]:
        """Every block in forward order, with its input channels and stride (the first of a stage carries the stage's)."""
        in_channels = self.stem_channels
        for s, stage in enumerate(self.stages):
            for b in range(stage.repeats):
                yield BlockSite(s, b, stage, in_channels, stage.stride if b == 0 else 1)
                in_channels = stage.out_channels

    @property
    def num_features(self) -> int:
        """Channels entering the classifier."""
        return self.head_channels or self.stages[-1].out_channels

    def replace(self, **changes: Any) -> NetSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # -- codecs --------------------------------------------------------------------
    def stage_strings(self) -> list[str]:
        """The stages as block strings."""
        return [s.to_string() for s in self.stages]

    def to_string(self) -> str:
        """The stages as one compact string, stages separated by ``-`` (the canonical architecture key)."""
        return "-".join(self.stage_strings())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; stages are block strings for readability."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "stages"}
        out["stages"] = self.stage_strings()
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetSpec:
        """Inverse of `to_dict`; stages may be block strings or dicts of StageSpec fields."""
        if not isinstance(data, dict) or "stages" not in data:
            raise SpecError("a NetSpec dict needs a 'stages' list (block strings such as 'ir_r2_k3_s2_e6_c24_se0.25')")
        reject_unknown(data, cls, "NetSpec field(s)", error=SpecError)
        stages = []
        for item in data["stages"]:
            if isinstance(item, str):
                stages.append(StageSpec.from_string(item))
            elif isinstance(item, dict):
                stages.append(StageSpec(**item))
            else:
                raise SpecError(f"a stage must be a block string or a dict, got {item!r}")
        return cls(**{**data, "stages": tuple(stages)})

    @classmethod
    def from_json(cls, text: str) -> NetSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"spec is not valid JSON: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def from_string(cls, text: str, **fields: Any) -> NetSpec:
        """Build from a compact string: stage strings separated by ``-``, ``,`` or whitespace."""
        parts = [p for p in re.split(r"[-,\s]+", text.strip()) if p]
        if not parts:
            raise SpecError("empty spec string; expected stage strings such as 'ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e6_c24_se0.25'")
        return cls(stages=tuple(StageSpec.from_string(p) for p in parts), **fields)

    def save(self, path: str | Path) -> None:
        """Write the spec as JSON (atomically)."""
        from effnet._io import atomic_write_text

        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> NetSpec:
        """Read a spec written by `save` (JSON), or a file holding one compact spec string."""
        text = Path(path).read_text()
        if text.lstrip().startswith("{"):
            try:
                return cls.from_json(text)
            except SpecError as err:
                raise SpecError(f"{path}: {err}") from None
        try:
            return cls.from_string(text)
        except SpecError as err:
            raise SpecError(f"{path}: {err}") from None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SpecError(message)


def _num(value: float) -> str:
    """Shortest faithful text for a ratio: 6.0 -> '6', 0.25 -> '0.25'."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
