"""The fast inference path and the memory-lean training ops give the plain model's numbers (no timing is asserted).

Tolerances: BN folding and `optimize` in float32, max |diff| < 1e-4 on B0 logits (issue 6's
bound; measured ~1e-6); lean-op gradients in float64 within 1e-10 of the largest gradient
(they are the same math, reordered); in float32 within 1e-4 of it.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from conftest import randomize_bn
from safetensors.torch import load_file
from torch import nn

import effnet
from effnet.models.fast import (
    CompiledModelError,
    FusedConvAct,
    InferenceConvBnAct,
    InferenceMBConv,
    OptimizedModel,
    artifact_key,
    compile_cached,
    fold_batchnorm,
    fuse_conv_activation,
    load_compiled,
    optimize,
    squeeze_excite_as_matmul,
    strip_regularisation,
    use_inference_kernels,
)
from effnet.models.nn.layers import ConvBnAct, SqueezeExcite
from effnet.models.nn.lean import BnActFunction, GateFunction, LeanConvBnAct, LeanSqueezeExcite, revert_memory_efficient_ops, use_memory_efficient_ops

TINY = "ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e6_c24_se0.25-ir_r1_k5_s2_e6_c40_se0.25"


def _b0() -> nn.Module:
    return randomize_bn(effnet.create_model("efficientnet_b0"))


# ------------------------------------------------------------------ BN folding and optimize
def test_fold_batchnorm_is_exact_on_random_statistics():
    block = randomize_bn(nn.Sequential(ConvBnAct(8, 16, 3, 2), ConvBnAct(16, 16, 3, groups=16, activation=None)))
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        expected = block(x)
        assert fold_batchnorm(block) == 2
        got = block(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    assert block[0].conv.bias is not None and block[1].conv.bias is not None
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_fold_batchnorm_works_on_other_libraries_conv_bn_sequentials():
    torchvision_ops = pytest.importorskip("torchvision.ops")
    block = randomize_bn(torchvision_ops.Conv2dNormActivation(4, 8, 3))
    x = torch.randn(1, 4, 9, 9)
    with torch.no_grad():
        expected = block(x)
        assert fold_batchnorm(block) == 1
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_optimize_b0_gives_the_plain_logits():
    model = _b0()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    fast = optimize(model)
    assert isinstance(fast, OptimizedModel)
    got = fast(x)
    assert expected.abs().max() > 0.1  # real logits, not the ~1e-13 of a randomly initialised B0 with default BN stats
    assert (got - expected).abs().max() < 1e-4
    # the folded copy has no BN, dropout or drop path left, and is channels-last
    assert not any(isinstance(m, nn.BatchNorm2d | nn.Dropout) or type(m).__name__ == "StochasticDepth" for m in fast.module.modules())
    assert fast.module.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    # the model passed in is untouched (inplace=False): still trainable, still has its BNs
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 49
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs PyTorch's oneDNN backend")
def test_matmul_squeeze_excite_gives_the_conv_numbers():
    model = _b0().eval()
    fast = copy.deepcopy(model)
    assert squeeze_excite_as_matmul(fast) == 16  # every MBConv of B0 has SE
    assert list(fast.state_dict()) == list(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-5, rtol=1e-5)


def test_fused_conv_activation_gives_the_same_outputs():
    model = randomize_bn(effnet.build(TINY, num_classes=5, activation="relu6"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    fast = optimize(model, fuse_cpu=False)
    assert fuse_conv_activation(fast.module) == sum(isinstance(m, nn.Conv2d) for m in model.modules()) - 8  # all but the 2 SE convs of each of the 4 blocks
    assert sum(isinstance(m, FusedConvAct) for m in fast.modules()) == sum(isinstance(m, nn.Conv2d) for m in model.modules()) - 8
    torch.testing.assert_close(fast(x), expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="fuse_cpu"):
        optimize(model, fuse_cpu=True, compile=True)


def _max_rel_diff(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs PyTorch's oneDNN backend")
def test_inference_kernels_give_the_plain_logits_at_every_batch_size():
    model = _b0()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    fast = optimize(model)  # CPU float32 eager: the inference kernels are on by default
    assert sum(isinstance(m, InferenceMBConv) for m in fast.modules()) == 16
    assert sum(isinstance(m, InferenceConvBnAct) for m in fast.modules()) == 2  # stem and head
    assert list(fast.module.state_dict()) == list(optimize(model, fuse_cpu=False).module.state_dict())  # only classes changed
    assert expected.abs().max() > 0.1
    assert _max_rel_diff(fast(x), expected) < 1e-5  # batched: the SE gate folded per image through baddbmm
    assert _max_rel_diff(fast(x[:1]), expected[:1]) < 1e-5  # batch 1: addmm
    assert _max_rel_diff(fast(x.contiguous()), expected) < 1e-5  # a contiguous input is made channels-last


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs PyTorch's oneDNN backend")
@pytest.mark.parametrize(
    ("spec", "overrides", "swapped"),
    [
        (TINY, {"activation": "relu6"}, 6),  # no expansion in the first block, ReLU6
        ("ds_r1_k3_s1_e1_c16-ir_r2_k5_s2_e6_c24", {}, 5),  # no SE
        (TINY, {"padding": "tf_same"}, 7),  # TF 'same' padding: the stem and the 2 stride-2 blocks keep their forward (their 1x1 convs do not)
    ],
)
def test_inference_kernels_cover_block_variants(spec, overrides, swapped):
    model = randomize_bn(effnet.build(spec, num_classes=5, head_init="tf", **overrides))
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        expected = model(x)
    fast = optimize(model, fuse_cpu=False)
    assert use_inference_kernels(fast.module) == swapped
    assert _max_rel_diff(fast(x), expected) < 1e-5
    assert _max_rel_diff(fast(x[:1]), expected[:1]) < 1e-5


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs PyTorch's oneDNN backend")
def test_inference_kernels_survive_copies_pickles_and_new_weights(tmp_path):
    model = randomize_bn(effnet.build(TINY, num_classes=5, head_init="tf"))
    x = torch.randn(2, 3, 32, 32)
    fast = optimize(model)
    got = fast(x)  # packs the weights
    torch.testing.assert_close(copy.deepcopy(fast)(x), got, atol=0, rtol=0)
    torch.save(fast, tmp_path / "fast.pt")
    torch.testing.assert_close(torch.load(tmp_path / "fast.pt", weights_only=False)(x), got, atol=0, rtol=0)
    # new weights (load_state_dict copies in place): the packed ones are re-made
    other = randomize_bn(effnet.build(TINY, num_classes=5, head_init="tf"))
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
        expected = other(x)
    fast.module.load_state_dict(optimize(other, fuse_cpu=False).module.state_dict())
    assert _max_rel_diff(fast(x), expected) < 1e-5


def test_inference_kernels_stay_off_where_they_do_not_apply():
    model = effnet.build(TINY, num_classes=3)
    assert not any(isinstance(m, InferenceMBConv) for m in optimize(model, fuse_cpu=False).modules())
    compiled = optimize(model, compile=True)  # torch.compile fuses by itself: the plain folded modules are traced
    assert not any(isinstance(m, InferenceMBConv | InferenceConvBnAct) for m in compiled.modules())


def test_compiled_model_runs_large_batches_in_micro_batches():
    model = randomize_bn(effnet.build(TINY, num_classes=5, head_init="tf"))
    x = torch.randn(19, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    fast = optimize(model, compile=True)
    assert fast.micro_batch == effnet.models.fast.CPU_MICRO_BATCH == 8  # automatic on the CPU
    seen = []

    def compiled(part: torch.Tensor) -> torch.Tensor:  # stands in for the torch.compile'd runner (no compiling in a unit test)
        seen.append(part.shape[0])
        return fast.run(part)

    fast._modules.pop("compiled", None)
    object.__setattr__(fast, "compiled", compiled)
    assert _max_rel_diff(fast(x), expected) < 1e-5
    assert seen == [8, 8, 3]
    seen.clear()
    fast(x[:8])
    assert seen == [8]
    assert optimize(model, compile=True, micro_batch=None).micro_batch is None
    assert optimize(model, compile=True, micro_batch=4).micro_batch == 4
    with pytest.raises(ValueError, match="micro_batch"):
        optimize(model, compile=True, micro_batch=-1)


def test_strip_regularisation_counts_dropout_and_drop_path():
    model = effnet.create_model("efficientnet_b0", drop_path_rate=0.2)
    dropped = sum(type(m).__name__ == "StochasticDepth" for m in model.modules())
    assert strip_regularisation(model) == dropped + 1  # + the classifier's dropout
    assert strip_regularisation(model) == 0


def test_optimize_rejects_bad_input():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        optimize("efficientnet_b0")  # type: ignore[arg-type]
    fast = optimize(effnet.build(TINY, num_classes=3))
    with pytest.raises(ValueError, match="already optimized"):
        optimize(fast)
    with pytest.raises(ValueError, match="unknown dtype"):
        optimize(effnet.build(TINY, num_classes=3), dtype="int8")


def test_artifact_key_changes_with_weights_shape_and_dtype():
    model = effnet.build(TINY, num_classes=3).eval()
    key = artifact_key(model, (1, 3, 32, 32), None, "cpu", True)
    assert key == artifact_key(copy.deepcopy(model), (1, 3, 32, 32), None, "cpu", True)
    assert key != artifact_key(model, (2, 3, 32, 32), None, "cpu", True)
    assert key != artifact_key(model, (1, 3, 32, 32), torch.bfloat16, "cuda", True)
    tuned = copy.deepcopy(model)
    with torch.no_grad():
        tuned.classifier.bias.add_(1e-3)
    assert key != artifact_key(tuned, (1, 3, 32, 32), None, "cpu", True)


# ------------------------------------------------------------------ memory-lean training ops
def _train_pair(dtype: torch.dtype, name: str = "efficientnet_b0") -> tuple[nn.Module, nn.Module, dict[str, int]]:
    model = (
        effnet.create_model(name, num_classes=10, drop_path_rate=0.0, dropout=0.0)
        if name != TINY
        else effnet.build(TINY, num_classes=10, drop_path_rate=0.0, dropout=0.0)
    ).to(dtype)
    randomize_bn(model).train()
    lean = copy.deepcopy(model)
    counts = use_memory_efficient_ops(lean)
    return model, lean, counts


# float64 on small nets (float64 convs are slow on CPU): exact up to rounding; float32 on B0 itself.
# MobileNetV2 (ReLU6, no SE) and ResNet-50 (ReLU bottlenecks) cover the other activations and block kinds.
@pytest.mark.parametrize(
    ("dtype", "name", "tolerance", "resolution"),
    [
        (torch.float64, TINY, 1e-10, 64),
        (torch.float64, "mobilenet_v2", 1e-10, 32),
        (torch.float64, "resnet50", 1e-10, 32),
        (torch.float32, "efficientnet_b0", 1e-4, 64),
    ],
)
def test_lean_ops_give_the_plain_gradients_and_bn_statistics(dtype, name, tolerance, resolution):
    model, lean, counts = _train_pair(dtype, name)
    if name == "efficientnet_b0":  # every conv-BN(-act) of B0, every SE, every SiLU (33 in ConvBnAct, 16 in SE)
        assert counts == {"conv_bn_act": 49, "squeeze_excite": 16, "swish": 49}
    x = torch.randn(3, 3, resolution, resolution, dtype=dtype)
    y = torch.tensor([1, 4, 7])
    losses = [nn.functional.cross_entropy(m(x), y) for m in (model, lean)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[1], losses[0], atol=tolerance, rtol=0)
    scale = max(p.grad.abs().max() for p in model.parameters())
    worst = max((a.grad - b.grad).abs().max() for a, b in zip(model.parameters(), lean.parameters(), strict=True))
    assert worst <= tolerance * scale
    for (name, a), b in zip(model.named_buffers(), lean.buffers(), strict=True):  # running stats and counters updated alike
        torch.testing.assert_close(b, a, atol=tolerance, rtol=0, msg=name)


def test_lean_ops_keep_less_for_backward():
    """Bytes autograd keeps for backward, counted through saved-tensor hooks: 3 of 7 expanded-width tensors per block go."""

    def saved_mb(model: nn.Module, x: torch.Tensor) -> float:
        storages: dict[int, int] = {}
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}  # saved weights are no activation memory

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.untyped_storage().data_ptr() not in weights:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        return sum(storages.values()) / 2**20

    model, lean, _ = _train_pair(torch.float32)
    x = torch.randn(2, 3, 96, 96)
    plain, lean_mb = saved_mb(model, x), saved_mb(lean, x)
    # measured 0.33 here (B0, 224 px, batch 4: 337 -> 109 MB); 0.64 without the recipes, so this fails if they stop working
    assert lean_mb < 0.4 * plain


def test_recipes_replace_the_kept_activations_and_give_plain_gradients_with_checkpointing():
    """Every depthwise and project conv of B0 keeps a recipe; with per-stage checkpointing the gradients stay plain."""
    model, lean, _ = _train_pair(torch.float64, TINY)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    names: list[str] = []

    def walk(fn: object) -> None:
        seen, stack = set(), [fn]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            names.append(type(node).__name__)
            stack.extend(next_fn for next_fn, _ in node.next_functions)

    walk(lean(x).sum().grad_fn)
    # TINY: every dw and project conv (2 in the ds block, 2 in each of 3 ir blocks), plus every conv fed by a block
    # without a residual add (its output is a BN output): the expand convs of blocks 2 and 3 and the head conv
    assert names.count("RecomputedInputConvFunctionBackward") == 2 + 2 * 3 + 3
    for m in (model, lean):
        m.grad_checkpointing = True
        nn.functional.cross_entropy(m(x), torch.tensor([0, 3])).backward()
    scale = max(p.grad.abs().max() for p in model.parameters())
    assert max((a.grad - b.grad).abs().max() for a, b in zip(model.parameters(), lean.parameters(), strict=True)) <= 1e-10 * scale


def test_recipe_is_not_used_for_a_tensor_changed_in_place():
    """A consumer must keep the tensor itself when it was changed after the lean op made it."""
    torch.manual_seed(0)
    plain = nn.Sequential(ConvBnAct(3, 6, 3), ConvBnAct(6, 6, 3, groups=6)).double().train()
    lean = copy.deepcopy(plain)
    use_memory_efficient_ops(lean)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    grads = []
    for m in (plain, lean):
        hidden = m[0](x)
        hidden.mul_(3.0)  # in place: the recipe no longer describes `hidden`
        m[1](hidden).square().sum().backward()
        grads.append([p.grad for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=0)


def test_lean_ops_under_cpu_autocast_give_the_plain_gradients():
    """Under AMP autocast the recipes step aside and the lean ops still train like the plain ones (bfloat16 tolerance)."""
    model, lean, _ = _train_pair(torch.float32, TINY)
    x = torch.randn(2, 3, 32, 32)
    for m in (model, lean):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(m(x), torch.tensor([1, 2]))
        loss.backward()
    scale = max(p.grad.abs().max() for p in model.parameters())
    assert max((a.grad - b.grad).abs().max() for a, b in zip(model.parameters(), lean.parameters(), strict=True)) <= 0.05 * scale


def test_gate_gradient_needs_no_input():
    x = torch.randn(2, 5, 4, 4, dtype=torch.float64, requires_grad=True)
    z = torch.randn(2, 5, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(GateFunction.apply, (x, z))
    bn = nn.BatchNorm2d(5).double()
    w, b = bn.weight, bn.bias
    assert torch.autograd.gradcheck(lambda t, w, b: BnActFunction.apply(t, w, b, None, None, 0.1, 1e-5, "swish"), (x, w, b))


def test_lean_ops_keep_state_dict_and_eval_outputs_and_revert():
    model = _b0()
    lean = copy.deepcopy(model)
    use_memory_efficient_ops(lean)
    assert list(lean.state_dict()) == list(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(lean.eval()(x), model.eval()(x), atol=0, rtol=0)  # eval runs the plain ops
    assert revert_memory_efficient_ops(lean) == 49 + 16 + 49
    assert not any(isinstance(m, LeanConvBnAct | LeanSqueezeExcite) for m in lean.modules())
    assert sum(type(m) is ConvBnAct for m in lean.modules()) == 49 and sum(type(m) is SqueezeExcite for m in lean.modules()) == 16


def test_lean_model_scripts_and_exports_to_onnx(tmp_path):
    from effnet.models.export import export_onnx, export_torchscript

    model = randomize_bn(effnet.build(TINY, num_classes=5))
    use_memory_efficient_ops(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.eval()(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.jit.script(effnet.build(TINY, num_classes=5))
        except Exception as error:  # the plain model must script first; then the lean one must too
            pytest.skip(f"the plain model does not script on this tree ({type(error).__name__}: {str(error)[:80]})")
        scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), expected, atol=1e-5, rtol=1e-5)
    pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export_onnx(model, tmp_path / "lean.onnx", resolution=32, verify=True)  # verify: onnxruntime reproduces PyTorch
        export_torchscript(model, tmp_path / "lean.pt", resolution=32, verify=True)
    assert path.stat().st_size > 0


def test_lean_conv_bn_act_scripts():
    """The swapped-in classes script on their own (independent of the rest of the model)."""
    block = nn.Sequential(ConvBnAct(3, 8, 3), SqueezeExcite(8, 2), ConvBnAct(8, 4, 1, activation=None))
    use_memory_efficient_ops(block)
    x = torch.randn(1, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(block.eval())
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), block(x))


# ------------------------------------------------------------------ compile once, start fast
def _compiler_available() -> bool:
    return shutil.which("g++") is not None or shutil.which("c++") is not None


@pytest.mark.slow
# Compiles a tiny model ahead of time (~15-30 s on 2 busy cores): the slowest test of this file.
@pytest.mark.skipif(not _compiler_available(), reason="AOTInductor needs a C++ compiler")
def test_saved_compiled_model_reloads_in_a_new_process(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(effnet.build(TINY, num_classes=5))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    compiled = compile_cached(model, x, cache_dir=tmp_path)
    torch.testing.assert_close(compiled(x), expected, atol=1e-4, rtol=1e-4)
    info = json.loads(compiled.path.with_suffix(".json").read_text())
    assert info["input_shape"] == [2, 3, 32, 32] and info["torch_version"] == torch.__version__
    mtime = compiled.path.stat().st_mtime_ns
    assert compile_cached(model, x, cache_dir=tmp_path).path.stat().st_mtime_ns == mtime  # a cache hit, not a recompile
    with pytest.raises(CompiledModelError, match="compiled for inputs shaped"):
        compiled(torch.randn(1, 3, 32, 32))

    torch.save(x, tmp_path / "x.pt")
    child = textwrap.dedent(
        f"""
        import torch
        from effnet.models.fast import load_compiled
        model = load_compiled({str(compiled.path)!r})
        torch.save(model(torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)), {str(tmp_path / "y.pt")!r})
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=120)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt", weights_only=True), expected, atol=1e-4, rtol=1e-4)
    # the benchmark's child process loads the same package and times itself
    from effnet.experiments.bench.child import run_child

    timed = run_child("effnet.experiments.bench.aot_child", {"package": compiled.path, "shape": [2, 3, 32, 32], "threads": 1}, 1, "AOT load", 120)
    assert timed["import_s"] > 0 and timed["load_to_first_batch_s"] > 0 and len(timed["later_batches_s"]) == 3 and timed["first_batch_at"] > 0

    # a package made by another torch version is refused with a clear message
    sidecar = compiled.path.with_suffix(".json")
    sidecar.write_text(json.dumps({**info, "torch_version": "0.0.1"}))
    with pytest.raises(CompiledModelError, match="torch 0.0.1"):
        load_compiled(compiled.path)
    with pytest.raises(CompiledModelError, match="no compiled package"):
        load_compiled(tmp_path / "missing.pt2")


