"""Every evaluation metric on constructed points: by hand, at the extremes, and against the
libraries."""

import time

import numpy as np
import pytest

from tuner.core.metrics import METRIC_MODES, TRIAL_METRICS
from tuner.trainer.metrics import (
    ami,
    clustering_metrics,
    evaluate_embedding,
    knn_accuracy,
    map_at_r,
    nmi,
    precision_at_1,
    r_precision,
    reconstruction_error,
    retrieval_metrics,
    trustworthiness,
)


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
    # Measured about 0.02 s (2-D) and 0.08 s (64-D) on 2 shared cores; the bound leaves room for
    # load.
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


# ----------------------------------------------------------------------------- the field's metrics

FIELD_METRICS = ("precision_at_1", "r_precision", "map_at_r", "nmi", "ami", "trustworthiness")


def clusters(
    n: int, n_classes: int, seed: int, spread: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Points around far-apart centres in 3-D, with their class labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    return 100.0 * np.eye(3, n_classes).T[y] + spread * rng.normal(size=(n, 3)), y


def test_separated_clusters_score_one_on_every_label_metric() -> None:
    ref_z, ref_y = clusters(300, 3, seed=0)
    z, y = clusters(90, 3, seed=1)
    assert retrieval_metrics(ref_z, ref_y, z, y) == {
        "precision_at_1": 1.0,
        "r_precision": 1.0,
        "map_at_r": 1.0,
    }
    assert clustering_metrics(z, y) == pytest.approx({"nmi": 1.0, "ami": 1.0})


def test_an_isometry_is_perfectly_trustworthy() -> None:
    x = np.random.default_rng(0).normal(size=(200, 5))
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(5, 5)))
    assert trustworthiness(x, x @ rotation + 3.0, k=5) == (pytest.approx(1.0), 200)


def test_shuffled_labels_give_chance_level() -> None:
    # 4 balanced classes: a neighbour shares the label 1/4 of the time, so precision@1 and
    # R-precision are about 1/4 and MAP@R (precision times relevance, averaged) about 1/16.
    ref_z, ref_y = clusters(4000, 4, seed=0)
    z, y = clusters(2000, 4, seed=1)
    rng = np.random.default_rng(2)
    ref_y, y = rng.permutation(ref_y), rng.permutation(y)
    scores = retrieval_metrics(ref_z, ref_y, z, y)
    assert scores["precision_at_1"] == pytest.approx(0.25, abs=0.03)
    assert scores["r_precision"] == pytest.approx(0.25, abs=0.02)
    assert scores["map_at_r"] == pytest.approx(1 / 16, abs=0.02)
    assert clustering_metrics(z, y) == pytest.approx({"nmi": 0.0, "ami": 0.0}, abs=0.01)


def test_a_random_embedding_is_half_trustworthy() -> None:
    rng = np.random.default_rng(0)
    value, n = trustworthiness(rng.normal(size=(1000, 20)), rng.normal(size=(1000, 2)), k=5)
    assert value == pytest.approx(0.5, abs=0.05) and n == 1000


def test_retrieval_by_hand() -> None:
    ref_z, ref_y = np.array([0.0, 1.0, 5.0, 6.0]), np.array([0, 1, 0, 1])
    # R = 2 for class 0. From 0.4 the ranking's labels are 0, 1 (P@1 1, R-precision 1/2,
    # AP@R (1/2)(1) = 1/2); from 0.6 they are 1, 0 (P@1 0, R-precision 1/2, AP@R (1/2)(1/2) = 1/4).
    z, y = np.array([0.4, 0.6]), np.array([0, 0])
    assert precision_at_1(ref_z, ref_y, z, y) == 0.5
    assert r_precision(ref_z, ref_y, z, y) == 0.5
    assert map_at_r(ref_z, ref_y, z, y) == pytest.approx(0.375)


def test_each_metric_equals_the_librarys_own_output() -> None:
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN
    from sklearn.cluster import KMeans
    from sklearn.manifold import trustworthiness as sk_trustworthiness
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    rng = np.random.default_rng(0)
    ref_y, y = rng.integers(0, 5, 500), rng.integers(0, 5, 200)
    # Classes shifted by half a standard deviation: figures neither at chance nor perfect.
    ref_z = (rng.normal(size=(500, 4)) + 0.5 * ref_y[:, None]).astype(np.float32)
    z = (rng.normal(size=(200, 4)) + 0.5 * y[:, None]).astype(np.float32)
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),
    )
    theirs = calc.get_accuracy(z, y, ref_z, ref_y)
    assert retrieval_metrics(ref_z, ref_y, z, y) == pytest.approx(
        {
            "precision_at_1": theirs["precision_at_1"],
            "r_precision": theirs["r_precision"],
            "map_at_r": theirs["mean_average_precision_at_r"],
        },
        abs=1e-9,
    )
    labels = KMeans(n_clusters=5, n_init=1, random_state=7).fit_predict(z.astype(np.float64))
    assert nmi(z, y, seed=7) == pytest.approx(normalized_mutual_info_score(y, labels), abs=1e-12)
    assert ami(z, y, seed=7) == pytest.approx(adjusted_mutual_info_score(y, labels), abs=1e-12)
    x = rng.normal(size=(200, 30))
    assert trustworthiness(x, z, k=7) == (
        pytest.approx(sk_trustworthiness(x, z, n_neighbors=7), abs=1e-12),
        200,
    )


def test_trustworthiness_uses_a_seeded_subsample_of_at_most_2000_points() -> None:
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=(2500, 10)), rng.normal(size=(2500, 2))
    first, second, other = (
        trustworthiness(x, z, seed=1),
        trustworthiness(x, z, seed=1),
        trustworthiness(x, z, seed=2),
    )
    assert first == second and first[1] == 2000 and other[0] != first[0]
    # k is clipped below half the points, as scikit-learn requires.
    assert trustworthiness(x[:6], z[:6], k=5)[1] == 6


def test_evaluate_embedding_reports_every_registered_metric() -> None:
    ref_z, ref_y = clusters(300, 3, seed=0)
    z, y = clusters(90, 3, seed=1)
    x = np.hstack([z, np.zeros((90, 2))])
    out = evaluate_embedding(ref_z, ref_y, z, y, x, x + 0.5, k=5, ref_fine_y=ref_y, fine_y=y)
    assert set(out) <= set(TRIAL_METRICS)
    assert out["knn_accuracy"] == out["fine_knn_accuracy"] == 1.0 and out["recon_error"] == 0.25
    for name in FIELD_METRICS:
        assert METRIC_MODES[name] == "max"
        assert out[name] == pytest.approx(1.0)
    assert out["trustworthiness_n"] == 90.0
