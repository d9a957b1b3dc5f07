"""Weak supervision: few labels (labels_per_class / labeled_fraction) and constraints files of
pair or triplet judgments, on digits, with small networks and few iterations."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import tuner.trainer.evaluation as evaluation
import tuner.trainer.train as train
from tests.paths import REPO_ROOT
from tests.stores import empty_store
from tuner.cli import main
from tuner.core.config import TrialConfig
from tuner.data import load_features
from tuner.data.features import FeatureSet
from tuner.data.judgments import place_judgments, read_judgments
from tuner.data.pipeline import item_places
from tuner.data.sources import load_digits_images
from tuner.errors import TunerError
from tuner.space.load import load_spec
from tuner.trainer.evaluation import embed
from tuner.trainer.labels import labeled_indices, labeled_rows_of
from tuner.trainer.metrics import constraint_accuracy, knn_accuracy
from tuner.trainer.networks import build_model
from tuner.trainer.train import fit, training_step
from tuner.trainer.weak_samplers import BatchSource

SMALL = dict(hidden_dims=(64, 32), dropout=0.0, batch_size=40, lr=3e-3, latent_dim=4)


def _example():
    spec = importlib.util.spec_from_file_location(
        "make_constraints", REPO_ROOT / "examples" / "make_constraints.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits() -> FeatureSet:
    return load_features(TrialConfig(), progress=False).without_test()


# ------------------------------------------------------------------------------ the labeled subset


def test_the_labeled_subset_is_class_stratified_seeded_and_nested():
    y = np.repeat(np.arange(4), [30, 12, 20, 7])
    few = labeled_indices(y, 5, None, seed=3)
    assert np.bincount(y[few]).tolist() == [5, 5, 5, 5]
    assert np.array_equal(few, labeled_indices(y, 5, None, seed=3))  # same seed, same images
    assert not np.array_equal(few, labeled_indices(y, 5, None, seed=4))
    assert set(few) < set(labeled_indices(y, 6, None, seed=3))  # a larger N labels a superset
    share = labeled_indices(y, None, 0.25, seed=3)
    assert np.bincount(y[share]).tolist() == [8, 3, 5, 2]  # ceil(0.25 * count) per class
    assert labeled_indices(y, None, None, seed=3) is None  # every label
    with pytest.raises(
        TunerError, match=r"labels_per_class = 8 .*smallest class \(3\) has 7 images"
    ):
        labeled_indices(y, 8, None, seed=0)


def test_a_trial_labels_the_same_images_as_every_other_of_its_split_seed(digits):
    cfg = TrialConfig(labels_per_class=3, mu=0.3, seed=1)
    other = TrialConfig(labels_per_class=3, mu=0.9, seed=7)
    assert np.array_equal(
        labeled_rows_of(cfg, digits.y_train), labeled_rows_of(other, digits.y_train)
    )
    assert len(labeled_rows_of(cfg, digits.y_train)) == 30


# ----------------------------------------------------------------------- where unlabeled images go


def test_unlabeled_images_reach_the_reconstruction_but_never_the_metric_term(digits, monkeypatch):
    cfg = TrialConfig(labels_per_class=3, unlabeled_per_batch=24, mu=0.5, **SMALL)
    labeled = labeled_rows_of(cfg, digits.y_train)
    x, y = torch.from_numpy(digits.x_train), torch.from_numpy(digits.y_train)
    source = BatchSource(
        cfg, y, labeled, None, torch.Generator().manual_seed(0), torch.device("cpu"), None
    )
    batch = source.next()
    rows = batch.idx.numpy()
    assert batch.n_metric == 40 and len(rows) == 64
    assert set(rows[:40]) <= set(labeled) and not set(rows[40:]) & set(labeled)
    assert np.array_equal(batch.labels.numpy(), digits.y_train[rows[:40]])

    seen = {}
    monkeypatch.setattr(
        train,
        "metric_loss",
        lambda cfg, z, labels, *a, **k: seen.update(z=z, labels=labels) or z.sum() * 0,
    )
    real_recon = train.reconstruction_loss
    monkeypatch.setattr(
        train,
        "reconstruction_loss",
        lambda x_hat, target: seen.update(target=target) or real_recon(x_hat, target),
    )
    model = build_model(cfg, digits.n_features)
    training_step(
        cfg,
        model,
        x[batch.idx],
        batch.labels,
        torch.Generator(),
        batch.labels_key,
        n_metric=batch.n_metric,
    )

    with torch.no_grad():
        labeled_z = model(x[batch.idx[:40]], decode=False).embedding
    assert torch.allclose(seen["z"], labeled_z)  # exactly the labeled images' embeddings
    assert np.array_equal(seen["labels"].numpy(), digits.y_train[rows[:40]])
    assert torch.equal(seen["target"], x[batch.idx])  # all 64, unlabeled ones included


def test_the_knn_reference_is_the_labeled_training_images_only(digits, monkeypatch):
    cfg = TrialConfig(labels_per_class=3, iterations=20, eval_every=20, **SMALL)
    refs = []
    real = evaluation.evaluate_embedding
    monkeypatch.setattr(
        evaluation,
        "evaluate_embedding",
        lambda ref_z, ref_y, *a, **k: refs.append((ref_z, ref_y)) or real(ref_z, ref_y, *a, **k),
    )
    result = fit(cfg, digits)
    labeled = labeled_rows_of(cfg, digits.y_train)
    ref_z, ref_y = refs[-1]
    expected_z = embed(result.model, torch.from_numpy(digits.x_train[labeled]))
    assert np.allclose(ref_z, expected_z, atol=1e-6) and np.array_equal(
        ref_y, digits.y_train[labeled]
    )
    assert result.metrics["n_labels"] == 30
    assert result.metrics["knn_accuracy"] == knn_accuracy(
        expected_z, digits.y_train[labeled], result.val_embedding, digits.y_val, cfg.knn_k
    )


def test_mu_1_adds_no_unlabeled_images_and_every_label_keeps_todays_batches(digits):
    y = torch.from_numpy(digits.y_train)
    few = TrialConfig(labels_per_class=3, mu=1.0, **SMALL)
    source = BatchSource(
        few,
        y,
        labeled_rows_of(few, digits.y_train),
        None,
        torch.Generator(),
        torch.device("cpu"),
        None,
    )
    assert len(source.next().idx) == 40  # no reconstruction term to feed at mu = 1
    full = TrialConfig(**SMALL)
    a = BatchSource(
        full, y, None, None, torch.Generator().manual_seed(5), torch.device("cpu"), None
    ).next()
    from tuner.trainer.samplers import StratifiedBatchSampler

    b = StratifiedBatchSampler(digits.y_train, 40, torch.Generator().manual_seed(5)).next_batch()
    assert torch.equal(a.idx, b)


# ------------------------------------------------------------------------------ constraints files


def test_constraint_accuracy_by_value_on_a_hand_made_case():
    z = np.array([[0.0, 0.0], [0.5, 0.0], [3.0, 0.0], [0.0, 2.0]])
    pairs = np.array([[0, 1], [0, 2], [0, 1], [0, 3], [1, 3]])
    similar = np.array([True, True, False, False, True])
    # d: 0.5 (< 1: similar ok, dissimilar not), 3 (similar: wrong), 0.5 (dissimilar: wrong), 2 (ok),
    # 2.06 (wrong)
    assert constraint_accuracy(z, pairs, similar, margin=1.0) == pytest.approx(2 / 5)
    triplets = np.array([[0, 1, 2], [0, 2, 1], [2, 3, 0]])  # d(2,3)=3.6 vs d(2,0)=3: wrong
    assert constraint_accuracy(z, triplets, None, margin=1.0) == pytest.approx(1 / 3)


def test_judgments_are_placed_on_the_splits_and_a_seeded_share_held_out(tmp_path):
    path = tmp_path / "pairs.csv"
    rows = [
        (0, 1, 1),
        (1, 2, 0),
        (0, 3, 1),
        (2, 4, 0),
        (5, 1, 1),
        (0, 2, 1),
        (1, 3, 0),
        (2, 5, 1),
        (3, 5, 1),
        (4, 0, 0),
    ]
    path.write_text("a,b,similar\n" + "".join(f"{a},{b},{s}\n" for a, b, s in rows))
    file = read_judgments(path, "pairwise")
    where = np.array([0, 0, 0, 1, 2, 0])  # items 3: validation, 4: test
    position = np.array([2, 0, 1, 0, 0, 3])
    placed = place_judgments(
        file, where, position, n_train=4, item_names=None, val_size=0.2, seed=0
    )
    held = np.zeros(10, dtype=bool)
    held[np.random.default_rng(0).permutation(10)[:2]] = True
    train_rows = [r for r, h in zip(rows, held) if not h and where[r[0]] == where[r[1]] == 0]
    assert placed.train.tolist() == [[position[a], position[b]] for a, b, _ in train_rows]
    assert placed.train_similar.tolist() == [bool(s) for *_, s in train_rows]
    held_rows = [r for r, h in zip(rows, held) if h and 2 not in (where[r[0]], where[r[1]])]

    def stacked(i: int) -> int:
        return position[i] + (4 if where[i] == 1 else 0)  # validation after the 4 training rows

    assert placed.held.tolist() == [[stacked(a), stacked(b)] for a, b, _ in held_rows]
    assert placed.dropped == 10 - len(train_rows) - len(held_rows) > 0


@pytest.mark.parametrize("kind", ["pairwise", "triplet"])
def test_a_constraints_file_trains_and_scores_constraint_accuracy(tmp_path, kind):
    path = tmp_path / "judgments.csv"
    args = ["--kind", "pairs" if kind == "pairwise" else "triplets", "--n", "600", "--wrong", "0.1"]
    assert _example().main([*args, "--out", str(path)]) == 0
    cfg = TrialConfig(
        constraints=str(path), constraint=kind, mu=0.7, iterations=600, eval_every=600, **SMALL
    )
    data = load_features(cfg, progress=False)
    assert (
        data.judgments.kind == kind
        and len(data.judgments.train) == 510
        and data.judgments.dropped == 0
    )
    torch.manual_seed(cfg.seed)
    untrained = build_model(cfg, data.n_features)
    x = torch.from_numpy(np.concatenate([data.x_train, data.x_val]))
    before = constraint_accuracy(
        embed(untrained, x), data.judgments.held, data.judgments.held_similar, cfg.margin
    )
    result = fit(cfg, data.without_test())
    after = result.metrics["constraint_accuracy"]
    # measured: pairs 0.57 -> 0.73, triplets 0.69 -> 0.87
    assert after > before + 0.1, (
        before,
        after,
    )
    assert after == constraint_accuracy(
        embed(result.model, x), data.judgments.held, data.judgments.held_similar, cfg.margin
    )
    assert result.metrics["n_judgments"] == 510 and result.metrics["n_labels"] == 0


def test_judgment_batches_feed_the_metric_term_their_items_only(digits, monkeypatch, tmp_path):
    path = tmp_path / "t.csv"
    assert (
        _example().main(["--kind", "triplets", "--n", "100", "--wrong", "0", "--out", str(path)])
        == 0
    )
    cfg = TrialConfig(constraints=str(path), constraint="triplet", unlabeled_per_batch=10, **SMALL)
    data = load_features(cfg, progress=False)
    source = BatchSource(
        cfg,
        torch.from_numpy(data.y_train),
        None,
        data.judgments,
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
        None,
    )
    batch = source.next()
    assert batch.n_metric == 39 and len(batch.idx) == 49  # 13 triplets (40 // 3), then 10 unlabeled
    a, p, n = (t.numpy() for t in batch.judged)
    triplets = batch.idx.numpy()[np.stack([a, p, n], 1)]
    known = {tuple(t) for t in data.judgments.train.tolist()}
    assert all(tuple(t) in known for t in triplets.tolist())
    seen = {}
    monkeypatch.setattr(
        train, "judged_loss", lambda cfg, z, judged: seen.update(z=z) or z.sum() * 0
    )
    model = build_model(cfg, data.n_features)
    x = torch.from_numpy(data.x_train)
    training_step(
        cfg,
        model,
        x[batch.idx],
        None,
        torch.Generator(),
        n_metric=batch.n_metric,
        judged=batch.judged,
    )
    with torch.no_grad():
        assert torch.allclose(seen["z"], model(x[batch.idx[:39]], decode=False).embedding)


# --------------------------------------------------------------- bad input: exit 2, file, row, fix


def _validate(capsys, tmp_path, fixed: str, params: str = "") -> tuple[int, str]:
    space = tmp_path / "space.yaml"
    space.write_text(
        f"name: weak\nsearch: grid\nfixed:\n{fixed}" + (f"params:\n{params}" if params else "")
    )
    code = main(["validate", "--space", str(space)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _pairs(tmp_path, rows: list[str], header: str = "a,b,similar") -> Path:
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


GOOD_ROWS = [f"{i},{i + 1},{i % 2}" for i in range(0, 200, 2)]


@pytest.mark.parametrize(
    ("rows", "header", "constraint", "fragment"),
    [
        (
            GOOD_ROWS[:3] + ["5,7"] + GOOD_ROWS[3:],
            "a,b,similar",
            "pairwise",
            r"pairs.csv:5: row '5,7' is malformed: expected three non-empty fields \(a,b,similar\)",
        ),
        (
            GOOD_ROWS[:1] + ["5,7,yes"] + GOOD_ROWS[1:],
            "a,b,similar",
            "pairwise",
            r"pairs.csv:3: similar = 'yes' .*1 .* or 0",
        ),
        (
            GOOD_ROWS,
            "a,b,similar",
            "triplet",
            r"pairs.csv:1: holds pairs .* but constraint is triplet: set constraint: pairwise",
        ),
        (
            ["1,2,3"] * 50,
            "anchor,positive,negative",
            "pairwise",
            r"holds triplets .* constraint is pairwise",
        ),
        (
            GOOD_ROWS,
            "left,right,same",
            "pairwise",
            r"pairs.csv:1: header 'left,right,same' is neither a,b,similar",
        ),
        (
            GOOD_ROWS[:20],
            "a,b,similar",
            "pairwise",
            r"17 judgments train \(of 20 rows, after the held-out val_size share\), "
            r"fewer than a batch needs: batch_size "
            r"40 draws 20 pairs per batch.*lower batch_size to 34",
        ),
    ],
)
def test_a_bad_constraints_file_exits_2_from_validate_naming_file_row_and_fix(
    capsys, tmp_path, rows, header, constraint, fragment
):
    path = _pairs(tmp_path, rows, header)
    code, err = _validate(
        capsys, tmp_path, f"  constraints: {path}\n  constraint: {constraint}\n  batch_size: 40\n"
    )
    assert code == 2
    assert str(path) in err
    assert re.search(fragment, err), err


def test_a_row_naming_an_item_that_does_not_exist_exits_2(capsys, tmp_path):
    # digits has items 0..1796
    path = _pairs(tmp_path, GOOD_ROWS[:50] + ["3,1797,1"] + GOOD_ROWS[50:])
    code = main(
        ["train", "--set", f"constraints={path}", "--set", "iterations=5", "--set", "batch_size=40"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert (
        f"{path}:52: item '1797' does not exist: expected an index into the dataset's training "
        "order, 0..1796" in err
    )


@pytest.mark.parametrize(
    ("fixed", "params", "fragment"),
    [
        (
            "  labels_per_class: 5\n  labeled_fraction: 0.1\n",
            "",
            "labels_per_class (5) is set too: give one of the two",
        ),
        (
            "  labels_per_class: 5\n",
            "  labeled_fraction: {grid: [0.1, 0.2]}\n",
            "params.labeled_fraction: grid value 0.1 is not valid: labeled_fraction = 0.1 is not "
            "valid: labels_per_class (5) is set too",
        ),
        (
            "  mu: 0.5\n",
            "  labels_per_class: {grid: [10, null]}\n  labeled_fraction: {grid: [null, 0.5]}\n",
            "labels_per_class and labeled_fraction are both set",
        ),
    ],
)
def test_both_label_settings_at_once_exit_2(capsys, tmp_path, fixed, params, fragment):
    code, err = _validate(capsys, tmp_path, fixed, params)
    assert code == 2 and fragment in err, err


def test_ranking_by_constraint_accuracy_needs_a_constraints_file(capsys, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("name: weak\nsearch: grid\nmetric: constraint_accuracy\nfixed:\n  mu: 0.5\n")
    assert main(["validate", "--space", str(space)]) == 2
    assert (
        "constraint_accuracy scores the held-out judgments of a constraints file"
        in capsys.readouterr().err
    )


def test_labels_per_class_above_the_smallest_class_exits_2(capsys, tmp_path, digits):
    # digits' training split (60%) holds 106..110 images per class.
    smallest = int(np.bincount(digits.y_train).min())
    code = main(["train", "--set", f"labels_per_class={smallest + 1}", "--set", "iterations=5"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert (
        f"labels_per_class = {smallest + 1} is not valid: the training split's smallest class"
        in err
    )
    assert f"has {smallest} images. Give at most {smallest}" in err
    # a search over N is checked against the data as the search starts
    space = tmp_path / "space.yaml"
    space.write_text(
        f"name: weak\nsearch: grid\nparams:\n  labels_per_class: {{grid: [3, {smallest + 1}]}}\n"
    )
    spec = load_spec(space)
    with pytest.raises(TunerError, match=f"labels_per_class = {smallest + 1} is not valid"):
        spec.check_data(digits)
    spec.check_data(
        FeatureSet(**{**digits.__dict__, "y_train": np.repeat(np.arange(10), smallest + 1)})
    )


def test_too_few_judgments_left_on_the_training_split_exit_2_and_a_search_checks_its_smallest_batch(
    capsys, tmp_path
):
    cfg = TrialConfig()
    where, _ = item_places(cfg, {"y_train": load_digits_images().y_train})
    train_items, test_items = np.flatnonzero(where == 0), np.flatnonzero(where == 2)
    rows = [f"{train_items[2 * i]},{train_items[2 * i + 1]},1" for i in range(12)]
    rows += [f"{test_items[i]},{train_items[i]},0" for i in range(88)]  # dropped: a test image
    path = _pairs(tmp_path, rows)
    code = main(
        ["train", "--set", f"constraints={path}", "--set", "batch_size=40", "--set", "iterations=5"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    data = load_features(cfg.replace(constraints=str(path)), progress=False)
    n_train = len(data.judgments.train)
    # the held-out share may take some
    assert 0 < n_train < 20 and data.judgments.dropped >= 88 - 15
    assert (
        f"{n_train} judgments train ({len(data.judgments.held)} more held out, "
        f"{data.judgments.dropped} dropped for naming validation or test images), fewer than a "
        "batch needs" in err
    )
    space = tmp_path / "space.yaml"
    space.write_text(
        f"name: weak\nsearch: grid\nfixed:\n  constraints: {path}\n"
        f"params:\n  batch_size: {{grid: [{2 * n_train}, 64]}}\n"
    )
    # the smallest batch, 2 * n_train, needs n_train pairs: enough
    load_spec(space).check_data(data)
    space.write_text(space.read_text().replace(f"[{2 * n_train}, 64]", f"[{2 * n_train + 2}, 64]"))
    with pytest.raises(TunerError, match="fewer than a batch needs"):
        load_spec(space).check_data(data)


# ------------------------------------------------------------------------------ through a search


@pytest.mark.slow
def test_a_search_over_labels_and_one_ranked_by_constraint_accuracy(local_ray, tmp_path):
    """Ray and MLflow end to end: trials receive the judgments with the data, log n_labels /
    n_judgments, and a search with no label in training ranks by constraint_accuracy."""
    from mlflow import MlflowClient

    from tuner.runner.search import run_search

    path = tmp_path / "pairs.csv"
    assert (
        _example().main(["--kind", "pairs", "--n", "300", "--wrong", "0.1", "--out", str(path)])
        == 0
    )
    uri = empty_store(tmp_path)
    # Both searches: one trial at a time (one trial worker) and no model; neither is checked here.
    quick = "max_concurrent: 1\nlog_models: none\n"
    few = tmp_path / "few.yaml"
    few.write_text(
        f"name: few\nsearch: grid\n{quick}resources: {{cpus: 1, gpus: 0}}\n"
        "fixed: {hidden_dims: [32], batch_size: 40, iterations: 20, eval_every: 20}\n"
        "params:\n  labels_per_class: {grid: [2, null]}\n"
    )
    table = run_search(
        load_spec(few), tracking_uri=uri, storage_path=tmp_path / "ray", verbose=False
    ).trials
    assert (table["status"] == "FINISHED").all()
    judged = tmp_path / "judged.yaml"
    judged.write_text(
        f"name: judged\nsearch: grid\nmetric: constraint_accuracy\n{quick}"
        f"resources: {{cpus: 1, gpus: 0}}\n"
        f"fixed: {{constraints: {path}, hidden_dims: [32], batch_size: 40, iterations: 20, "
        f"eval_every: 20}}\nparams:\n  mu: {{grid: [0.0, 1.0]}}\n"
    )
    table = run_search(
        load_spec(judged), tracking_uri=uri, storage_path=tmp_path / "ray", verbose=False
    ).trials
    assert (table["status"] == "FINISHED").all() and table["constraint_accuracy"].between(
        0, 1
    ).all()
    # best first
    assert list(table["constraint_accuracy"]) == sorted(table["constraint_accuracy"], reverse=True)
    client = MlflowClient(tracking_uri=uri)

    def logged(experiment: str) -> list[dict[str, float]]:
        runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        return [r.data.metrics for r in runs if r.data.tags.get("tuner.role") != "search"]

    assert sorted(m["n_labels"] for m in logged("few")) == [
        20.0,
        1077.0,
    ]  # 2 per class; digits' training split
    judged_runs = logged("judged")
    assert len(judged_runs) == 2
    assert all(
        m["n_judgments"] == 255 and m["n_labels"] == 0 and 0 <= m["constraint_accuracy"] <= 1
        for m in judged_runs
    )


def test_an_image_folders_judgments_name_images_by_path_and_land_on_their_rows(tmp_path):
    from PIL import Image

    grey = {}
    for c, name in enumerate(("cat", "dog")):
        (tmp_path / name).mkdir()
        for i in range(12):
            grey[f"{name}/{i:02d}.png"] = 10 * i + 120 * c  # a grey level of its own per image
            Image.new("RGB", (8, 8), (grey[f"{name}/{i:02d}.png"],) * 3).save(
                tmp_path / name / f"{i:02d}.png"
            )
    rows = [("cat/00.png", "cat/01.png", 1), ("dog/03.png", "cat/04.png", 0)] * 10
    rows += [(f"cat/{i:02d}.png", f"dog/{i:02d}.png", 0) for i in range(12)]
    path = _pairs(tmp_path, [f"{a},{b},{s}" for a, b, s in rows])
    cfg = TrialConfig(
        dataset="imagenet", image_size=8, constraints=str(path), batch_size=4, val_size=0.2
    )
    data = load_features(cfg, data_dir=tmp_path, progress=False)
    x_both = np.concatenate([data.x_train, data.x_val])
    level = lambda x, i: int(round(float(x[i].mean()) * 255))  # noqa: E731
    for table, x in ((data.judgments.train, data.x_train), (data.judgments.held, x_both)):
        for a, b in table:
            assert (level(x, a), level(x, b)) in {(grey[p], grey[q]) for p, q, _ in rows}
    assert len(data.judgments.train) + len(data.judgments.held) + data.judgments.dropped == len(
        rows
    )
    bad = _pairs(tmp_path, [f"{a},{b},{s}" for a, b, s in rows] + ["cat/00.png,bird/1.png,0"])
    with pytest.raises(
        TunerError, match=r"pairs.csv:34: item 'bird/1.png' is not an image of the folder"
    ):
        load_features(cfg.replace(constraints=str(bad)), data_dir=tmp_path, progress=False)


# ------------------------------------------------------------------------------ review: edge cases


@pytest.mark.parametrize("item", ["1_0", "+3", "\uff13", "3.0", "-1"])
def test_an_item_that_is_not_a_plain_index_exits_2(tmp_path, item):
    # int() reads "1_0" as 10, "+3" and a full-width digit as 3: a typo would train on another
    # image.
    path = _pairs(tmp_path, GOOD_ROWS[:50] + [f"{item},7,1"] + GOOD_ROWS[50:])
    with pytest.raises(
        TunerError,
        match=re.escape(f"pairs.csv:52: item {item!r} does not exist: expected an index"),
    ):
        load_features(TrialConfig(constraints=str(path)), progress=False)


@pytest.mark.parametrize(
    ("header", "row", "kind"),
    [
        ("a,b,similar", "7,7,0", "pairwise"),
        ("a,b,similar", "7,007,1", "pairwise"),
        ("anchor,positive,negative", "4,9,9", "triplet"),
        ("anchor,positive,negative", "4,4,9", "triplet"),
    ],
)
def test_a_judgment_naming_one_item_twice_exits_2_from_validate(
    capsys, tmp_path, header, row, kind
):
    # A dissimilar self-pair can never be satisfied and a similar one always is: either skews
    # constraint_accuracy, and neither teaches the metric term anything.
    rows = GOOD_ROWS if kind == "pairwise" else [f"{i},{i + 1},{i + 2}" for i in range(0, 300, 3)]
    path = _pairs(tmp_path, rows[:10] + [row] + rows[10:], header)
    code, err = _validate(
        capsys, tmp_path, f"  constraints: {path}\n  constraint: {kind}\n  batch_size: 40\n"
    )
    assert code == 2 and f"pairs.csv:12: row {row!r} names item" in err and "twice" in err, err


def test_at_mu_0_batches_use_no_label_and_weigh_no_image_above_the_others(digits, tmp_path):
    # mu = 0 has no metric term: a batch that is half the labeled images (drawn with replacement
    # from 3 per class) would train its plain autoencoder on 30 images as much as on the other
    # 1,047.
    y = torch.from_numpy(digits.y_train)

    def rows(cfg: TrialConfig, judgments=None) -> np.ndarray:
        source = BatchSource(
            cfg,
            y,
            labeled_rows_of(cfg, digits.y_train),
            judgments,
            torch.Generator().manual_seed(0),
            torch.device("cpu"),
            None,
        )
        return np.concatenate([source.next().idx.numpy() for _ in range(50)])

    few, more = (TrialConfig(labels_per_class=n, mu=0.0, **SMALL) for n in (3, 50))
    drawn = rows(few)
    assert len(drawn) == 50 * 80  # batch_size + unlabeled_per_batch, as at any other mu
    assert np.array_equal(drawn, rows(more))  # the labeled subset plays no part
    labeled = labeled_rows_of(few, digits.y_train)
    assert np.isin(drawn, labeled).mean() < 0.1  # 30 of 1,077 images: about 3 %, not a half
    path = tmp_path / "p.csv"
    assert _example().main(["--kind", "pairs", "--n", "300", "--out", str(path)]) == 0
    judged = TrialConfig(constraints=str(path), mu=0.0, **SMALL)
    assert np.array_equal(rows(judged, load_features(judged, progress=False).judgments), drawn)


def test_a_held_out_judgment_has_no_copy_among_the_training_ones(tmp_path):
    # Two annotators agreeing write a row twice (or as b,a): a held-out copy of a training row
    # would score what the model was trained on as if it were new.
    rng = np.random.default_rng(0)
    pairs = [
        (int(a), int(b), int(s))
        for a, b, s in zip(
            rng.permutation(300)[:150], rng.permutation(300)[150:], rng.integers(0, 2, 150)
        )
    ]
    rows = pairs + [(b, a, s) for a, b, s in pairs[:75]] + pairs[75:]
    path = _pairs(tmp_path, [f"{a},{b},{s}" for a, b, s in rows])
    where, position = np.zeros(300, dtype=np.int64), np.arange(300)
    placed = place_judgments(
        read_judgments(path, "pairwise"),
        where,
        position,
        n_train=300,
        item_names=None,
        val_size=0.2,
        seed=0,
    )
    trained = {frozenset(p) for p in placed.train.tolist()}
    assert len(placed.held) == 60 and not trained & {frozenset(p) for p in placed.held.tolist()}
    triplets = [(a, b, c) for a, b, c in rng.permutation(300).reshape(100, 3).tolist()]
    path = _pairs(
        tmp_path, [f"{a},{p},{n}" for a, p, n in triplets * 2], "anchor,positive,negative"
    )
    placed = place_judgments(
        read_judgments(path, "triplet"),
        where,
        position,
        n_train=300,
        item_names=None,
        val_size=0.2,
        seed=0,
    )
    assert len(placed.held) == 40 and not set(map(tuple, placed.train.tolist())) & set(
        map(tuple, placed.held.tolist())
    )
