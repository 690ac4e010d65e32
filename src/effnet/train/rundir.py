"""A training run directory as something to use: the model it trained, with its preprocessing and class names.

What a run writes (see `Trainer`): config.json (every option, resolved), spec.json (the network),
preprocessing.json (the eval preprocessing it validated with), classes.json (class names in
label order), model.safetensors / ema.safetensors / fixres.safetensors (weights; FixRes also
writes fixres.json with its test resolution), last.pt and previous.pt (the resumable checkpoint and the one
before it; checkpoints.json says where each was), metrics, and .effnet.lock (held by the process training there,
`effnet._lock`). Reading a run, as here, needs no lock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effnet._io import atomic_write_text
from effnet.train.config import TrainConfig

# Every file name of a run directory, here only: writers and readers go through these and `RunLayout`.
CONFIG_NAME = "config.json"
SPEC_NAME = "spec.json"
PREPROCESSING_NAME = "preprocessing.json"
CLASSES_NAME = "classes.json"
SUMMARY_NAME = "summary.json"
METRICS_NAME = "metrics.jsonl"
METRICS_CSV_NAME = "metrics.csv"
PLOT_NAME = "training.png"
FIXRES_NAME = "fixres.json"
CHECKPOINT_NAME = "last.pt"
PREVIOUS_NAME = "previous.pt"
POSITIONS_NAME = "checkpoints.json"  # where each checkpoint generation was: what a fall-back to previous.pt costs
WEIGHT_KINDS = ("model", "ema", "fixres")


@dataclass(frozen=True)
class RunLayout:
    """The files of the run directory `root`: where the trainer writes and every reader looks."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def spec(self) -> Path:
        return self.root / SPEC_NAME

    @property
    def preprocessing(self) -> Path:
        return self.root / PREPROCESSING_NAME

    @property
    def classes(self) -> Path:
        return self.root / CLASSES_NAME

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY_NAME

    @property
    def fixres(self) -> Path:
        return self.root / FIXRES_NAME

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT_NAME

    @property
    def previous(self) -> Path:
        return self.root / PREVIOUS_NAME

    def weights(self, kind: str = "model") -> Path:
        """model.safetensors, ema.safetensors or fixres.safetensors."""
        if kind not in WEIGHT_KINDS:
            raise ValueError(f"unknown weights kind {kind!r}; expected one of {', '.join(WEIGHT_KINDS)}")
        return self.root / f"{kind}.safetensors"

    def is_run(self) -> bool:
        """Whether a training run was started here (its config.json is written first)."""
        return self.config.is_file()

    def finished(self) -> bool:
        """Whether the run's training finished (its model weights are written at the end)."""
        return self.weights("model").is_file()

    def has_checkpoint(self) -> bool:
        """Whether a checkpoint (either generation) is there to resume from."""
        return self.checkpoint.exists() or self.previous.exists()

    def write_description(self, config: TrainConfig, spec: Any, preprocessing: Any, class_names: list[str]) -> None:
        """What the run is, written before its first step: config, spec, eval preprocessing and class names."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config, config.to_json() + "\n")
        spec.save(self.spec)
        atomic_write_text(self.preprocessing, json.dumps(preprocessing.to_dict(), indent=2) + "\n")
        atomic_write_text(self.classes, json.dumps(class_names) + "\n")

    def write_weights(self, kind: str, state: dict[str, Any], spec: Any, **metadata: str) -> None:
        """`kind` weights as safetensors, with the spec (and `metadata`) in the header."""
        from effnet.models.weights import save_file

        save_file(state, self.weights(kind), metadata={"spec": spec.to_json(), **metadata})

    def write_json(self, path: Path, data: Any) -> None:
        """One of this layout's JSON files (summary, fixres), atomically."""
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def config_preprocessing(config: TrainConfig, resolution: int) -> Any:
    """Eval preprocessing at `resolution`: that of the pretrained weights (e.g. TF's statistics for Lite), or the variant's."""
    from effnet.core.preprocessing import Preprocessing
    from effnet.core.zoo import get_info, get_preprocessing

    if config.spec:
        base = Preprocessing()
    elif config.pretrained in ("default", "true", "1"):
        base = get_preprocessing(config.model)
    else:
        base = get_info(config.model).preprocessing
    return base.replace(resolution=resolution)


