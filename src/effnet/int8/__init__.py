"""INT8 inference that keeps EfficientNet's accuracy: static post-training quantization through ONNX Runtime (QDQ).

- `rule`: which layers stay float (squeeze-excitation and swish by default; the stem and classifier on request), found in the ONNX graph;
- `calibration`: calibration images from a folder, read and preprocessed as the model evaluates; `QuantizeError`;
- `quantizer`: `quantize(model, calibration_images, out)` -> the INT8 ONNX file and what stayed float;
- `runtime`: `load_int8(path)`, the file as a module that `effnet.models.predict` and evaluation run;
- `check`: float and INT8 top-1 side by side on labelled images (`compare`).
"""

from __future__ import annotations

from effnet._lazy import lazy_names

_NAMES = {
    "effnet.int8.calibration": ("QuantizeError", "calibration_tensors"),
    "effnet.int8.quantizer": ("QuantizeResult", "quantize"),
    "effnet.int8.runtime": ("OnnxModel", "load_int8"),
    "effnet.int8.check": ("Comparison", "compare", "labelled_folder", "run_validation"),
    "effnet.int8.rule": ("DEFAULT_KEEP", "KINDS", "FloatLayers", "float_layers"),
}
__all__, __getattr__, __dir__ = lazy_names(__name__, _NAMES, globals())
