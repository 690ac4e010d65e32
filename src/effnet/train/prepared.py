"""A training run prepared once: what a TrainConfig resolves to before the first step.

The network's spec (a model name, spec file or block string resolved once), the training resolution
("0: the model's own" decided here), the eval preprocessing, the datasets (the image folder scanned
once), the class names and the run directory's layout. Fine-tune planning (`effnet.train.finetune`),
the separability measure, the trainer and FixRes all take this object instead of the config, so none
of them re-scans a folder, re-resolves a spec or re-derives a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet.train.config import TrainConfig
from effnet.train.rundir import RunLayout, config_preprocessing

# The options the datasets are built from, and those the network is built from: a config that differs from the
# prepared one elsewhere (the fine-tune plan's batch size, warm-up, BatchNorm mode) keeps what was prepared.
DATA_FIELDS = (
    "dataset",
    "data_dir",
    "resolution",
    "spec",
    "model",
    "pretrained",
    "auto_augment",
    "seed",
    "num_classes",
    "train_samples",
    "val_samples",
    "val_fraction",
    "crop_min_area",
    "randaugment_magnitude",
    "pseudo_labels",
)
MODEL_FIELDS = ("bn_momentum", "head_init", "drop_path_rate", "dropout", "zero_init_residual")


@dataclass
class PreparedRun:
    """A resolved config and everything built from it once; see the module's docstring."""

    config: TrainConfig
    spec: Any  # the NetSpec to train (for pretrained weights: the named model's, which its weights may adjust)
    resolution: int
    preprocessing: Any  # effnet.core.preprocessing.Preprocessing at `resolution`
    data: Any  # effnet.data.DataBundle
    layout: RunLayout
    _model: tuple[nn.Module, torch.Tensor] | None = field(default=None, repr=False)  # built early (separability), with the RNG after it

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    @property
    def labelled_train(self) -> Any:
        """The labelled training images, untransformed (without pseudo-labelled ones, which `data.train` may hold too)."""
        base = self.data.train.base
        return base.sources[0].base if self.data.sources else base

    def val_loader(self, workers: int, dataset: Any = None) -> Any:
        """A loader over the validation images (or `dataset`), in order, at the run's batch size."""
        from torch.utils.data import DataLoader

        return DataLoader(
            dataset if dataset is not None else self.data.val,
            batch_size=self.config.batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=self.data.collate_fn,
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    def model(self) -> nn.Module:
        """The network to train, built once with the run's seed (`make_model`); `take_model` hands the same one on."""
        if self._model is None:
            from effnet.train.network import make_model

            torch.manual_seed(self.config.seed)
            model = make_model(self.config, self.num_classes, self.spec)
            self._model = (model, torch.get_rng_state())
        return self._model[0]

    def take_model(self) -> nn.Module:
        """The network for the trainer, in training mode: the one built earlier (the torch RNG set as right after that
        build, so that training draws the same numbers as when it is built here), or a new one."""
        model = self.model()
        assert self._model is not None
        torch.manual_seed(self.config.seed)  # every generator as a fresh build leaves it ...
        torch.set_rng_state(self._model[1])  # ... and the CPU one as after the build
        self._model = None
        return model.train()

    def with_config(self, config: TrainConfig) -> PreparedRun:
        """This run for `config`, which must agree on what was built from it (`DATA_FIELDS`); a model built already is
        kept when the network's options (`MODEL_FIELDS`) agree too."""
        differ = [name for name in DATA_FIELDS if getattr(config, name) != getattr(self.config, name)]
        if differ:
            raise ValueError(f"the config differs from the prepared run's in {', '.join(differ)}: prepare the run again (prepare_run)")
        keep = all(getattr(config, name) == getattr(self.config, name) for name in MODEL_FIELDS)
        layout = RunLayout(Path(config.out_dir))
        return dataclasses.replace(self, config=config, layout=layout, _model=self._model if keep else None)


def prepare_run(config: TrainConfig, spec: Any = None, *, resolved: Any = None, splits: Any = None) -> PreparedRun:
    """Resolve `config` once: its network (`spec`, a NetSpec, when given, else the one the config names), resolution,
    preprocessing, datasets and run directory.

    A spec given in memory is the run's: the config then names the run's spec.json (written with the run's other
    files, `RunLayout.write_description`), so that the run directory alone describes and resumes the run.
    `resolved`: the NetSpec that config.spec / config.model name, when the caller resolved it already (the config is
    kept as it is). `splits`: the image folder's train and validation images, when the caller scanned it already
    (`effnet.data.image_folder_splits` with the config's val_fraction).
    """
    from effnet.data import build_datasets
    from effnet.train.network import network_of

    layout = RunLayout(Path(config.out_dir))
    if spec is not None:
        config = dataclasses.replace(config, spec=str(layout.spec))
    else:
        spec = resolved if resolved is not None else network_of(config)
    resolution = config.resolution or spec.resolution
    preprocessing = config_preprocessing(config, resolution)
    train_samples, val_samples = config.sample_counts()
    data = build_datasets(
        config.dataset,
        data_dir=config.data_dir or None,
        resolution=resolution,
        preprocessing=preprocessing,
        auto_augment=config.auto_augment,
        seed=config.seed,
        num_classes=config.num_classes or None,
        train_samples=train_samples,
        val_samples=val_samples,
        val_fraction=config.val_fraction,
        train_scale=config.crop_scale(),
        randaugment_magnitude=config.randaugment_magnitude,
        pseudo_labels=config.pseudo_labels or None,
        splits=splits,
    )
    return PreparedRun(config, spec, resolution, preprocessing, data, layout)