# Two tiny end-to-end training runs (~10-20 s): the second slowest test of this file.
def test_effnet_train_with_memory_efficient_ops_matches_plain_training(tmp_path):
    """`effnet train --memory-efficient-ops` trains the same weights as without (6 SGD steps of the tiny proxy run).

    SGD, not the proxy preset's AdamW: Adam divides by the gradient's running RMS, which turns float32 rounding in
    near-zero gradients (e.g. the bias of a BN followed by another BN-normalised path) into full-size steps.
    """
    from effnet.core.spec import NetSpec
    from effnet.train import config as train_config
    from effnet.train.trainer import train

    spec = tmp_path / "tiny.json"
    NetSpec.from_string(TINY, stem_channels=16, head_channels=64, resolution=32, dropout=0.0, name="tiny").save(spec)
    values = {"spec": str(spec), "resolution": 32, "num_classes": 4, "train_samples": 96, "val_samples": 16, "epochs": 1, "batch_size": 16}
    values |= {"workers": 0, "progress": False, "deterministic": True, "drop_path_rate": 0.0, "ema_decay": 0.0, "optimizer": "sgd", "lr": 0.05}
    runs = {}
    for lean in (False, True):
        config = train_config.preset("proxy", **values, memory_efficient_ops=lean, out_dir=str(tmp_path / f"lean{lean}"))
        train(config)
        runs[lean] = load_file(str(tmp_path / f"lean{lean}" / "model.safetensors"))
    assert runs[True].keys() == runs[False].keys()
    for name, value in runs[False].items():
        torch.testing.assert_close(runs[True][name], value, atol=1e-4, rtol=1e-3, msg=name)


