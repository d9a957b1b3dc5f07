"""The on-disk feature cache: hits, invalidation, atomic writes by concurrent processes."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

import tuner.data.pipeline as pipeline
import tuner.data.sources as sources
from tuner.trainer.config import TrialConfig
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
    resplit = load_features(base.replace(test_size=0.5, val_size=0.5, normalize=True,
                                         composite_labels={f: f // 5 for f in range(10)}),
                            cache_dir=tmp_path, progress=False)
    assert len(hog_calls) == 2 and len(resplit.y_test) == 899 and len(resplit.y_val) == 449 and resplit.n_classes == 2


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
    from test_data_files import write_mnist

    data = tmp_path / "data"
    write_mnist(data, n_train=30)
    first = load_features(TrialConfig(dataset="mnist"), data_dir=data, cache_dir=tmp_path / "c", progress=False)
    assert len(first.y_train) + len(first.y_val) == 30
    write_mnist(data, n_train=40)
    second = load_features(TrialConfig(dataset="mnist"), data_dir=data, cache_dir=tmp_path / "c", progress=False)
    assert len(second.y_train) + len(second.y_val) == 40


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
    procs = [ctx.Process(target=_build_in_child, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert got[0] == got[1] and got[0][0] is False  # both built (neither saw the other's entry)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [cache.entry_path(tmp_path, KEY).name, cache.entry_path(tmp_path, KEY).with_suffix(".json").name])
    entry = cache.read_entry(cache.entry_path(tmp_path, KEY), KEY)
    np.testing.assert_array_equal(entry["x"], np.arange(400_000, dtype=np.float32).reshape(2000, 200))
    arrays, hit = cache.load_or_build(tmp_path, KEY, lambda: pytest.fail("should be a hit"))
    assert hit and arrays["y"].sum() == got[0][2]
