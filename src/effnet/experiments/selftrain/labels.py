"""Pseudo-labelling: the un-noised teacher labels every image under a folder, in resumable chunks.

The teacher runs in eval mode (no dropout, no drop path, BatchNorm with its running statistics) on the
test-time preprocessing of its run: the Noisy Student paper labels with the teacher un-noised, and only
the student is noised. Images are labelled chunk by chunk; each finished chunk is written atomically to
``labels.jsonl.parts/``, so a killed run redoes only the chunk it was in. Under torchrun each process
labels every world-size-th chunk and rank 0 merges them. The result, ``labels.jsonl``, has one line per
readable image (unreadable ones are skipped and counted in ``labels.json``):

    {"image": "/data/unlabeled/x/1.jpg", "label": 2, "class": "rocket", "confidence": 0.913, "probs": [0.0312, 0.0558, 0.913]}

``probs`` is the teacher's softmax in class order, rounded to 4 decimals (the reader renormalises).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from effnet._io import atomic_write_text
from effnet.data import TransformedDataset, collate_skip_bad, eval_transform, find_images, load_image
from effnet.train import distributed as D

LABELS_NAME = "labels.jsonl"
SUMMARY_SUFFIX = ".json"  # labels.jsonl -> labels.json: counts, classes, and what was labelled with what
PROB_DIGITS = 4


@dataclass(frozen=True)
class LabelRecord:
    """One pseudo-labelled image: the teacher's most likely class, its probability and the whole distribution."""

    image: str
    label: int
    confidence: float
    probs: tuple[float, ...]

    def line(self, classes: list[str], soft: bool = True) -> str:
        """The JSON line of this image (hard: no distribution)."""
        entry: dict[str, Any] = {"image": self.image, "label": self.label, "class": classes[self.label], "confidence": self.confidence}
        if soft:
            entry["probs"] = list(self.probs)
        return json.dumps(entry)


@dataclass
class LabelSummary:
    """What a labelling pass found and did."""

    images: int  # image files found
    labelled: int  # readable ones, in the labels file
    unreadable: list[str]
    classes: list[str]
    fingerprint: str  # the images, the teacher's weights and preprocessing, the chunk size
    chunks: int
    chunks_resumed: int = 0  # chunks found finished on disk (not redone)
    seconds: float = 0.0
    labels_file: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        bad = f", {len(self.unreadable)} unreadable skipped" if self.unreadable else ""
        resumed = f" ({self.chunks_resumed} of {self.chunks} chunks were already done)" if self.chunks_resumed else ""
        return f"pseudo-labelled {self.labelled} of {self.images} images{bad} in {self.seconds:.0f} s{resumed}: {self.labels_file}"


