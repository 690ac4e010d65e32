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
    dropped_classes: tuple[str, ...] = ()  # class folders its torchvision loader drops; a --from-dir layout drops them too
    note: str = ""

    def __post_init__(self) -> None:
        if self.half not in ("tuning", "confirmation"):
            raise ValueError(f"{self.name}: half must be tuning or confirmation, not {self.half!r}")
        if sum(bool(x) for x in (self.torchvision, self.archive, self.derived_from)) > 1:
            raise ValueError(f"{self.name}: give one source (torchvision, archive or derived_from)")


SUBSTITUTED = "substituted on 2026-12-07 (source unreachable offline), before any recipe change"
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
        "aid_fewshot",
        "5-10 images per class (20 other aerial scene classes)",
        "tuning",
        "AID, as below, classes 11-30",
        "not stated (Wuhan University, research data)",
        derived_from="aid",
        classes=20,
        first_class=10,
        counts="fewshot",
        note=SUBSTITUTED + " for flowers102_fewshot (Flowers-102, classes 21-60)",
    ),
    BatterySet(
        "aid",
        "aerial (Google Earth scenes, 10 of AID's 30 classes)",
        "tuning",
        "https://captain-whu.github.io/AID/ (Xia et al. 2017); the archive is a public GitHub copy at 150 px",
        "not stated (Wuhan University, research data)",
        archive="https://github.com/zlima/testtensor/archive/f6a0f74645eab10754425bff50747e508290dee1.zip",
        note=SUBSTITUTED + " for eurosat (EuroSAT RGB, torchvision EuroSAT, MIT); the archive's AID/ folder holds the class folders",
    ),
    BatterySet(
        "aid_imbalanced",
        "classes imbalanced 6:1 (aerial scenes, AID's first 10 classes)",
        "tuning",
        "AID, as above; per-class training counts falling geometrically, most/fewest 6:1 (rarest classes drawn by the seed)",
        "not stated (Wuhan University, research data)",
        derived_from="aid",
        counts="imbalanced",
        ratio=6.0,
        note="added in the ninth session, before the rare-class schedule rule it tunes ran",
    ),
    BatterySet(
        "brain_mri",
        "medical (brain MRI slices: glioma, meningioma, no tumour, pituitary tumour)",
        "tuning",
        "https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset (its Training/ and Testing/ splits); "
        "the archive is a public GitHub copy at 224 px",
        "CC0 1.0 (as the dataset's Kaggle page states)",
        archive="https://github.com/KomalChaudhari8/BRAIN_TUMOR_APP/archive/1fac2c320ad3f98cb71ce79d5d1490a953eaa1ec.zip",
        classes=0,
        note=SUBSTITUTED + " for pcam (PatchCamelyon, torchvision PCAM, CC0 1.0)",
    ),
    BatterySet(
        "mnist",
        "drawn (handwritten digits, grayscale 28 px)",
        "tuning",
        "http://yann.lecun.com/exdb/mnist/",
        "CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
        torchvision="MNIST",
        train_pool={"train": True},
        val_pool={"train": False},
        grayscale=True,
        note=SUBSTITUTED + " for kmnist (KMNIST, torchvision KMNIST, CC BY-SA 4.0)",
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
    # Added in the eighth session (2026-12-07), to the tuning half only, before the few-shot schedule rule
    # they tune ran (benchmarks/results/battery/few_shot_schedule/README.md): one few-shot tuning set was too few to fit it.
    BatterySet(
        "imagenette_fewshot",
        "5-10 images per class (ImageNet-like objects)",
        "tuning",
        "Imagenette, as above; 5-10 training images per class (drawn by the seed)",
        IMAGENET_TERMS,
        derived_from="imagenette",
        counts="fewshot",
    ),
    BatterySet(
        "sign_digits_fewshot",
        "5-10 images per class (far from ImageNet: hand signs)",
        "tuning",
        "Sign-Language-Digits-Dataset, as above; 5-10 training images per class (drawn by the seed)",
        "Apache-2.0",
        derived_from="sign_digits",
        counts="fewshot",
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
        dropped_classes=("BACKGROUND_Google",),  # as torchvision's Caltech101 does: first_class counts without it
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
        "caltech101_fewshot",
        "5-10 images per class (30 other Caltech-101 categories)",
        "confirmation",
        "Caltech-101, as above, classes 16-45",
        "CC BY 4.0",
        derived_from="caltech101",
        classes=30,
        first_class=15,
        counts="fewshot",
        note=SUBSTITUTED + " for aircraft_fewshot (FGVC-Aircraft, 30 families, torchvision FGVCAircraft)",
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
        "intel_scenes",
        "scenes (6 natural and urban scene classes: buildings, forest, glacier, mountain, sea, street)",
        "confirmation",
        "https://www.kaggle.com/datasets/puneet6060/intel-image-classification (Intel's scene set, its train and test splits); "
        "the archive is a public GitHub copy at 100 px",
        "not stated (Intel, published for a classification challenge)",
        archive="https://github.com/afroozsheikh/Intel-Image-Classifier/archive/268f8fc38fb3f7307c1861d619ee99ff4158a3f5.zip",
        classes=0,
        note=SUBSTITUTED + " for indoor67 (MIT Indoor-67, 10 indoor scene classes, indoorCVPR_09.tar)",
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
