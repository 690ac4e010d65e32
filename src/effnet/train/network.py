"""What a training run trains: the network a config names (or a given spec), built with the recipe's settings,
and which of its parts learn (--freeze-backbone, --freeze-bn)."""

from __future__ import annotations

from typing import Any

from torch import nn

from effnet.train.config import TrainConfig


def make_model(config: TrainConfig, num_classes: int, spec: Any = None) -> nn.Module:
    """The network to train, with the recipe's settings: `spec` (default: the config's, see `network_of`), or, when the
    config asks for pretrained weights, its named model with them, built by `create_model` as the weights need (TF
    padding, BN eps); `spec` (the prepared run's) then only decided the resolution."""
    from effnet.models.factory import create_model
    from effnet.models.model import build

    options: dict[str, Any] = {
        "num_classes": num_classes,
        "bn_momentum": config.bn_momentum,
        "head_init": config.head_init,
    }
    # -1: the network's own rates (its spec's), so each has one default
    if config.drop_path_rate >= 0:
        options["drop_path_rate"] = config.drop_path_rate
    if config.dropout >= 0:
        options["dropout"] = config.dropout
    if not config.pretrained:
        model = build(spec if spec is not None else network_of(config), **options)
        if config.zero_init_residual:
            from effnet.models.model import zero_init_residuals

            zero_init_residuals(model)
        return model
    if config.spec:  # a spec given in memory is named here too (the run's spec.json, `prepare_run`)
        raise ValueError("--pretrained applies to named models, not to --spec files")
    pretrained: bool | str = True if config.pretrained in ("default", "true", "1") else config.pretrained
    return create_model(config.model, pretrained=pretrained, **options)


def network_of(config: TrainConfig) -> Any:
    """The network a config names: its --spec (a file or block string), else its --model (`effnet.core.zoo.resolve_spec`)."""
    from effnet.core.zoo import resolve_spec

    return resolve_spec(config.spec or config.model)


def freeze_backbone(model: nn.Module) -> None:
    """--freeze-backbone: only the classifier's parameters train."""
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("classifier.")


def train_only_classifier_mode(model: nn.Module) -> None:
    """Frozen backbone: keep its BN statistics fixed too."""
    for name, module in model.named_children():
        if name != "classifier":
            module.eval()


def batchnorm_eval(model: nn.Module) -> None:
    """--freeze-bn: every BatchNorm normalises with its running statistics and leaves them as they are."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
