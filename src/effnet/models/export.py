"""Export effnet models for deployment: ONNX (run with onnxruntime) and TorchScript.

Both exporters put the model in eval mode, write the file atomically (a crash never
leaves a half-written model behind) and, by default, check the exported model against
eager PyTorch on a random input before returning. Both store what a deployment needs to use
the outputs beside the graph (`export_metadata`): the class names in output order and the
eval preprocessing, as ONNX metadata_props or TorchScript extra files; `read_metadata`
reads them back.
"""

from __future__ import annotations

import contextlib
import json
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet._io import atomic_write

# Verification accepts |exported - eager| < atol + rtol * max|eager|, per output. The relative
# part is there because float32 rounding grows with the values: onnxruntime's kernels differ
# from PyTorch's by ~5e-6 relative, i.e. 1e-4 absolute already on feature maps of magnitude 20.
ONNX_ATOL, ONNX_RTOL = 1e-4, 1e-5
TORCHSCRIPT_ATOL, TORCHSCRIPT_RTOL = 1e-5, 1e-6  # same kernels as eager: anything more is a real difference


class ExportError(RuntimeError):
    """An export failed, or the exported model does not reproduce the PyTorch outputs."""


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    resolution: int | None = None,
    batch_size: int = 1,
    dynamic_batch: bool = True,
    opset: int | None = None,
    verify: bool = True,
    atol: float = ONNX_ATOL,
    rtol: float = ONNX_RTOL,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Export `model` to an ONNX file at `path` and return the path.

    The input is named ``input``, shaped (batch, in_chans, resolution, resolution); the
    resolution defaults to the model's (``model.spec.resolution``). With `dynamic_batch`
    the batch dimension is symbolic, so one file serves any batch size. Outputs are named
    ``logits`` (classifier) or ``feature0``... (``features_only`` models). `opset` picks
    the ONNX opset (None: the exporter's default). With `verify`, onnxruntime runs the
    file on random inputs (of `batch_size`, and also `batch_size` + 1 with `dynamic_batch`)
    and an `ExportError` is raised if an output differs from PyTorch by
    ``atol + rtol * max|output|`` or more. `class_names` (default: the model's
    ``.class_names``, else ImageNet's for 1000 outputs) must match the outputs in number and
    are stored with the preprocessing in the file's metadata_props (`export_metadata`).
    Needs ``pip install effnet[export]`` (onnx, onnxscript, onnxruntime).
    """
    _require("onnx", "onnxscript", *(["onnxruntime"] if verify else []))
    path = Path(path)
    in_chans, resolution = input_shape(model, resolution)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    example = _random_input(batch_size, in_chans, resolution)
    with _eval_mode(model), torch.no_grad():
        output = model(example)
        output_names = ["logits"] if isinstance(output, torch.Tensor) else [f"feature{i}" for i in range(len(_as_list(output)))]
        metadata = export_metadata(model, output, class_names, resolution)

        def write(tmp: str) -> None:
            _write_onnx(model, example, tmp, output_names, dynamic_batch, opset)
            _add_onnx_metadata(tmp, metadata)

        atomic_write(path, write)
    if verify:
        batches = [batch_size] + ([batch_size + 1] if dynamic_batch else [])
        for n in batches:
            _verify_onnx(model, path, _random_input(n, in_chans, resolution, seed=n), atol, rtol)
    return path


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    *,
    method: str = "script",
    resolution: int | None = None,
    verify: bool = True,
    atol: float = TORCHSCRIPT_ATOL,
    rtol: float = TORCHSCRIPT_RTOL,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Compile `model` with TorchScript and save it to `path` (load with `torch.jit.load`); returns the path.

    method="script" compiles the Python code, so the saved model keeps working at any
    input size. method="trace" records the operations run on one example input of size
    `resolution` (default: the model's): simpler, but shape-dependent logic is frozen, so a
    ``tf_compat`` model (whose 'same' padding depends on the input size) only works at the
    traced resolution. With `verify`, the saved file is loaded back and its outputs must
    match eager PyTorch within ``atol + rtol * max|output|``, else `ExportError`. Class names
    and preprocessing are stored as the file's extra files, as in `export_onnx`.
    """
    if method not in ("script", "trace"):
        raise ValueError(f"method must be 'script' or 'trace', got {method!r}")
    path = Path(path)
    in_chans, resolution = input_shape(model, resolution)
    example = _random_input(2, in_chans, resolution)
    with _eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        metadata = export_metadata(model, model(example), class_names, resolution)
        # torch 2.14 marks torch.jit as deprecated in favour of torch.export; TorchScript is
        # still what C++/mobile deployments load, so the warning is only noise here.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        if method == "script":
            try:
                compiled = torch.jit.script(model)
            except Exception as err:
                raise ExportError(f"torch.jit.script cannot compile {type(model).__name__} (method='trace' does not need to):\n{str(err).strip()}") from err
        else:
            # the traced graph bakes in the input check and, for tf_compat models, the padding
            # for this resolution: that is the documented contract of method="trace"
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            compiled = torch.jit.trace(model, example, strict=False, check_trace=False)
        atomic_write(path, lambda tmp: torch.jit.save(compiled, tmp, _extra_files=metadata))
        if verify:
            loaded = torch.jit.load(str(path), map_location="cpu")
            check = _random_input(2, in_chans, resolution, seed=1)  # not the traced example
            _compare(_as_list(model(check)), _as_list(loaded(check)), atol, rtol, f"TorchScript ({method})")
    return path


# ------------------------------------------------------------------ metadata
def export_metadata(model: nn.Module, output: Any, class_names: Sequence[str] | None = None, resolution: int | None = None) -> dict[str, str]:
    """The strings an exported file carries beside its graph: class names (JSON list, in output order), number of
    classes, eval preprocessing (JSON; at the exported `resolution`), model name and effnet version.

    `class_names` default to the model's ``.class_names`` (a training run's), else ImageNet's for a 1000-class
    output. Names that do not match the output's size are an `ExportError`: the labels of a deployed model would
    be wrong (for instance a fine-tuned model whose classifier was replaced by an ImageNet one).
    """
    from effnet._version import __version__
    from effnet.models.predict import default_class_names

    metadata = {"effnet_version": __version__}
    spec = getattr(model, "spec", None)
    if getattr(spec, "name", None):
        metadata["effnet_model"] = str(spec.name)
    preprocessing = getattr(model, "preprocessing", None)
    if preprocessing is not None and hasattr(preprocessing, "to_dict"):
        if resolution is not None and hasattr(preprocessing, "replace"):
            preprocessing = preprocessing.replace(resolution=resolution)
        metadata["preprocessing"] = json.dumps(preprocessing.to_dict())
    if not isinstance(output, torch.Tensor):  # a features_only backbone: no classes
        return metadata
    num_classes = int(output.shape[-1])
    names = class_names if class_names is not None else getattr(model, "class_names", None)
    if names is None:
        names = default_class_names(num_classes)
    if names is not None and len(names) != num_classes:
        raise ExportError(
            f"the model has {num_classes} outputs but {len(names)} class names ({', '.join(list(names)[:3])}, ...): they must correspond one to one"
        )
    metadata["num_classes"] = str(num_classes)
    if names is not None:
        metadata["class_names"] = json.dumps(list(names))
    return metadata


def read_metadata(path: str | Path) -> dict[str, Any]:
    """What `export_onnx` / `export_torchscript` stored in a file (`export_metadata`), with the JSON values parsed."""
    path = Path(path)
    if zipfile.is_zipfile(path):  # TorchScript: a zip archive whose extra files lie in <archive>/extra/
        with zipfile.ZipFile(path) as archive:
            extra = [name for name in archive.namelist() if name.split("/")[-2:-1] == ["extra"]]
            raw = {name.rsplit("/", 1)[1]: archive.read(name).decode() for name in extra}
    else:
        _require("onnx")
        import onnx

        raw = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    parsed: dict[str, Any] = dict(raw)
    for key in ("preprocessing", "class_names"):
        if key in raw:
            parsed[key] = json.loads(raw[key])
    if "num_classes" in raw:
        parsed["num_classes"] = int(raw["num_classes"])
    return parsed


def _add_onnx_metadata(path: str, metadata: Mapping[str, str]) -> None:
    import onnx

    proto = onnx.load(path)
    kept = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, path)


# ------------------------------------------------------------------ ONNX internals
def _write_onnx(model: nn.Module, example: torch.Tensor, tmp: str, output_names: list[str], dynamic_batch: bool, opset: int | None) -> None:
    """Export with the torch.export-based (dynamo) exporter; fall back to the TorchScript-based one.

    The dynamo exporter is torch's default and handles every effnet variant on torch 2.9+
    (including the input-size-dependent padding of tf_compat models). The legacy exporter
    stays as a fallback for models torch.export cannot capture (e.g. user wrappers with
    data-dependent Python control flow), and for opsets below 18: the dynamo exporter only
    implements opset >= 18 and, asked for less, silently keeps 18 when its version
    converter fails (it does for EfficientNet's ReduceMean in squeeze-excitation).
    """
    first_error: Exception | None = None
    if opset is None or opset >= 18:
        try:
            _write_onnx_dynamo(model, example, tmp, output_names, dynamic_batch, opset)
            return
        except Exception as err:
            first_error = err
            warnings.warn(f"the dynamo ONNX exporter failed ({type(err).__name__}: {err}); retrying with the TorchScript-based exporter", stacklevel=3)
    dynamic_axes = {name: {0: "batch"} for name in ["input", *output_names]} if dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                (example,),
                tmp,
                dynamo=False,
                input_names=["input"],
                output_names=output_names,
                opset_version=opset or 17,
                dynamic_axes=dynamic_axes,
            )
    except Exception as err:
        tried = f"dynamo exporter: {first_error}; TorchScript-based exporter: {err}" if first_error else str(err)
        raise ExportError(f"ONNX export of {type(model).__name__} failed ({tried})") from err