def test_memory_efficient_ops_with_compile_use_the_compilers_budget_and_give_the_plain_gradients(tmp_path):
    """Under --compile the lean ops would hide their saving from the compiler (and kept more memory than plain compile):
    `--memory-efficient-ops --compile` swaps nothing in and compiles with the partitioner's activation memory budget."""
    import torch._functorch.config as functorch_config

    from effnet.core.spec import NetSpec
    from effnet.models.nn.lean import COMPILED_ACTIVATION_MEMORY_BUDGET, compiled_memory_budget
    from effnet.train import config as train_config
    from effnet.train.trainer import Trainer

    outside = functorch_config.activation_memory_budget
    with compiled_memory_budget():
        assert functorch_config.activation_memory_budget == COMPILED_ACTIVATION_MEMORY_BUDGET < 1.0
    assert functorch_config.activation_memory_budget == outside

    spec = tmp_path / "tiny.json"
    NetSpec.from_string(TINY, stem_channels=16, head_channels=64, resolution=32, dropout=0.0, name="tiny").save(spec)
    values = {"spec": str(spec), "resolution": 32, "num_classes": 4, "train_samples": 32, "val_samples": 16, "epochs": 1, "batch_size": 16}
    config = train_config.preset("proxy", **values, workers=0, progress=False, compile=True, memory_efficient_ops=True, out_dir=str(tmp_path / "run"))
    trainer = Trainer(config)
    assert not any(isinstance(m, (LeanConvBnAct, LeanSqueezeExcite)) for m in trainer.model.modules())
    with trainer._memory_budget():
        assert functorch_config.activation_memory_budget == COMPILED_ACTIVATION_MEMORY_BUDGET


@pytest.mark.slow
def test_compiling_under_the_memory_budget_gives_the_plain_gradients():
    from effnet.models.nn.lean import compiled_memory_budget

    model = randomize_bn(effnet.build(TINY, num_classes=10, drop_path_rate=0.0, dropout=0.0)).train()
    compiled_copy = copy.deepcopy(model)
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([1, 4, 7])
    nn.functional.cross_entropy(model(x), y).backward()
    with compiled_memory_budget():
        nn.functional.cross_entropy(torch.compile(compiled_copy)(x), y).backward()
    scale = max(p.grad.abs().max() for p in model.parameters())
    worst = max((a.grad - b.grad).abs().max() for a, b in zip(model.parameters(), compiled_copy.parameters(), strict=True))
    assert worst <= 1e-4 * scale
