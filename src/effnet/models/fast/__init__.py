"""The inference fast path: one call makes a model fast, and a compiled model can be saved and reloaded.

>>> fast = effnet.optimize(model)                    # eval, BN folded, no dropout, channels-last
>>> fast = effnet.optimize(model, compile=True)      # + torch.compile (static shapes; CUDA graphs on GPU)
>>> logits = fast(images)                            # same outputs as model.eval()(images)

`optimize` works on any network built from ``nn.Sequential`` conv -> BatchNorm pairs (effnet's
``ConvBnAct`` of every block kind, torchvision's ``Conv2dNormActivation``); it never changes
the model you pass in unless ``inplace=True``.

Compile once, start fast: `save_compiled` exports the optimized model with ``torch.export``
and compiles it ahead of time with AOTInductor into one ``.pt2`` package; `load_compiled`
loads it in a new process in about 2 s, first batch included (no tracing or code generation).
`compile_cached` does both through a cache directory, so the first process pays the compile
and later ones load.

Where artifacts live and when they are invalid: `compile_cached` writes to ``cache_dir``
(default ``$EFFNET_CACHE_DIR/compiled``, else ``~/.cache/effnet/compiled``) one
``<model>-<key>.pt2`` and a ``.json`` sidecar beside it. The key hashes everything the
compiled code depends on: the weights and buffers (so fine-tuning gives a new key), the
model's class and spec, the input shape (batch size and resolution are compiled in), the
dtype and device, channels-last, and the torch and effnet versions. Any change gives a new
file; stale files are never used and can be deleted at any time (``rm -r`` the directory).
`load_compiled` refuses a package made by another torch version or for another device.

The modules, one concern each: `folding` (BN folding, dropout removed, SE as matrix products),
`kernels` (the eager CPU kernels), `optimized` (`optimize`, `OptimizedModel`), `aot` (compiled
packages and their cache).
"""

from effnet.models.fast.aot import (
    CACHE_ENV,
    ArtifactInfo,
    CompiledModel,
    CompiledModelError,
    artifact_key,
    compile_cached,
    default_cache_dir,
    load_compiled,
    model_fingerprint,
    save_compiled,
)
from effnet.models.fast.folding import MatmulSqueezeExcite, fold_batchnorm, squeeze_excite_as_matmul, strip_regularisation
from effnet.models.fast.kernels import FusedConvAct, InferenceConvBnAct, InferenceMBConv, fuse_conv_activation, use_inference_kernels
from effnet.models.fast.optimized import CPU_MICRO_BATCH, OptimizedModel, optimize

__all__ = [
    "CACHE_ENV",
    "CPU_MICRO_BATCH",
    "ArtifactInfo",
    "CompiledModel",
    "CompiledModelError",
    "FusedConvAct",
    "InferenceConvBnAct",
    "InferenceMBConv",
    "MatmulSqueezeExcite",
    "OptimizedModel",
    "artifact_key",
    "compile_cached",
    "default_cache_dir",
    "fold_batchnorm",
    "fuse_conv_activation",
    "load_compiled",
    "model_fingerprint",
    "optimize",
    "save_compiled",
    "squeeze_excite_as_matmul",
    "strip_regularisation",
    "use_inference_kernels",
]
