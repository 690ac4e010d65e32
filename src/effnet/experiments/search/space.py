"""The search space as data: MnasNet's factorized hierarchical space over a skeleton of stages.

The network is the skeleton's sequence of stages (by default EfficientNet-B0's 7 stages,
strides fixed). For each stage ("block" in MnasNet's words) the search picks one layer design
that is repeated N times:

=========  =====================================================================
dimension  default choices
=========  =====================================================================
op         ``cv`` regular conv, ``ds`` depthwise-separable (MBConv1), ``ir3``,
           ``ir6`` (MBConv with expansion 3 / 6); ``irN`` for any N, ``ir1`` == ``ds``
kernel     3, 5
se         0 (no squeeze-excitation), 0.25
skip       true (identity residual where shapes allow), false
filters    0.75, 1.0, 1.25 x the skeleton stage's output channels (``round_filters``)
layers     -1, 0, +1 relative to the skeleton stage's repeats (at least 1)
=========  =====================================================================

An architecture is an *encoding*: one index per (stage, dimension), stage-major, in the order
of `DIMENSIONS`. `decode` turns an encoding into a `NetSpec`; `encode` is its inverse for
specs inside the space (EfficientNet-B0 is one: `b0_encoding`). A space can be written as a
YAML or JSON file (see `SearchSpace.from_file`) with a skeleton, global choice lists and
per-stage overrides.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet.core.scaling import round_filters
from effnet.core.spec import NetSpec, SpecError, StageSpec

DIMENSIONS = ("op", "kernel", "se", "skip", "filters", "layers")
DEFAULT_CHOICES: dict[str, tuple[Any, ...]] = {
    "op": ("cv", "ds", "ir3", "ir6"),
    "kernel": (3, 5),
    "se": (0.0, 0.25),
    "skip": (True, False),
    "filters": (0.75, 1.0, 1.25),
    "layers": (-1, 0, 1),
}
_OP = re.compile(r"cv|ds|ir([0-9]+(?:\.[0-9]+)?)")


class SearchSpaceError(ValueError):
    """A search space (or its config file) is malformed; the message says what and how to fix it."""


def parse_op(op: str) -> tuple[str, float]:
    """(block kind, expansion ratio) of an op name: 'cv' -> ('cv', 1), 'ds' -> ('ds', 1), 'ir6' -> ('ir', 6); 'ir1' is 'ds'."""
    match = _OP.fullmatch(str(op))
    if match is None:
        raise SearchSpaceError(f"unknown op {op!r}; expected 'cv' (regular conv), 'ds' (depthwise separable), or 'ir<expansion>' such as 'ir3', 'ir6'")
    if op in ("cv", "ds"):
        return str(op), 1.0
    expansion = float(match.group(1))
    if expansion < 1:
        raise SearchSpaceError(f"op {op!r}: an MBConv expansion must be >= 1")
    # MBConv with expansion 1 has no expansion conv: it is the same network as 'ds', so it gets the same key.
    return ("ds", 1.0) if expansion == 1 else ("ir", expansion)


def op_name(stage: StageSpec) -> str:
    """The op name of a stage ('cv', 'ds', 'ir6', ...), the inverse of `parse_op`."""
    if stage.block in ("cv", "ds"):
        return stage.block
    if stage.block == "ir":
        return "ds" if stage.expand_ratio == 1 else f"ir{_num(stage.expand_ratio)}"
    raise SearchSpaceError(f"block kind {stage.block!r} is not part of the MnasNet search space (cv, ds, ir)")


@dataclass(frozen=True)
class StageChoices:
    """The choice lists of one stage (one MnasNet 'block')."""

    op: tuple[str, ...] = DEFAULT_CHOICES["op"]
    kernel: tuple[int, ...] = DEFAULT_CHOICES["kernel"]
    se: tuple[float, ...] = DEFAULT_CHOICES["se"]
    skip: tuple[bool, ...] = DEFAULT_CHOICES["skip"]
    filters: tuple[float, ...] = DEFAULT_CHOICES["filters"]
    layers: tuple[int, ...] = DEFAULT_CHOICES["layers"]

    def __post_init__(self) -> None:
        for dim in DIMENSIONS:
            values = getattr(self, dim)
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise SearchSpaceError(f"choices for {dim!r} must be a list, got {values!r}")
            values = tuple(values)
            object.__setattr__(self, dim, values)
            if not values:
                raise SearchSpaceError(f"the choice list for {dim!r} is empty; give at least one value, e.g. {list(DEFAULT_CHOICES[dim])}")
            if len(set(values)) != len(values):
                raise SearchSpaceError(f"the choice list for {dim!r} has repeated values {list(values)}; each choice must appear once")
        ops = [parse_op(op) for op in self.op]
        if len(set(ops)) != len(ops):
            raise SearchSpaceError(f"ops {list(self.op)} name the same network twice ('ir1' is 'ds'); keep one of them")
        for k in self.kernel:
            if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0:
                raise SearchSpaceError(f"kernel choices must be odd integers >= 1, got {k!r}")
        for r in self.se:
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1:
                raise SearchSpaceError(f"se choices must be ratios in [0, 1] (0 = no SE), got {r!r}")
        for s in self.skip:
            if not isinstance(s, bool):
                raise SearchSpaceError(f"skip choices must be true or false, got {s!r}")
        for f in self.filters:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or f <= 0:
                raise SearchSpaceError(f"filters choices must be positive multipliers of the skeleton's channels, got {f!r}")
        for n in self.layers:
            if not isinstance(n, int) or isinstance(n, bool):
                raise SearchSpaceError(f"layers choices must be integers (added to the skeleton's repeats), got {n!r}")
        object.__setattr__(self, "se", tuple(float(r) for r in self.se))
        object.__setattr__(self, "filters", tuple(float(f) for f in self.filters))

    def sizes(self) -> tuple[int, ...]:
        """Number of choices per dimension, in `DIMENSIONS` order."""
        return tuple(len(getattr(self, dim)) for dim in DIMENSIONS)

    def to_dict(self) -> dict[str, list[Any]]:
        return {dim: list(getattr(self, dim)) for dim in DIMENSIONS}


@dataclass(frozen=True)
class SearchSpace:
    """Skeleton stages x per-stage choices. `resolution`/`num_classes` are set on every decoded spec."""

    skeleton: NetSpec
    stages: tuple[StageChoices, ...] = field(default=())
    resolution: int | None = None
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if not self.stages:
            object.__setattr__(self, "stages", tuple(StageChoices() for _ in self.skeleton.stages))
        object.__setattr__(self, "stages", tuple(self.stages))
        if len(self.stages) != len(self.skeleton.stages):
            raise SearchSpaceError(f"the space has {len(self.stages)} stage choice sets but the skeleton has {len(self.skeleton.stages)} stages")
        for stage in self.skeleton.stages:
            op_name(stage)  # the skeleton itself must be made of searchable blocks
        if self.resolution is not None and (not isinstance(self.resolution, int) or self.resolution < 8):
            raise SearchSpaceError(f"resolution must be an integer >= 8, got {self.resolution!r}")
        if self.num_classes is not None and (not isinstance(self.num_classes, int) or self.num_classes < 1):
            raise SearchSpaceError(f"num_classes must be an integer >= 1, got {self.num_classes!r}")

    # ------------------------------------------------------------------ shape
    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of choices of each decision, in encoding order (stage-major)."""
        return tuple(n for stage in self.stages for n in stage.sizes())

    @property
    def num_decisions(self) -> int:
        return len(self.sizes)

    @property
    def size(self) -> int:
        """Number of encodings in the space (the product of all choice counts)."""
        return math.prod(self.sizes)

    def decision_names(self) -> list[str]:
        """'stage3.kernel'-style names of the decisions, in encoding order."""
        return [f"stage{i + 1}.{dim}" for i in range(len(self.stages)) for dim in DIMENSIONS]

    # ------------------------------------------------------------------ codecs
    def check(self, encoding: Any) -> tuple[int, ...]:
        """`encoding` as a tuple of ints, after checking its length and ranges."""
        values = tuple(int(v) for v in encoding)
        if len(values) != self.num_decisions:
            raise SearchSpaceError(f"an encoding of this space has {self.num_decisions} decisions, got {len(values)}")
        for name, value, n in zip(self.decision_names(), values, self.sizes, strict=True):
            if not 0 <= value < n:
                raise SearchSpaceError(f"decision {name} = {value} is out of range [0, {n})")
        return values

    def decode(self, encoding: Any) -> NetSpec:
        """The NetSpec an encoding describes (skeleton stem/head, strides; chosen layer designs)."""
        values = self.check(encoding)
        stages = []
        width = len(DIMENSIONS)
        for index, (base, choices) in enumerate(zip(self.skeleton.stages, self.stages, strict=True)):
            pick = dict(zip(DIMENSIONS, values[index * width : (index + 1) * width], strict=True))
            block, expansion = parse_op(choices.op[pick["op"]])
            stages.append(
                StageSpec(
                    block=block,
                    repeats=max(1, base.repeats + choices.layers[pick["layers"]]),
                    kernel=choices.kernel[pick["kernel"]],
                    stride=base.stride,
                    expand_ratio=expansion,
                    out_channels=round_filters(base.out_channels * choices.filters[pick["filters"]]),
                    se_ratio=choices.se[pick["se"]],
                    skip=choices.skip[pick["skip"]],
                )
            )
        fields: dict[str, Any] = {"stages": tuple(stages), "name": "searched"}
        if self.resolution is not None:
            fields["resolution"] = self.resolution
        if self.num_classes is not None:
            fields["num_classes"] = self.num_classes
        return self.skeleton.replace(**fields)

    def encode(self, spec: NetSpec) -> tuple[int, ...]:
        """The encoding of a spec inside this space (raises SearchSpaceError naming the first stage that is not)."""
        if len(spec.stages) != len(self.skeleton.stages):
            raise SearchSpaceError(f"the spec has {len(spec.stages)} stages; this space's skeleton has {len(self.skeleton.stages)}")
        values: list[int] = []
        for index, (stage, base, choices) in enumerate(zip(spec.stages, self.skeleton.stages, self.stages, strict=True)):
            where = f"stage {index + 1} ({stage.to_string()})"
            if stage.stride != base.stride:
                raise SearchSpaceError(f"{where}: stride {stage.stride} differs from the skeleton's {base.stride} (strides are fixed)")
            op = op_name(stage)
            ops = [parse_op(o) for o in choices.op]
            filters = [round_filters(base.out_channels * f) for f in choices.filters]
            layers = [max(1, base.repeats + n) for n in choices.layers]
            try:
                values += [
                    ops.index(parse_op(op)),
                    choices.kernel.index(stage.kernel),
                    choices.se.index(float(stage.se_ratio)),
                    choices.skip.index(stage.skip),
                    _index(filters, stage.out_channels, choices.filters, 1.0),
                    _index(layers, stage.repeats, choices.layers, 0),
                ]
            except ValueError:
                raise SearchSpaceError(
                    f"{where} is not in the space: op {op} in {list(choices.op)}, kernel {stage.kernel} in {list(choices.kernel)}, "
                    f"se {stage.se_ratio} in {list(choices.se)}, skip {stage.skip} in {list(choices.skip)}, channels {stage.out_channels} in {filters}, "
                    f"repeats {stage.repeats} in {layers}?"
                ) from None
        return tuple(values)

    def canonical(self, encoding: Any) -> str:
        """The canonical architecture string of an encoding (the cache key: equal networks, equal keys)."""
        return self.decode(encoding).to_string()

    def describe(self, encoding: Any) -> list[dict[str, Any]]:
        """Per stage, the chosen value of every dimension (for reports)."""
        values = self.check(encoding)
        width = len(DIMENSIONS)
        return [{dim: getattr(choices, dim)[values[i * width + j]] for j, dim in enumerate(DIMENSIONS)} for i, choices in enumerate(self.stages)]

    # ------------------------------------------------------------------ config files
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (also the space's identity in a saved search)."""
        out: dict[str, Any] = {"skeleton": self.skeleton.to_dict(), "stages": [c.to_dict() for c in self.stages]}
        if self.resolution is not None:
            out["resolution"] = self.resolution
        if self.num_classes is not None:
            out["num_classes"] = self.num_classes
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        """Build from a dict: the `to_dict` form, or the config-file form (see `from_file`)."""
        if not isinstance(data, dict):
            raise SearchSpaceError("a search space config must be a mapping with 'skeleton' and optional 'choices', 'stages', 'resolution'")
        unknown = sorted(set(data) - {"skeleton", "choices", "stages", "resolution", "num_classes"})
        if unknown:
            raise SearchSpaceError(f"unknown search space key(s) {unknown}; expected skeleton, choices, stages, resolution, num_classes")
        skeleton = _skeleton(data.get("skeleton", "efficientnet_b0"))
        base = _choices_dict(data.get("choices", {}), "choices")
        stages_in = data.get("stages", {})
        per_stage: dict[int, dict[str, Any]] = {}
        if isinstance(stages_in, list):
            if len(stages_in) != len(skeleton.stages):
                raise SearchSpaceError(f"'stages' lists {len(stages_in)} entries but the skeleton has {len(skeleton.stages)} stages")
            per_stage = {i: _choices_dict(item, f"stages[{i}]") for i, item in enumerate(stages_in)}
        elif isinstance(stages_in, dict):
            for key, item in stages_in.items():
                try:
                    number = int(key)
                except (TypeError, ValueError):
                    raise SearchSpaceError(f"'stages' keys are stage numbers 1..{len(skeleton.stages)}, got {key!r}") from None
                if not 1 <= number <= len(skeleton.stages):
                    raise SearchSpaceError(f"'stages' key {key!r} is out of range: the skeleton has stages 1..{len(skeleton.stages)}")
                per_stage[number - 1] = _choices_dict(item, f"stages.{key}")
        else:
            raise SearchSpaceError("'stages' must be a list (one entry per stage) or a mapping from stage number (1-based) to choices")
        stages = tuple(StageChoices(**{**DEFAULT_CHOICES, **base, **per_stage.get(i, {})}) for i in range(len(skeleton.stages)))
        return cls(skeleton, stages, data.get("resolution"), data.get("num_classes"))

    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        """Read a YAML or JSON space file, for example::

        skeleton: efficientnet_b0          # a model name, a spec string or a spec file
        resolution: 64                     # optional: input size of every candidate
        choices:                           # global choice lists (missing ones: the defaults)
          op: [ds, ir3, ir6]
          kernel: [3, 5]
        stages:                            # optional per-stage overrides, 1-based
          1: {op: [ds], layers: [0]}
        """
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise SearchSpaceError(f"cannot read search space file {str(path)!r}: {err.strerror or err}") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as err:  # yaml.YAMLError, json.JSONDecodeError: both mean "not a valid file"
            raise SearchSpaceError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {err}") from None
        try:
            return cls.from_dict(data or {})
        except (SearchSpaceError, SpecError) as err:
            raise SearchSpaceError(f"{path}: {err}") from None


def _choices_dict(data: Any, where: str) -> dict[str, tuple[Any, ...]]:
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{where} must be a mapping of dimension name to a list of choices, got {data!r}")
    unknown = sorted(set(data) - set(DIMENSIONS))
    if unknown:
        raise SearchSpaceError(f"{where}: unknown dimension(s) {unknown}; expected some of {list(DIMENSIONS)}")
    out = {}
    for dim, values in data.items():
        if not isinstance(values, list):
            raise SearchSpaceError(f"{where}.{dim} must be a list of choices, got {values!r}")
        if not values:
            raise SearchSpaceError(f"{where}.{dim} is an empty choice list; give at least one value, e.g. {list(DEFAULT_CHOICES[dim])}")
        out[dim] = tuple(values)
    for op in out.get("op", ()):
        try:
            parse_op(op)
        except SearchSpaceError as err:
            raise SearchSpaceError(f"{where}.op: {err}") from None
    return out


def _skeleton(value: Any) -> NetSpec:
    """A skeleton from a spec dict, or what `effnet.core.zoo.resolve_spec` reads: a model name, a spec file or a block string."""
    if isinstance(value, NetSpec):
        return value
    if isinstance(value, dict):
        return NetSpec.from_dict(value)
    if not isinstance(value, str) or not value:
        raise SearchSpaceError(f"skeleton must be a model name, a spec string or a spec file, got {value!r}")
    from effnet.core.zoo import UnknownModelError, resolve_spec

    try:
        return resolve_spec(value)
    except (SpecError, UnknownModelError, FileNotFoundError) as err:
        raise SearchSpaceError(f"skeleton {value!r}: {err}") from None


def default_space(resolution: int | None = None, num_classes: int | None = None) -> SearchSpace:
    """MnasNet's space over EfficientNet-B0's 7 stages (strides fixed), with the default choice lists."""
    from effnet.core.zoo import get_spec

    return SearchSpace(get_spec("efficientnet_b0"), resolution=resolution, num_classes=num_classes)


def b0_encoding(space: SearchSpace | None = None) -> tuple[int, ...]:
    """EfficientNet-B0's encoding in `space` (default: the default space)."""
    from effnet.core.zoo import get_spec

    return (space or default_space()).encode(get_spec("efficientnet_b0"))


def _index(results: list[int], wanted: int, choices: tuple[Any, ...], neutral: Any) -> int:
    """Index of the choice giving `wanted`; when several do (rounding, the 1-layer minimum), the neutral one (x1.0, +0) if it is among them."""
    matches = [i for i, r in enumerate(results) if r == wanted]
    if not matches:
        raise ValueError(wanted)
    return next((i for i in matches if choices[i] == neutral), matches[0])


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
