"""Flowers-102's official split laid out for `effnet finetune` (benchmarks/transfer/flowers102.py): train + val train,
test validates, every image in its label's folder, and a copy that is not the official one is refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "transfer" / "flowers102.py"
spec = importlib.util.spec_from_file_location("transfer_flowers102", SCRIPT)
flowers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(flowers)


def _source(tmp_path: Path, ids: range) -> Path:
    src = tmp_path / "src"
    (src / "jpg").mkdir(parents=True)
    for i in ids:
        (src / "jpg" / f"image_{i:05d}.jpg").write_bytes(b"\xff\xd8" + bytes([i]))
    return src


def test_train_and_val_ids_train_and_test_ids_validate_in_label_folders(tmp_path: Path, monkeypatch) -> None:
    labels = [3, 1, 3, 2, 1, 2]  # image id i has labels[i - 1]
    monkeypatch.setattr(flowers, "read_split", lambda src: ([1, 2, 4], [3, 5, 6], labels))
    out = tmp_path / "out"
    counts = flowers.lay_out(_source(tmp_path, range(1, 7)), out)
    assert counts == {"train": 3, "val": 3, "classes": 3}
    laid = {str(p.relative_to(out)) for p in out.rglob("*.jpg")}
    assert laid == {
        "train/003/image_00001.jpg",
        "train/001/image_00002.jpg",
        "train/002/image_00004.jpg",
        "val/003/image_00003.jpg",
        "val/001/image_00005.jpg",
        "val/002/image_00006.jpg",
    }
    assert (out / "val/002/image_00006.jpg").read_bytes() == b"\xff\xd8\x06"  # the image itself, not a pointer to it
    assert flowers.lay_out(_source(tmp_path / "again", range(1, 7)), out) == counts  # a rerun finds it laid out


def test_a_missing_image_or_an_unofficial_split_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    src = _source(tmp_path, range(1, 6))
    with pytest.raises(SystemExit, match="missing"):
        flowers.read_split(src)  # no setid.mat at all
    for name in flowers.OFFICIAL_MD5:
        (src / name).write_bytes(b"not the official file")
    with pytest.raises(SystemExit, match="not the official file"):
        flowers.read_split(src)
    monkeypatch.setattr(flowers, "read_split", lambda src: ([1, 2], [3, 6], [1, 1, 2, 2, 1, 2]))
    with pytest.raises(SystemExit, match="1 images missing .* image_00006.jpg"):
        flowers.lay_out(src, tmp_path / "out")
