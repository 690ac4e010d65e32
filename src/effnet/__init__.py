"""effnet: EfficientNet (Tan & Le, ICML 2019) as data: specs, models, compound scaling and search.

>>> import effnet
>>> model = effnet.create_model("efficientnet_b0")
>>> effnet.profile("efficientnet_b0").macs   # multiply-adds, the paper's "FLOPS"
385814752
"""

from effnet.factory import create_model
from effnet.fast import compile_cached, load_compiled, optimize, save_compiled
from effnet.model import EfficientNet, EfficientNetFeatures, build
from effnet.preprocessing import Preprocessing
from effnet.profile import Profile, profile
from effnet.scaling import compound, round_filters, round_repeats, scale, scale_to_macs, solve_phi
from effnet.spec import NetSpec, SpecError, StageSpec
from effnet.weights import WeightsError, convert_state_dict, load_state_dict
from effnet.zoo import UnknownModelError, get_preprocessing, get_spec, list_models

__version__ = "0.1.0"

__all__ = [
    "EfficientNet",
    "EfficientNetFeatures",
    "NetSpec",
    "Preprocessing",
    "Profile",
    "SpecError",
    "StageSpec",
    "UnknownModelError",
    "WeightsError",
    "build",
    "compound",
    "convert_state_dict",
    "create_model",
    "get_preprocessing",
    "get_spec",
    "list_models",
    "load_state_dict",
    "profile",
    "round_filters",
    "round_repeats",
    "scale",
    "scale_to_macs",
    "solve_phi",
    "optimize",
    "save_compiled",
    "load_compiled",
    "compile_cached",
]
