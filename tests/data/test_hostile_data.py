"""Hostile and broken data files: `tuner train` exits 2 naming the file, never a traceback, never
runs code."""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.test_files import write_cifar, write_folder, write_mnist
from tuner.cli import main
from tuner.errors import TunerError


def train(capsys, data_dir: Path, dataset: str, *pairs: str) -> tuple[int, str]:
    args = [
        "train",
        "--data-dir",
        str(data_dir),
        "--set",
        f"dataset={dataset}",
        "--set",
        "iterations=2",
        "--set",
        "eval_every=2",
        "--set",
        "hidden_dims=[8]",
    ]
    for pair in pairs:
        args += ["--set", pair]
    code = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# ----------------------------------------------------------------------------- CIFAR-10 pickles


class Touch:
    """A pickle payload that creates a file when unpickled by a plain pickle.load."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def crafted_batch(path: Path, marker: Path) -> None:
    data = np.zeros((4, 3072), dtype=np.uint8)
    with open(path, "wb") as f:
        pickle.dump(
            {b"batch_label": b"x", b"labels": [0, 1, 2, 3], b"data": data, b"run": Touch(marker)},
            f,
            protocol=2,
        )


def test_crafted_cifar_batch_cannot_run_code(tmp_path, capsys):
    write_cifar(tmp_path)
    # The payload works: a plain unpickler creates its file.
    crafted_batch(tmp_path / "probe", tmp_path / "plain-pickle-ran-it")
    with open(tmp_path / "probe", "rb") as f:
        pickle.load(f, encoding="bytes")
    assert (tmp_path / "plain-pickle-ran-it").exists()
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    crafted_batch(batch, tmp_path / "tuner-ran-it")
    code, err = train(capsys, tmp_path, "cifar10")
    assert code == 2
    assert not (tmp_path / "tuner-ran-it").exists()
    assert f"refused to read {batch}: it asks to load posix.system" in err
    assert "could run code" in err


@pytest.mark.parametrize(
    ("name", "damage", "fragment"),
    [
        (
            "data_batch_2",
            lambda b: b[:1000],
            "is not a readable CIFAR-10 python batch (truncated or garbage",
        ),
        ("test_batch", lambda b: b"\x00garbage" * 10, "is not a readable CIFAR-10 python batch"),
        (
            "data_batch_3",
            lambda b: pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, 2),
            "'data' must be an integer array of shape (N, 3072) (N images of 32x32 RGB), "
            "got uint8 array of shape (2, 100)",
        ),
        (
            "data_batch_4",
            lambda b: pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, 2),
            "'labels' must be a list of 2 integers in 0..9 (one per image), got a list of 2 (int)",
        ),
        (
            "batches.meta",
            lambda b: pickle.dumps([b"cat"], 2),
            "holds a list, not the dict of a CIFAR-10 batch",
        ),
        (
            "batches.meta",
            lambda b: pickle.dumps({b"label_names": [b"cat"]}, 2),
            "'label_names' must be a list of 10 names, got a list of 1 (bytes)",
        ),
    ],
)
def test_broken_cifar_files_name_the_file(tmp_path, capsys, name, damage, fragment):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / name
    path.write_bytes(damage(path.read_bytes()))
    code, err = train(capsys, tmp_path, "cifar10")
    assert code == 2
    assert f"{path}" in err and fragment in err


def test_cifar_batches_written_by_python3_with_any_protocol_still_load(tmp_path):
    from tuner.data.formats import read_cifar_batch

    data = np.arange(2 * 3072).reshape(2, 3072).astype(np.uint8)
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}"
        path.write_bytes(pickle.dumps({"data": data, "labels": [3, 9]}, protocol=protocol))
        pixels, labels = read_cifar_batch(path)
        np.testing.assert_array_equal(pixels.reshape(2, 3072), data)
        np.testing.assert_array_equal(labels, [3, 9])


# ----------------------------------------------------------------------------- MNIST IDX


@pytest.mark.parametrize(
    ("name", "damage", "fragment"),
    [
        (
            "train-images-idx3-ubyte",
            lambda b: b[:500],
            "is truncated: its header declares shape (30, 28, 28), i.e. 23536 bytes, but the file "
            "has 500",
        ),
        ("t10k-images-idx3-ubyte", lambda b: b + b"\0", "is longer than its header says"),
        (
            "train-labels-idx1-ubyte",
            lambda b: b"garbage" * 4,
            "is not an IDX file of 1-dimensional unsigned bytes (header 00 00 08 01): it starts "
            "with 67 61 72 62",
        ),
        ("t10k-labels-idx1-ubyte", lambda b: b"", "it starts with nothing and is 0 bytes"),
        # A header that promises 2**32-1 images must not make tuner allocate them.
        (
            "train-images-idx3-ubyte",
            lambda b: b[:4] + b"\xff\xff\xff\xff" + b[8:],
            "its header declares shape (4294967295, 28, 28)",
        ),
        (
            "train-labels-idx1-ubyte",
            lambda b: b[:8] + bytes([12]) + b[9:],
            "holds the label 12; MNIST labels are 0..9",
        ),
    ],
)
def test_broken_mnist_files_name_the_file(tmp_path, capsys, name, damage, fragment):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / name
    path.write_bytes(damage(path.read_bytes()))
    code, err = train(capsys, tmp_path, "mnist")
    assert code == 2
    assert f"mnist: {path}" in err and fragment in err


def test_mnist_images_and_labels_of_different_sets(tmp_path, capsys):
    write_mnist(tmp_path)
    other = tmp_path / "other"
    write_mnist(other, n_train=31)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes(
        (other / "MNIST" / "raw" / "train-labels-idx1-ubyte").read_bytes()
    )
    code, err = train(capsys, tmp_path, "mnist")
    assert code == 2 and "holds 30 images but" in err and "holds 31 labels" in err


# ----------------------------------------------------------------------------- image folders


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (Pillow checks the size on open)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def noise_png(path: Path) -> bytes:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
        path
    )
    return path.read_bytes()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            lambda p: noise_png(p)[:600],
            "could not read image {path} (truncated or not an image? OSError: image file is "
            "truncated",
        ),
        (
            lambda p: b"garbage" * 10,
            "could not read image {path} (truncated or not an image? UnidentifiedImageError",
        ),
        # Between Pillow's limit and twice it, Pillow only warns; above, it raises: refused alike.
        (
            lambda p: png_claiming(10_000, 10_000),
            "refused image {path}: Image size (100000000 pixels) exceeds limit",
        ),
        (
            lambda p: png_claiming(100_000, 100_000),
            "refused image {path}: Image size (10000000000 pixels) exceeds limit",
        ),
    ],
)
def test_broken_and_bomb_images_name_the_file(tmp_path, capsys, content, fragment):
    write_folder(tmp_path, per_class=3)
    path = tmp_path / "red" / "1.png"
    path.write_bytes(content(path))
    code, err = train(capsys, tmp_path, "imagenet", "test_size=0.5")
    assert code == 2
    assert fragment.format(path=path) in err


def test_image_size_beyond_memory_is_refused_before_allocating(tmp_path, capsys):
    write_folder(tmp_path, per_class=2)
    code, err = train(capsys, tmp_path, "imagenet", "test_size=0.5", "image_size=1000000")
    assert code == 2
    assert "image_size = 1000000 is not valid: expected an integer in 8..4096" in err
    # Within the cap, a folder too large for the machine's memory at that size: refused before
    # np.empty, which Linux would grant (overcommit) and the filling would then be killed for.
    from tuner.data.imagefolder import _allocate

    with pytest.raises(
        TunerError,
        match=r"image_size = 4096: 1000000 images of 3x4096x4096 bytes need "
        r"46875\.0 GiB.*Use a smaller image_size",
    ):
        _allocate(1_000_000, 4096)
