"""EmbeddingModel: raw digits images in, the trial's own embeddings out (pure torch, no MLflow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tuner.core.config import TrialConfig
from tuner.data import load_features
from tuner.data.inputs import normalization_stats, split_images
from tuner.embedding import EmbeddingModel
from tuner.errors import TunerError
from tuner.trainer.metrics import knn_accuracy
from tuner.trainer.train import fit


@pytest.mark.parametrize(
    "extractor, normalize, encoder", [("raw", False, "ae"), ("hog", True, "vae")]
)
def test_embed_on_raw_images_reproduces_the_trial(tmp_path, extractor, normalize, encoder):
    cfg = TrialConfig(
        iterations=40,
        eval_every=40,
        feature_extractor=extractor,
        normalize=normalize,
        encoder=encoder,
        latent_dim=3,
    )
    data = load_features(cfg, progress=False)
    result = fit(cfg, data)
    model = EmbeddingModel.from_training(cfg, result.model, data, normalization_stats(cfg))
    # The trial's own embedding is of the validation split; the test split goes through the same
    # code.
    val, train, test = (
        split_images(cfg, "val"),
        split_images(cfg, "train"),
        split_images(cfg, "test"),
    )
    assert np.array_equal(val.labels, data.y_val) and np.array_equal(test.labels, data.y_test)
    # the data layer's own features
    assert np.array_equal(model.model_input(val.images), data.x_val)
    assert np.array_equal(model.model_input(test.images), data.x_test)
    z = model.embed(val.images)
    assert np.array_equal(z, result.val_embedding)
    assert (
        knn_accuracy(model.embed(train.images), train.labels, z, val.labels, cfg.knn_k)
        == result.metrics["knn_accuracy"]
    )
    # forward (what torch.export captures) agrees with embed
    assert np.array_equal(model(torch.from_numpy(model.features(val.images))).detach().numpy(), z)
    recon = model.reconstruct(val.images)
    normalized = (recon - model.norm_mean.numpy()) / model.norm_std.numpy()
    assert np.allclose(normalized, result.val_reconstruction, atol=1e-5)
    model.save(tmp_path)
    assert np.array_equal(EmbeddingModel.load(tmp_path).embed(val.images[:, 0]), z)  # (N, H, W) too


def test_input_of_another_shape_names_both_shapes():
    cfg = TrialConfig(iterations=1, eval_every=1)
    data = load_features(cfg, progress=False)
    model = EmbeddingModel.from_training(cfg, fit(cfg, data).model, data)
    flat = split_images(cfg, "test").images.reshape(-1, 64)
    assert model.embed(flat).shape == (len(flat), cfg.latent_dim)
    with pytest.raises(TunerError, match=r"\(5, 3, 28, 28\).*\(N, 1, 8, 8\)"):
        model.embed(np.zeros((5, 3, 28, 28), dtype=np.uint8))
    with pytest.raises(TunerError, match=r"normalize is true"):
        EmbeddingModel.from_training(cfg.replace(normalize=True), model.autoencoder, data)
