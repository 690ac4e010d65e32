"""The data layer: synthetic proxy task, seeded augmentation, image folders with bad files, build_datasets."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from effnet.core.preprocessing import Preprocessing
from effnet.data import DataError, SeededTransform, build_datasets, collate_skip_bad, eval_transform, image_folder_splits, load_image, train_transform
from effnet.data.synthetic import BAND_PERIODS, SyntheticProxy

# ---------------------------------------------------------------- synthetic task


def test_synthetic_is_deterministic_per_seed_split_and_index() -> None:
    a, b = SyntheticProxy("train", 50, seed=3), SyntheticProxy("train", 50, seed=3)
    for index in (0, 7, 49):
        image, label = a[index]
        assert image.dtype == torch.uint8 and image.shape == (3, 128, 128)
        assert torch.equal(image, b[index][0]) and label == b[index][1]
    # order of access does not matter: the sample is a function of its index
    assert torch.equal(a[7][0], SyntheticProxy("train", 50, seed=3)[7][0])
    assert not torch.equal(a[7][0], SyntheticProxy("train", 50, seed=4)[7][0])
    assert not torch.equal(a[7][0], SyntheticProxy("val", 50, seed=3)[7][0])
    assert not torch.equal(a[7][0], a[17][0])  # same class, another sample
    with pytest.raises(IndexError):
        a[50]


def test_synthetic_labels_are_balanced_and_described() -> None:
    data = SyntheticProxy("val", 120, num_classes=12)
    counts = Counter(data[i][1] for i in range(len(data)))
    assert sorted(counts) == list(range(12)) and set(counts.values()) == {10}
    lines = data.class_descriptions()
    assert len(lines) == 12 and len(set(lines)) == 12 and "period" in lines[0]
    assert "not a substitute" in data.describe()
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticProxy(num_classes=61)
    with pytest.raises(ValueError, match="split"):
        SyntheticProxy("test")


def test_synthetic_classes_differ_in_frequency_content() -> None:
    """The spectrum of each class peaks in its own texture band (averaged over a few samples)."""
    data = SyntheticProxy("train", 200)
    freq = np.fft.fftfreq(128)
    radius = np.hypot(freq[:, None], freq[None, :])
    rings = [(radius > 0.9 / p) & (radius < 1.1 / p) for p in BAND_PERIODS]
    energy = np.zeros((len(BAND_PERIODS), len(BAND_PERIODS)))  # [class band, measured band]
    for index in range(60):
        image, label = data[index]
        gray = image.float().mean(0).numpy()
        power = np.abs(np.fft.fft2(gray - gray.mean())) ** 2
        energy[label % len(BAND_PERIODS)] += [power[ring].mean() for ring in rings]
    assert list(energy.argmax(axis=1)) == list(range(len(BAND_PERIODS)))
    # the finest band is nearly absent from classes that do not own it
    assert energy[0, 0] > 3 * energy[1:, 0].max()


def test_synthetic_transform_is_applied() -> None:
    data = SyntheticProxy("train", 10, transform=eval_transform(Preprocessing.for_resolution(64)))
    image, _ = data[3]
    assert image.dtype == torch.float32 and image.shape == (3, 64, 64)


# ---------------------------------------------------------------- transforms


def test_seeded_transform_repeats_per_seed_epoch_and_index() -> None:
    image = SyntheticProxy("train", 5)[2][0]
    seeded = SeededTransform(train_transform(64, auto_augment="randaugment"), seed=1)
    first = seeded(image, 2)
    torch.rand(100), random.random(), np.random.rand()  # unrelated draws do not matter
    assert torch.equal(seeded(image, 2), first)
    assert torch.equal(SeededTransform(train_transform(64, auto_augment="randaugment"), seed=1)(image, 2), first)
    assert not torch.equal(seeded(image, 3), first)
    seeded.set_epoch(1)
    assert seeded.epoch == 1 and not torch.equal(seeded(image, 2), first)
    seeded.set_epoch(0)
    assert torch.equal(seeded(image, 2), first)
    # the caller's RNG streams are left where they were
    torch.manual_seed(5)
    random.seed(5)
    seeded(image, 0)
    after = (torch.rand(3), random.random())
    torch.manual_seed(5)
    random.seed(5)
    assert torch.equal(after[0], torch.rand(3)) and after[1] == random.random()


def test_transforms_accept_pil_of_any_mode_and_uint8_tensors() -> None:
    train = train_transform(48, auto_augment="autoaugment")
    evaluate = eval_transform(Preprocessing.for_resolution(48))
    inputs = [Image.new(mode, (40, 30)) for mode in ("RGB", "L", "RGBA", "P", "CMYK")]
    inputs += [torch.randint(0, 256, (c, 30, 40), dtype=torch.uint8) for c in (1, 3, 4)]
    for image in inputs:
        for transform in (train, evaluate):
            out = transform(image)
            assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, 48, 48)
    rgb = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8)
    assert torch.equal(evaluate(rgb), Preprocessing.for_resolution(48).eval_transform()(rgb))
    with pytest.raises(ValueError, match="randaugment.*autoaugment.*none"):
        train_transform(48, auto_augment="trivialaugment")


# ---------------------------------------------------------------- image folders


def _jpeg(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (40, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=90)


def _tree_with_bad_files(root: Path) -> None:
    for split in ("train", "val"):
        for name, color in (("cat", (200, 40, 40)), ("dog", (40, 40, 200))):
            for i in range(3):
                _jpeg(root / split / name / f"{i}.jpg", color)
    Image.new("L", (30, 30), 128).save(root / "train" / "cat" / "gray.png")
    Image.new("RGBA", (30, 30), (0, 255, 0, 100)).save(root / "train" / "dog" / "alpha.png")
    full = (root / "train" / "cat" / "0.jpg").read_bytes()
    (root / "train" / "cat" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "train" / "dog" / "notes.jpg").write_text("this is not an image\n")
    (root / "train" / "dog" / "README.txt").write_text("ignored: not an image extension\n")
    (root / "train" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes


def test_loader_converts_modes_and_reports_unreadable_files(tmp_path: Path) -> None:
    _tree_with_bad_files(tmp_path)
    train, val = image_folder_splits(tmp_path)
    assert train.classes == val.classes == ["cat", "dog"]
    assert len(train) == 10 and len(val) == 6
    loaded = {Path(path).relative_to(tmp_path / "train").as_posix(): train[i][0] for i, (path, _) in enumerate(train.samples)}
    assert loaded["cat/truncated.jpg"] is None and loaded["dog/notes.jpg"] is None
    good = {name: image for name, image in loaded.items() if image is not None}
    assert len(good) == 8 and all(image.mode == "RGB" for image in good.values())
    assert good["dog/alpha.png"].getpixel((0, 0)) == (155, 255, 155)  # composited on white
    assert load_image(tmp_path / "train" / "cat" / "gray.png").size == (30, 30)

    data = build_datasets("folder", data_dir=tmp_path, resolution=32, auto_augment="none")
    assert data.num_classes == 2 and data.class_names == ["cat", "dog"]
    data.set_epoch(0)
    seen = bad = 0
    for images, labels, num_bad in DataLoader(data.train, batch_size=4, collate_fn=data.collate_fn):
        assert images.shape == (len(labels), 3, 32, 32)
        seen, bad = seen + len(labels), bad + num_bad
    assert (seen, bad) == (8, 2)


def _phone_photo(path: Path) -> Image.Image:
    """Write a JPEG stored sideways with EXIF Orientation 6 ("rotate 90° clockwise to show"), as phones do; return the upright image."""
    y, x = np.mgrid[0:32, 0:48]
    upright = Image.fromarray(np.stack([x * 5, y * 7, 255 - x * 5], axis=-1).astype(np.uint8))  # wide, no symmetry
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif.tobytes())
    return upright


def test_exif_rotated_photo_gives_the_same_upright_tensor_in_training_and_prediction(tmp_path: Path) -> None:
    """One reader for every path: a phone photo is turned upright for training, evaluation, pseudo-labelling and prediction."""
    from effnet.models.predict import predict

    for name in ("a", "b"):
        _jpeg(tmp_path / "train" / name / "0.jpg", (10, 200, 30))
        _jpeg(tmp_path / "val" / name / "0.jpg", (10, 200, 30))
    upright = _phone_photo(tmp_path / "val" / "a" / "phone.jpg")
    prep = Preprocessing.for_resolution(24)
    data = build_datasets("folder", data_dir=tmp_path, resolution=24, preprocessing=prep, auto_augment="none")
    index = [Path(p).name for p, _ in data.val.base.samples].index("phone.jpg")
    training = data.val[index][0]

    class Capture(torch.nn.Module):  # records what prediction feeds the model
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))
            self.preprocessing, self.inputs = prep, None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.inputs = x
            return x.flatten(1)[:, :2] * self.scale

    model = Capture()
    [result] = predict(model, tmp_path / "val" / "a" / "phone.jpg", topk=1)
    assert result.ok and model.inputs is not None
    assert torch.equal(training, model.inputs[0])  # training and prediction see the very same tensor
    expected = prep.eval_transform()(upright)
    assert (training - expected).abs().mean() < 0.05  # upright: only JPEG's loss
    with Image.open(tmp_path / "val" / "a" / "phone.jpg") as stored:  # as stored, sideways: what was learnt before
        assert (prep.eval_transform()(stored.convert("RGB")) - expected).abs().mean() > 0.3


def test_one_image_suffix_list_for_every_path(tmp_path: Path) -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from effnet.core.images import IMAGE_SUFFIXES
    from effnet.models.predict import expand_inputs

    assert set(IMG_EXTENSIONS) <= set(IMAGE_SUFFIXES)  # every file torchvision's ImageFolder takes
    assert set(IMAGE_SUFFIXES) <= set(Image.registered_extensions())  # and PIL reads them all
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for suffix in (".JPG", ".gif", ".pnm"):
            Image.new("RGB", (8, 8), (9, 99, 199)).save(tmp_path / name / f"x{suffix}")
        (tmp_path / name / ".hidden.jpg").write_bytes(b"")
        (tmp_path / name / "notes.txt").write_text("x")
    train, val = image_folder_splits(tmp_path, val_fraction=0.5)
    in_folder = sorted(Path(p).name for p, _ in train.samples + val.samples)
    assert in_folder == sorted(["x.JPG", "x.gif", "x.pnm"] * 2)
    assert sorted(p.name for p in expand_inputs([tmp_path / "a"])) == ["x.JPG", "x.gif", "x.pnm"]


def test_fewer_than_two_classes_is_an_error_and_a_rare_class_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(6):
        _jpeg(tmp_path / "one" / "cats" / f"{i}.jpg", (200, 40, 40))
    with pytest.raises(DataError, match=r"training images of 1 class \('cats'\): a classifier needs two classes or more"):
        image_folder_splits(tmp_path / "one")
    with pytest.raises(DataError, match="one.*1 class"):
        build_datasets("folder", data_dir=tmp_path / "one", resolution=16)
    for name, count in (("cats", 8), ("dogs", 3), ("owls", 5)):  # flat: 10% held out, at least one per class
        for i in range(count):
            _jpeg(tmp_path / "few" / name / f"{i}.jpg", (200, 40, 40))
    with caplog.at_level("WARNING", logger="effnet.data.folders"):
        train, _ = image_folder_splits(tmp_path / "few")
    assert Counter(train.targets) == {0: 7, 1: 2, 2: 4}
    warnings = [r.getMessage() for r in caplog.records if "fewer than 5 training images" in r.getMessage()]
    assert len(warnings) == 1 and "'dogs' (2), 'owls' (4)" in warnings[0] and "cats" not in warnings[0]


def test_collate_skip_bad_with_only_bad_items() -> None:
    images, labels, num_bad = collate_skip_bad([(None, 0), (None, 1)])
    assert images.numel() == 0 and labels.numel() == 0 and num_bad == 2


def test_flat_folder_holds_out_a_deterministic_stratified_split(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        for i in range(10):
            _jpeg(tmp_path / name / f"{i}.jpg", (i * 20, 0, 0), (8, 8))
    train, val = image_folder_splits(tmp_path, val_fraction=0.2)
    again_train, again_val = image_folder_splits(tmp_path, val_fraction=0.2)
    assert val.samples == again_val.samples and train.samples == again_train.samples
    assert len(val) == 6 and Counter(val.targets) == {0: 2, 1: 2, 2: 2}
    assert not {p for p, _ in train.samples} & {p for p, _ in val.samples}
    bundle = build_datasets("folder", data_dir=tmp_path, resolution=16, train_samples=5, val_fraction=0.2)
    assert len(bundle.train) == 5 and len(bundle.val) == 6


def test_folder_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        build_datasets("folder", data_dir=tmp_path / "missing", resolution=32)
    with pytest.raises(ValueError, match="needs a data directory"):
        build_datasets("folder", resolution=32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        image_folder_splits(tmp_path / "empty")
    _jpeg(tmp_path / "loose" / "x.jpg", (1, 2, 3))
    with pytest.raises(ValueError, match=r"no class subfolders \(1 image files directly in it\).*subfolder named after the class"):
        image_folder_splits(tmp_path / "loose")
    (tmp_path / "noimages" / "cat").mkdir(parents=True)
    (tmp_path / "noimages" / "cat" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no image files"):
        image_folder_splits(tmp_path / "noimages")
    for split, names in (("train", ("cat", "dog")), ("val", ("cat", "bird"))):
        for name in names:
            _jpeg(tmp_path / "mismatch" / split / name / "0.jpg", (9, 9, 9))
    with pytest.raises(ValueError, match=r"different classes \(only in train: \['dog'\]; only in val: \['bird'\]\)"):
        image_folder_splits(tmp_path / "mismatch")
    with pytest.raises(ValueError, match="num_classes is 5 but .* has 2 classes"):
        build_datasets("folder", data_dir=tmp_path / "mismatch" / "train", resolution=32, num_classes=5)
    with pytest.raises(ValueError, match="val_fraction"):
        image_folder_splits(tmp_path / "mismatch" / "train", val_fraction=0.0)


# ---------------------------------------------------------------- build_datasets


def test_build_synthetic_bundle_yields_batches_at_the_requested_resolution() -> None:
    data = build_datasets("synthetic", resolution=72, auto_augment="randaugment", seed=1, train_samples=24, val_samples=12, num_classes=4)
    assert data.num_classes == 4 and len(data.class_names) == 4 and "synthetic" in data.description
    assert len(data.train) == 24 and len(data.val) == 12
    data.set_epoch(0)
    for split in (data.train, data.val):
        images, labels, num_bad = next(iter(DataLoader(split, batch_size=6, collate_fn=data.collate_fn)))
        assert type(images) is torch.Tensor and images.dtype == torch.float32 and images.shape == (6, 3, 72, 72)
        assert labels.tolist() == [0, 1, 2, 3, 0, 1] and num_bad == 0
    first = data.train[5][0]
    data.set_epoch(1)
    assert not torch.equal(data.train[5][0], first)
    data.set_epoch(0)
    assert torch.equal(data.train[5][0], first)
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        build_datasets("imagenet", resolution=32)


def test_failed_cifar_download_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    from torchvision import datasets

    class Offline(datasets.CIFAR10):
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets, "CIFAR10", Offline)
    with pytest.raises(DataError, match=r"could not load or download cifar10 into .*cifar-10-python\.tar\.gz"):
        build_datasets("cifar10", data_dir=tmp_path, resolution=32)
