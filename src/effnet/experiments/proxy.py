"""The proxy evaluator: train one candidate network briefly and measure it, for every experiment.

The grid search of α, β, γ, the scaling study and the architecture search all rank networks by
the accuracy a short training run gives them. `proxy_train(spec, train)` is that run: it trains
the spec (in memory; no spec file) through `effnet.train` with the "proxy" preset and quiet
defaults, in a temporary run directory it removes afterwards, and returns one `ProxyResult`:
top-1 in percent, loss, params, MACs, seconds and the spec string.

`evaluate_candidate(params)` is the same run as a trial function of `effnet.experiments.trials.run_trials`:
module-level, one JSON-able dict in and one out, so worker processes and Ray tasks can run it.
It is the default evaluator of `effnet grid-search` and `effnet study scaling`; the search's
own trial function (`effnet.experiments.search.evaluators.score_candidate`) calls `proxy_train` for its
"proxy" kind.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Options every proxy run starts from (a caller's `train` options override them). One data-loader process per
# trial would double the process count of a pool (2 trials -> 4 processes on 2 cores); progress bars and start-up
# lines would interleave across workers; a few hundred steps leave an EMA of the weights mostly at its start.
QUIET: dict[str, Any] = {"workers": 0, "progress": False, "verbose": False, "ema_decay": 0.0}
# Where only the final accuracy counts (grid search, scaling study): evaluate after the last epoch only.
FINAL_ONLY: dict[str, Any] = {"eval_every": 1000}
SYNTHETIC_DEFAULT_CLASSES = {"synthetic": 10, "shapes": 16}  # effnet.data's generated tasks without num_classes


@dataclass(frozen=True)
class ProxyResult:
    """What one proxy training run measured. Accuracies are top-1 in percent; MACs are multiply-adds at `resolution`."""

    spec: str  # the trained network's block string (its architecture key)
    top1: float  # final validation top-1 %: the score
    loss: float | None  # final validation loss
    best_top1: float  # best validation top-1 % over the evaluated epochs
    train_top1: float | None  # training top-1 % of the last epoch
    params: int  # of the trained network, its classifier sized for the task
    macs: int
    resolution: int  # the training (and evaluation) resolution
    classes: int
    seconds: float  # training time
    wall_seconds: float  # the whole run: data, model, training, evaluation
    curve: list[float | None] = field(default_factory=list)  # validation top-1 % per epoch (None where not evaluated)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def proxy_train(
    spec: Any, train: Mapping[str, Any] | None = None, *, seed: int | None = None, preset: str = "proxy", run_root: str | Path | None = None
) -> ProxyResult:
    """Train `spec` (a NetSpec) with the `preset` recipe, `QUIET` and then `train` (TrainConfig options: epochs,
    train_samples, dataset, data_dir, num_classes, ...) on top; `seed`, when given, wins over train's.

    The run directory is a temporary one under `run_root` (default: the system's), removed afterwards.
    Raises when training fails or ends without a finite validation accuracy (a trial runner records
    the candidate as failed).
    """
    from effnet.train import preset as make_config
    from effnet.train import train as run_training

    started = time.perf_counter()
    values = {**QUIET, **(train or {})}
    if seed is not None:
        values["seed"] = int(seed)
    if run_root:
        Path(run_root).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="effnet-proxy-", dir=run_root) as tmp:
        result = run_training(make_config(preset, **{**values, "out_dir": str(Path(tmp) / "run"), "resume": False}), spec)
    final = result.final
    top1 = final.get("val_top1")
    if top1 is None or not math.isfinite(top1):
        raise RuntimeError(f"proxy training ended without a finite validation accuracy ({final})")
    return ProxyResult(
        spec=result.spec.to_string(),
        top1=float(top1),
        loss=final.get("val_loss"),
        best_top1=float(result.best_top1),
        train_top1=final.get("train_top1"),
        params=int(result.params),
        macs=int(result.macs),
        resolution=int(result.resolution),
        classes=int(result.spec.num_classes),
        seconds=round(float(result.seconds), 3),
        wall_seconds=round(time.perf_counter() - started, 3),
        curve=[row.get("val_top1") for row in result.history],
    )


def evaluate_candidate(params: dict[str, Any]) -> dict[str, Any]:
    """`proxy_train` as a trial function: params ``spec`` (NetSpec.to_dict()), ``train`` (TrainConfig options),
    ``seed`` (data order, augmentation and initialisation; the synthetic task's images too), optional
    ``preset`` (default "proxy") and ``run_root`` (where the temporary run directory goes).

    Returns `ProxyResult.to_dict()` with ``score`` (= top1, what the trial runner's progress shows) and
    ``pid``. Only the final epoch is evaluated unless ``train`` sets ``eval_every``.
    """
    from effnet.core.spec import NetSpec

    result = proxy_train(
        NetSpec.from_dict(params["spec"]),
        {**FINAL_ONLY, **params.get("train", {})},
        seed=int(params.get("seed", 0)),
        preset=params.get("preset", "proxy"),
        run_root=params.get("run_root"),
    )
    return {"score": result.top1, **result.to_dict(), "pid": os.getpid()}


def recipe(preset: str = "proxy") -> dict[str, Any]:
    """What a proxy score depends on besides a trial's own options, for an experiment's identity: the named training
    preset's settings and the shapes task's stripe periods. A study, grid or search resumed after either changed
    (e.g. zero-initialised residuals) is refused instead of mixing trials of two recipes."""
    from effnet.data.shapes import STRIPE_PERIOD
    from effnet.train.config import PRESETS

    return {"train": dict(PRESETS[preset]) if preset in PRESETS else {}, "shapes_stripe_period": list(STRIPE_PERIOD)}


def task_classes(train: Mapping[str, Any]) -> int | None:
    """Classes of the task that `train` options describe (the classifier's size): num_classes, else the dataset's.

    Experiments plan MACs with the classifier the trained networks will have.
    """
    if train.get("num_classes"):
        return int(train["num_classes"])
    dataset, data_dir = train.get("dataset", "synthetic"), train.get("data_dir", "")
    if dataset in SYNTHETIC_DEFAULT_CLASSES:
        return SYNTHETIC_DEFAULT_CLASSES[dataset]
    if dataset in ("cifar10", "cifar100"):
        return 10 if dataset == "cifar10" else 100
    if dataset == "folder" and data_dir:
        from effnet.data.folders import image_folder_splits

        split, _ = image_folder_splits(data_dir)
        return len(split.classes)
    return None
