"""The candidate evaluator of the grid search and the scaling study: train one spec for a fixed proxy budget.

`evaluate_candidate` is a module-level function of one JSON-able dict, so `effnet.trials.run_trials`
can run it in spawned worker processes or as a Ray task. It trains through `effnet.train` (preset
"proxy" unless the params say otherwise), on the synthetic proxy task by default or on whatever
dataset the `train` options name, and returns the final validation accuracy with the spec's
analytic MACs and parameter count.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

# Options a study passes to every training unless the user overrides them. One data-loader
# process per trial would double the process count of a pool (2 trials -> 4 processes on 2 cores),
# and per-epoch evaluation, EMA and progress bars are not needed when only the final accuracy counts.
SYNTHETIC_DEFAULT_CLASSES = 10  # effnet.data's synthetic task without num_classes
STUDY_TRAIN_DEFAULTS: dict[str, Any] = {"workers": 0, "progress": False, "verbose": False, "ema_decay": 0.0, "eval_every": 1000}


def train_config(spec_file: str | Path, train: dict[str, Any], seed: int, out_dir: str | Path, preset_name: str = "proxy") -> Any:
    """The TrainConfig of one candidate: `preset_name`, the study defaults, then `train` on top."""
    from effnet.train.config import preset

    values = {**STUDY_TRAIN_DEFAULTS, **train, "spec": str(spec_file), "seed": int(seed), "out_dir": str(out_dir), "resume": False}
    return preset(preset_name, **values)


def classes_of(dataset: str, data_dir: str) -> int | None:
    """Classes of a dataset (synthetic: its default 10), so that MACs are planned with the classifier the trained networks will have."""
    if dataset == "synthetic":
        return SYNTHETIC_DEFAULT_CLASSES
    if dataset in ("cifar10", "cifar100"):
        return 10 if dataset == "cifar10" else 100
    if dataset == "folder" and data_dir:
        from effnet.data.folders import image_folder_splits

        train, _ = image_folder_splits(data_dir)
        return len(train.classes)
    return None


def record_result(network: Any, seed: int, trial: Any) -> None:
    """Put one seed's finished trial on a grid candidate or study point: its top-1, or why it failed.

    The trained network's measured MACs and params replace the planned ones (the classifier is
    sized for the task).
    """
    if trial.ok and "top1" in trial.result:
        network.scores[seed] = float(trial.result["top1"])
        network.macs = int(trial.result.get("macs", network.macs))
        network.params = int(trial.result.get("params", network.params))
    else:
        network.errors[seed] = trial.error or "the evaluator returned no 'top1'"


def evaluate_candidate(params: dict[str, Any]) -> dict[str, Any]:
    """Train `params["spec"]` (a NetSpec dict) and return its accuracy, MACs, params and seconds.

    params: ``spec`` (NetSpec.to_dict()), ``train`` (TrainConfig options, e.g. epochs,
    train_samples, dataset, data_dir, num_classes), ``seed`` (data order, augmentation and
    initialisation; the synthetic task's images too), optional ``preset`` (default "proxy") and
    ``run_root`` (where the temporary run directory goes; removed afterwards).

    Returns ``top1`` (final validation top-1 %, the score), ``best_top1``, ``macs`` and
    ``params`` of the trained network (its classifier sized for the task), ``resolution``, ``classes``,
    ``seconds`` (training time), ``wall_seconds`` and ``pid``.
    """
    from effnet.profile import profile_spec
    from effnet.spec import NetSpec
    from effnet.train import train

    spec = NetSpec.from_dict(params["spec"])
    started = time.perf_counter()
    root = params.get("run_root")
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="candidate-", dir=root))
    try:
        spec.save(run_dir / "candidate.json")
        config = train_config(
            run_dir / "candidate.json", dict(params.get("train", {})), int(params.get("seed", 0)), run_dir / "run", params.get("preset", "proxy")
        )
        result = train(config)
        # the trainer saves the spec it built, classifier sized for the task: that is what MACs are counted on
        trained = NetSpec.load(run_dir / "run" / "spec.json")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    profile = profile_spec(trained)
    top1 = float(result.final.get("val_top1", result.best_top1))
    return {
        "score": top1,
        "top1": top1,
        "best_top1": float(result.best_top1),
        "macs": int(profile.macs),
        "params": int(profile.params),
        "resolution": int(trained.resolution),
        "classes": int(trained.num_classes),
        "seconds": round(float(result.seconds), 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "pid": os.getpid(),
    }