def read_config(run: str | Path) -> TrainConfig:
    """The resolved config a run saved."""
    return TrainConfig.from_dict(json.loads(RunLayout(check_run(run)).config.read_text()))


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


def weights_of(run: str | Path) -> dict[str, Path]:
    """The finished weight files of a run, by kind (model, ema, fixres)."""
    layout = RunLayout(Path(run))
    return {kind: layout.weights(kind) for kind in WEIGHT_KINDS if layout.weights(kind).is_file()}


def check_run(run: str | Path) -> Path:
    """`run` as a Path, if it is a training run directory; a clear error otherwise."""
    run = Path(run)
    if not RunLayout(run).is_run():
        raise FileNotFoundError(f"{run} is not a training run directory (no {CONFIG_NAME}); give the --out-dir of an `effnet train`/`finetune` run")
    return run


def run_hint(weights: str | Path) -> str:
    """For a weights file that lies in a training run directory, how to use the run instead ('' for other files)."""
    folder = Path(weights).parent
    if not RunLayout(folder).is_run():
        return ""
    return f"{weights} holds the weights of the training run {folder}: use --run {folder}, which brings its network, class names and preprocessing"


def load_weights(model: Any, weights: str | Path) -> Any:
    """Load a weights file whole into `model` (any supported layout): a tensor that does not fit is a `WeightsError`
    naming the shapes, and for a file of a training run the error says to use the run (`run_hint`)."""
    from effnet.models.weights import WeightsError, load_file, load_state_dict

    try:
        return load_state_dict(model, load_file(weights))
    except WeightsError as err:
        hint = run_hint(weights)
        raise WeightsError(f"{weights}: {err}" + (f"\n  {hint}" if hint else "")) from None


def run_preprocessing(run: str | Path, kind: str = "model") -> Any:
    """The eval preprocessing a run validated with (at the FixRes resolution for kind 'fixres')."""
    from effnet.core.preprocessing import Preprocessing

    saved = RunLayout(check_run(run)).preprocessing
    if saved.is_file():
        prep = Preprocessing.from_dict(json.loads(saved.read_text()))
    else:  # runs from before preprocessing.json: what the trainer derived from the config
        config = read_config(run)
        prep = config_preprocessing(config, config.resolution or 224)
    if kind == "fixres":
        prep = prep.replace(resolution=fixres_resolution(run))
    return prep


def fixres_resolution(run: str | Path) -> int:
    return int(json.loads(RunLayout(Path(run)).fixres.read_text())["resolution"])


def class_names(run: str | Path) -> list[str] | None:
    """The run's class names in label order (None for runs from before classes.json)."""
    saved = Path(run) / CLASSES_NAME
    return list(json.loads(saved.read_text())) if saved.is_file() else None


def load_run_model(run: str | Path, kind: str = "model") -> Any:
    """The network a run trained, with `kind` weights ('model', 'ema' or 'fixres'), in eval mode.

    It carries `.preprocessing` (the run's) and `.class_names` (the folder names, when saved), so
    `effnet.models.predict.predict(model, images)` prints the run's labels.
    """
    from effnet.core.spec import NetSpec
    from effnet.models.model import build
    from effnet.models.weights import load_file, load_state_dict

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
    names = class_names(run)
    if names is not None and len(names) != model.spec.num_classes:
        raise ValueError(f"{run / CLASSES_NAME} names {len(names)} classes, but {kind}.safetensors classifies {model.spec.num_classes}: the run is damaged")
    model.preprocessing = run_preprocessing(run, kind)
    model.class_names = names
    return model.eval()
