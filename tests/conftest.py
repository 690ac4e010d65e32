"""Shared test helpers: deterministic seeds, randomised BatchNorm statistics, the logit-parity comparison, a tiny
real-photo task cut from the bundled CC0 photos, and the tiny network and quick recipe of the training tests."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# A small network (3 stages, 16-40 channels) keeps every training test's run to seconds on 2 cores.
TINY_SPEC = "ds_r1_k3_s1_e1_c16_se0.25-ir_r2_k3_s2_e3_c24_se0.25-ir_r2_k5_s2_e3_c40_se0.25"


def save_tiny_spec(folder: Path, resolution: int) -> str:
    """TINY_SPEC as `folder/tiny.json` at `resolution` px; returns the path."""
    from effnet.core.spec import NetSpec

    path = folder / "tiny.json"
    NetSpec.from_string(TINY_SPEC, stem_channels=16, head_channels=128, resolution=resolution, dropout=0.1, name="tiny").save(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory) -> str:
    """The tiny network at 64 px, as a spec file."""
    return save_tiny_spec(tmp_path_factory.mktemp("spec"), resolution=64)


def quick(tiny_spec: str, out_dir: Path, **changes):
    """The 'proxy' preset on the tiny net at 64 px, small data, no loader workers: seconds per run."""
    from effnet.train import preset

    values = {
        "spec": tiny_spec,
        "resolution": 64,
        "num_classes": 4,
        "train_samples": 192,
        "val_samples": 64,
        "epochs": 2,
        "batch_size": 16,
        "workers": 0,
        "progress": False,
        "deterministic": True,
        "out_dir": str(out_dir),
    }
    values.update(changes)
    return preset("proxy", **values)


@pytest.fixture(autouse=True)
def _seed() -> Iterator[None]:
    """Seed every test; restore torch's thread count after it (bitwise-resume tests compare runs with equal threads)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BN non-trivial running stats and affine params, so parity checks exercise them, and every
    Linear layer random weights: a fresh classifier is zero, which would make outputs and backbone gradients zero."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            bound = 1.0 / module.in_features**0.5
            module.weight.data.copy_((torch.rand(module.weight.shape, generator=gen) * 2 - 1) * bound)
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


def max_logit_difference(reference: torch.nn.Module, ours: torch.nn.Module, size: int = 64) -> float:
    """Largest |logit| difference after loading the randomised `reference`'s weights into `ours` (layout detected from the keys)."""
    import effnet

    randomize_bn(reference)
    effnet.load_state_dict(ours, reference.state_dict())
    ours.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert expected.shape == actual.shape == (2, 1000)
    assert expected.std() > 1e-3  # a real signal, not all-zero logits
    return (expected - actual).abs().max().item()


def _tiny_photo_task(root: Path, train: int = 16, val: int = 8) -> Path:
    """A 3-class task of crops, flips and colour changes of the bundled CC0 photos (cat, coffee, rocket)."""
    from PIL import Image, ImageEnhance, ImageOps

    from effnet.models.predict import sample_images

    rng = random.Random(0)
    for path in sample_images():
        photo = Image.open(path).convert("RGB")
        width, height = photo.size
        for split, count in (("train", train), ("val", val)):
            folder = root / split / path.stem
            folder.mkdir(parents=True)
            for i in range(count):
                side = int(min(width, height) * rng.uniform(0.45, 0.9))
                left, top = rng.randint(0, width - side), rng.randint(0, height - side)
                image = photo.crop((left, top, left + side, top + side)).resize((160, 160))
                image = ImageEnhance.Color(image).enhance(rng.uniform(0.4, 1.4))
                image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
                if rng.random() < 0.5:
                    image = ImageOps.mirror(image)
                image.save(folder / f"{i}.jpg", quality=85)
    return root


@pytest.fixture(scope="session")
def tiny_photos(tmp_path_factory) -> Path:
    return _tiny_photo_task(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def tuned_run(tiny_photos: Path, tmp_path_factory) -> tuple[Path, str]:
    """`effnet finetune` with its defaults (smaller resolution and 2 epochs for time), and FixRes at a larger one;
    the run directory and what the command printed. Shared: tests may add files (exports) but change none."""
    import contextlib
    import io

    from effnet.cli import main

    run = tmp_path_factory.mktemp("runs") / "tuned"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(
            ["finetune", "--dataset", "folder", "--data-dir", str(tiny_photos), "--epochs", "2", "--resolution", "128"]
            + ["--fixres", "160", "--workers", "0", "--no-progress", "--out-dir", str(run)]
        )
    assert status == 0, out.getvalue()
    return run, out.getvalue()


def two_colour_folder(root: Path, per_class: int = 6) -> Path:
    """A flat CLASS/*.jpg folder of two solid-colour classes (red, blue), `per_class` 36 px images each."""
    from PIL import Image

    for label, color in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (36, 36), color).save(root / label / f"{i}.jpg")
    return root
