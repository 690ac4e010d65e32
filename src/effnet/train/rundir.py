"""A training run directory as something to use: the model it trained, with its preprocessing and class names.

What a run writes (see `Trainer`): config.json (every option, resolved), spec.json (the network),
preprocessing.json (the eval preprocessing it validated with), classes.json (class names in
label order), model.safetensors / ema.safetensors / fixres.safetensors (weights; FixRes also
writes fixres.json with its test resolution), last.pt (the resumable checkpoint), metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from effnet.train.config import TrainConfig

CONFIG_NAME = "config.json"
SPEC_NAME = "spec.json"
PREPROCESSING_NAME = "preprocessing.json"
CLASSES_NAME = "classes.json"
WEIGHT_KINDS = ("model", "ema", "fixres")


def config_preprocessing(config: TrainConfig, resolution: int) -> Any:
    """Eval preprocessing at `resolution`: that of the pretrained weights (e.g. TF's statistics for Lite), or the variant's."""
    from effnet.preprocessing import Preprocessing
    from effnet.zoo import get_info, get_preprocessing

    if config.spec:
        base = Preprocessing()
    elif config.pretrained in ("default", "true", "1"):
        base = get_preprocessing(config.model)
    else:
        base = get_info(config.model).preprocessing
    return base.replace(resolution=resolution)


def validation_data(config: TrainConfig, preprocessing: Any, resolution: int) -> Any:
    """The `DataBundle` whose ``val`` is the validation split `config` trained with, preprocessed by `preprocessing` at `resolution`."""
    from effnet.data import build_datasets

    return build_datasets(
        config.dataset,
        data_dir=config.data_dir or None,
        resolution=resolution,
        preprocessing=preprocessing.replace(resolution=resolution),
        auto_augment="none",
        seed=config.seed,
        num_classes=config.num_classes or None,
        train_samples=1,
        val_samples=config.sample_counts()[1],
        val_fraction=config.val_fraction,
    )


def run_config(run: str | Path) -> TrainConfig:
    """The resolved options a run saved."""
    return TrainConfig.from_dict(json.loads((check_run(run) / CONFIG_NAME).read_text()))


def weights_of(run: str | Path) -> dict[str, Path]:
    """The finished weight files of a run, by kind (model, ema, fixres)."""
    run = Path(run)
    return {kind: run / f"{kind}.safetensors" for kind in WEIGHT_KINDS if (run / f"{kind}.safetensors").is_file()}


def check_run(run: str | Path) -> Path:
    """`run` as a Path, if it is a training run directory; a clear error otherwise."""
    run = Path(run)
    if not (run / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{run} is not a training run directory (no {CONFIG_NAME}); give the --out-dir of an `effnet train`/`finetune` run")
    return run


def run_preprocessing(run: str | Path, kind: str = "model") -> Any:
    """The eval preprocessing a run validated with (at the FixRes resolution for kind 'fixres')."""
    from effnet.preprocessing import Preprocessing

    run = check_run(run)
    saved = run / PREPROCESSING_NAME
    if saved.is_file():
        prep = Preprocessing.from_dict(json.loads(saved.read_text()))
    else:  # runs from before preprocessing.json: what the trainer derived from the config
        config = TrainConfig.from_dict(json.loads((run / CONFIG_NAME).read_text()))
        prep = config_preprocessing(config, config.resolution or 224)
    if kind == "fixres":
        prep = prep.replace(resolution=fixres_resolution(run))
    return prep


def fixres_resolution(run: str | Path) -> int:
    return int(json.loads((Path(run) / "fixres.json").read_text())["resolution"])


def class_names(run: str | Path) -> list[str] | None:
    """The run's class names in label order (None for runs from before classes.json)."""
    saved = Path(run) / CLASSES_NAME
    return list(json.loads(saved.read_text())) if saved.is_file() else None


def load_run_model(run: str | Path, kind: str = "model") -> Any:
    """The network a run trained, with `kind` weights ('model', 'ema' or 'fixres'), in eval mode.

    It carries `.preprocessing` (the run's) and `.class_names` (the folder names, when saved), so
    `effnet.predict.predict(model, images)` prints the run's labels.
    """
    from effnet.model import build
    from effnet.spec import NetSpec
    from effnet.weights import load_file, load_state_dict

    run = check_run(run)
    available = weights_of(run)
    if kind not in available:
        have = ", ".join(available) or "none yet (the run has not finished)"
        raise FileNotFoundError(f"{run} has no {kind}.safetensors; weights there: {have}")
    state = load_file(available[kind])
    spec = NetSpec.load(run / SPEC_NAME)
    classifier = state.get("classifier.weight")
    model = build(spec.replace(num_classes=int(classifier.shape[0]) if classifier is not None else spec.num_classes))
    load_state_dict(model, state)
    model.preprocessing = run_preprocessing(run, kind)
    model.class_names = class_names(run)
    return model.eval()
