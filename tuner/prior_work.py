"""The prior work's `run_experiment`, kept so old notebooks run unchanged. "The prior work" is the
research code tuner replaces: one function, `run_experiment(...)`, that trained a pairwise or
triplet AE/VAE for each (mu, latent_dim) of a grid and returned their metrics. Its names
(`embenc`, `constraint_type`, ...) are accepted here and wherever a TrialConfig is built from a
mapping.

It loops over (mu, latent_dim) in-process, with no Ray and no MLflow: a quick way to
reproduce an old figure. New work should use `tuner search`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.core.config import TrialConfig
from tuner.data import load_features
from tuner.trainer.train import fit


def run_experiment(
    constraint_type: str,
    encoder_type: str,
    dataset: str,
    list_of_weights: Sequence[float],
    list_of_latent_dims: Sequence[int],
    num_iters: int = 1500,
    batch_size: int = 64,
    normalize: bool = False,
    feature_extractor: str = "raw",
    keys: Sequence[str] | None = None,
    composite_labels: Mapping[int, int] | None = None,
    margin: float = 1.0,
    dropout_val: float = 0.2,
    data_dir: str | Path | None = None,
    **settings: Any,
) -> pd.DataFrame:
    """Train one trial per (mu, latent_dim); return one row per trial with its final metrics.

    `encoder_type="embenc"` is accepted as the prior work's name for the plain AE; any
    other TrialConfig field can be passed as a keyword (e.g. `hidden_dims=[500, 500, 2000]`).
    """
    base = TrialConfig.from_dict(
        {
            "constraint": constraint_type,
            "encoder": encoder_type,
            "dataset": dataset,
            "iterations": num_iters,
            "batch_size": batch_size,
            "normalize": normalize,
            "feature_extractor": feature_extractor,
            "label_names": keys,
            "composite_labels": composite_labels,
            "margin": margin,
            "dropout": dropout_val,
            **settings,
        },
        source="run_experiment",
    )
    data = load_features(base, data_dir=data_dir, progress=False)
    rows = []
    for mu in list_of_weights:
        for latent_dim in list_of_latent_dims:
            cfg = base.replace(mu=mu, latent_dim=latent_dim)
            result = fit(cfg, data)
            rows.append(
                {
                    "constraint": cfg.constraint,
                    "encoder": cfg.encoder,
                    "mu": cfg.mu,
                    "latent_dim": cfg.latent_dim,
                    **result.metrics,
                }
            )
    return pd.DataFrame(rows)
