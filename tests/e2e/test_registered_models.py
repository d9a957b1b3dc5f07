"""End to end: a real grid search on digits logs the best trial's model and registers it; a worse
search adds a version and leaves the alias champion where it was. Real Ray, real SQLite MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuner
from tests.spaces import write_space
from tests.stores import empty_store
from tuner.data.inputs import split_images
from tuner.runner.search import run_search
from tuner.space.load import load_spec
from tuner.trainer.metrics import knn_accuracy

pytestmark = pytest.mark.slow


def _space(path: Path, name: str, latent: str, iterations: int) -> Path:
    return write_space(
        path,
        f"""
        name: {name}
        search: grid
        max_concurrent: 1            # one trial worker
        register_as: digits-embedder
        fixed: {{hidden_dims: [32], batch_size: 40, knn_k: 3, iterations: {iterations}, \
eval_every: 50,
                 normalize: true}}
        params:
          latent_dim: {{grid: {latent}}}
        """,
    )


def test_searches_register_the_best_and_move_champion_only_when_better(
    local_ray, tmp_path, monkeypatch
):
    import torch
    from mlflow import MlflowClient

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    uri = empty_store(tmp_path)
    spec = load_spec(_space(tmp_path / "a.yaml", "models-a", "[2, 8]", 100))
    table = run_search(spec, tracking_uri=uri, storage_path=tmp_path / "ray", verbose=False).trials
    client = MlflowClient(tracking_uri=uri)
    assert (
        client.get_experiment_by_name("models-a").tags["mlflow.experimentKind"]
        == "custom_model_development"
    )
    champion = client.get_model_version_by_alias("digits-embedder", "champion")
    best = table.iloc[0]
    assert str(champion.version) == "1" and champion.tags["tuner.trial_id"] == best["trial_id"]
    assert float(champion.tags["knn_accuracy"]) == pytest.approx(best["knn_accuracy"], abs=1e-12)

    # The model rebuilt from the trial's last checkpoint scores exactly what the trial logged.
    model = tuner.load_model("models:/digits-embedder@champion", tracking_uri=uri)
    assert model.config == spec.trial_config({"latent_dim": int(best["latent_dim"])})
    train, val, test = (split_images(model.config, part) for part in ("train", "val", "test"))
    run = client.get_run(champion.run_id)
    z_train = model.embed(train.images)
    assert (
        knn_accuracy(z_train, train.labels, model.embed(val.images), val.labels, model.config.knn_k)
        == run.data.metrics["knn_accuracy"]
    )
    # The selected trial was also read once on test, by the same model.
    assert (
        knn_accuracy(
            z_train, train.labels, model.embed(test.images), test.labels, model.config.knn_k
        )
        == run.data.metrics["test_knn_accuracy"]
    )

    worse = load_spec(_space(tmp_path / "b.yaml", "models-b", "[1]", 50))
    run_search(worse, tracking_uri=uri, storage_path=tmp_path / "ray", verbose=False)
    versions = client.search_model_versions("name = 'digits-embedder'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert str(client.get_model_version_by_alias("digits-embedder", "champion").version) == "1"
