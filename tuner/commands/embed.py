"""`tuner embed`: apply a logged model (its own featurization and encoder) to a dataset split or a
folder of images, and write the embeddings with their labels or file paths.

Torch, MLflow and pandas load inside the command, so `tuner --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tuner.commands.args import add_data_dir, add_tracking
from tuner.core.config import TrialConfig
from tuner.core.datasets import DATASET_NAMES, DATASETS, listed
from tuner.errors import TunerError
from tuner.system.processes import hold_point

FORMATS = (".parquet", ".csv", ".npy")
BLOCK = 4 * 8192  # rows per step of the progress bar; a multiple of the encoder's chunk
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "embed", help="apply a logged model to a dataset split or a folder of images"
    )
    p.add_argument(
        "--model",
        required=True,
        help="models:/NAME@champion, models:/NAME/VERSION, runs:/RUN_ID/embedding_model "
        "or a run id",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help=f"{listed(list(DATASET_NAMES))} (labels are written)")
    source.add_argument(
        "--images", type=Path, help="a folder of unlabeled images (file paths are written)"
    )
    add_data_dir(p)
    add_tracking(p)
    p.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test", "all"),
        help="dataset split (default: test)",
    )
    p.add_argument(
        "--out", required=True, type=Path, help="output file: .parquet (default), .csv or .npy"
    )
    p.add_argument("--plot", type=Path, default=None, help="also draw the embeddings to this .png")
    p.set_defaults(func=embed_command)


def embed_command(args: argparse.Namespace) -> int:
    from tuner.tracking.registry import load_model

    out = output_path(args.out)
    started = time.perf_counter()
    model = load_model(args.model, tracking_uri=args.tracking_uri)
    if args.images is not None:
        images, columns = folder_images(args.images, model)
    else:
        images, columns = dataset_images(model, args.dataset, args.split, args.data_dir)
    hold_point("embed")
    z = embed_blocks(model, images)
    write(out, z, columns)
    if args.plot is not None:
        draw(args.plot, z, columns, model)
    print(
        f"wrote {len(z)} embeddings of width {z.shape[1]} to {out} in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return 0


def output_path(out: Path) -> Path:
    if out.suffix == "":
        return out.with_suffix(".parquet")
    if out.suffix not in FORMATS:
        raise TunerError(f"--out {out}: unknown format {out.suffix!r}; use {', '.join(FORMATS)}.")
    return out


def dataset_images(
    model: Any, dataset: str, split: str, data_dir: str | None
) -> tuple[np.ndarray, dict]:
    from tuner.data.inputs import split_images

    cfg = (
        model.config
        if dataset == model.config.dataset
        else TrialConfig(
            dataset=dataset, test_size=model.config.test_size, split_seed=model.config.split_seed
        )
    )
    part = split_images(cfg, split, data_dir)
    model.as_images(part.images)  # refuse another shape before any work, naming both
    names = np.asarray(part.label_names, dtype=object)
    columns = {"label": part.labels, "label_name": names[part.labels]}
    if cfg.composite_labels is not None:
        columns["fine_label"] = part.fine_labels
    return part.images, columns


def folder_images(folder: Path, model: Any) -> tuple[np.ndarray, dict]:
    """Every image file under `folder` (sorted), as (N, C, H, W) uint8; one shape for all."""
    paths = (
        sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if folder.is_dir()
        else []
    )
    if not paths:
        raise TunerError(f"--images {folder}: no image files there ({', '.join(IMAGE_SUFFIXES)}).")
    channels, size = model.settings.image_shape[0], None
    if DATASETS[model.config.dataset].image_shape is None:  # resized to a square when loaded
        size = model.settings.image_shape[1]
    arrays = []
    for path in paths:
        arrays.append(read_image(path, channels, size))
        if arrays[-1].shape != arrays[0].shape:
            raise TunerError(
                f"--images: {path} is {arrays[-1].shape} (C, H, W) but {paths[0]} is "
                f"{arrays[0].shape}: the images of one folder need one size."
            )
    images = np.stack(arrays)
    model.as_images(images)
    return images, {"path": np.asarray([str(p) for p in paths], dtype=object)}


def read_image(path: Path, channels: int, size: int | None) -> np.ndarray:
    """One image file as (C, H, W) uint8, resized to `size` square when given; TunerError naming the
    file when it is not an image, is truncated, cannot be read or is a decompression bomb."""
    from PIL import Image

    from tuner.data.imagefolder import decoding, eight_bit

    with decoding(path, "--images"), Image.open(path) as opened:
        image = eight_bit(opened, path, "--images")  # as the training folders read it
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        if size is not None:
            from torchvision import transforms

            image = transforms.Resize((size, size))(image.convert("RGB" if channels == 3 else "L"))
        pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def embed_blocks(model: Any, images: np.ndarray) -> np.ndarray:
    from tqdm import tqdm

    parts = []
    with tqdm(
        total=len(images),
        desc="embedding",
        unit="img",
        file=sys.stderr,
        disable=len(images) <= BLOCK,
    ) as bar:
        for start in range(0, len(images), BLOCK):
            parts.append(model.embed(images[start : start + BLOCK]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)


def write(out: Path, z: np.ndarray, columns: dict[str, np.ndarray]) -> None:
    import pandas as pd

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":  # the matrix only: labels and paths need .parquet or .csv
        np.save(out, z)
        return
    frame = pd.DataFrame({**columns, **{f"z{i}": z[:, i] for i in range(z.shape[1])}})
    if out.suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)


def draw(path: Path, z: np.ndarray, columns: dict[str, np.ndarray], model: Any) -> None:
    from tuner.trainer.plots import plot_embedding

    labels = columns.get("label", np.zeros(len(z), dtype=np.int64))
    by_label = dict(zip(labels.tolist(), columns.get("label_name", ["unlabeled"] * len(z))))
    names = tuple(str(by_label.get(i, i)) for i in range(int(labels.max()) + 1))
    how = "" if z.shape[1] <= 2 else f": first two principal components of {z.shape[1]}"
    plot_embedding(z, labels, names, path, f"{model.config.dataset} embedding{how}")
