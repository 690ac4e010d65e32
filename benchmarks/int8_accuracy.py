"""INT8 vs float top-1 with `effnet quantize`'s own pipeline, on the real photos this machine has.

Without an ImageNet validation sample here, the check set is crops and flips of the three bundled
photos (labels: tiger cat 282, espresso 967, missile 657), and the calibration set other crops of
them (other seeds: no image in both). Small and correlated: a smoke test of accuracy, not the
issue's 500-image acceptance. Usage: OMP_NUM_THREADS=2 python benchmarks/int8_accuracy.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageOps

import effnet
from effnet.int8 import compare, labelled_folder, load_int8, quantize
from effnet.models.predict import sample_images

LABELS = {"cat": 282, "coffee": 967, "rocket": 657}


def crops(folder: Path, per_photo: int, seed: int, by_class: bool) -> None:
    rng = random.Random(seed)
    for path in sample_images():
        photo = Image.open(path).convert("RGB")
        width, height = photo.size
        target = folder / str(LABELS[path.stem]) if by_class else folder
        target.mkdir(parents=True, exist_ok=True)
        for i in range(per_photo):
            side = int(min(width, height) * rng.uniform(0.5, 1.0))
            left, top = rng.randint(0, width - side), rng.randint(0, height - side)
            image = photo.crop((left, top, left + side, top + side))
            image = ImageOps.mirror(image) if rng.random() < 0.5 else image
            image.save(target / f"{path.stem}_{i}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--calibration", type=int, default=50, help="crops per photo for calibration")
    parser.add_argument("--check", type=int, default=100, help="crops per photo for the check")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = effnet.create_model(args.model, pretrained=True).eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        crops(tmp / "calibration", args.calibration, 0, by_class=False)
        crops(tmp / "check", args.check, 1, by_class=True)
        samples = labelled_folder(tmp / "check", model.preprocessing, None, 1000)
        for keep in (("stem", "classifier", "squeeze_excite", "swish"), ()):
            start = time.perf_counter()
            result = quantize(model, tmp / "calibration", tmp / "int8.onnx", keep_float=keep, count=10_000)
            seconds = time.perf_counter() - start
            comparison = compare(model, load_int8(result.path, threads=2), samples, model.preprocessing)
            rows.append(
                {"model": args.model, "keep_float": list(keep), "float_layers": result.float_layers.summary(), "quantize_s": round(seconds, 1)}
                | comparison.to_dict()
                | {"calibration_images": result.calibration_images, "int8_mib": round(result.size_bytes / 2**20, 2)}
            )
            print(json.dumps(rows[-1]), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"accuracy_{args.model}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
