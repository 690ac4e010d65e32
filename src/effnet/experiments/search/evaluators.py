"""Evaluators: what a candidate architecture's "accuracy" (the reward's ACC(m), a fraction) is during the search.

- "proxy" (default): a few epochs of training by the proxy evaluator every experiment shares
  (`effnet.experiments.proxy.proxy_train`: the `proxy` preset, AdamW + cosine, made for minutes-long CPU
  runs), top-1 on the dataset's held-out validation split (the synthetic task's val stream, a
  folder's ``val/`` or its held-out fraction), as a fraction. The synthetic proxy task is the
  default dataset.
- "naswot": the zero-cost score of Mellor et al. 2021 ("NAS without training"): log|K| of the
  kernel of binary activation codes of one batch through the untrained net. Seconds instead of
  minutes; for quick runs and for warm-starting. The reward then uses this score (> 0, the
  higher the better) in place of accuracy.
- "toy": a known function of the encoding (the fraction of decisions equal to a target
  encoding), no training: for tests of the search machinery.

`score_candidate(params)` is the one, module-level entry point (a worker process or a Ray
task imports and calls it); params are JSON-able: ``{"evaluator": {...}, "spec": spec dict,
"encoding": [...]}``; it returns ``{"accuracy": score, ...}`` (proxy: also the whole
`effnet.experiments.proxy.ProxyResult`, top-1 in percent). A failure raises: the trial runner records it as
failed and goes on.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

from effnet._fields import reject_unknown
from effnet.train.config import dataset_for

EVALUATORS = ("proxy", "naswot", "toy")


@dataclass(frozen=True)
class EvaluatorConfig:
    """How candidates are scored. Only the fields of `kind` matter; all are JSON-able (part of a search's identity)."""

    kind: str = "proxy"
    dataset: str = ""  # "": folder with a data_dir, else synthetic (effnet.train.config.dataset_for)
    data_dir: str = ""
    num_classes: int = 0  # 0: the dataset's (synthetic: 10)
    resolution: int = 64
    train_samples: int = 1000
    val_samples: int = 500
    epochs: int = 2
    batch_size: int = 32
    seed: int = 0
    train: dict[str, Any] = field(default_factory=dict)  # more TrainConfig fields for proxy training (on top of the proxy preset)
    naswot_batch: int = 32
    toy_target: tuple[int, ...] = ()
    toy_sleep: float = 0.0
    toy_fail_first: int = -1  # toy: candidates whose first decision is this value fail (tests of failure handling)

    def __post_init__(self) -> None:
        if self.kind not in EVALUATORS:
            raise ValueError(f"unknown evaluator {self.kind!r}; expected one of {', '.join(EVALUATORS)}")
        object.__setattr__(self, "dataset", dataset_for(self.dataset, self.data_dir))
        for name in ("resolution", "train_samples", "val_samples", "epochs", "batch_size", "naswot_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"evaluator {name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.kind == "toy" and not self.toy_target:
            raise ValueError("the toy evaluator needs toy_target, the encoding of its optimum")
        if self.kind == "proxy":
            from effnet.train.config import TrainConfig

            reject_unknown(self.train, TrainConfig, "training option(s) of the proxy evaluator", hint="see `effnet train --help`")
        object.__setattr__(self, "toy_target", tuple(int(v) for v in self.toy_target))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["toy_target"] = list(self.toy_target)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluatorConfig:
        reject_unknown(data, cls, "evaluator option(s)")
        return cls(**data)

    def describe(self) -> str:
        if self.kind == "proxy":
            return (
                f"proxy training: {self.epochs} epoch(s) on {self.dataset} ({self.train_samples} train / {self.val_samples} held-out val images"
                f"{'' if self.dataset in ('synthetic', 'shapes') else ' at most'}) at {self.resolution} px"
            )
        if self.kind == "naswot":
            return f"NASWOT zero-cost score on a batch of {self.naswot_batch} {self.dataset} images at {self.resolution} px"
        return "toy objective: fraction of decisions equal to a known target encoding"


def score_text(value: float, kind: str) -> str:
    """A candidate's score as printed: top-1 in percent (proxy training; the toy objective's share of hits too), NASWOT as its log-determinant."""
    if kind == "naswot":
        return f"NASWOT score {value:.2f}"
    return f"{'top-1' if kind == 'proxy' else 'toy score'} {100 * value:.2f}%"


def check_data(config: EvaluatorConfig) -> int:
    """Open the evaluator's dataset once and read a sample of each split; returns the class count.

    Called before a search starts so that a dataset that cannot be read fails with one clear
    message instead of as many failed trials.
    """
    if config.kind == "toy":
        return config.num_classes or 10
    from effnet.data import DataError, build_datasets

    try:
        data = _datasets(config, build_datasets, train_samples=config.train_samples)
        data.train.set_epoch(0)
        for split in (data.train, data.val):
            if len(split) == 0:
                raise DataError("a split is empty")
            image, _ = split[0]
            if image is None:
                raise DataError("its first image cannot be decoded")
    except (DataError, OSError) as err:
        where = f" under {config.data_dir!r}" if config.data_dir else ""
        raise DataError(f"cannot read the {config.dataset!r} dataset{where} for the search: {err}") from None
    return data.num_classes


def _datasets(config: EvaluatorConfig, build_datasets: Any, train_samples: int) -> Any:
    return build_datasets(
        config.dataset,
        data_dir=config.data_dir or None,
        resolution=config.resolution,
        auto_augment="none",
        seed=config.seed,
        num_classes=config.num_classes or None,
        train_samples=train_samples,
        val_samples=config.val_samples,
    )


def score_candidate(params: dict[str, Any]) -> dict[str, Any]:
    """Score one candidate (see the module docstring); returns {"accuracy": ..., ...}; raises on failure."""
    from effnet.core.spec import NetSpec

    config = EvaluatorConfig.from_dict(params["evaluator"])
    if config.kind == "toy":
        return _toy(config, params["encoding"])
    spec = NetSpec.from_dict(params["spec"])
    if config.kind == "naswot":
        return {"accuracy": naswot_score(spec, config)}
    return _proxy_train(spec, config)


def _toy(config: EvaluatorConfig, encoding: list[int]) -> dict[str, Any]:
    if config.toy_sleep:
        time.sleep(config.toy_sleep)
    if len(encoding) != len(config.toy_target):
        raise ValueError(f"toy objective: encoding has {len(encoding)} decisions, target {len(config.toy_target)}")
    if encoding and encoding[0] == config.toy_fail_first:
        raise RuntimeError(f"toy objective: simulated failure (first decision is {config.toy_fail_first})")
    hits = sum(int(a) == b for a, b in zip(encoding, config.toy_target, strict=True))
    return {"accuracy": hits / len(encoding)}


def _proxy_train(spec: Any, config: EvaluatorConfig) -> dict[str, Any]:
    """Train `spec` for a few epochs with the proxy preset: the `ProxyResult`, and its top-1 as the reward's fraction."""
    from effnet.experiments.proxy import proxy_train

    options: dict[str, Any] = {
        "dataset": config.dataset,
        "data_dir": config.data_dir,
        "num_classes": config.num_classes,
        "resolution": config.resolution,
        "train_samples": config.train_samples,
        "val_samples": config.val_samples,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        **config.train,
    }
    result = proxy_train(spec, options)  # every epoch evaluated: the curve goes into the report
    return {"accuracy": result.top1 / 100.0, **result.to_dict()}


def naswot_score(spec: Any, config: EvaluatorConfig) -> float:
    """NASWOT: log-determinant of K = C C^T + (1-C)(1-C)^T, C the binary codes (pre-activation > 0) of a batch.

    Networks whose units split the batch's images into more distinct activation patterns score
    higher; Mellor et al. found the score correlates with trained accuracy. Computed on the
    untrained net (seeded init), BN in training mode, in float64 for the determinant.
    """
    import torch
    from torch import nn

    from effnet.data import build_datasets
    from effnet.models.model import build

    data = _datasets(config, build_datasets, train_samples=max(config.naswot_batch, 1))
    n = min(config.naswot_batch, len(data.train))
    data.train.set_epoch(0)
    images = torch.stack([data.train[i][0] for i in range(n)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build(spec, num_classes=data.num_classes)
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        codes = (inputs[0].detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, (nn.SiLU, nn.ReLU, nn.ReLU6))]
    try:
        model.train()
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    if sign <= 0 or not math.isfinite(float(logdet)):
        raise RuntimeError("NASWOT kernel is singular (identical activation patterns for different images)")
    return float(logdet)
