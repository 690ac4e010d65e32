"""Running an INT8 (or any effnet-exported) ONNX file like an effnet model: `load_int8` -> `OnnxModel`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from effnet.int8.calibration import QuantizeError
from effnet.int8.quantizer import METADATA_KEY


class OnnxModel(nn.Module):
    """An onnxruntime session as a module: tensor in, logits tensor out, with ``.preprocessing``, ``.class_names``, ``.float_layers``.

    It has no parameters and no training mode; `effnet.models.predict.predict` and the evaluation loop (`effnet eval
    --weights FILE.onnx`) use it as they use a float model. Inputs are converted to float32 NumPy on the CPU; the
    logits come back on the input's device. The file's input size is fixed: run it at the resolution it was written for.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime

        self.path = Path(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own error types: corrupt or foreign files
            raise QuantizeError(f"{self.path} is not an ONNX model onnxruntime can run ({type(err).__name__}: {str(err).splitlines()[0]})") from None
        self.input_name = self.session.get_inputs()[0].name
        meta = json.loads(self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}"))
        self.meta = meta
        self.class_names = meta.get("class_names")
        self.float_layers = meta.get("float_layers")
        self.preprocessing = None
        if meta.get("preprocessing"):
            from effnet.core.preprocessing import Preprocessing

            self.preprocessing = Preprocessing.from_dict(meta["preprocessing"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0]).to(x.device)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, model={self.meta.get('model')!r}"


def load_int8(path: str | os.PathLike[str], threads: int | None = None) -> OnnxModel:
    """The INT8 ONNX file `path` as a module that predicts like the float model (its preprocessing and class names travel in the file)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no ONNX file at {str(path)!r}")
    return OnnxModel(path, threads)
