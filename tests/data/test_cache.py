"""The on-disk feature cache: hits, invalidation, atomic writes by concurrent processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import tuner.data.pipeline as pipeline
import tuner.data.sources as sources
from tuner.core.config import TrialConfig
from tuner.data import cache, load_features
from tuner.data.hog import hog_features


@pytest.fixture
def hog_calls(monkeypatch) -> list[int]:
    calls: list[int] = []

    def counting(images, *args, **kwargs):
        calls.append(len(images))
        return hog_features(images, *args, **kwargs)

    monkeypatch.setattr(pipeline, "hog_features", counting)
    return calls


def test_second_load_is_a_hit_and_returns_the_same_arrays(tmp_path, hog_calls):
    cfg = TrialConfig(feature_extractor="hog")
    first = load_features(cfg, cache_dir=tmp_path, progress=False)
    second = load_features(cfg, cache_dir=tmp_path, progress=False)
    assert hog_calls == [1797]
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    entries = sorted(tmp_path.glob("*.npz"))
    assert len(entries) == 1 and entries[0].name.startswith("digits-hog-")
    sidecar = json.loads(entries[0].with_suffix(".json").read_text())
    assert sidecar["hog"] == [9, 4, 2] and sidecar["format"] == cache.FORMAT_VERSION


def test_changed_extractor_parameter_misses_split_parameters_do_not(tmp_path, hog_calls):
    base = TrialConfig(feature_extractor="hog")
    load_features(base, cache_dir=tmp_path, progress=False)
    other = load_features(base.replace(hog_orientations=6), cache_dir=tmp_path, progress=False)
    assert len(hog_calls) == 2 and other.n_features == 2 * 2 * 6
    # Split, standardization and label merging are redone from the cached features.
    resplit = load_features(
        base.replace(
            test_size=0.5,
            val_size=0.5,
            normalize=True,
            composite_labels={f: f // 5 for f in range(10)},
        ),
        cache_dir=tmp_path,
        progress=False,
    )
    assert (
        len(hog_calls) == 2
        and len(resplit.y_test) == 899
        and len(resplit.y_val) == 449
        and resplit.n_classes == 2
    )


def test_raw_images_are_not_reread_on_a_hit(tmp_path, monkeypatch):
    reads: list[int] = []
    real = sources.load_digits_images
    monkeypatch.setattr(sources, "load_digits_images", lambda: reads.append(1) or real())
    for _ in range(2):
        load_features(TrialConfig(), cache_dir=tmp_path, progress=False)
    assert reads == [1]


def test_unreadable_entry_is_rebuilt(tmp_path):
    fs = load_features(TrialConfig(), cache_dir=tmp_path, progress=False)
    [entry] = tmp_path.glob("*.npz")
    entry.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable feature cache entry"):
        again = load_features(TrialConfig(), cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(fs.x_train, again.x_train)
    assert np.load(entry)["x_train"].shape == (1797, 64)


def test_changed_data_files_miss(tmp_path):
    from tests.data.test_files import write_mnist

    data = tmp_path / "data"
    write_mnist(data, n_train=30)
    first = load_features(
        TrialConfig(dataset="mnist"), data_dir=data, cache_dir=tmp_path / "c", progress=False
    )
    assert len(first.y_train) + len(first.y_val) == 30
    write_mnist(data, n_train=40)
    second = load_features(
        TrialConfig(dataset="mnist"), data_dir=data, cache_dir=tmp_path / "c", progress=False
    )
    assert len(second.y_train) + len(second.y_val) == 40


def _rewrite(entry: Path, **changes) -> None:
    """Write the entry again as a valid .npz under its own key, with arrays changed or (None)
    dropped."""
    with np.load(entry) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays.update(changes)
    np.savez(entry, **{k: v for k, v in arrays.items() if v is not None})


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (
            lambda e: e.write_bytes(e.read_bytes()[:-30]),
            "rebuilding the unreadable feature cache entry",
        ),
        (
            lambda e: e.write_bytes(b""),
            "rebuilding the unreadable feature cache entry .*File is not a zip file",
        ),
        (lambda e: _rewrite(e, x_train=None), "x_train is missing or not a 2-d array"),
        (
            lambda e: _rewrite(e, y_train=np.zeros(3, np.int64)),
            r"x_train and y_train do not match \(\(1797, 64\) and \(3,\)\)",
        ),
        (
            lambda e: _rewrite(e, y_test=np.zeros(3, np.int64)),
            "it holds only one of x_test and y_test",
        ),
        (
            lambda e: _rewrite(e, label_names=np.asarray(["a", "b"])),
            r"labels lie outside 0..1, the label names",
        ),
        (
            lambda e: _rewrite(e, image_shape=np.asarray([1, 7, 7])),
            r"image_shape \(1, 7, 7\) does not match 64 features",
        ),
    ],
)
def test_corrupt_entry_is_rebuilt_with_a_warning(tmp_path, damage, fragment):
    cfg = TrialConfig(test_size=0.25)
    first = load_features(cfg, cache_dir=tmp_path, progress=False)
    [entry] = tmp_path.glob("*.npz")
    damage(entry)
    with pytest.warns(UserWarning, match=fragment):
        again = load_features(cfg, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    assert again.label_names == tuple("0123456789")
    with np.load(entry) as npz:  # rewritten whole
        assert npz["y_train"].shape == (1797,) and list(npz["image_shape"]) == [1, 8, 8]


def _key(cfg: TrialConfig, data: Path) -> dict:
    return pipeline.feature_key(cfg, pipeline.open_source(cfg, data), None)


def test_a_file_replaced_by_cp_p_with_its_size_and_mtime_changes_the_key(tmp_path):
    from tests.data.test_files import write_mnist

    data, other = tmp_path / "data", tmp_path / "other"
    write_mnist(data, n_train=30)
    write_mnist(other, n_train=30, seed=7)  # same sizes, other pixels
    target = data / "MNIST" / "raw" / "train-images-idx3-ubyte"
    replacement = other / "MNIST" / "raw" / "train-images-idx3-ubyte"
    before = target.stat()
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    cfg = TrialConfig(dataset="mnist")
    old_key, old = (
        _key(cfg, data),
        load_features(cfg, data_dir=data, cache_dir=tmp_path / "c", progress=False),
    )
    shutil.copy2(replacement, target)  # cp -p
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert _key(cfg, data) != old_key
    new = load_features(cfg, data_dir=data, cache_dir=tmp_path / "c", progress=False)
    assert not np.array_equal(new.x_train, old.x_train)
    assert len(list((tmp_path / "c").glob("*.npz"))) == 2


def test_an_image_added_to_a_class_folder_changes_the_key(tmp_path):
    from tests.data.test_files import write_folder

    write_folder(tmp_path / "data", per_class=6)  # enough per class for train, validation and test
    cfg = TrialConfig(dataset="imagenet", test_size=0.25)
    old_key = _key(cfg, tmp_path / "data")
    red = tmp_path / "data" / "red"
    folder_mtime = red.stat().st_mtime_ns
    shutil.copy2(red / "0.png", red / "6.png")
    # as rsync -t leaves a folder: the old key missed this
    os.utime(red, ns=(folder_mtime, folder_mtime))
    new_key = _key(cfg, tmp_path / "data")
    assert new_key != old_key and (
        old_key["source"]["n_images"],
        new_key["source"]["n_images"],
    ) == (12, 13)
    fs = load_features(cfg, data_dir=tmp_path / "data", progress=False)
    assert len(fs.y_train) + len(fs.y_val) + len(fs.y_test) == 13


def test_the_extractors_library_versions_are_in_the_key(monkeypatch):
    keys = {
        name: pipeline.library_versions(TrialConfig(feature_extractor=name))
        for name in ("raw", "hog", "resnet")
    }
    assert set(keys["raw"]) == {"numpy"} and set(keys["hog"]) == {"numpy", "scikit-image"}
    assert set(keys["resnet"]) == {"numpy", "torch", "torchvision"}
    assert set(pipeline.library_versions(TrialConfig(dataset="imagenet"))) == {
        "numpy",
        "pillow",
        "torchvision",
    }
    cfg = TrialConfig(feature_extractor="hog")
    source = pipeline.open_source(cfg, None)
    before = pipeline.feature_key(cfg, source, None)
    monkeypatch.setattr(pipeline.metadata, "version", lambda name: "99.0")
    after = pipeline.feature_key(cfg, source, None)
    assert after["libraries"] == {"numpy": "99.0", "scikit-image": "99.0"} != before["libraries"]
    assert cache.entry_path(Path("c"), after) != cache.entry_path(Path("c"), before)


# ----------------------------------------------------------------------------- concurrent writers

KEY = {"dataset": "concurrent", "feature_extractor": "test"}


def _build_in_child(cache_dir: str, barrier, results) -> None:
    def build():
        # Both processes reach this point only after both missed the cache: they then
        # write the same entry at the same time.
        barrier.wait(timeout=60)
        return {"x": np.arange(400_000, dtype=np.float32).reshape(2000, 200), "y": np.arange(2000)}

    arrays, hit = cache.load_or_build(Path(cache_dir), KEY, build)
    results.put((hit, float(arrays["x"].sum()), int(arrays["y"].sum())))


def test_two_processes_building_one_entry(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_build_in_child, args=(str(tmp_path), barrier, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert got[0] == got[1] and got[0][0] is False  # both built (neither saw the other's entry)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            cache.entry_path(tmp_path, KEY).name,
            cache.entry_path(tmp_path, KEY).with_suffix(".json").name,
        ]
    )
    entry = cache.read_entry(cache.entry_path(tmp_path, KEY), KEY)
    np.testing.assert_array_equal(
        entry["x"], np.arange(400_000, dtype=np.float32).reshape(2000, 200)
    )
    arrays, hit = cache.load_or_build(tmp_path, KEY, lambda: pytest.fail("should be a hit"))
    assert hit and arrays["y"].sum() == got[0][2]
