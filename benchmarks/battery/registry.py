"""The battery's image sets: what each is, where it comes from, its licence, its half, and how it is subset.

Every set becomes DATA_ROOT/NAME/{train,val}/CLASS/*.jpg (`layout.py`), at most ~500 training images, chosen
by a fixed seed. `half` is the tuning/confirmation split recorded in README.md before any recipe changed:
recipes and their choice rules are fitted on "tuning" sets only; "confirmation" sets run once, at the end.

A source is a torchvision dataset (class name, keyword arguments of its training pool and, when it has one, of
a separate validation pool), a public archive (URL of an image-folder archive), or `derived` from another set's
pools with different per-class counts. Any set can also be laid out from a folder already on disk (`--from-dir`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TRAIN_CAP = 500  # training images per set at most, so one run fits a 2-core CPU
VAL_PER_CLASS = 40  # validation images per class at most
VAL_CAP = 400  # validation images per set at most


@dataclass(frozen=True)
class BatterySet:
    name: str
    kind: str  # which of the kinds it stands for
    half: str  # "tuning" or "confirmation"
    source: str  # where the images come from (a page or archive a person can open)
    licence: str  # as its authors state it; "not stated" when they state none
    torchvision: str = ""  # torchvision.datasets class that downloads it
    train_pool: dict[str, Any] = field(default_factory=dict)  # its keyword arguments for the training pool
    val_pool: dict[str, Any] | None = None  # ... for the validation pool (None: held out of the training pool, disjoint)
    archive: str = ""  # or a public archive of CLASS/ image folders (possibly under one top folder)
    derived_from: str = ""  # or another registry set's source, subset differently
    classes: int = 10  # the first `classes` classes in label order (0: all)
    first_class: int = 0  # ... starting at this label
    counts: str = "balanced"  # balanced | imbalanced | fewshot | natural (per-class training counts, see layout.train_counts)
    ratio: float = 6.0  # imbalanced: most / fewest training images per class
    grayscale: bool = False  # single-channel images (saved as RGB JPEGs; the models take 3 channels)
    note: str = ""

    def __post_init__(self) -> None:
        if self.half not in ("tuning", "confirmation"):
            raise ValueError(f"{self.name}: half must be tuning or confirmation, not {self.half!r}")
        if sum(bool(x) for x in (self.torchvision, self.archive, self.derived_from)) > 1:
            raise ValueError(f"{self.name}: give one source (torchvision, archive or derived_from)")


IMAGENET_TERMS = "ImageNet's terms of access (non-commercial research and education)"
SETS = [
    # ---------------------------------------------------------------- tuning half
    BatterySet(
        "imagenette",
        "ImageNet-like objects (10 easy ImageNet classes)",
        "tuning",
        "https://github.com/fastai/imagenette (160 px version)",
        IMAGENET_TERMS,
        torchvision="Imagenette",
        train_pool={"split": "train", "size": "160px"},
        val_pool={"split": "val", "size": "160px"},
    ),
    BatterySet(
        "imagenette_imbalanced",
        "classes imbalanced 6:1 (ImageNet-like objects)",
        "tuning",
        "Imagenette, as above; per-class training counts falling geometrically, most/fewest 6:1 (rarest classes drawn by the seed)",
        IMAGENET_TERMS,
        derived_from="imagenette",
        counts="imbalanced",
        ratio=6.0,
    ),
    BatterySet(
        "flowers102",
        "fine-grained (20 flower species)",
        "tuning",
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
        "not stated (Oxford VGG, research data)",
        torchvision="Flowers102",
        train_pool={"split": "train"},
        val_pool={"split": "test"},
        classes=20,
    ),
    BatterySet(
        "flowers102_fewshot",
        "5-10 images per class (40 other flower species)",
        "tuning",
        "Flowers-102, as above, classes 21-60",
        "not stated (Oxford VGG, research data)",
        derived_from="flowers102",
        classes=40,
        first_class=20,
        counts="fewshot",
    ),
    BatterySet(
        "eurosat",
        "aerial / satellite (Sentinel-2 RGB, 64 px, 10 land uses)",
        "tuning",
        "https://github.com/phelber/EuroSAT",
        "MIT",
        torchvision="EuroSAT",
    ),
    BatterySet(
        "pcam",
        "medical (lymph-node histopathology patches, tumour or not)",
        "tuning",
        "https://github.com/basveeling/pcam (its validation file, split here into train and val)",
        "CC0 1.0",
        torchvision="PCAM",
        train_pool={"split": "val"},
        classes=0,
    ),
    BatterySet(
        "kmnist",
        "drawn (cursive Japanese characters, grayscale 28 px)",
        "tuning",
        "https://github.com/rois-codh/kmnist",
        "CC BY-SA 4.0",
        torchvision="KMNIST",
        train_pool={"train": True},
        val_pool={"train": False},
        grayscale=True,
    ),
    BatterySet(
        "hymenoptera",
        "ImageNet-like objects (ants, bees); already seen by issue 11's recipe",
        "tuning",
        "https://download.pytorch.org/tutorial/hymenoptera_data.zip (PyTorch's transfer-learning tutorial)",
        "not stated (PyTorch tutorial data, ImageNet images)",
        archive="https://download.pytorch.org/tutorial/hymenoptera_data.zip",
        classes=0,
    ),
    BatterySet(
        "sign_digits",
        "far from ImageNet (hand signs for digits 0-9, close-up photos on a plain background)",
        "tuning",
        "https://github.com/ardamavi/Sign-Language-Digits-Dataset",
        "Apache-2.0",
        archive="https://github.com/ardamavi/Sign-Language-Digits-Dataset/archive/refs/heads/master.zip",
        note="the archive's Dataset/ folder holds the class folders",
    ),
    # ---------------------------------------------------------------- confirmation half
    BatterySet(
        "caltech101",
        "ImageNet-like objects (10 Caltech-101 categories)",
        "confirmation",
        "https://data.caltech.edu/records/mzrjq-6wc02",
        "CC BY 4.0",
        torchvision="Caltech101",
        train_pool={"target_type": "category"},
        first_class=5,  # past the faces/leopards/motorbikes classes, which dominate it
    ),
    BatterySet(
        "pets",
        "fine-grained (37 cat and dog breeds)",
        "confirmation",
        "https://www.robots.ox.ac.uk/~vgg/data/pets/",
        "CC BY-SA 4.0",
        torchvision="OxfordIIITPet",
        train_pool={"split": "trainval"},
        val_pool={"split": "test"},
        classes=0,
    ),
    BatterySet(
        "aircraft_fewshot",
        "5-10 images per class (fine-grained: 30 aircraft families)",
        "confirmation",
        "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/",
        "non-commercial research only (images: their photographers, per the dataset's terms)",
        torchvision="FGVCAircraft",
        train_pool={"split": "trainval", "annotation_level": "family"},
        val_pool={"split": "test", "annotation_level": "family"},
        classes=30,
        counts="fewshot",
    ),
    BatterySet(
        "gtsrb_imbalanced",
        "classes imbalanced by nature (>= 5:1) and printed (German traffic signs, 43 classes)",
        "confirmation",
        "https://benchmark.ini.rub.de/gtsrb_news.html",
        "not stated (INI, Ruhr-Universität Bochum, research data)",
        torchvision="GTSRB",
        train_pool={"split": "train"},
        val_pool={"split": "test"},
        classes=0,
        counts="natural",
    ),
    BatterySet(
        "ucmerced",
        "aerial (USGS orthoimagery, 21 land uses)",
        "confirmation",
        "http://weegee.vision.ucmerced.edu/datasets/landuse.html",
        "USGS National Map imagery (public domain); the set by Yang and Newsam",
        archive="http://weegee.vision.ucmerced.edu/datasets/UCMerced_LandUse.zip",
        classes=0,
    ),
    BatterySet(
        "fashion_mnist",
        "product photos, grayscale (Zalando articles, 28 px)",
        "confirmation",
        "https://github.com/zalandoresearch/fashion-mnist",
        "MIT",
        torchvision="FashionMNIST",
        train_pool={"train": True},
        val_pool={"train": False},
        grayscale=True,
    ),
    BatterySet(
        "dtd",
        "textures (10 describable-texture classes)",
        "confirmation",
        "https://www.robots.ox.ac.uk/~vgg/data/dtd/",
        "research use (Oxford VGG; images from Flickr)",
        torchvision="DTD",
        train_pool={"split": "train"},
        val_pool={"split": "test"},
    ),
    BatterySet(
        "indoor67",
        "scenes (10 of MIT's 67 indoor scene classes)",
        "confirmation",
        "https://web.mit.edu/torralba/www/indoor.html",
        "not stated (MIT, research data)",
        archive="http://groups.csail.mit.edu/vision/LabelMe/NewImages/indoorCVPR_09.tar",
    ),
]
BY_NAME = {s.name: s for s in SETS}
assert len(BY_NAME) == len(SETS), "set names must be unique"


def get(name: str) -> BatterySet:
    try:
        return BY_NAME[name]
    except KeyError:
        raise SystemExit(f"no battery set named {name!r}; the sets: {', '.join(BY_NAME)}") from None


def source_of(entry: BatterySet) -> BatterySet:
    """The set whose download a derived set subsets (itself otherwise)."""
    return get(entry.derived_from) if entry.derived_from else entry
