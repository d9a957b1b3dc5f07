"""HOG and ResNet-50 features: shapes, colour handling, the process pool, missing weights."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage.feature import hog

from tuner.core.config import TrialConfig
from tuner.data import hog_features, load_features, resnet_features
from tuner.data.hog import IN_PROCESS_BELOW
from tuner.errors import TunerError

RNG = np.random.default_rng(0)


def test_hog_grayscale_matches_scikit_image_and_its_length():
    images = RNG.integers(0, 256, (5, 1, 16, 12), dtype=np.uint8)
    feats = hog_features(images, orientations=6, pixels_per_cell=4, cells_per_block=2)
    # 4x3 cells -> 3x2 blocks of 2x2 cells with 6 bins each.
    assert feats.shape == (5, 3 * 2 * 4 * 6) and feats.dtype == np.float32
    expected = hog(
        images[2, 0] / 255.0, orientations=6, pixels_per_cell=(4, 4), cells_per_block=(2, 2)
    )
    np.testing.assert_allclose(feats[2], expected, atol=1e-6)
    # (N, H, W) input is the same as (N, 1, H, W).
    np.testing.assert_array_equal(hog_features(images[:, 0], 6, 4, 2), feats)


def test_hog_colour_uses_channels():
    colour = RNG.integers(0, 256, (3, 3, 16, 16), dtype=np.uint8)
    feats = hog_features(colour, orientations=9, pixels_per_cell=4, cells_per_block=2)
    expected = hog(
        colour[1].transpose(1, 2, 0) / 255.0,
        orientations=9,
        pixels_per_cell=(4, 4),
        cells_per_block=(2, 2),
        channel_axis=-1,
    )
    np.testing.assert_allclose(feats[1], expected, atol=1e-6)
    # A grey image copied into three channels has the grey image's gradients.
    grey = colour[:, :1]
    np.testing.assert_allclose(
        hog_features(np.repeat(grey, 3, axis=1), 9, 4, 2), hog_features(grey, 9, 4, 2), atol=1e-6
    )
    assert not np.allclose(feats, hog_features(grey, 9, 4, 2))


def test_hog_pool_gives_the_in_process_result():
    images = RNG.integers(0, 256, (IN_PROCESS_BELOW, 8, 8), dtype=np.uint8)
    one = hog_features(images, 9, 4, 2, workers=1)
    two = hog_features(images, 9, 4, 2, workers=2)
    assert one.shape == (IN_PROCESS_BELOW, 36)
    np.testing.assert_array_equal(one, two)


def test_hog_too_small_images_name_the_fields():
    with pytest.raises(
        TunerError, match="hog_pixels_per_cell = 8 and hog_cells_per_block = 2 .* 16x16"
    ):
        hog_features(np.zeros((2, 12, 20), dtype=np.uint8), 9, 8, 2)


def test_hog_through_load_features_on_digits():
    fs = load_features(TrialConfig(feature_extractor="hog", hog_orientations=8), progress=False)
    assert fs.x_train.shape == (1077, 2 * 2 * 8) and fs.image_shape is None


def test_resnet_random_weights_give_2048_features_and_grey_is_replicated():
    grey = RNG.integers(0, 256, (2, 1, 32, 32), dtype=np.uint8)
    feats = resnet_features(grey, weights=None)
    assert feats.shape == (2, 2048) and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1])
    # Random weights come from a fixed seed: the same network sees the replicated image.
    np.testing.assert_allclose(
        resnet_features(np.repeat(grey, 3, axis=1), weights=None), feats, rtol=1e-4, atol=1e-4
    )


def test_resnet_through_load_features_on_an_image_folder(tmp_path):
    for c, colour in (("a", (200, 30, 30)), ("b", (30, 30, 200))):
        (tmp_path / c).mkdir()
        for i in range(3):  # one each for train, validation and test
            Image.new("RGB", (32, 32), colour).save(tmp_path / c / f"{i}.png")
    cfg = TrialConfig(
        dataset="imagenet", feature_extractor="resnet", resnet_weights="none", test_size=0.3
    )
    fs = load_features(cfg, data_dir=tmp_path, cache_dir=tmp_path / "cache", progress=False)
    assert fs.x_train.shape == (2, 2048) and fs.x_test.shape == (2, 2048) and fs.image_shape is None
    np.testing.assert_array_equal(np.sort(fs.y_train), [0, 1])


def test_resnet_imagenet_weights_missing_offline_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = TrialConfig(feature_extractor="resnet", resnet_weights="imagenet")
    with pytest.raises(TunerError, match="resnet50-11ad3fa6.pth") as err:
        load_features(cfg, progress=False)
    assert str(tmp_path / "hub" / "checkpoints") in str(err.value)
