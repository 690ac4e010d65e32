"""The battery (benchmarks/battery): seeded subsets keep their promises, a folder lays out as the runner reads it, the table's bar."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

BATTERY = Path(__file__).resolve().parent.parent / "benchmarks" / "battery"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"battery_{name}", BATTERY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fetch = _load("fetch")
run = _load("run")
offline = _load("offline_sources")
coarse = _load("coarse_check")
registry = sys.modules["registry"]  # the one both scripts import (their folder is on sys.path)


def test_the_registry_covers_the_issues_kinds_in_two_halves() -> None:
    sets = registry.SETS
    assert len(sets) >= 10 and {s.half for s in sets} == {"tuning", "confirmation"}
    for s in sets:
        assert s.source and s.licence and (s.torchvision or s.archive or s.derived_from), s.name
        assert registry.source_of(s).name in registry.BY_NAME
    counts = {s.counts for s in sets}
    assert {"imbalanced", "fewshot"} <= counts
    readme = (BATTERY / "README.md").read_text()
    assert all(f"| {s.half} | {s.name} |" in readme for s in sets)  # the split written down is the registry's


def test_per_class_counts_keep_their_promises() -> None:
    entry = registry.get("imagenette_imbalanced")
    counts = fetch.train_counts(entry, [900] * 10, random.Random(0))
    assert max(counts) / min(counts) == pytest.approx(6.0, rel=0.1) and max(counts) / min(counts) >= 5
    assert sum(counts) <= registry.TRAIN_CAP and len(set(counts)) == 10
    assert counts != sorted(counts, reverse=True)  # the rare classes are drawn, not the last labels
    few = fetch.train_counts(registry.get("aid_fewshot"), [30] * 20, random.Random(1))
    assert all(5 <= c <= 10 for c in few) and len(set(few)) > 1
    natural = fetch.train_counts(registry.get("gtsrb_imbalanced"), [2000, 1000, 200], random.Random(0))
    assert natural == [312, 156, 31] and sum(natural) <= registry.TRAIN_CAP
    assert fetch.train_counts(registry.get("dtd"), [80, 30] + [80] * 8, random.Random(0)) == [50, 30] + [50] * 8  # capped by what there is


def _folder(root: Path, classes: dict[str, int]) -> Path:
    from PIL import Image

    for c, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("L" if c == 0 else "RGB", (12, 10), 40 * c + i).save(root / name / f"{i}.png")
    return root


def test_a_folder_is_laid_out_as_train_and_val_class_folders(tmp_path: Path) -> None:
    """The images sit two folders down, as in an extracted archive: the class root is found."""
    _folder(tmp_path / "download" / "top" / "images", {"a": 30, "b": 12, "c": 9})
    entry = dataclasses.replace(registry.get("dtd"), name="tiny", classes=0)
    manifest = fetch.lay_out(entry, tmp_path / "data", tmp_path / "cache", {"tiny": tmp_path / "download"}, seed=0)
    out = tmp_path / "data" / "tiny"
    files = {split: {c: sorted(p.name for p in (out / split / c).glob("*.jpg")) for c in "abc"} for split in ("train", "val")}
    assert manifest["counts"] == {split: {c: len(v) for c, v in files[split].items()} for split in files}
    assert manifest["counts"]["val"] == {"a": 10, "b": 4, "c": 3}  # held out of the one pool: a third at most
    for c in "abc":
        assert not set(files["train"][c]) & set(files["val"][c])  # disjoint: the file name is the source index
    assert manifest["counts"]["train"] == {"a": 20, "b": 8, "c": 6}
    assert not (tmp_path / "data" / "tiny.partial").exists()

    from effnet.data import image_folder_splits

    train, val = image_folder_splits(out)  # as effnet and the runner read it: RGB JPEGs, the manifest ignored
    assert (len(train), len(val), list(train.classes)) == (34, 17, ["a", "b", "c"])
    again = fetch.lay_out(entry, tmp_path / "data", tmp_path / "cache", {"tiny": tmp_path / "download"}, seed=0)
    assert again == json.loads((out / "battery.json").read_text())  # laid out before: skipped
    older = {**again, "entry": {k: v for k, v in again["entry"].items() if k != "dropped_classes"}}
    (out / "battery.json").write_text(json.dumps(older))  # laid out before the registry had that field: still the same
    assert fetch.lay_out(entry, tmp_path / "data", tmp_path / "cache", {"tiny": tmp_path / "download"}, seed=0) == older
    with pytest.raises(SystemExit, match="laid out with another entry, seed or source"):
        fetch.lay_out(entry, tmp_path / "data", tmp_path / "cache", {"tiny": tmp_path / "download"}, seed=1)
    other = fetch.lay_out(entry, tmp_path / "data2", tmp_path / "cache", {"tiny": tmp_path / "download"}, seed=1)
    assert other["counts"] == manifest["counts"] and sorted((tmp_path / "data2/tiny/val/a").iterdir()) != sorted((out / "val/a").iterdir())


def test_a_derived_set_is_laid_out_from_its_sources_folder_with_its_own_test_split(tmp_path: Path) -> None:
    """Training/ + Testing/ (as sets ship them) give the pools; a derived set reads the folder given for its source."""
    _folder(tmp_path / "download" / "top" / "Training", {"a": 12, "b": 12, "c": 12, "d": 12})
    _folder(tmp_path / "download" / "top" / "Testing", {"a": 3, "b": 2, "c": 2, "d": 2})
    entry = dataclasses.replace(registry.get("imagenette_imbalanced"), name="tiny_imbalanced")
    manifest = fetch.lay_out(entry, tmp_path / "data", tmp_path / "cache", {"imagenette": tmp_path / "download"}, seed=0)
    assert manifest["counts"]["val"] == {"a": 3, "b": 2, "c": 2, "d": 2}  # the set's own test split, nothing held out
    assert sorted(manifest["counts"]["train"].values()) == [2, 4, 7, 12]  # 12 x 6^(-rank/3): most / fewest = 6

    _folder(tmp_path / "flat" / "train", {"a": 9, "b": 9})
    from PIL import Image

    (tmp_path / "flat" / "test").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "test" / "unlabelled.png")
    train, val = fetch.find_class_root(tmp_path / "flat")
    assert (train, val) == (tmp_path / "flat" / "train", None)  # an unlabelled test/ is no split: val is held out


def test_a_folder_drops_the_classes_the_sets_own_loader_drops(tmp_path: Path) -> None:
    """Caltech-101's archive holds BACKGROUND_Google, which torchvision drops: a --from-dir layout counts its classes
    (and its first_class) the same way, for the set and for a set derived from it."""
    _folder(tmp_path / "101_ObjectCategories", {"BACKGROUND_Google": 9, "Faces": 9, "accordion": 9, "airplanes": 9})
    assert registry.get("caltech101").dropped_classes == ("BACKGROUND_Google",)
    entry = dataclasses.replace(registry.get("caltech101"), name="tiny_caltech", classes=2, first_class=1)
    manifest = fetch.lay_out(entry, tmp_path / "data", tmp_path / "cache", {"tiny_caltech": tmp_path / "101_ObjectCategories"}, seed=0)
    assert sorted(manifest["counts"]["train"]) == ["accordion", "airplanes"]
    derived = dataclasses.replace(registry.get("caltech101_fewshot"), name="tiny_fewshot", classes=2, first_class=0)
    manifest = fetch.lay_out(derived, tmp_path / "data", tmp_path / "cache", {"caltech101": tmp_path / "101_ObjectCategories"}, seed=0)
    assert sorted(manifest["counts"]["train"]) == ["Faces", "accordion"]


def test_the_coarse_stand_in_has_the_issues_counts_drawn_disjoint_from_pooled_categories(tmp_path: Path) -> None:
    categories = {c: 14 for cats, _, _ in coarse.GROUPS.values() for c in cats}
    caltech = _folder(tmp_path / "101_ObjectCategories", categories)
    for folder in caltech.iterdir():  # Caltech-101 ships JPEGs
        for png in folder.glob("*.png"):
            png.rename(png.with_suffix(".jpg"))
    counts = coarse.lay_out(caltech, tmp_path / "out" / "coarse_animals")
    assert counts["train"] == {"mammal": 83, "bird": 41, "reptile": 25, "insect": 14}  # the issue's 163 training images
    assert sum(counts["val"].values()) == 70
    out = tmp_path / "out" / "coarse_animals"
    for group in coarse.GROUPS:
        train, val = ({p.name for p in (out / split / group).iterdir()} for split in ("train", "val"))
        assert not train & val
    (caltech / "mayfly").rename(caltech / "mayflies")
    with pytest.raises(SystemExit, match="no folder 'mayfly'"):
        coarse.lay_out(caltech, tmp_path / "again")
    (caltech / "crocodile" / "0.jpg").unlink()  # reptile: 41 images, one short of 25 + 17
    with pytest.raises(SystemExit, match="reptile: 41 images .* fewer than the 42"):
        coarse.lay_out(caltech, tmp_path / "again")


def test_the_table_puts_the_bar_at_the_better_plain_loop_and_keeps_the_halves_apart() -> None:
    rows = []
    for seed, (effnet, sgd, adamw) in enumerate([(80.0, 70.0, 82.0), (84.0, 74.0, 84.0), (82.0, 72.0, 83.0)]):
        for method, top1 in ((run.EFFNET, effnet), (run.PLAIN_SGD, sgd), (run.PLAIN_ADAMW, adamw)):
            rows.append({"set": "eurosat", "half": "tuning", "kind": "aerial", "method": method, "seed": seed, "epochs": 3, "val_top1": top1})
    rows.append({"set": "dtd", "half": "confirmation", "kind": "textures", "method": run.EFFNET, "seed": 0, "epochs": 10, "val_top1": 60.0})
    rows.append({"set": "dtd", "half": "confirmation", "kind": "textures", "method": run.PLAIN_SGD, "seed": 0, "epochs": 10, "val_top1": 64.0})
    table = run.summarise(rows, default_length=10)
    tuning, confirmation = table.split("## Confirmation half")
    assert "| eurosat | aerial | 3 | 0, 1, 2 | 82.0 ± 5.0 | 72.0 ± 5.0 | 83.0 ± 2.5 | plain AdamW loop (83.0) | -1.0 ± 2.5 | yes |" in tuning
    assert "| dtd | textures | 10 (default) | 0 | 60.0 | 64.0 |  | plain SGD loop (64.0) | -4.0 | no |" in confirmation


def test_offline_copies_become_class_folders(tmp_path: Path) -> None:
    """The Fashion-MNIST sprite's row r is class r // 3; idx files give one folder per label, pixels kept."""
    import gzip

    import numpy as np
    from PIL import Image

    rows = np.repeat(np.arange(30, dtype=np.uint8) * 8, 28)  # every tile of sprite row r has the value 8 r
    Image.fromarray(np.tile(rows[:, None], (1, 30 * 28)), "L").save(tmp_path / "sprite.png")
    assert offline.split_sprite(tmp_path / "sprite.png", tmp_path / "fashion") == 900
    assert {d.name: len(list(d.iterdir())) for d in (tmp_path / "fashion").iterdir()} == {c: 90 for c in offline.FASHION_CLASSES}
    trousers = sorted((tmp_path / "fashion" / "Trouser").iterdir())
    assert {int(np.asarray(Image.open(p)).max()) for p in trousers} == {24, 32, 40} and Image.open(trousers[0]).size == (28, 28)

    images = np.arange(3 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(3, 28, 28)
    (tmp_path / "i.gz").write_bytes(gzip.compress(bytes(16) + images.tobytes()))
    (tmp_path / "l").write_bytes(bytes(8) + bytes([2, 0, 2]))
    assert offline.split_idx(tmp_path / "i.gz", tmp_path / "l", tmp_path / "digits") == 3
    assert np.array_equal(np.asarray(Image.open(tmp_path / "digits" / "2" / "00002.png")), images[2])
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["0", "2"]


def test_a_rerun_skips_the_runs_in_the_store_and_a_variant_is_a_method_of_its_own(tmp_path: Path, monkeypatch) -> None:
    """run.py keeps its runs in effnet's store: a second invocation trains nothing; --effnet-option runs effnet with those values as its own method."""
    _folder(tmp_path / "download", {"a": 9, "b": 9})
    entry = dataclasses.replace(registry.get("hymenoptera"), name="tiny", classes=0)
    fetch.lay_out(entry, tmp_path / "data", tmp_path / "cache", {"tiny": tmp_path / "download"}, seed=0)
    monkeypatch.setattr(run, "get", lambda name: entry)
    calls = []

    def trained(data_dir, out, method, *, epochs, seed, workers, options=None):
        calls.append((method, seed, dict(options or {})))
        return {"history": [{"epoch": 1, "val_top1": 60.0 + seed + 10 * (method == run.EFFNET)}], "seconds": 0.0}

    monkeypatch.setattr(run, "run_one", trained)
    argv = ["--data-root", str(tmp_path / "data"), "--sets", "tiny", "--lengths", "1", "--seeds", "0", "1", "--threads", "1", "--out", str(tmp_path / "out")]
    run.main(argv)
    assert len(calls) == 6 and (tmp_path / "out" / "trials.json").is_file()
    run.main(argv)
    assert len(calls) == 6  # all six in the store: nothing trained again
    run.main([*argv, "--methods", run.EFFNET, "--effnet-option", "cosine_min_steps=100"])
    assert calls[6:] == [(run.EFFNET, 0, {"cosine_min_steps": 100}), (run.EFFNET, 1, {"cosine_min_steps": 100})]
    table = (tmp_path / "out" / "battery.md").read_text()
    assert "| tiny |" in table and "| 70.5 ± 6.4 |" in table  # effnet's defaults: 70 and 71 over two seeds; the variant is not mixed in
