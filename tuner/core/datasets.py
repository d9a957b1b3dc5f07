"""What tuner knows about each dataset it reads, in one place: its images' shape and scale, its
classes, whether its files carry an official test split, where it comes from, and the defaults of
splitting and resizing. Adding a dataset means one entry here plus its loader in `tuner.data`.

Data only (no numpy, no torch): the config checks, the data layer and a saved model read the same
facts, so a model built from a trial knows the images its trial loaded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dataset:
    name: str  # what `dataset:` names
    about: str  # how it reads in help texts: "mnist", "imagenet (an image folder)"
    image_shape: tuple[int, int, int] | None  # (C, H, W) as loaded; None: square, image_size wide
    max_value: float  # the pixel value meaning white, as the loader scales it
    n_classes: int | None  # None: as many as its files hold (class folders)
    official_test: str  # "yes", "no" (test_size splits the whole) or "optional" (a val/ folder)
    from_files: bool  # read from data_dir (digits ships inside scikit-learn)
    downloadable: bool  # `download: true` fetches it into data_dir (torchvision)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "digits", "digits (scikit-learn, embedded)", (1, 8, 8), 16.0, 10, "no", False, False
        ),
        Dataset("mnist", "mnist", (1, 28, 28), 255.0, 10, "yes", True, True),
        Dataset("cifar10", "cifar10", (3, 32, 32), 255.0, 10, "yes", True, True),
        Dataset(
            "imagenet", "imagenet (an image folder)", None, 255.0, None, "optional", True, False
        ),
    )
}
DATASET_NAMES = tuple(DATASETS)

# An image folder's images are resized to a square this wide unless image_size says otherwise
# (the prior work's 32x32: the research code whose run_experiment tuner.prior_work mirrors).
DEFAULT_IMAGE_SIZE = 32
# Where a dataset has an official test split, validation is this share of its training split.
DEFAULT_VAL_SHARE = 0.15


def input_shape(dataset: str, image_size: int | None) -> tuple[int, int, int]:
    """(C, H, W) of one image of `dataset` as loaded (an image folder's: RGB, resized square)."""
    shape = DATASETS[dataset].image_shape
    if shape is None:
        size = image_size or DEFAULT_IMAGE_SIZE
        return (3, size, size)
    return shape


def listed(names: list[str]) -> str:
    """ "a, b, c or d": how help texts list datasets."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
