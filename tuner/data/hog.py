"""HOG features (scikit-image), over a process pool for large inputs.

HOG is pure-Python-loop heavy per image, so threads would not help; processes do.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from tuner.errors import TunerError

IN_PROCESS_BELOW = 2000  # a pool costs more to start than these images take
CHUNK = 500  # images per task: fine enough for a progress bar, coarse enough to amortize pickling


def default_workers() -> int:
    # The CPUs this process may run on, which a container or `taskset` can make fewer than the
    # machine's.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def check_hog_fits(height: int, width: int, pixels_per_cell: int, cells_per_block: int) -> None:
    need = pixels_per_cell * cells_per_block
    if height < need or width < need:
        raise TunerError(
            f"hog_pixels_per_cell = {pixels_per_cell} and hog_cells_per_block = {cells_per_block} "
            f"need images of at least {need}x{need} pixels (one block), but the images are "
            f"{height}x{width}. Lower hog_pixels_per_cell or hog_cells_per_block (or raise "
            "image_size for imagenet)."
        )


def hog_features(
    images: np.ndarray,
    orientations: int = 9,
    pixels_per_cell: int = 4,
    cells_per_block: int = 2,
    workers: int | None = None,
    max_value: float | None = None,
    progress: bool = False,
) -> np.ndarray:
    """HOG descriptors of (N, H, W) grayscale or (N, C, H, W) images -> (N, n_features) float32.

    Pixels are divided by `max_value` first (None: 255 for uint8 images, else 1), so that
    every dataset's HOG sees [0, 1] images. Colour images use scikit-image's channel
    handling (the strongest gradient over channels). `workers` processes (None: the CPUs
    available) share the work when there are at least IN_PROCESS_BELOW images.
    """
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"expected (N, H, W) or (N, C, H, W) images, got shape {images.shape}")
    check_hog_fits(images.shape[2], images.shape[3], pixels_per_cell, cells_per_block)
    if max_value is None:
        max_value = 255.0 if images.dtype == np.uint8 else 1.0
    params = (orientations, pixels_per_cell, cells_per_block, float(max_value))
    workers = default_workers() if workers is None else max(1, int(workers))
    chunks = [images[i : i + CHUNK] for i in range(0, len(images), CHUNK)]
    from tqdm import tqdm

    bar = tqdm(
        total=len(images), desc="hog features", unit="img", file=sys.stderr, disable=not progress
    )
    out: list[np.ndarray] = []
    with bar:
        if workers == 1 or len(images) < IN_PROCESS_BELOW:
            for chunk in chunks:
                out.append(_hog_chunk(chunk, params))
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(
                max_workers=min(workers, len(chunks)), mp_context=_pool_context()
            ) as pool:
                for chunk, feats in zip(
                    chunks, pool.map(_hog_chunk, chunks, [params] * len(chunks))
                ):
                    out.append(feats)
                    bar.update(len(chunk))
    if not out:
        return np.zeros(
            (0, hog_length(images.shape[2:], pixels_per_cell, cells_per_block, orientations)),
            dtype=np.float32,
        )
    return np.concatenate(out)


def hog_length(
    hw: tuple[int, ...], pixels_per_cell: int, cells_per_block: int, orientations: int
) -> int:
    """The length of one descriptor, as scikit-image lays it out (blocks x cells x orientations)."""
    blocks = [math.floor(s / pixels_per_cell) - cells_per_block + 1 for s in hw]
    return blocks[0] * blocks[1] * cells_per_block**2 * orientations


def _pool_context() -> multiprocessing.context.BaseContext:
    # Not fork: the caller may be a Ray driver or hold torch's threads, and a forked child
    # of a multi-threaded process can deadlock. A forkserver child starts clean (it imports
    # this module, and the caller's __main__, which must be guarded as for any spawn).
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The server imports scikit-image once and forks each worker from that warm state;
    # otherwise every worker pays the import (about a second) before its first image.
    context.set_forkserver_preload(["skimage.feature", __name__])
    return context


def _hog_chunk(chunk: np.ndarray, params: tuple[int, int, int, float]) -> np.ndarray:
    from skimage.feature import hog

    orientations, ppc, cpb, max_value = params
    colour = chunk.shape[1] > 1
    feats = []
    for image in chunk:
        image = image.astype(np.float32) / max_value
        feats.append(
            hog(
                image if colour else image[0],
                orientations=orientations,
                pixels_per_cell=(ppc, ppc),
                cells_per_block=(cpb, cpb),
                channel_axis=0 if colour else None,
            )
        )
    return np.asarray(feats, dtype=np.float32)