def _write_onnx_dynamo(model: nn.Module, example: torch.Tensor, tmp: str, output_names: list[str], dynamic_batch: bool, opset: int | None) -> None:
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=["input"],
        output_names=output_names,
        opset_version=opset,
        dynamic_shapes=dynamic_shapes,
        verbose=False,
    )
    # one self-contained file: external data would be named after the temporary file
    program.save(tmp, external_data=False)


def _verify_onnx(model: nn.Module, path: Path, x: torch.Tensor, atol: float, rtol: float) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with _eval_mode(model), torch.no_grad():
        expected = _as_list(model(x))
    _compare(expected, [torch.from_numpy(g) for g in got], atol, rtol, "ONNX (onnxruntime)", path)


# ------------------------------------------------------------------ shared helpers
def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}, which is not installed: pip install effnet[export]")


def input_shape(model: nn.Module, resolution: int | None) -> tuple[int, int]:
    """(input channels, resolution) an export feeds the model: `resolution`, else the spec's."""
    spec = getattr(model, "spec", None)
    in_chans = getattr(spec, "in_chans", None) or getattr(model, "in_chans", None) or 3
    if resolution is None:
        resolution = getattr(spec, "resolution", None)
        if resolution is None:
            raise ValueError("this model has no spec.resolution; pass resolution= explicitly")
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8 pixels, got {resolution}")
    return int(in_chans), int(resolution)


def _random_input(batch: int, in_chans: int, resolution: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, in_chans, resolution, resolution, generator=generator)


def _as_list(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Sequence):
        return list(output)
    raise ExportError(f"can only export models returning a tensor or a list of tensors, got {type(output).__name__}")


def _compare(expected: list[torch.Tensor], got: list[torch.Tensor], atol: float, rtol: float, what: str, path: Path | None = None) -> None:
    if len(expected) != len(got):
        raise ExportError(f"{what} returned {len(got)} outputs, PyTorch {len(expected)}")
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        if tuple(e.shape) != tuple(g.shape):
            raise ExportError(f"{what} output {i} has shape {tuple(g.shape)}, PyTorch {tuple(e.shape)}")
        diff = (e.float() - g.float()).abs().max().item()
        scale = e.abs().max().item()
        tolerance = atol + rtol * scale
        if not diff < tolerance:  # also catches NaN
            where = f" ({path})" if path is not None else ""
            raise ExportError(
                f"{what}{where} does not match PyTorch: output {i} differs by up to {diff:.3g} (tolerance {tolerance:.3g} "
                f"= {atol:g} + {rtol:g} x output magnitude {scale:.3g}); the exported file is not trustworthy"
            )


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then back to the caller's mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
