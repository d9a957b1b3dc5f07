"""Evaluation metrics: numpy arrays in, a float out (their names and directions:
`tuner.core.metrics`).

Pure functions. Heavy libraries (torch, pytorch-metric-learning, scikit-learn) are imported
where they are used, so that importing this module stays cheap.
"""

from __future__ import annotations

import numpy as np

TRUSTWORTHINESS_POINTS = 2000


def knn_accuracy(
    train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray, k: int = 5
) -> float:
    """Accuracy on the test embeddings of a k-NN classifier fitted on the train embeddings.

    k is clipped to the training size. Single-threaded on purpose: it runs inside trials
    that each own a fixed share of the cores.
    """
    train_z, test_z = _as_2d(train_z), _as_2d(test_z)
    _check_lengths(train_z, train_y, test_z, test_y)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_z)), algorithm="auto", n_jobs=1)
    knn.fit(train_z, np.asarray(train_y))
    return float(np.mean(knn.predict(test_z) == np.asarray(test_y)))


def constraint_accuracy(
    z: np.ndarray, judgments: np.ndarray, similar: np.ndarray | None, margin: float
) -> float:
    """Share of judgments the embedding satisfies: rows (a, b) with `similar` are pairs, a similar
    one satisfied when closer than `margin` and a dissimilar one when at least `margin` apart;
    rows (anchor, positive, negative) are triplets, satisfied when d(a, p) < d(a, n)."""
    z, judgments = _as_2d(z), np.asarray(judgments)
    if len(judgments) == 0:
        raise ValueError("constraint_accuracy needs at least one judgment")
    z = np.asarray(z, dtype=np.float64)

    def dist(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return np.linalg.norm(z[i] - z[j], axis=1)

    if judgments.shape[1] == 2:
        if similar is None:
            raise ValueError("pairs need their similar flags")
        d = dist(judgments[:, 0], judgments[:, 1])
        ok = np.where(np.asarray(similar, dtype=bool), d < margin, d >= margin)
    else:
        ok = dist(judgments[:, 0], judgments[:, 1]) < dist(judgments[:, 0], judgments[:, 2])
    return float(np.mean(ok))


def reconstruction_error(x_hat: np.ndarray, x: np.ndarray) -> float:
    """Mean squared error over all elements, accumulated in float64."""
    x_hat, x = np.asarray(x_hat, dtype=np.float64), np.asarray(x, dtype=np.float64)
    if x_hat.shape != x.shape:
        raise ValueError(f"shapes differ: x_hat {x_hat.shape} vs x {x.shape}")
    return float(np.mean(np.square(x_hat - x)))


# ---------------------------------------------------------------------------- the field's metrics


def retrieval_metrics(
    ref_z: np.ndarray, ref_y: np.ndarray, query_z: np.ndarray, query_y: np.ndarray
) -> dict[str, float]:
    """precision_at_1, r_precision and map_at_r (Musgrave, Belongie, Lim 2020) in one k-NN pass.

    Computed by pytorch-metric-learning's AccuracyCalculator, the field's reference
    implementation. The reference is the training embedding and the queries are the evaluated
    split, two different sets, so no query finds itself. Distances are plain Euclidean, not
    on the unit sphere (the library's default): the embedding's scale is what the margin
    shapes, and knn_accuracy measures the same space. R is each query's class count in the
    reference ('max_bin_count'), as MAP@R defines it.
    """
    # here, not at the top: the metric registry is read by `tuner validate`, which must stay light
    import torch
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    ref_z, query_z = _as_2d(ref_z), _as_2d(query_z)
    _check_lengths(ref_z, ref_y, query_z, query_y)
    # Chunked distances: CIFAR-10's 7,500 x 42,500 matrix would take 1.3 GB at once. The default
    # knn_func needs faiss, which is not a dependency.
    knn = CustomKNN(LpDistance(normalize_embeddings=False), batch_size=1024)
    calc = AccuracyCalculator(
        include=tuple(_LIBRARY_NAMES), k="max_bin_count", device=torch.device("cpu"), knn_func=knn
    )
    out = calc.get_accuracy(
        np.asarray(query_z, dtype=np.float32),
        np.asarray(query_y),
        np.asarray(ref_z, dtype=np.float32),
        np.asarray(ref_y),
        ref_includes_query=False,
    )
    return {ours: float(out[theirs]) for theirs, ours in _LIBRARY_NAMES.items()}


_LIBRARY_NAMES = {
    "precision_at_1": "precision_at_1",
    "r_precision": "r_precision",
    "mean_average_precision_at_r": "map_at_r",
}


def precision_at_1(
    ref_z: np.ndarray, ref_y: np.ndarray, query_z: np.ndarray, query_y: np.ndarray
) -> float:
    """Share of queries whose nearest reference embedding has their label."""
    return retrieval_metrics(ref_z, ref_y, query_z, query_y)["precision_at_1"]


def r_precision(
    ref_z: np.ndarray, ref_y: np.ndarray, query_z: np.ndarray, query_y: np.ndarray
) -> float:
    """Mean over queries of the share of same-label embeddings among the R nearest (R: the class's
    count)."""
    return retrieval_metrics(ref_z, ref_y, query_z, query_y)["r_precision"]


def map_at_r(
    ref_z: np.ndarray, ref_y: np.ndarray, query_z: np.ndarray, query_y: np.ndarray
) -> float:
    """Mean average precision over each query's R nearest reference embeddings (MAP@R)."""
    return retrieval_metrics(ref_z, ref_y, query_z, query_y)["map_at_r"]


def clustering_metrics(z: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, float]:
    """nmi and ami of a seeded k-means with one cluster per class present in `y` (one k-means for
    both)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    z, y = _as_2d(z), np.asarray(y)
    if len(z) != len(y):
        raise ValueError(f"embeddings and labels differ in length: {len(z)} vs {len(y)}")
    n_clusters = len(np.unique(y))
    if n_clusters > len(z) or n_clusters < 1:
        raise ValueError(
            f"k-means needs at least one point per cluster: {len(z)} points, {n_clusters} classes"
        )
    clusters = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit_predict(
        np.asarray(z, np.float64)
    )
    return {
        "nmi": float(normalized_mutual_info_score(y, clusters)),
        "ami": float(adjusted_mutual_info_score(y, clusters)),
    }


def nmi(z: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Normalized mutual information between the labels and a k-means clustering of the
    embedding."""
    return clustering_metrics(z, y, seed)["nmi"]


def ami(z: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Adjusted (for chance) mutual information: about 0 for an embedding unrelated to the
    labels."""
    return clustering_metrics(z, y, seed)["ami"]


def trustworthiness(
    x: np.ndarray,
    z: np.ndarray,
    k: int = 5,
    max_points: int = TRUSTWORTHINESS_POINTS,
    seed: int = 0,
) -> tuple[float, int]:
    """scikit-learn's trustworthiness of the embedding `z` of inputs `x`, and the number of points
    used.

    How far the k nearest neighbours in the embedding were neighbours in the input space too
    (1: none is an intruder). Its cost grows with the square of the points, so at most
    `max_points` are used, a seeded subsample: the same points at every evaluation of a search.
    k is clipped below half the points, as scikit-learn requires.
    """
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    x, z = _as_2d(x), _as_2d(z)
    if len(x) != len(z):
        raise ValueError(f"inputs and embeddings differ in length: {len(x)} vs {len(z)}")
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), size=max_points, replace=False))
        x, z = x[keep], z[keep]
    k = min(k, (len(x) - 1) // 2)
    if k < 1:
        raise ValueError(f"trustworthiness needs at least 3 points, got {len(x)}")
    return float(sk_trustworthiness(x, z, n_neighbors=k)), len(x)


def evaluate_embedding(
    ref_z: np.ndarray,
    ref_y: np.ndarray,
    z: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    x_hat: np.ndarray,
    *,
    k: int = 5,
    seed: int = 0,
    ref_fine_y: np.ndarray | None = None,
    fine_y: np.ndarray | None = None,
) -> dict[str, float]:
    """Every quality metric of one evaluated split, as a flat dict named as METRIC_MODES names them.

    `ref_*` is the training split (the reference of kNN and retrieval), `z`/`y`/`x`/`x_hat` the
    evaluated split: its embeddings, labels, inputs and reconstructions. All of them at every
    evaluation, so any can be the metric a scheduler reads; trustworthiness on a seeded
    subsample (its size under `trustworthiness_n`). fine_knn_accuracy when fine labels are given.
    """
    out = {
        "knn_accuracy": knn_accuracy(ref_z, ref_y, z, y, k),
        "recon_error": reconstruction_error(x_hat, x),
        **retrieval_metrics(ref_z, ref_y, z, y),
        **clustering_metrics(z, y, seed),
    }
    out["trustworthiness"], n = trustworthiness(x, z, k, seed=seed)
    out["trustworthiness_n"] = float(n)
    if ref_fine_y is not None and fine_y is not None:
        out["fine_knn_accuracy"] = knn_accuracy(ref_z, ref_fine_y, z, fine_y, k)
    return out


def _check_lengths(
    ref_z: np.ndarray, ref_y: np.ndarray, query_z: np.ndarray, query_y: np.ndarray
) -> None:
    if len(ref_z) == 0 or len(query_z) == 0:
        raise ValueError("metrics need at least one reference and one query embedding")
    if len(ref_z) != len(ref_y) or len(query_z) != len(query_y):
        raise ValueError(
            f"embeddings and labels differ in length: train {len(ref_z)} vs {len(ref_y)}, "
            f"test {len(query_z)} vs {len(query_y)}"
        )


def _as_2d(z: np.ndarray) -> np.ndarray:
    # A 1-D latent space arrives as shape (n,) from some callers; sklearn wants (n, 1).
    z = np.asarray(z)
    return z.reshape(len(z), -1) if z.ndim != 2 else z
