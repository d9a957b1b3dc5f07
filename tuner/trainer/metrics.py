"""Evaluation metrics: numpy arrays in, a float out; and the registry of every metric a trial reports."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

# Every metric a trial reports, with its direction: the one list that Tune's metric checks,
# MLflow logging, the results table and `tuner report` read. Flat snake_case, the same name
# everywhere; test-split figures are these names with the prefix `test_`.
METRIC_MODES: dict[str, str] = {
    "knn_accuracy": "max", "fine_knn_accuracy": "max", "recon_error": "min", "loss": "min",
    "metric_loss": "min", "recon_loss": "min", "kl": "min", "train_seconds": "min", "seconds": "min",
}
TRIAL_METRICS = tuple(METRIC_MODES)


def knn_accuracy(train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray,
                 k: int = 5) -> float:
    """Accuracy on the test embeddings of a k-NN classifier fitted on the train embeddings.

    k is clipped to the training size. Single-threaded on purpose: it runs inside trials
    that each own a fixed share of the cores.
    """
    train_z, test_z = _as_2d(train_z), _as_2d(test_z)
    if len(train_z) == 0 or len(test_z) == 0:
        raise ValueError("knn_accuracy needs at least one training and one test embedding")
    if len(train_z) != len(train_y) or len(test_z) != len(test_y):
        raise ValueError(f"embeddings and labels differ in length: train {len(train_z)} vs {len(train_y)}, "
                         f"test {len(test_z)} vs {len(test_y)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_z)), algorithm="auto", n_jobs=1)
    knn.fit(train_z, np.asarray(train_y))
    return float(np.mean(knn.predict(test_z) == np.asarray(test_y)))


def reconstruction_error(x_hat: np.ndarray, x: np.ndarray) -> float:
    """Mean squared error over all elements, accumulated in float64."""
    x_hat, x = np.asarray(x_hat, dtype=np.float64), np.asarray(x, dtype=np.float64)
    if x_hat.shape != x.shape:
        raise ValueError(f"shapes differ: x_hat {x_hat.shape} vs x {x.shape}")
    return float(np.mean(np.square(x_hat - x)))


def _as_2d(z: np.ndarray) -> np.ndarray:
    # A 1-D latent space arrives as shape (n,) from some callers; sklearn wants (n, 1).
    z = np.asarray(z)
    return z.reshape(len(z), -1) if z.ndim != 2 else z
