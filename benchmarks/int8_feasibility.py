"""Issue 30 (a): PT2E (torchao, X86InductorQuantizer) vs ONNX Runtime static QDQ on Lite0, 2 threads.

Calibration and check images: variants (random resized crops, flips) of the bundled sample photos, the only
real photos on this machine; the check variants use other seeds than the calibration ones.
Usage: OMP_NUM_THREADS=2 python benchmarks/int8_feasibility.py [--model efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

import effnet
from effnet.models.export import export_onnx
from effnet.models.predict import read_image, sample_images


def photo_variants(count: int, seed: int, preprocessing) -> torch.Tensor:
    photos = [read_image(p) for p in sample_images()]
    aug = v2.Compose([v2.RandomResizedCrop(preprocessing.resolution * 2, scale=(0.3, 1.0)), v2.RandomHorizontalFlip()])
    to_input = preprocessing.eval_transform()
    torch.manual_seed(seed)
    return torch.stack([to_input(aug(photos[i % len(photos)])) for i in range(count)])


def timeit(fn, x, repeats):
    fn(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--calib", type=int, default=64)
    parser.add_argument("--check", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-pt2e", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = effnet.create_model(args.model, pretrained=True).eval()
    pre = model.preprocessing
    calib = photo_variants(args.calib, 0, pre)
    check = photo_variants(args.check, 1, pre)
    with torch.no_grad():
        ref = model(check)
    out: dict = {"model": args.model, "calibration_images": args.calib, "check_images": args.check}

    def agree(logits: torch.Tensor) -> dict:
        logits = torch.as_tensor(logits)
        top1 = (logits.argmax(1) == ref.argmax(1)).float().mean().item()
        corr = float(np.corrcoef(logits.flatten().numpy(), ref.flatten().numpy())[0, 1])
        return {"top1_agreement": round(top1, 4), "logit_corr": round(corr, 5)}

    x1, x32 = check[:1], torch.cat([check, check])[:32]
    with torch.no_grad():
        out["float_eager"] = {"b1_s": timeit(model, x1, args.repeats), "b32_s": timeit(model, x32, max(3, args.repeats // 3))}

    # ---------------------------------------------------------------- ORT static QDQ
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, data):
            self.it = iter([{"input": data[i : i + 8].numpy()} for i in range(0, len(data), 8)])

        def get_next(self):
            return next(self.it, None)

    tmp = Path(tempfile.mkdtemp())
    fp = export_onnx(model, tmp / "f.onnx")
    quant_pre_process(str(fp), str(tmp / "pre.onnx"))
    import onnx

    graph = onnx.load(str(tmp / "pre.onnx")).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    gemms = [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    for label, exclude in {"all": [], "first_last_float": [convs[0], *gemms]}.items():
        t = time.perf_counter()
        quantize_static(
            str(tmp / "pre.onnx"),
            str(tmp / f"q_{label}.onnx"),
            Reader(calib),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
        )
        cal_s = time.perf_counter() - t
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(tmp / f"q_{label}.onnx"), so, providers=["CPUExecutionProvider"])
        run = lambda x, sess=sess: sess.run(None, {"input": x.numpy()})[0]  # noqa: E731
        out[f"ort_qdq_{label}"] = {
            "calibrate_s": round(cal_s, 1),
            **agree(torch.from_numpy(run(check))),
            "b1_s": timeit(run, x1, args.repeats),
            "b32_s": timeit(run, x32, max(3, args.repeats // 3)),
            "mib": round((tmp / f"q_{label}.onnx").stat().st_size / 2**20, 2),
        }
        print(label, out[f"ort_qdq_{label}"], flush=True)
    fsess = ort.InferenceSession(str(fp), so, providers=["CPUExecutionProvider"])
    frun = lambda x: fsess.run(None, {"input": x.numpy()})[0]  # noqa: E731
    out["ort_float"] = {
        "b1_s": timeit(frun, x1, args.repeats),
        "b32_s": timeit(frun, x32, max(3, args.repeats // 3)),
        "mib": round(fp.stat().st_size / 2**20, 2),
    }

    # ---------------------------------------------------------------- PT2E (torchao)
    if not args.skip_pt2e:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        t = time.perf_counter()
        batch = torch.export.Dim("batch", min=1)
        exported = torch.export.export(model, (calib[:8],), dynamic_shapes=({0: batch},)).module()
        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for i in range(0, len(calib), 8):
                prepared(calib[i : i + 8])
        converted = convert_pt2e(prepared)
        cal_s = time.perf_counter() - t
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        compiled = torch.compile(converted)
        results = {}
        with torch.no_grad():
            t = time.perf_counter()
            logits = compiled(check[:1])
            results["compile_b1_s"] = round(time.perf_counter() - t, 1)
            logits = torch.cat([compiled(check[i : i + 1]) for i in range(len(check))])
            results.update(agree(logits))
            results["b1_s"] = timeit(compiled, x1, args.repeats)
            t = time.perf_counter()
            compiled(x32)
            results["compile_b32_s"] = round(time.perf_counter() - t, 1)
            results["b32_s"] = timeit(compiled, x32, max(3, args.repeats // 3))
        out["pt2e_x86_inductor"] = {"calibrate_s": round(cal_s, 1), **results}
        print(out["pt2e_x86_inductor"], flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
