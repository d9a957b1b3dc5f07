"""kNN accuracy and reconstruction error on constructed points."""

import time

import numpy as np
import pytest

from tuner.trainer.metrics import knn_accuracy, reconstruction_error


def test_well_separated_clusters_are_perfectly_classified() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    train_y, test_y = rng.integers(0, 3, 60), rng.integers(0, 3, 30)
    train_z = centres[train_y] + rng.normal(size=(60, 2))
    test_z = centres[test_y] + rng.normal(size=(30, 2))
    assert knn_accuracy(train_z, train_y, test_z, test_y, k=5) == 1.0


def test_known_partial_accuracy_with_one_neighbour() -> None:
    train_z = np.array([[0.0], [1.0], [10.0], [11.0]])
    train_y = np.array([0, 0, 1, 1])
    # Nearest neighbours predict 0, 1, 0, 1; two of the four labels disagree.
    test_z = np.array([[0.5], [10.5], [0.2], [11.0]])
    test_y = np.array([0, 1, 1, 0])
    assert knn_accuracy(train_z, train_y, test_z, test_y, k=1) == 0.5


def test_k_changes_the_vote() -> None:
    train_z = np.array([0.0, 1.8, 2.0, 2.5, 10.0, 11.0])  # 1-D latent, given flat
    train_y = np.array([0, 0, 0, 1, 1, 1])
    # At 2.4 the nearest point is 2.5 (class 1); the three nearest are 2.5, 2.0, 1.8 (class 0).
    test_z, test_y = np.array([2.4]), np.array([0])
    assert knn_accuracy(train_z, train_y, test_z, test_y, k=1) == 0.0
    assert knn_accuracy(train_z, train_y, test_z, test_y, k=3) == 1.0


def test_k_is_clipped_to_the_training_size() -> None:
    train_z, train_y = np.array([[0.0], [1.0], [50.0]]), np.array([0, 0, 1])
    # k = 50 becomes 3: every prediction is the majority class 0, even right next to 50.
    assert knn_accuracy(train_z, train_y, np.array([[50.0], [0.0]]), np.array([1, 0]), k=50) == 0.5


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        knn_accuracy(np.zeros((3, 2)), np.zeros(2), np.zeros((1, 2)), np.zeros(1))


@pytest.mark.parametrize("latent_dim", [2, 64])
def test_knn_accuracy_is_fast_at_evaluation_size(latent_dim: int) -> None:
    rng = np.random.default_rng(0)
    train_z = rng.normal(size=(8000, latent_dim)).astype(np.float32)
    test_z = rng.normal(size=(2000, latent_dim)).astype(np.float32)
    start = time.perf_counter()
    accuracy = knn_accuracy(train_z, rng.integers(0, 10, 8000), test_z, rng.integers(0, 10, 2000))
    # Measured about 0.02 s (2-D) and 0.08 s (64-D) on 2 shared cores; the bound leaves room for load.
    assert time.perf_counter() - start < 2.0
    assert 0.0 <= accuracy <= 0.2  # random labels: chance is 0.1


def test_reconstruction_error_value() -> None:
    x = np.array([[0.0, 1.0, 2.0]], dtype=np.float32)
    x_hat = np.array([[1.0, 1.0, 0.0]], dtype=np.float32)
    error = reconstruction_error(x_hat, x)
    assert isinstance(error, float) and error == pytest.approx(5.0 / 3.0)


def test_reconstruction_error_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        reconstruction_error(np.zeros((2, 3)), np.zeros((3, 2)))
