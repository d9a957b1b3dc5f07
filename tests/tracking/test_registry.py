"""Models in MLflow: logged to a trial's run, registered with a champion alias, loaded back.

A real SQLite store and registry in tmp_path; real digits models trained for a few iterations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

import tuner
from tests.stores import empty_store
from tuner.core.config import TrialConfig
from tuner.data import load_features
from tuner.data.inputs import normalization_stats, split_images
from tuner.embedding import EmbeddingModel
from tuner.errors import TunerError
from tuner.tracking.registry import CHAMPION, load_model, log_model, register_model
from tuner.trainer.metrics import knn_accuracy
from tuner.trainer.train import fit


@pytest.fixture(scope="module")
def trained():
    """Three digits models whose knn_accuracy differs: iterations 1, 30 and 300."""
    out = []
    for iterations in (30, 1, 300):  # registered in this order: middle, worst, best
        cfg = TrialConfig(
            iterations=iterations, eval_every=iterations, normalize=True, latent_dim=4
        )
        data = load_features(cfg, progress=False)
        result = fit(cfg, data)
        out.append(
            (
                cfg,
                result,
                EmbeddingModel.from_training(cfg, result.model, data, normalization_stats(cfg)),
            )
        )
    accs = [r.metrics["knn_accuracy"] for _, r, _ in out]
    assert accs[1] < accs[0] < accs[2], accs
    return out


def _trial_run(client: MlflowClient, exp: str, cfg: TrialConfig, metrics: dict[str, float]) -> str:
    run = client.create_run(
        exp, tags={"tuner.role": "trial", "tuner.trial_id": f"t{cfg.iterations}"}
    )
    for key in ("knn_accuracy", "recon_error"):
        client.log_metric(run.info.run_id, key, metrics[key])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_log_register_champion_and_load(tmp_path, trained, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow creates ./mlruns for its default experiment
    uri = empty_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("models", artifact_location=str(tmp_path / "artifacts"))
    test = split_images(trained[0][0], "val")  # the split the trials' own embeddings are of
    train = split_images(trained[0][0], "train")
    registered = []
    for cfg, result, model in trained:
        run_id = _trial_run(client, exp, cfg, result.metrics)
        info = log_model(client, run_id, model, test.images)
        tags = {
            "tuner.search_id": "s",
            "tuner.trial_id": f"t{cfg.iterations}",
            **{k: result.metrics[k] for k in ("knn_accuracy", "recon_error")},
        }
        registered.append(
            register_model(client, "digits-embedder", info, run_id, tags, "knn_accuracy", "max")
        )
    assert [(r.version, r.champion, r.moved) for r in registered] == [
        (1, 1, True),
        (2, 1, False),
        (3, 3, True),
    ]
    assert str(client.get_model_version_by_alias("digits-embedder", CHAMPION).version) == "3"
    assert client.get_model_version("digits-embedder", "2").tags["tuner.trial_id"] == "t1"

    cfg, result, model = trained[2]
    for source in (
        "models:/digits-embedder@champion",
        "models:/digits-embedder/3",
        run_id,
        f"runs:/{run_id}/embedding_model",
    ):
        loaded = load_model(source, tracking_uri=uri)
        assert loaded.config == cfg
        z = loaded.embed(test.images)
        assert np.allclose(z, result.val_embedding) and np.array_equal(z, result.val_embedding)
    assert (
        knn_accuracy(loaded.embed(train.images), train.labels, z, test.labels, cfg.knn_k)
        == result.metrics["knn_accuracy"]
    )
    assert loaded.reconstruct(test.images).shape == (len(test.images), 64)

    # MLflow's own loader, on the same URI: the pt2 graph maps features to embeddings.
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    graph = mlflow.pytorch.load_model("models:/digits-embedder@champion")
    out = graph(torch.from_numpy(loaded.features(test.images))).detach().numpy()
    assert np.allclose(out, result.val_embedding, atol=1e-6)
    assert tuner.load_model("models:/digits-embedder/1", tracking_uri=uri).config == trained[0][0]


def test_unknown_model_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = empty_store(tmp_path)
    with pytest.raises(TunerError, match="not found"):
        load_model("models:/nothing@champion", tracking_uri=uri)
    with pytest.raises(TunerError, match="not found"):
        load_model("0" * 32, tracking_uri=uri)


def test_embed_command_writes_parquet_and_refuses_other_shapes(
    tmp_path, trained, monkeypatch, capsys
):
    import pandas as pd

    from tuner.cli import main

    monkeypatch.chdir(tmp_path)
    uri = empty_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("embed", artifact_location=str(tmp_path / "artifacts"))
    cfg, result, model = trained[2]
    run_id = _trial_run(client, exp, cfg, result.metrics)
    log_model(client, run_id, model, split_images(cfg, "test").images)

    args = ["embed", "--model", run_id, "--tracking-uri", uri, "--dataset", "digits"]
    assert (
        main(
            [
                *args,
                "--split",
                "val",
                "--out",
                str(tmp_path / "z"),
                "--plot",
                str(tmp_path / "z.png"),
            ]
        )
        == 0
    )
    frame = pd.read_parquet(tmp_path / "z.parquet")
    assert list(frame.columns) == ["label", "label_name", "z0", "z1", "z2", "z3"]
    assert np.array_equal(frame[["z0", "z1", "z2", "z3"]].to_numpy(), result.val_embedding)
    assert np.array_equal(frame["label"].to_numpy(), load_features(cfg, progress=False).y_val)
    assert (tmp_path / "z.png").stat().st_size > 0
    assert main([*args, "--split", "all", "--out", str(tmp_path / "all.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "all.csv")) == 1797

    # unlabeled images of another size: exit 2, both shapes named
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 40 * i, dtype=np.uint8)).save(
            tmp_path / "imgs" / f"{i}.png"
        )
    capsys.readouterr()
    assert (
        main(
            [
                "embed",
                "--model",
                run_id,
                "--tracking-uri",
                uri,
                "--images",
                str(tmp_path / "imgs"),
                "--out",
                str(tmp_path / "u.npy"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "(3, 1, 28, 28)" in err and "(N, 1, 8, 8)" in err
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(
            tmp_path / "imgs" / f"{i}.png"
        )
    assert (
        main(
            [
                "embed",
                "--model",
                run_id,
                "--tracking-uri",
                uri,
                "--images",
                str(tmp_path / "imgs"),
                "--out",
                str(tmp_path / "u.npy"),
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "u.npy").shape == (3, 4)


def test_train_from_run_reproduces_the_logged_metrics(tmp_path, monkeypatch, capsys):
    from tuner.cli import main
    from tuner.tracking.store import log_params

    monkeypatch.chdir(tmp_path)
    uri = empty_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("rerun")
    cfg = TrialConfig(
        iterations=60,
        eval_every=30,
        normalize=True,
        encoder="vae",
        lr=1e-3,
        hidden_dims=(32,),
        composite_labels={i: i % 2 for i in range(10)},
        label_names=("even", "odd"),
    )
    torch.set_num_threads(1)
    result = fit(cfg, load_features(cfg, progress=False))
    run_id = _trial_run(client, exp, cfg, result.metrics)
    log_params(client, run_id, cfg.to_dict())  # as the search's tracker writes them

    capsys.readouterr()
    assert main(["train", "--from-run", run_id, "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "knn_accuracy: logged" in out and "recon_error: logged" in out and "differs" not in out
    assert (
        main(
            [
                "train",
                "--from-run",
                run_id,
                "--tracking-uri",
                uri,
                "--set",
                "iterations=30",
                "--json",
            ]
        )
        == 0
    )
    assert '"iterations": 30' in capsys.readouterr().out

    parent = client.create_run(exp, tags={"tuner.role": "search"}).info.run_id
    assert main(["train", "--from-run", parent, "--tracking-uri", uri]) == 2
    assert "not a trial run" in capsys.readouterr().err
    assert main(["train", "--from-run", "f" * 32, "--tracking-uri", uri]) == 2
    assert "no such run" in capsys.readouterr().err
    assert main(["train", "--from-run", run_id, "--tracking-uri", "http://127.0.0.1:9"]) == 2
    assert "cannot be used" in capsys.readouterr().err


def test_the_champion_moves_by_the_searchs_objective() -> None:
    from tuner.core.objective import Objective
    from tuner.tracking.registry import beats

    two = Objective(("knn_accuracy", "recon_error"), ("max", "min"))
    old = {"knn_accuracy": "0.9", "recon_error": "0.05"}  # tags are text
    assert beats(two, {"knn_accuracy": "0.95", "recon_error": "0.04"}, old)  # dominates it
    assert not beats(two, {"knn_accuracy": "0.95", "recon_error": "0.06"}, old)  # same front: stays
    # nothing shows it
    assert not beats(two, {"knn_accuracy": "0.95", "recon_error": "0.04"}, {"knn_accuracy": "0.9"})
    one = Objective(("knn_accuracy",), ("max",))
    # strictly, as before
    assert beats(one, {"knn_accuracy": 0.91}, old) and not beats(one, {"knn_accuracy": 0.9}, old)
    # A require: bound the champion's tags lack: its value is missing, so it is not within the
    # bound (require's rule), and a new version within it is better. Before the fix the champion
    # kept the alias for ever once a search bounded a metric its version was not tagged with.
    bounded = Objective(("knn_accuracy",), ("max",), {"trustworthiness": 0.9})
    assert beats(bounded, {"knn_accuracy": 0.85, "trustworthiness": 0.95}, {"knn_accuracy": 0.99})
    # both within: the better knn stays
    assert not beats(
        bounded,
        {"knn_accuracy": 0.85, "trustworthiness": 0.95},
        {"knn_accuracy": 0.99, "trustworthiness": 0.92},
    )
