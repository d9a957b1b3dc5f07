"""ImageNet-style trees of class folders, read through torchvision's ImageFolder.

Two layouts: `train/` and `val/` subfolders (an official split), or one tree of class
folders that the caller splits stratified. Images are resized to a square and kept RGB.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tuner.core.datasets import DATASETS, DEFAULT_IMAGE_SIZE
from tuner.data.sources import ImageData, Source, file_entries
from tuner.errors import TunerError


def imagenet_source(root: Path, classes: tuple[str, ...] | None, image_size: int | None) -> Source:
    if not root.is_dir():
        raise TunerError(
            f"imagenet: data_dir {root} is not a directory. Expected class folders of images "
            f"there (<data_dir>/<class>/<image>), or train/ and val/ subfolders holding them."
        )
    split_dirs = _split_dirs(root)
    available = _classes_in(split_dirs[0], root)
    chosen = _choose(available, classes, root)
    for other in split_dirs[1:]:
        lacking = sorted(set(chosen) - set(_classes_in(other, root)))
        if lacking:
            raise TunerError(
                f"imagenet: {other} lacks the class folders {', '.join(lacking)} that "
                f"{split_dirs[0]} has; train/ and val/ need the same classes."
            )
    size = image_size or DEFAULT_IMAGE_SIZE
    entries = file_entries(
        [p for d in split_dirs for p in _image_files(d, chosen)], root, "imagenet"
    )
    fingerprint = {
        "dataset": "imagenet",
        "root": str(root),
        "image_size": size,
        "classes": list(chosen),
        # Every image's path, size, mtime and content digest, folded into one hash: a tree of
        # a million images would otherwise make a key (and its JSON sidecar) of 100 MB.
        "n_images": len(entries),
        "images_sha256": hashlib.sha256(json.dumps(entries).encode()).hexdigest(),
    }
    return Source(
        "imagenet",
        fingerprint,
        lambda progress: load_imagefolder(split_dirs, chosen, size, progress),
        lambda: tuple(
            p.relative_to(split_dirs[0]).as_posix() for p in _image_files(split_dirs[0], chosen)
        ),
    )


def _split_dirs(root: Path) -> list[Path]:
    if (root / "train").is_dir() and (root / "val").is_dir():
        return [root / "train", root / "val"]
    return [root]


def _classes_in(directory: Path, root: Path) -> list[str]:
    from torchvision.datasets.folder import find_classes

    try:
        return find_classes(str(directory))[0]
    except FileNotFoundError:
        raise TunerError(
            f"imagenet: no class folders in {directory} (data_dir {root}). Expected "
            f"<class>/<image> folders there, or train/ and val/ subfolders holding them."
        ) from None


def _choose(available: list[str], wanted: tuple[str, ...] | None, root: Path) -> tuple[str, ...]:
    if wanted is None:
        return tuple(available)
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise TunerError(
            f"classes: {', '.join(map(repr, unknown))} not found in data_dir {root}. "
            f"Available class folders: {', '.join(available)}."
        )
    # Label order follows the folder names' sorted order, as ImageFolder numbers them.
    return tuple(sorted(set(wanted)))


def _image_files(directory: Path, classes: tuple[str, ...]) -> list[Path]:
    """The image files ImageFolder will read, in its order (it walks each class folder, sorted)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    _refuse_links(directory, classes)
    try:
        samples = make_dataset(
            str(directory), {c: i for i, c in enumerate(classes)}, extensions=IMG_EXTENSIONS
        )
    except FileNotFoundError as err:
        raise _no_images(err) from None
    return [Path(path) for path, _ in samples]


def _refuse_links(directory: Path, classes: tuple[str, ...]) -> None:
    """Refuse what would make torchvision's walk (it follows links) read an image twice or under
    another class: a linked directory inside a class folder (a loop, or a link to another class),
    or class folders that lie inside one another once their links are resolved."""
    for c in classes:
        for top, dirs, _files in os.walk(directory / c):  # followlinks=False: links stay in `dirs`
            linked = next(
                (Path(top) / d for d in sorted(dirs) if os.path.islink(os.path.join(top, d))), None
            )
            if linked is not None:
                raise TunerError(
                    f"imagenet: {linked} is a link to the directory {os.path.realpath(linked)} "
                    f"inside the class folder {directory / c}: links can loop or bring images of "
                    f"another class in. Replace the link with the images themselves, or remove it."
                )
    real = {c: Path(os.path.realpath(directory / c)) for c in classes}
    # Sorted by path components, a folder's first follower lies inside it whenever anything does.
    ordered = sorted(classes, key=lambda c: real[c].parts)
    for a, inner in zip(ordered, ordered[1:]):
        if real[inner].is_relative_to(real[a]):
            raise TunerError(
                f"imagenet: the class folder {directory / inner} lies inside {directory / a} "
                f"(as {real[inner]} inside {real[a]}, once links are followed): its images "
                f"would count for both classes. Give each class a folder of its own."
            )


