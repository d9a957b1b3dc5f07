"""Hostile files found by review: each ends in a TunerError naming the file (or a rebuilt cache
entry), never a traceback, a hang or an allocation the file does not pay for."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.test_files import write_cifar, write_folder, write_idx, write_mnist
from tests.data.test_hostile_data import train
from tuner.core.config import TrialConfig
from tuner.data import formats, load_features, safe_pickle
from tuner.data.cache import entry_path
from tuner.data.pipeline import feature_key, open_source
from tuner.errors import TunerError
from tuner.system.tune_storage import SPOOL_DIR, STATE_FILE, experiment_dir, read_spool, read_state


class Blocked(BaseException):
    """Not an OSError (as TimeoutError is): no `except OSError` in tuner may swallow it."""


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail, instead of hanging the suite, when the block blocks (on a FIFO, say)."""

    def expire(_signum, _frame):
        raise Blocked(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


MEASURE = """
import json, sys, warnings
def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024
setup, call, out = sys.argv[1:4]
scope = {}
exec(setup, scope)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from what the process holds now
before, error = status_mb("VmRSS"), None
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        exec(call, scope)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
grown = status_mb("VmHWM") - before
with open(out, "w") as f:
    json.dump({"grown_mb": grown, "error": error, "result": repr(scope.get("result")),
               "warnings": [str(w.message) for w in caught]}, f)
"""


def measured(tmp_path: Path, setup: str, call: str) -> dict:
    """Run `call` in a fresh Python after `setup` (the imports) and report how far its peak memory
    rose above what it held before the call: the test process's own peak is whatever earlier tests
    left it at, so it cannot show what one call allocates. Not ru_maxrss, even in the child: Linux
    carries the forking process's peak into it across exec; the peak of /proc/self/status, reset
    after the imports, is the call's own. Also the call's error, `result` and warnings, and the
    child's stderr."""
    out = tmp_path / "measured.json"
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, setup, call, str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 0, proc.stderr
    return {**json.loads(out.read_text()), "stderr": proc.stderr}


# ----------------------------------------------------------------------------- MNIST IDX


def test_mnist_train_and_test_images_of_different_sizes(tmp_path, capsys):
    write_mnist(tmp_path)
    test_images = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    write_idx(test_images, np.zeros((20, 14, 14), np.uint8))
    code, err = train(capsys, tmp_path, "mnist")
    assert code == 2
    assert (
        f"{tmp_path / 'MNIST' / 'raw' / 'train-images-idx3-ubyte'} holds images of 28x28 pixels "
        f"but {test_images} holds images of 14x14"
    ) in err


@pytest.mark.parametrize(
    ("name", "shape", "fragment"),
    [
        (
            "train-images-idx3-ubyte",
            (0, 28, 28),
            "holds no images: its header declares shape (0, 28, 28)",
        ),
        (
            "t10k-images-idx3-ubyte",
            (0, 28, 28),
            "holds no images: its header declares shape (0, 28, 28)",
        ),
        ("t10k-labels-idx1-ubyte", (0,), "holds no labels: its header declares shape (0,)"),
        (
            "train-images-idx3-ubyte",
            (30, 0, 28),
            "declares images of shape (0, 28); every dimension must be at least 1",
        ),
        (
            "t10k-images-idx3-ubyte",
            (20, 28, 0),
            "declares images of shape (28, 0); every dimension must be at least 1",
        ),
    ],
)
def test_mnist_files_without_images_or_with_a_zero_dimension(
    tmp_path, capsys, name, shape, fragment
):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / name
    write_idx(path, np.zeros(shape, np.uint8))
    code, err = train(capsys, tmp_path, "mnist")
    assert code == 2
    assert f"mnist: {path}" in err and fragment in err


def test_a_huge_mnist_file_is_judged_by_its_header_and_size_without_reading_it(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    # Sparse: 2 GiB that take no disk, and small enough to be read here, so that reading it shows.
    os.truncate(path, 2 << 30)
    args = [
        "train",
        "--data-dir",
        str(tmp_path),
        "--set",
        "dataset=mnist",
        "--set",
        "iterations=2",
        "--set",
        "eval_every=2",
        "--set",
        "hidden_dims=[8]",
    ]
    got = measured(
        tmp_path,
        "import torch, tuner.data, tuner.trainer.train; from tuner.cli import main",
        f"result = main({args!r})",
    )
    assert got["grown_mb"] < 64  # measured: under 1 MiB; reading the file: 2048
    assert got["result"] == "2" and "Traceback" not in got["stderr"]
    assert (
        f"mnist: {path} is longer than its header says: its header declares shape (30,), i.e. 38 "
        f"bytes, but the file has {2 << 30}" in got["stderr"]
    )


# ----------------------------------------------------------------------------- CIFAR-10 pickles


class StridedArray:
    """numpy.ndarray(shape, u1, buffer=b"\\0", strides=0): every global it names used to be allowed,
    and the array claims rows * 3072 bytes from a one-byte buffer."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def __reduce__(self):
        return np.ndarray, (self.shape, np.dtype("u1"), b"\0", 0, (0,) * len(self.shape))


def test_an_array_with_strides_of_its_own_is_refused(tmp_path, capsys):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(
        pickle.dumps({b"data": StridedArray((2000, 3072)), b"labels": StridedArray((2000,))}, 2)
    )
    assert path.stat().st_size < 1000
    code, err = train(capsys, tmp_path, "cifar10")
    assert code == 2
    assert (
        f"cifar10: refused to read {path}: numpy.ndarray is called with a buffer and strides of "
        "its own" in err
    )
    # A billion rows are refused as fast, before anything looks at them.
    path.write_bytes(pickle.dumps({b"data": StridedArray((10**9, 3072)), b"labels": [0]}, 2))
    with deadline(20), pytest.raises(TunerError, match="refused to read"):
        formats.read_cifar_batch(path)


def test_an_array_that_claims_more_bytes_than_the_file_is_refused_even_if_the_unpickler_let_it_through(  # noqa: E501
    tmp_path, monkeypatch
):
    # The second guard, after loading: should an allowed global ever build such an array.
    monkeypatch.setitem(safe_pickle.ALLOWED_GLOBALS, ("numpy", "ndarray"), np.ndarray)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": StridedArray((2000, 3072)), b"labels": [0] * 2000}, 2))
    with pytest.raises(
        TunerError,
        match=r"refused to read .*data_batch_1: it holds a uint8 array of shape "
        r"\(2000, 3072\) and strides \(0, 0\) \(6144000 bytes\) in a file of",
    ):
        formats.read_cifar_batch(path)


def test_labels_that_repeat_one_array_are_refused_without_building_it(tmp_path):
    big = np.zeros(10_000, np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [big] * 100_000}, 2)
    )
    got = measured(
        tmp_path, "from tuner.data import formats", f"formats.read_cifar_batch({str(path)!r})"
    )
    assert got["error"].startswith("TunerError: ")
    assert re.search(
        r"'labels' must be a list of 2 integers in 0..9 .*got a list of 100000", got["error"]
    )
    assert got["grown_mb"] < 64  # measured: under 1 MiB; building the array: 100000 * 10000 int64s


def test_numpy_1_pickles_still_load(tmp_path):
    # The official batches name numpy.core.multiarray, as numpy 1 did; numpy 2 writes numpy._core.
    data = np.arange(3 * 3072).reshape(3, 3072).astype(np.uint8)
    blob = pickle.dumps({b"data": data, b"labels": [1, 2, 3]}, protocol=2)
    assert b"numpy._core.multiarray\n_reconstruct" in blob
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    pixels, labels = formats.read_cifar_batch(path)
    np.testing.assert_array_equal(pixels.reshape(3, 3072), data)
    np.testing.assert_array_equal(labels, [1, 2, 3])


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        (
            "batches.meta",
            {b"label_names": [b"a"] * 10, 1 << 33000: 0},
            "holds a dict with a key of type int, not a CIFAR-10 batch",
        ),
        (
            "test_batch",
            {b"data": np.zeros((0, 3072), np.uint8), b"labels": []},
            "holds no images: 'data' has shape (0, 3072)",
        ),
    ],
)
def test_cifar_files_that_are_not_batches(tmp_path, capsys, name, content, fragment):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / name
    # Protocol 4: protocol 2 writes an empty array's bytes as a call of bytes(), refused as a
    # global.
    path.write_bytes(pickle.dumps(content, protocol=4))
    code, err = train(capsys, tmp_path, "cifar10")
    assert code == 2
    assert f"cifar10: {path} {fragment}" in err


# ----------------------------------------------------------------------------- image folders


@pytest.mark.parametrize(
    ("link", "target", "fragment"),
    [
        (
            "red/again",
            ".",
            "is a link to the directory {real}/red inside the class folder {real}/red",
        ),
        (
            "red/more",
            "../blue",
            "is a link to the directory {real}/blue inside the class folder {real}/red",
        ),
        ("red/a", "..", "is a link to the directory {real} inside the class folder {real}/red"),
    ],
)
def test_linked_directories_in_a_class_folder_are_refused(tmp_path, capsys, link, target, fragment):
    write_folder(tmp_path, per_class=3)
    (tmp_path / link).symlink_to(target)
    with deadline(30):
        code, err = train(capsys, tmp_path, "imagenet", "test_size=0.5")
    assert code == 2
    assert f"imagenet: {tmp_path / link} " + fragment.format(real=os.path.realpath(tmp_path)) in err


def test_a_class_folder_linked_to_another_is_refused(tmp_path, capsys):
    write_folder(tmp_path, per_class=3)
    (tmp_path / "green").symlink_to("red")
    code, err = train(capsys, tmp_path, "imagenet", "test_size=0.5")
    assert code == 2
    assert (
        f"the class folder {tmp_path / 'green'} lies inside {tmp_path / 'red'}" in err
        or f"the class folder {tmp_path / 'red'} lies inside {tmp_path / 'green'}" in err
    )


def test_a_fifo_named_like_an_image_is_refused(tmp_path, capsys):
    write_folder(tmp_path, per_class=3)
    fifo = tmp_path / "red" / "pipe.png"
    os.mkfifo(fifo)
    with deadline(30):
        code, err = train(capsys, tmp_path, "imagenet", "test_size=0.5")
    assert code == 2
    assert f"imagenet: {fifo} is not a regular file (it is a FIFO)" in err


def test_16_bit_images_are_scaled_to_8_bits_not_clipped(tmp_path):
    from tuner.data.imagefolder import _rgb_loader

    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((6, 5), 32896, np.uint16)).save(path)  # 128.5 * 256: mid-grey
    assert Image.open(path).mode == "I;16"
    rgb = np.asarray(_rgb_loader(str(path)))
    assert rgb.shape == (6, 5, 3) and rgb.dtype == np.uint8
    assert (rgb == 128).all()  # Pillow's convert("RGB") would clip it to 255


def test_float_images_are_refused_naming_the_file_and_mode(tmp_path, capsys):
    write_folder(tmp_path, per_class=3)
    path = tmp_path / "red" / "0.tiff"
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(path)
    code, err = train(capsys, tmp_path, "imagenet", "test_size=0.5")
    assert code == 2
    assert f"imagenet: {path} has pixels of mode 'F'" in err


# ----------------------------------------------------------------------------- feature cache


def _digits_entry(cache: Path) -> tuple[TrialConfig, Path]:
    cfg = TrialConfig(dataset="digits")
    load_features(cfg, cache_dir=cache, progress=False)
    return cfg, entry_path(cache, feature_key(cfg, open_source(cfg, None), None))


def test_a_cache_entry_that_is_a_fifo_is_rebuilt(tmp_path):
    cfg, path = _digits_entry(tmp_path)
    path.unlink()
    os.mkfifo(path)
    with (
        deadline(30),
        pytest.warns(UserWarning, match=f"rebuilding .*{path.name}: it is not a regular file"),
    ):
        load_features(cfg, cache_dir=tmp_path, progress=False)
    assert path.is_file()


def _add_member(
    path: Path, name: str, header_shape: tuple[int, ...], payload: bytes, compression: int
) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": header_shape}
    )
    with zipfile.ZipFile(path, "a", compression=compression) as zf:
        zf.writestr(name, header.getvalue() + payload)


def test_a_cache_entry_reads_only_the_arrays_it_should_hold(tmp_path, monkeypatch):
    cfg, path = _digits_entry(tmp_path)
    # 256 MiB from ~256 KiB
    _add_member(path, "junk.npy", (2**26,), bytes(2**28), zipfile.ZIP_DEFLATED)
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(
        zipfile.ZipFile,
        "open",
        lambda self, name, *a, **k: (
            opened.append(getattr(name, "filename", name)),
            real_open(self, name, *a, **k),
        )[1],
    )
    load_features(cfg, cache_dir=tmp_path, progress=False)
    assert opened and opened[0] == "__key__.npy" and "junk.npy" not in opened


@pytest.mark.parametrize(
    ("header_shape", "payload", "compression", "fragment"),
    [
        # 256 MiB of zeros deflated to ~256 KiB: reading it would take them all.
        ((2**26,), bytes(2**28), zipfile.ZIP_DEFLATED, "junk.npy is compressed"),
        # 4 GiB declared, 16 bytes held: a read would stop at the end of the bytes whatever it
        # allocated untouched, so memory cannot show it; the refusal before reading is the message.
        (
            (2**30,),
            bytes(16),
            zipfile.ZIP_STORED,
            r"junk.npy declares a float32 array of shape \(1073741824,\)",
        ),
    ],
)
def test_a_cache_member_that_claims_more_than_the_file_holds_is_refused_unread(
    tmp_path, header_shape, payload, compression, fragment
):
    cfg, path = _digits_entry(tmp_path)
    _add_member(path, "junk.npy", header_shape, payload, compression)
    key = feature_key(cfg, open_source(cfg, None), None)
    got = measured(
        tmp_path,
        "from tuner.data.cache import read_entry",
        f"result = read_entry({str(path)!r}, {key!r})",
    )
    assert got["grown_mb"] < 64  # measured: under 2 MiB; reading the compressed member: 256
    assert got["result"] == "None" and got["error"] is None  # every member asked for
    assert any(
        re.search(f"rebuilding the unreadable feature cache entry .*: {fragment}", w)
        for w in got["warnings"]
    )


# ----------------------------------------------------------------------------- storage state files


@pytest.mark.parametrize(
    "text", ["not json", "[1]", "{}", '{"status": 3}', "[" * 100_000 + "]" * 100_000]
)
def test_a_broken_spool_status_names_the_file(tmp_path, text):
    exp = experiment_dir(tmp_path, "e")
    exp.fs.create_dir(exp.child(SPOOL_DIR), recursive=True)
    exp.write_text(f"{SPOOL_DIR}/search.json", text)
    with pytest.raises(
        TunerError, match=rf"{tmp_path / 'e' / SPOOL_DIR / 'search.json'} is broken"
    ):
        read_spool(exp)


def test_a_state_file_nested_too_deep_is_broken(tmp_path):
    exp = experiment_dir(tmp_path, "e")
    exp.fs.create_dir(exp.path, recursive=True)
    exp.write_text(STATE_FILE, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(TunerError, match=rf"{tmp_path / 'e' / STATE_FILE} is broken or empty"):
        read_state(exp)


def test_embed_reads_16_bit_and_float_images_as_training_does(tmp_path):
    """`tuner embed --images` clipped 16-bit greyscale to 255 while the training folders scale it:
    a model then embedded other pixels than it was trained on."""
    from tuner.commands.embed import read_image

    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((6, 5), 32896, np.uint16)).save(path)
    assert (read_image(path, 1, None) == 128).all() and read_image(path, 1, None).shape == (1, 6, 5)
    assert (read_image(path, 3, 4) == 128).all() and read_image(path, 3, 4).shape == (3, 4, 4)
    floats = tmp_path / "f.tiff"
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(floats)
    with pytest.raises(
        TunerError, match=rf"--images: {re.escape(str(floats))} has pixels of mode 'F'"
    ):
        read_image(floats, 1, None)
