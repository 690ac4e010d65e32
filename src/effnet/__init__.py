"""effnet: EfficientNet (Tan & Le, ICML 2019) as data: specs, models, compound scaling and search.

>>> import effnet
>>> model = effnet.create_model("efficientnet_b0")
>>> effnet.profile("efficientnet_b0").macs   # multiply-adds, the paper's "FLOPS"
385814752

The spec layer (specs, scaling, profiles, the model zoo's tables) is imported here directly and
needs no torch; the names that build or run models (create_model, build, optimize, ...) import
torch on first use, so `import effnet.core.spec` and the analytic tools start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from effnet._version import __version__
from effnet.core.preprocessing import Preprocessing
from effnet.core.profile import Profile
from effnet.core.profile import profile as _profile_spec_or_model
from effnet.core.scaling import compound, round_filters, round_repeats, scale, scale_to_macs, solve_phi, v2_scale
from effnet.core.spec import NetSpec, SpecError, StageSpec
from effnet.core.zoo import (
    ModelInfo,
    UnknownModelError,
    WeightSource,
    get_info,
    get_preprocessing,
    get_spec,
    get_weights,
    list_models,
    list_weights,
    resolve_spec,
)

# name -> module of the torch-backed API, imported when the name is first used (PEP 562)
_LAZY = {
    "create_model": "effnet.models.factory",
    "EfficientNet": "effnet.models.model",
    "EfficientNetFeatures": "effnet.models.model",
    "build": "effnet.models.model",
    "WeightsError": "effnet.models.weights",
    "convert_state_dict": "effnet.models.weights",
    "load_state_dict": "effnet.models.weights",
    "optimize": "effnet.models.fast",
    "save_compiled": "effnet.models.fast",
    "load_compiled": "effnet.models.fast",
    "compile_cached": "effnet.models.fast",
    "sample_image": "effnet.models.predict",
    "quantize": "effnet.int8",
    "load_int8": "effnet.int8",
}


def profile(model: Any, resolution: int | None = None) -> Profile:
    """Params and MACs (multiply-adds, the paper's "FLOPS") of a model name, a NetSpec or a built effnet model.

    A name (``"efficientnet_b3"``, ``"b3"``) is looked up in the zoo first; `resolution`
    defaults to the spec's own.
    """
    return _profile_spec_or_model(get_spec(model) if isinstance(model, str) else model, resolution)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'effnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "EfficientNet",
    "EfficientNetFeatures",
    "ModelInfo",
    "NetSpec",
    "Preprocessing",
    "Profile",
    "SpecError",
    "StageSpec",
    "UnknownModelError",
    "WeightSource",
    "WeightsError",
    "__version__",
    "build",
    "compound",
    "convert_state_dict",
    "create_model",
    "get_info",
    "get_preprocessing",
    "get_spec",
    "get_weights",
    "list_models",
    "list_weights",
    "load_state_dict",
    "profile",
    "resolve_spec",
    "round_filters",
    "sample_image",
    "round_repeats",
    "scale",
    "scale_to_macs",
    "solve_phi",
    "v2_scale",
    "optimize",
    "save_compiled",
    "load_compiled",
    "compile_cached",
    "quantize",
    "load_int8",
]
