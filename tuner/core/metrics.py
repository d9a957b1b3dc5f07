"""The registry of every metric a trial reports: its name, its direction (max | min) and the
values it can take. Data only: the computations are in `tuner.trainer.metrics`."""

from __future__ import annotations

import math

# Every metric a trial reports, with its direction: the one list that Tune's metric checks,
# MLflow logging, the results table and `tuner report` read. Flat snake_case, the same name
# everywhere; test-split figures are these names with the prefix `test_`.
METRIC_MODES: dict[str, str] = {
    "knn_accuracy": "max",
    "fine_knn_accuracy": "max",
    "recon_error": "min",
    "loss": "min",
    "metric_loss": "min",
    "recon_loss": "min",
    "kl": "min",
    "train_seconds": "min",
    "seconds": "min",
    "precision_at_1": "max",
    "r_precision": "max",
    "map_at_r": "max",
    "nmi": "max",
    "ami": "max",
    "trustworthiness": "max",
    "constraint_accuracy": "max",
}
# The values each metric can take: a require: bound outside them could never hold (or always would).
# Shares and scores lie in [0, 1], AMI (chance-adjusted) in [-1, 1]; losses, errors and times
# are >= 0.
_SHARE, _SIGNED_SHARE, _NON_NEGATIVE = (0.0, 1.0), (-1.0, 1.0), (0.0, math.inf)
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "knn_accuracy": _SHARE,
    "fine_knn_accuracy": _SHARE,
    "recon_error": _NON_NEGATIVE,
    "loss": _NON_NEGATIVE,
    "metric_loss": _NON_NEGATIVE,
    "recon_loss": _NON_NEGATIVE,
    "kl": _NON_NEGATIVE,
    "train_seconds": _NON_NEGATIVE,
    "seconds": _NON_NEGATIVE,
    "precision_at_1": _SHARE,
    "r_precision": _SHARE,
    "map_at_r": _SHARE,
    "nmi": _SHARE,
    "ami": _SIGNED_SHARE,
    "trustworthiness": _SHARE,
    "constraint_accuracy": _SHARE,
}
# Logged with the metrics but nothing to rank by: how many points trustworthiness used, how many
# labels (and judgments of a constraints file) the trial trained with.
TRIAL_METRICS = (*METRIC_MODES, "trustworthiness_n", "n_labels", "n_judgments")
# The same on the test split, measured once after a search for the trials it selected.
TEST_METRICS = tuple(f"test_{name}" for name in TRIAL_METRICS)
