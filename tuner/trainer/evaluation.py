"""Embedding a split and measuring it: in large chunks on the model's device, metrics on the host.

Pure PyTorch and numpy. A trial's evaluations read validation only (train.py's `evaluate`);
`evaluate_split` measures the test split once, for the trials a search selected.
"""

from __future__ import annotations

import numpy as np
import torch

from tuner.core.config import TrialConfig
from tuner.data.features import FeatureSet
from tuner.trainer.labels import labeled_rows_of
from tuner.trainer.metrics import constraint_accuracy, evaluate_embedding
from tuner.trainer.networks import AutoEncoder


@torch.no_grad()
def embed_and_reconstruct(
    model: AutoEncoder, x: torch.Tensor, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    was_training = model.training
    model.eval()
    zs, xs = [], []
    for start in range(0, len(x), chunk):
        out = model(x[start : start + chunk])
        zs.append(out.embedding.float().cpu())
        xs.append(out.x_hat.float().cpu())
    model.train(was_training)
    return torch.cat(zs).numpy(), torch.cat(xs).numpy()


@torch.no_grad()
def embed(model: AutoEncoder, x: torch.Tensor, chunk: int = 8192) -> np.ndarray:
    """Embeddings alone, in eval mode: the kNN reference needs no reconstruction."""
    was_training = model.training
    model.eval()
    zs = [
        model(x[start : start + chunk], decode=False).embedding.float().cpu()
        for start in range(0, len(x), chunk)
    ]
    model.train(was_training)
    return torch.cat(zs).numpy()


def evaluate_split(
    cfg: TrialConfig, model: AutoEncoder, data: FeatureSet, split: str = "test"
) -> dict[str, float]:
    """Every metric of a trained model on one split; keys carry the prefix `test_` for the test
    split.

    For the driver after a search (the selected trials only) and `tuner train`: a trial's own
    evaluations never see the test split.
    """
    x, _, _ = data.split(split)
    device = next(model.parameters()).device
    metrics, _, _ = measure(
        cfg,
        model,
        data,
        torch.from_numpy(data.x_train).to(device),
        torch.from_numpy(x).to(device),
        split,
    )
    prefix = "test_" if split == "test" else ""
    return {prefix + key: value for key, value in metrics.items()}


def measure(
    cfg: TrialConfig,
    model: AutoEncoder,
    data: FeatureSet,
    x_train: torch.Tensor,
    x: torch.Tensor,
    split: str,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    # The training embedding is the reference of kNN and retrieval; split_seed (fixed per
    # search) seeds k-means and the trustworthiness subsample, so trials compare on the same points.
    # With few labels the reference is the labeled training images only: nothing the model could
    # not have known scores it. The evaluated split keeps its labels, as the semi-supervised
    # protocol does. A constraints file's held-out judgments are scored on validation.
    x_np, y, fine_y = data.split(split)
    z_train = embed(model, x_train)
    z, x_hat = embed_and_reconstruct(model, x)
    ref_y, ref_fine_y = data.y_train, data.fine_y_train
    labeled = labeled_rows_of(cfg, data.y_train)
    if labeled is not None:
        z_train, ref_y = z_train[labeled], ref_y[labeled]
        ref_fine_y = ref_fine_y[labeled] if ref_fine_y is not None else None
    metrics = evaluate_embedding(
        z_train,
        ref_y,
        z,
        y,
        x_np,
        x_hat,
        k=cfg.knn_k,
        seed=cfg.split_seed,
        ref_fine_y=ref_fine_y,
        fine_y=fine_y,
    )
    if split == "test":  # what the trial trained with is logged with its own evaluations
        return metrics, z, x_hat
    judgments = data.judgments if cfg.constraints is not None else None
    metrics["n_labels"] = float(0 if judgments is not None else len(ref_y))
    if judgments is not None:
        metrics["n_judgments"] = float(len(judgments.train))
        if split == "val":
            metrics["constraint_accuracy"] = constraint_accuracy(
                np.concatenate([z_train, z]), judgments.held, judgments.held_similar, cfg.margin
            )
    return metrics, z, x_hat
