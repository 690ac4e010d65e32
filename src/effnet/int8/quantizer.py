"""`quantize`: static INT8 of an effnet model through ONNX Runtime's QDQ quantization, written as one ONNX file.

Steps: export the float model to ONNX (`effnet.models.export.export_onnx`, checked against PyTorch),
ONNX Runtime's pre-processing (shape inference, graph optimisation), the float-layer rule
(`effnet.int8.rule`; a swish kept float becomes one onnxruntime QuickGelu node), then
`onnxruntime.quantization.quantize_static` in QDQ format: weights per output channel as signed
INT8, activations as unsigned INT8 with ranges from the calibration images (min/max). The
file carries the model's preprocessing, class names and the list of float layers in its
metadata, so `effnet.int8.load_int8` (and `effnet predict --weights FILE.onnx`) runs it like
the float model. Why ONNX Runtime and not PT2E: benchmarks/results/int8/README.md.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet._io import atomic_write
from effnet.int8.calibration import DEFAULT_COUNT, QuantizeError, TensorReader, calibration_tensors
from effnet.int8.rule import DEFAULT_KEEP, FloatLayers, float_layers, fuse_swish

METADATA_KEY = "effnet"  # ONNX metadata_props key of the JSON below


@dataclass
class QuantizeResult:
    """What `quantize` wrote: the INT8 file, the float ONNX size for comparison, the layers kept float."""

    path: Path
    float_layers: FloatLayers
    calibration_images: int
    size_bytes: int
    float_onnx_bytes: int


def quantize(
    model: nn.Module,
    calibration_images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | torch.Tensor,
    out: str | os.PathLike[str],
    *,
    keep_float: Sequence[str] = DEFAULT_KEEP,
    count: int = DEFAULT_COUNT,
    preprocessing: Any = None,
    class_names: Sequence[str] | None = None,
    per_channel: bool = True,
) -> QuantizeResult:
    """Quantize `model` to static INT8 with the calibration images and write the ONNX file `out` (atomically).

    `calibration_images`: a folder (searched recursively; at most `count` images, a random
    sample of a larger folder), image files, or a preprocessed tensor (N, C, H, W). Images are
    read with the project's reader and `model.preprocessing` (or `preprocessing`). Layers of the
    kinds in `keep_float` (`effnet.int8.rule.KINDS`: stem, classifier, squeeze_excite, swish)
    stay float. Raises `QuantizeError` (nothing written) for an unusable calibration set or a
    model that cannot be exported or quantized.
    """
    _require()
    if not isinstance(model, nn.Module):
        raise QuantizeError(f"quantize needs a torch.nn.Module, got {type(model).__name__}")
    out = Path(out)
    if out.suffix != ".onnx":
        raise QuantizeError(f"the INT8 model is an ONNX file: name it *.onnx, got {str(out)!r}")
    preprocessing = preprocessing if preprocessing is not None else getattr(model, "preprocessing", None)
    spec = getattr(model, "spec", None)
    in_chans = int(getattr(spec, "in_chans", None) or 3)
    inputs = calibration_tensors(calibration_images, preprocessing, in_chans, count=count)
    names = class_names if class_names is not None else getattr(model, "class_names", None)
    with tempfile.TemporaryDirectory(prefix="effnet-int8-") as tmp:
        float_path, prepared = Path(tmp) / "float.onnx", Path(tmp) / "prepared.onnx"
        _export(model, float_path, inputs.shape[-1])
        import onnx

        _prepare(float_path, prepared)
        prepared_model = onnx.load(str(prepared))
        if "swish" in keep_float and fuse_swish(prepared_model):  # same numbers, one kernel: see effnet.int8.rule
            onnx.save(prepared_model, str(prepared))
        graph = prepared_model.graph
        kept = float_layers(graph, tuple(keep_float))
        quantized = Path(tmp) / "int8.onnx"
        _quantize_static(prepared, quantized, TensorReader(inputs, graph.input[0].name), kept.names, per_channel)
        int8 = onnx.load(str(quantized))
        meta = {"format": "effnet-int8", "model": getattr(spec, "name", None) or type(model).__name__, "float_layers": kept.to_dict()}
        meta |= {"preprocessing": preprocessing.to_dict() if preprocessing is not None else None, "class_names": list(names) if names else None}
        meta |= {
            "calibration_images": int(inputs.shape[0]),
            "toolchain": "onnxruntime quantize_static, QDQ, per-channel weights" if per_channel else "onnxruntime quantize_static, QDQ",
        }
        entry = int8.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        atomic_write(out, lambda path: onnx.save(int8, path))
        float_bytes = float_path.stat().st_size
    return QuantizeResult(out, kept, int(inputs.shape[0]), out.stat().st_size, float_bytes)


def _export(model: nn.Module, path: Path, resolution: int) -> None:
    """The float ONNX file, checked against PyTorch: TorchScript-based exporter first, then torch.export-based.

    Opset 17's TorchScript-based exporter takes about a tenth of the time of the torch.export one here and
    writes the same operators; the INT8 file has a fixed resolution anyway, which is all its tracing fixes.
    """
    from effnet.models.export import ExportError, export_onnx

    errors = []
    for opset in (17, None):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporters' deprecation and fallback chatter; failure is reported below
                export_onnx(model, path, resolution=resolution, dynamic_batch=True, opset=opset)
            return
        except (ExportError, ValueError, TypeError, RuntimeError) as err:
            errors.append(str(err).splitlines()[0] if str(err) else type(err).__name__)
    raise QuantizeError(f"this model cannot be quantized: its ONNX export failed ({'; '.join(errors)})")


def _prepare(source: Path, target: Path) -> None:
    """onnxruntime's pre-processing for quantization: shape inference and graph optimisation (BN folded into convs)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(target))
    except Exception as err:  # onnxruntime and onnx raise many kinds for graphs they cannot handle
        raise QuantizeError(f"this model cannot be quantized: onnxruntime's pre-processing failed ({type(err).__name__}: {err})") from None


def _quantize_static(source: Path, target: Path, reader: TensorReader, exclude: list[str], per_channel: bool) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    try:
        quantize_static(
            str(source),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            # no CalibMaxIntermediateOutputs: onnxruntime 1.32 drops (does not merge) the outputs collected before each
            # flush, so it calibrates on the last few batches only. Memory grows with `count` instead.
        )
    except Exception as err:  # ORT raises plain exceptions of many kinds for graphs it cannot handle
        raise QuantizeError(f"this model cannot be quantized: onnxruntime's static quantization failed ({type(err).__name__}: {err})") from None


def _require() -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"INT8 quantization needs {', '.join(missing)}, which is not installed: pip install effnet[export]")
