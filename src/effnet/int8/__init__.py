"""INT8 inference that keeps EfficientNet's accuracy: static post-training quantization through ONNX Runtime (QDQ).

- `rule`: which layers stay float (stem, classifier, squeeze-excitation, swish), found in the ONNX graph;
- `calibration`: calibration images from a folder, read and preprocessed as the model evaluates; `QuantizeError`;
- `quantizer`: `quantize(model, calibration_images, out)` -> the INT8 ONNX file and what stayed float;
- `runtime`: `load_int8(path)`, the file as a module that `effnet.predict` and evaluation run;
- `check`: float and INT8 top-1 side by side on labelled images (`compare`).
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "effnet.int8.calibration": ("QuantizeError", "calibration_tensors"),
    "effnet.int8.quantizer": ("QuantizeResult", "quantize"),
    "effnet.int8.runtime": ("OnnxModel", "load_int8"),
    "effnet.int8.check": ("Comparison", "compare", "labelled_folder", "run_validation"),
    "effnet.int8.rule": ("DEFAULT_KEEP", "KINDS", "FloatLayers", "float_layers"),
}
_LAZY = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'effnet.int8' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
