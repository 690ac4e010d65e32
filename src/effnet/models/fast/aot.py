"""Compile once, start fast: AOTInductor packages of an optimized model, cached by everything their code depends on.

Where packages live and when they are invalid: see `effnet.models.fast`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effnet._io import atomic_write, atomic_write_text
from effnet._version import __version__
from effnet.models.fast.optimized import OptimizedModel, _Runner, optimize

CACHE_ENV = "EFFNET_CACHE_DIR"


class CompiledModelError(RuntimeError):
    """A compiled package cannot be used here (other torch version or device, wrong input shape, missing file)."""


@dataclass(frozen=True)
class ArtifactInfo:
    """What a compiled package was made for (the ``.json`` sidecar beside the ``.pt2``)."""

    key: str
    model: str
    input_shape: tuple[int, ...]
    dtype: str
    device: str
    channels_last: bool
    torch_version: str
    effnet_version: str
    compile_seconds: float
    created: str

    def to_json(self) -> str:
        data = dict(self.__dict__)
        data["input_shape"] = list(self.input_shape)
        return json.dumps(data, indent=2) + "\n"


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's class, spec and every parameter and buffer (values, shapes, dtypes)."""
    digest = hashlib.blake2b(digest_size=16)
    inner = model.module if isinstance(model, OptimizedModel) else model
    digest.update(type(inner).__qualname__.encode())
    spec = getattr(inner, "spec", None)
    if spec is not None and hasattr(spec, "to_string"):
        digest.update(spec.to_string().encode())
    for name, tensor in inner.state_dict().items():
        digest.update(name.encode())
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
        if tensor.numel():
            flat = tensor.detach().cpu().clone(memory_format=torch.contiguous_format).reshape(-1)
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def artifact_key(model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype | None, device: str, channels_last: bool) -> str:
    """The cache key of a compiled package: everything its code depends on (see the module docstring)."""
    parts = [model_fingerprint(model), str(tuple(input_shape)), str(dtype), device, str(channels_last), torch.__version__, __version__, platform.machine()]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=10).hexdigest()


def default_cache_dir() -> Path:
    """``$EFFNET_CACHE_DIR/compiled``, else ``~/.cache/effnet/compiled``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) / "compiled" if root else Path.home() / ".cache" / "effnet" / "compiled"


def save_compiled(
    model: nn.Module,
    path: str | Path,
    example_input: torch.Tensor,
    *,
    channels_last: bool = True,
    dtype: str | torch.dtype | None = "auto",
) -> ArtifactInfo:
    """Compile `model` ahead of time (torch.export + AOTInductor) for inputs shaped like `example_input`; write it to `path`.

    `model` is optimized first (`optimize`, BN folded, channels-last, CUDA autocast) unless
    it already is an `OptimizedModel`. The package (``.pt2``) is written atomically, with a
    ``.json`` sidecar (`ArtifactInfo`) beside it. The shape is static: a package serves
    exactly ``example_input.shape`` (make one per batch size). Compiling B0 takes about a
    minute on a 2-core CPU (B0 batch 32: 14 s measured); loading it and running a first batch about 2 s.
    """
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"a compiled package must end in .pt2, got {path}")
    fast = model if isinstance(model, OptimizedModel) else optimize(model, channels_last=channels_last, dtype=dtype, fuse_cpu=False)
    runner = _Runner(fast).eval()
    device = example_input.device.type
    start = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(runner, (example_input,), strict=False)

        def write(tmp: str) -> None:
            # the temporary name must end in .pt2 for the packager
            target = tmp + ".pt2"
            try:
                torch._inductor.aoti_compile_and_package(program, package_path=target, inductor_configs={"freezing": True})
                os.replace(target, tmp)
            finally:
                if os.path.exists(target):
                    os.unlink(target)

        atomic_write(path, write)
    info = ArtifactInfo(
        key=artifact_key(fast, tuple(example_input.shape), fast.dtype, device, fast.channels_last),
        model=_model_name(fast.module),
        input_shape=tuple(example_input.shape),
        dtype=str(fast.dtype or example_input.dtype).replace("torch.", ""),
        device=device,
        channels_last=fast.channels_last,
        torch_version=torch.__version__,
        effnet_version=__version__,
        compile_seconds=round(time.perf_counter() - start, 2),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    atomic_write_text(_sidecar(path), info.to_json())
    return info


class CompiledModel:
    """A loaded AOTInductor package: call it with a tensor of the shape it was compiled for."""

    def __init__(self, runner: Any, info: ArtifactInfo, path: Path) -> None:
        self._runner = runner
        self.info = info
        self.path = path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) != self.info.input_shape:
            raise CompiledModelError(
                f"{self.path.name} was compiled for inputs shaped {list(self.info.input_shape)}, got {list(x.shape)}; "
                "compile one package per batch size and resolution (effnet.models.fast.compile_cached does this)"
            )
        with torch.no_grad():
            return self._runner(x)

    def __repr__(self) -> str:
        return f"CompiledModel({self.info.model}, input {list(self.info.input_shape)}, {self.info.dtype}, {self.info.device}, {self.path})"


def load_compiled(path: str | Path, *, device_index: int = -1) -> CompiledModel:
    """Load a package written by `save_compiled`; raises `CompiledModelError` if it was made for another torch or device."""
    path = Path(path)
    sidecar = _sidecar(path)
    if not path.is_file() or not sidecar.is_file():
        raise CompiledModelError(f"no compiled package at {path} (need both {path.name} and {sidecar.name}); make one with effnet.models.fast.save_compiled")
    data = json.loads(sidecar.read_text())
    info = ArtifactInfo(**{**data, "input_shape": tuple(data["input_shape"])})
    if info.torch_version != torch.__version__:
        raise CompiledModelError(
            f"{path} was compiled by torch {info.torch_version}, this is torch {torch.__version__}: recompile it (or delete it from the cache)"
        )
    if info.device == "cuda" and not torch.cuda.is_available():
        raise CompiledModelError(f"{path} was compiled for CUDA, which is not available here; compile a CPU package")
    runner = torch._inductor.aoti_load_package(str(path), device_index=device_index)
    return CompiledModel(runner, info, path)


def compile_cached(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    cache_dir: str | Path | None = None,
    channels_last: bool = True,
    dtype: str | torch.dtype | None = "auto",
) -> CompiledModel:
    """The compiled package for (model, input shape, dtype, device, versions) from `cache_dir`, compiling it on a miss.

    The first process pays the ahead-of-time compile; every later one (same weights, shape,
    dtype, device and versions) loads the package in about 2 s.
    """
    fast = model if isinstance(model, OptimizedModel) else optimize(model, channels_last=channels_last, dtype=dtype, fuse_cpu=False)
    device = example_input.device.type
    key = artifact_key(fast, tuple(example_input.shape), fast.dtype, device, fast.channels_last)
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = directory / f"{_model_name(fast.module)}-{key}.pt2"
    if not (path.is_file() and _sidecar(path).is_file()):
        save_compiled(fast, path, example_input)
    return load_compiled(path)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _model_name(module: nn.Module) -> str:
    spec = getattr(module, "spec", None)
    name = getattr(spec, "name", None) or type(module).__name__
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))
