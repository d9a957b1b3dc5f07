"""mnist / cifar10 / imagenet loaders on small files written in the real formats, and on real
MNIST."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.paths import SHARED_MNIST
from tuner.core.config import TrialConfig
from tuner.data import FeatureSet, load_features
from tuner.errors import TunerError

CIFAR_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format: magic 0x0000 08 <ndim> (uint8), big-endian int32 dims, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I" + "I" * array.ndim, 0x800 + array.ndim, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(
    root: Path, n_train: int = 30, n_test: int = 20, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) * 3) % 10,
    }
    raw = root / "MNIST" / "raw"
    for prefix, split in (("train", "train"), ("t10k", "test")):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", arrays[f"x_{split}"])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", arrays[f"y_{split}"])
    return arrays


def write_cifar(root: Path, per_batch: int = 4) -> dict[str, np.ndarray]:
    """Python pickles with bytes keys, as the official batches load with encoding='bytes'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batches[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump(
                {
                    b"batch_label": name.encode(),
                    b"labels": labels,
                    b"data": data,
                    b"filenames": [b"x.png"] * per_batch,
                },
                f,
                protocol=2,
            )
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}, f, protocol=2
        )
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return {
        "x_train": np.concatenate([d for d, _ in train]),
        "y_train": np.concatenate([labels for _, labels in train]),
        "x_test": batches["test_batch"][0],
        "y_test": np.asarray(batches["test_batch"][1]),
    }


COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def write_folder(root: Path, per_class: int, classes=("blue", "red"), size=(20, 12)) -> None:
    """Solid-colour PNGs of varied sizes, one folder per class."""
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            w, h = size[0] + i, size[1] + 2 * i
            Image.new("RGB", (w, h), COLOURS[c]).save(root / c / f"{i}.png")


def load(dataset: str, root: Path, **changes):
    return load_features(TrialConfig(dataset=dataset, **changes), data_dir=root, progress=False)