class _ImageList(Dataset):
    """Image files by position: (RGB image or None when unreadable, position)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return load_image(self.paths[index]), index


def teacher_model(teacher: str | Path | nn.Module) -> nn.Module:
    """A teacher as a network: a training run directory (its final weights) or a module with `.preprocessing`."""
    if isinstance(teacher, nn.Module):
        if getattr(teacher, "preprocessing", None) is None:
            raise ValueError("a teacher module needs its test-time preprocessing as `.preprocessing` (runs loaded with effnet.train.rundir have it)")
        return teacher
    from effnet.train.rundir import load_run_model

    return load_run_model(teacher, "model")


def fingerprint(model: nn.Module, images: list[Path], chunk_size: int) -> str:
    """A hash of what decides the labels: the image list, the teacher's weights and preprocessing, and the chunking."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([str(p) for p in images]).encode())
    digest.update(json.dumps(model.preprocessing.to_dict(), sort_keys=True).encode())
    digest.update(str(chunk_size).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def summary_path(labels_file: str | Path) -> Path:
    return Path(labels_file).with_suffix(SUMMARY_SUFFIX)


def read_summary(labels_file: str | Path) -> LabelSummary | None:
    path = summary_path(labels_file)
    if not path.is_file():
        return None
    return LabelSummary(**json.loads(path.read_text()))


@torch.no_grad()
def _label_chunk(model: nn.Module, paths: list[Path], transform: Any, device: torch.device, batch_size: int, workers: int, bar: Any) -> list[str]:
    """JSON lines for one chunk, in image order: labelled images, and {"unreadable": true} for the others."""
    loader = DataLoader(
        TransformedDataset(_ImageList(paths), transform),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_skip_bad,
        pin_memory=device.type == "cuda",
    )
    probs_of: dict[int, torch.Tensor] = {}
    for images, positions, _ in loader:
        if images.numel():
            logits = model(images.to(device, non_blocking=True))
            for position, probs in zip(positions.tolist(), logits.float().softmax(1).cpu(), strict=True):
                probs_of[position] = probs
        if bar is not None:
            bar.update(len(positions))
    lines = []
    for position, path in enumerate(paths):
        if position not in probs_of:
            lines.append(json.dumps({"image": str(path), "unreadable": True}))
            continue
        probs = probs_of[position]
        label = int(probs.argmax())
        record = LabelRecord(str(path), label, round(float(probs[label]), 6), tuple(round(float(p), PROB_DIGITS) for p in probs))
        lines.append(json.dumps({"image": record.image, "label": record.label, "confidence": record.confidence, "probs": list(record.probs)}))
    return lines


def label_images(
    teacher: str | Path | nn.Module,
    images_dir: str | Path,
    labels_file: str | Path,
    *,
    batch_size: int = 64,
    chunk_size: int = 1024,
    workers: int = 2,
    device: str = "auto",
    progress: bool = True,
) -> LabelSummary:
    """Label every image under `images_dir` with `teacher` (a run directory or a module with `.preprocessing`); write `labels_file`.

    Resumable: finished chunks of `chunk_size` images are kept on disk and not redone; a labels file that is
    already complete for the same images, teacher and chunking is returned as it is. Under torchrun every
    process labels its share of the chunks. Returns the summary also written next to the file (labels.json).
    """
    started = time.perf_counter()
    labels_file = Path(labels_file)
    images = find_images(Path(images_dir).expanduser().resolve(), "unlabelled")
    model = teacher_model(teacher)
    classes = list(getattr(model, "class_names", None) or [str(i) for i in range(model.classifier.out_features)])
    print_ = fingerprint(model, images, chunk_size)
    done = read_summary(labels_file)
    if done is not None and done.fingerprint == print_ and labels_file.is_file():
        return done
    torch_device = D.resolve_device(device)
    dist = D.init_distributed(torch_device)
    parts = labels_file.with_name(labels_file.name + ".parts")
    chunks = [images[i : i + chunk_size] for i in range(0, len(images), chunk_size)]
    if dist.is_main:
        manifest = parts / "manifest.json"
        if parts.is_dir() and (not manifest.is_file() or json.loads(manifest.read_text()).get("fingerprint") != print_):
            shutil.rmtree(parts)  # chunks of other images or another teacher: not ours to reuse
        atomic_write_text(manifest, json.dumps({"fingerprint": print_, "images": len(images), "chunk_size": chunk_size}) + "\n")
    D.barrier(dist)
    resumed = sum(1 for i in range(len(chunks)) if (parts / f"{i:06d}.jsonl").is_file())
    mine = [i for i in range(len(chunks)) if i % dist.world_size == dist.rank and not (parts / f"{i:06d}.jsonl").is_file()]
    bar = None
    if progress and dist.is_main and mine:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(chunks[i]) for i in mine), desc="pseudo-labelling", unit="image", dynamic_ncols=True)
    model.to(torch_device)
    was_training = model.training
    model.eval()  # the teacher is not noised: no dropout, no drop path, BN running statistics
    transform = eval_transform(model.preprocessing)
    try:
        for i in mine:
            lines = _label_chunk(model, chunks[i], transform, torch_device, batch_size, workers, bar)
            atomic_write_text(parts / f"{i:06d}.jsonl", "".join(line + "\n" for line in lines))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    D.barrier(dist)
    if dist.is_main:
        _merge(parts, len(chunks), labels_file, classes, print_, len(images), resumed, time.perf_counter() - started)
    D.barrier(dist)
    summary = read_summary(labels_file)
    assert summary is not None
    return summary


def _merge(parts: Path, chunks: int, labels_file: Path, classes: list[str], print_: str, images: int, resumed: int, seconds: float) -> None:
    """Join the chunks into the labels file (class names added), then write the summary; the chunks go last."""
    lines, unreadable = [], []
    for i in range(chunks):
        for line in (parts / f"{i:06d}.jsonl").read_text().splitlines():
            entry = json.loads(line)
            if entry.get("unreadable"):
                unreadable.append(entry["image"])
                continue
            record = LabelRecord(entry["image"], entry["label"], entry["confidence"], tuple(entry["probs"]))
            lines.append(record.line(classes))
    atomic_write_text(labels_file, "".join(line + "\n" for line in lines))
    summary = LabelSummary(images, len(lines), unreadable, classes, print_, chunks, resumed, round(seconds, 2), str(labels_file))
    atomic_write_text(summary_path(labels_file), json.dumps(summary.to_dict(), indent=1) + "\n")
    shutil.rmtree(parts, ignore_errors=True)


def read_labels(labels_file: str | Path) -> list[LabelRecord]:
    """The records of a labels file (`label_images`)."""
    records = []
    for line in Path(labels_file).read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            records.append(LabelRecord(entry["image"], int(entry["label"]), float(entry["confidence"]), tuple(entry["probs"])))
    return records
