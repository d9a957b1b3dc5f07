"""load_features on scikit-learn's digits: split, scaling, standardization, composite labels,
names."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tuner.core.config import TrialConfig
from tuner.data import FeatureSet, load_features
from tuner.errors import TunerError

DIGITS = load_digits()


def digits(**changes) -> FeatureSet:
    return load_features(TrialConfig(**changes), progress=False)


def test_raw_digits_are_pixels_over_16_split_as_sklearn_would():
    fs = digits(split_seed=3)
    # The test split first (test_size of the whole), then validation out of the rest, as large.
    x_rest, x_te, y_rest, y_te = train_test_split(
        DIGITS.data, DIGITS.target, test_size=0.2, random_state=3, stratify=DIGITS.target
    )
    x_tr, x_va, y_tr, y_va = train_test_split(
        x_rest, y_rest, test_size=len(y_te), random_state=3, stratify=y_rest
    )
    for got, expected in ((fs.x_train, x_tr), (fs.x_val, x_va), (fs.x_test, x_te)):
        np.testing.assert_allclose(got, expected / 16.0, rtol=0, atol=1e-7)
    for got, expected in ((fs.y_train, y_tr), (fs.y_val, y_va), (fs.y_test, y_te)):
        np.testing.assert_array_equal(got, expected)
    assert fs.x_train.dtype == np.float32 and fs.y_train.dtype == np.int64
    assert fs.x_train.min() == 0.0 and fs.x_train.max() == 1.0
    assert fs.image_shape == (1, 8, 8)
    assert fs.label_names == tuple(str(i) for i in range(10))
    assert fs.fine_y_train is None and fs.fine_y_val is None and fs.fine_y_test is None


def test_default_digits_split_is_60_20_20_stratified():
    fs = digits()
    assert (len(fs.y_train), len(fs.y_val), len(fs.y_test)) == (1077, 360, 360)
    per_class = np.bincount(DIGITS.target)
    # Stratified: every class holds its share of each split, to within one sample.
    for y, share in ((fs.y_train, 0.6), (fs.y_val, 0.2), (fs.y_test, 0.2)):
        assert np.all(np.abs(np.bincount(y) - share * per_class) <= 1)


def test_split_is_sized_by_test_size_and_val_size():
    fs = digits(test_size=0.3)
    assert len(fs.y_test) == int(np.ceil(0.3 * 1797)) == len(fs.y_val)
    assert len(fs.y_train) + len(fs.y_val) + len(fs.y_test) == 1797
    explicit = digits(test_size=0.3, val_size=0.1)  # a share of the training part
    assert len(explicit.y_test) == 540 and len(explicit.y_val) == int(np.ceil(0.1 * (1797 - 540)))
    # The three splits are disjoint: no image is in two of them.
    rows = [{r.tobytes() for r in x} for x in (fs.x_train, fs.x_val, fs.x_test)]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])


def test_validation_that_cannot_be_stratified_names_val_size():
    with pytest.raises(
        TunerError, match=r"val_size = null: cannot hold out 899 of 898 training samples"
    ):
        digits(test_size=0.5)
    with pytest.raises(TunerError, match=r"val_size = 0\.999: .*smaller val_size"):
        digits(val_size=0.999)


def test_same_seed_same_split_other_seed_other_split():
    a, b, c = digits(split_seed=1), digits(split_seed=1), digits(split_seed=2)
    for name in ("x_train", "x_val", "x_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.y_train, c.y_train)


def test_without_test_drops_the_test_split_only():
    fs = digits(composite_labels={f: int(f >= 5) for f in range(10)})
    shipped = fs.without_test()
    assert shipped.x_test is None and shipped.y_test is None and shipped.fine_y_test is None
    assert not shipped.has_test and fs.has_test
    assert shipped.x_val is fs.x_val and shipped.fine_y_val is fs.fine_y_val
    with pytest.raises(ValueError, match="no test split"):
        shipped.split("test")


def test_normalize_uses_train_statistics_only():
    raw, norm = digits(), digits(normalize=True)
    mean = raw.x_train.astype(np.float64).mean(axis=0)
    std = raw.x_train.astype(np.float64).std(axis=0)
    std[std == 0] = 1.0
    np.testing.assert_allclose(norm.x_train, (raw.x_train - mean) / std, atol=1e-5)
    np.testing.assert_allclose(norm.x_val, (raw.x_val - mean) / std, atol=1e-5)
    np.testing.assert_allclose(norm.x_test, (raw.x_test - mean) / std, atol=1e-5)
    assert np.abs(norm.x_train.mean(axis=0)).max() < 1e-5
    varying = raw.x_train.std(axis=0) > 0
    np.testing.assert_allclose(norm.x_train[:, varying].std(axis=0), 1.0, atol=1e-4)
    # Constant pixels (always 0 in train) stay finite instead of dividing by zero.
    assert (~varying).any() and np.all(norm.x_train[:, ~varying] == 0)
    # Fitted on train alone: the validation and test means are not forced to zero.
    assert np.abs(norm.x_val.mean(axis=0)).max() > 1e-3
    assert np.abs(norm.x_test.mean(axis=0)).max() > 1e-3


def test_composite_labels_renumber_coarse_in_sorted_order_and_keep_fine():
    mapping = {**{f: 10 for f in range(5)}, **{f: 3 for f in range(5, 10)}}
    fs = digits(composite_labels=mapping)
    plain = digits()
    np.testing.assert_array_equal(fs.fine_y_train, plain.y_train)
    np.testing.assert_array_equal(fs.fine_y_val, plain.y_val)
    np.testing.assert_array_equal(fs.fine_y_test, plain.y_test)
    # Coarse value 3 sorts first -> label 0 (digits 5..9); 10 -> label 1 (digits 0..4).
    np.testing.assert_array_equal(fs.y_train, np.where(plain.y_train >= 5, 0, 1))
    np.testing.assert_array_equal(fs.y_val, np.where(plain.y_val >= 5, 0, 1))
    np.testing.assert_array_equal(fs.y_test, np.where(plain.y_test >= 5, 0, 1))
    assert fs.label_names == ("5+6+7+8+9", "0+1+2+3+4")
    np.testing.assert_array_equal(fs.x_train, plain.x_train)


def test_composite_labels_must_map_every_label():
    with pytest.raises(TunerError, match=r"does not map the fine labels \[7, 9\]"):
        digits(composite_labels={f: f % 2 for f in range(10) if f not in (7, 9)})
    with pytest.raises(TunerError, match=r"maps \[12\].*labels are 0\.\.9"):
        digits(composite_labels={**{f: 0 for f in range(9)}, 9: 1, 12: 1})


def test_label_names_override_and_composite_override():
    names = tuple("zero one two three four five six seven eight nine".split())
    assert digits(label_names=names).label_names == names
    fs = digits(
        composite_labels={f: int(f >= 5) for f in range(10)}, label_names=["small", "large"]
    )
    assert fs.label_names == ("small", "large")
    assert set(np.unique(fs.y_train)) == {0, 1}


@pytest.mark.parametrize("field, value", [("classes", ["0", "1"]), ("image_size", 16)])
def test_imagenet_only_fields_are_refused_elsewhere(field, value):
    with pytest.raises(TunerError, match=f"{field} .* applies to dataset imagenet only"):
        digits(**{field: value})


def test_hog_on_digits_too_small_names_the_fields():
    with pytest.raises(
        TunerError, match="hog_pixels_per_cell = 4 and hog_cells_per_block = 3.*8x8"
    ):
        digits(feature_extractor="hog", hog_cells_per_block=3)