def training_part(fs: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation together, rows sorted: the loader's training split, whatever the
    hold-out drew."""
    return sorted_rows(
        np.concatenate([fs.x_train, fs.x_val]), np.concatenate([fs.y_train, fs.y_val])
    )


def sorted_rows(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    order = np.lexsort(np.column_stack([y, x]).T[::-1])
    return x[order], np.asarray(y)[order]


# ----------------------------------------------------------------------------- mnist


def test_mnist_idx_files_load(tmp_path):
    arrays = write_mnist(tmp_path)
    fs = load("mnist", tmp_path)
    x_train, y_train = training_part(fs)
    expected_x, expected_y = sorted_rows(arrays["x_train"] / 255.0, arrays["y_train"])
    np.testing.assert_allclose(x_train, expected_x, atol=1e-7)
    np.testing.assert_allclose(fs.x_test, arrays["x_test"].reshape(20, -1) / 255.0, atol=1e-7)
    np.testing.assert_array_equal(y_train, expected_y)
    np.testing.assert_array_equal(fs.y_test, arrays["y_test"])
    assert fs.image_shape == (1, 28, 28)
    assert fs.label_names == tuple(str(i) for i in range(10))


def test_mnist_missing_files_error_names_directory_and_files(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(TunerError) as err:
        load("mnist", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message
    assert "download: true" in message


# ----------------------------------------------------------------------------- cifar10


def test_cifar10_python_batches_load_with_their_names(tmp_path):
    # every class twice, to hold one out for validation
    arrays = write_cifar(tmp_path, per_batch=20)
    fs = load("cifar10", tmp_path)
    # Rows are R, G, B planes of 32x32: the raw features keep that (C, H, W) order.
    x_train, y_train = training_part(fs)
    expected_x, expected_y = sorted_rows(arrays["x_train"] / 255.0, arrays["y_train"])
    np.testing.assert_allclose(x_train, expected_x, atol=1e-7)
    np.testing.assert_allclose(fs.x_test, arrays["x_test"] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(y_train, expected_y)
    np.testing.assert_array_equal(fs.y_test, arrays["y_test"])
    assert fs.image_shape == (3, 32, 32)
    assert fs.label_names == tuple(CIFAR_NAMES)


def test_cifar10_missing_batch_error_names_it(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(TunerError, match=r"missing: data_batch_3\.") as err:
        load("cifar10", tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)


# ----------------------------------------------------------------------------- imagenet


def test_image_folder_with_train_and_val(tmp_path):
    write_folder(tmp_path / "train", per_class=3)
    write_folder(tmp_path / "val", per_class=2)
    fs = load("imagenet", tmp_path, image_size=16)
    # val/ is the test split; validation holds out one image per class of train/.
    assert fs.x_train.shape == (4, 3 * 16 * 16) and fs.x_val.shape == (2, 3 * 16 * 16)
    assert fs.x_test.shape == (4, 3 * 16 * 16)
    assert fs.image_shape == (3, 16, 16) and fs.label_names == ("blue", "red")
    x_train, y_train = training_part(fs)
    np.testing.assert_array_equal(y_train, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(fs.y_test, [0, 0, 1, 1])
    planes = x_train.reshape(6, 3, 16 * 16).mean(axis=2)  # per-image mean of R, G, B
    np.testing.assert_allclose(planes[:3], [[0, 0, 1]] * 3, atol=1e-6)
    np.testing.assert_allclose(planes[3:], [[1, 0, 0]] * 3, atol=1e-6)


def test_image_folder_single_tree_is_split_stratified_with_class_subset(tmp_path):
    write_folder(tmp_path, per_class=5, classes=("blue", "green", "red"))
    fs = load("imagenet", tmp_path, classes=["red", "green"], test_size=0.2, split_seed=1)
    assert fs.label_names == ("green", "red")
    assert fs.image_shape == (3, 32, 32)  # the default size
    # Test as large as validation, each a fifth of the whole: 3 / 1 / 1 per class.
    np.testing.assert_array_equal(np.bincount(fs.y_train), [3, 3])
    np.testing.assert_array_equal(np.bincount(fs.y_val), [1, 1])
    np.testing.assert_array_equal(np.bincount(fs.y_test), [1, 1])
    # Labels follow the pixels: green images are label 0, red ones label 1.
    green = fs.x_train.reshape(len(fs.x_train), 3, -1).mean(axis=2)[:, 1]
    np.testing.assert_array_equal(green > 0.5, fs.y_train == 0)


def test_image_folder_errors(tmp_path):
    with pytest.raises(TunerError, match="not a directory") as err:
        load("imagenet", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    with pytest.raises(TunerError, match="no class folders in"):
        load("imagenet", tmp_path)
    write_folder(tmp_path, per_class=2)
    with pytest.raises(TunerError, match="'cat' not found.*Available class folders: blue, red"):
        load("imagenet", tmp_path, classes=["cat", "red"])
    with pytest.raises(TunerError, match="label_names .* 3 names, but the data has 2 labels"):
        load("imagenet", tmp_path, label_names=["a", "b", "c"], test_size=0.5)
    (tmp_path / "red" / "1.png").unlink()  # one red image cannot be in both train and test
    with pytest.raises(TunerError, match="test_size = 0.5: cannot split 3 samples of 2 classes"):
        load("imagenet", tmp_path, test_size=0.5)


# ----------------------------------------------------------------------------- real MNIST


@pytest.mark.skipif(
    not SHARED_MNIST.is_dir(), reason=f"real MNIST split not present at {SHARED_MNIST}"
)
def test_real_mnist_split(tmp_path):
    fs = load_features(
        TrialConfig(dataset="mnist"), data_dir=SHARED_MNIST, cache_dir=tmp_path, progress=False
    )
    # Validation: 0.15 of the official training split, stratified.
    assert (
        fs.x_train.shape == (6800, 784)
        and fs.x_val.shape == (1200, 784)
        and fs.x_test.shape == (2000, 784)
    )
    per_class = np.bincount(fs.y_train) + np.bincount(fs.y_val)
    np.testing.assert_array_equal(per_class, [800, 892, 830, 812, 796, 704, 753, 828, 784, 801])
    assert np.all(np.abs(np.bincount(fs.y_val) - 0.15 * per_class) <= 1)
    np.testing.assert_array_equal(
        np.bincount(fs.y_test), [180, 243, 202, 198, 186, 188, 205, 200, 190, 208]
    )
    assert 0.0 <= fs.x_train.min() and fs.x_train.max() == 1.0