def _no_images(err: FileNotFoundError) -> TunerError:
    return TunerError(
        f"imagenet: {err} Every class folder needs at least one image "
        f"(.jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp)."
    )


def _folder_dataset(directory: Path, classes: tuple[str, ...], size: int) -> Any:
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    class SubsetFolder(ImageFolder):
        def find_classes(self, _directory: str) -> tuple[list[str], dict[str, int]]:
            return list(classes), {c: i for i, c in enumerate(classes)}

    try:
        return SubsetFolder(
            str(directory), transform=transforms.Resize((size, size)), loader=_rgb_loader
        )
    except FileNotFoundError as err:
        raise _no_images(err) from None


# Modes of 16 unsigned bits per pixel: Pillow's convert("RGB") clips them at 255 instead of scaling.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _rgb_loader(path: str) -> Any:
    """torchvision's pil_loader, with 16-bit greyscale scaled to 8 bits and wider modes refused."""
    from PIL import Image

    with open(path, "rb") as f:
        return eight_bit(Image.open(f), path, "imagenet").convert("RGB")


def eight_bit(image: Any, path: str | Path, where: str) -> Any:
    """A PIL image in a mode of 8 bits a channel: 16-bit greyscale scaled down ('L'), 32-bit integer
    and float modes refused (TunerError, `where`: path): their range is unknown. Training folders
    and `tuner embed --images` read images alike through it."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES:
        wide = np.asarray(image, dtype=np.uint32)
        return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
    if image.mode in ("I", "F") or image.mode.startswith(("I;", "F;")):
        raise TunerError(
            f"{where}: {path} has pixels of mode {image.mode!r} (32-bit integers or floats, "
            f"whose range tuner cannot know). Save it as an 8-bit (or 16-bit greyscale) image, "
            f"or remove it."
        )
    return image


def _read_all(dataset: Any, size: int, progress: bool, desc: str) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    images = _allocate(len(dataset), size)
    for i in tqdm(
        range(len(dataset)), desc=desc, unit="img", file=sys.stderr, disable=not progress
    ):
        images[i] = _read_image(dataset, i)
    return images, np.asarray(dataset.targets, dtype=np.int64)


def _allocate(n: int, size: int) -> np.ndarray:
    # Linux overcommits: np.empty of more than the machine has succeeds, and filling it then
    # gets the process killed. Compare with the physical memory first.
    need = n * 3 * size * size
    have = (
        os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else None
    )
    if have is not None and need > have:
        raise TunerError(
            f"image_size = {size}: {n} images of 3x{size}x{size} bytes need {need / 2**30:.1f} "
            f"GiB, more than this machine's {have / 2**30:.1f} GiB of memory (the features need "
            f"more still). Use a smaller image_size (default {DEFAULT_IMAGE_SIZE})."
        )
    try:
        return np.empty((n, 3, size, size), dtype=np.uint8)
    except (MemoryError, ValueError) as err:
        raise TunerError(
            f"image_size = {size}: cannot hold {n} images of 3x{size}x{size} ({err}). "
            f"Use a smaller image_size (default {DEFAULT_IMAGE_SIZE})."
        ) from None


def _read_image(dataset: Any, i: int) -> np.ndarray:
    with decoding(dataset.samples[i][0], "imagenet"):
        image, _ = dataset[i]
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


@contextlib.contextmanager
def decoding(path: str | Path, where: str) -> Iterator[None]:
    """Decoding one untrusted image (training folders and `tuner embed --images`): a decompression
    bomb or a broken file becomes a TunerError naming it (`where`: path)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit: a bomb either way.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise TunerError(f"{where}: refused image {path}: {err} Shrink or remove it.") from None
    except TunerError:
        raise
    except Exception as err:  # noqa: BLE001 - decoders of a broken file raise OSError, SyntaxError, ValueError...
        raise TunerError(
            f"{where}: could not read image {path} (truncated or not an image? "
            f"{type(err).__name__}: {err}). Replace or remove it."
        ) from None


def load_imagefolder(
    split_dirs: list[Path], classes: tuple[str, ...], size: int, progress: bool
) -> ImageData:
    parts = [
        _read_all(_folder_dataset(d, classes, size), size, progress, f"reading {d.name}")
        for d in split_dirs
    ]
    x_test, y_test = parts[1] if len(parts) > 1 else (None, None)
    return ImageData(
        parts[0][0], parts[0][1], x_test, y_test, classes, DATASETS["imagenet"].max_value
    )
