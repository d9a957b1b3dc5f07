"""`tuner train` and the prior work's `run_experiment`, through their public entry points."""

import json
import re

import pytest

import tuner
from tuner.cli import main
from tuner.commands.args import parse_set_pairs
from tuner.errors import TunerError

QUICK = ["--set", "iterations=30", "--set", "eval_every=30", "--set", "hidden_dims=[32, 16]"]


def test_train_json_prints_one_object_with_the_final_metrics(capsys):
    assert main(["train", "--json", *QUICK, "--set", "lr=3e-3", "--set", "encoder=vae"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    assert result["iterations"] == 30
    # Validation under the plain names, the test split as test_*. Measured at these 30 steps:
    # knn 0.586 (validation) and 0.564 (test), chance being 0.1; the floors sit a few points below.
    assert result["knn_accuracy"] >= 0.53 and result["test_knn_accuracy"] >= 0.5
    assert result["precision_at_1"] >= 0.45 and result["test_map_at_r"] >= 0.2
    assert (
        0 < result["recon_error"] < 0.09
        and 0 < result["test_recon_error"] < 0.09
        and result["seconds"] > 0
    )
    # digits: 60 / 20 / 20
    assert result["test_trustworthiness_n"] == result["trustworthiness_n"] == 360
    assert "kl" in result and "test_kl" not in result  # training losses have no test counterpart


def test_train_console_labels_validation_and_test(capsys):
    assert main(["train", *QUICK]) == 0
    out = capsys.readouterr().out
    validation, test = out.index("validation (360 samples"), out.index("test (360 samples")
    assert validation < out.index("  knn_accuracy ") < test < out.index("  test_knn_accuracy ")
    assert re.search(r"^  test_trustworthiness_n +360$", out, re.MULTILINE)  # a count, shown as one


@pytest.mark.parametrize(
    ("pairs", "fragment"),
    [
        (["mu=2"], "mu = 2.0 is not valid"),
        (["latent_dim=two"], "latent_dim = 'two'"),
        (["learning_rate=0.1"], "unknown key 'learning_rate'"),
        (["hidden_dims=[64,"], "not valid YAML"),
        (["mu"], "expected key=value"),
        (["dataset=mnist"], "MNIST"),  # no files under ./data: names the directory and the files
    ],
)
def test_user_errors_exit_2_with_one_message_and_no_traceback(
    capsys, tmp_path, monkeypatch, pairs, fragment
):
    monkeypatch.chdir(tmp_path)
    args = ["train"] + [arg for pair in pairs for arg in ("--set", pair)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err
    assert err.startswith("tuner train: error: ")


def test_an_image_folder_with_more_classes_than_half_a_batch_is_refused(capsys, tmp_path):
    """The class count of an image folder is known once it is read: 3 classes at batch 4 left a
    class with one sample a batch (no positive), and before this check trained silently."""
    from PIL import Image

    for i, name in enumerate(("blue", "green", "red")):
        (tmp_path / name).mkdir()
        for j in range(4):
            Image.new("RGB", (10 + j, 10), (60 * i, 10 * j, 0)).save(tmp_path / name / f"{j}.png")
    args = [
        "train",
        "--data-dir",
        str(tmp_path),
        "--set",
        "dataset=imagenet",
        "--set",
        "image_size=8",
        "--set",
        "test_size=0.25",
        *QUICK,
    ]
    assert main([*args, "--set", "batch_size=4"]) == 2
    err = capsys.readouterr().err
    assert "batch_size = 4 is not valid" in err and "at least 6 for 3 classes of imagenet" in err
    assert "Traceback" not in err
    assert main([*args, "--set", "batch_size=6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # 12 images, a quarter for test and as many for validation, stratified: one of each class in
    # each of them, two of each for training (the kNN reference, n_labels).
    assert result["iterations"] == 30 and result["n_labels"] == 6
    assert result["trustworthiness_n"] == result["test_trustworthiness_n"] == 3
    for key in ("knn_accuracy", "test_knn_accuracy"):
        assert round(result[key] * 3, 9) in (0.0, 1.0, 2.0, 3.0), key  # a share of 3 images
    for key in ("precision_at_1", "map_at_r", "nmi", "trustworthiness"):
        assert 0 <= result[key] <= 1 and 0 <= result[f"test_{key}"] <= 1, key
    assert 0 < result["recon_error"] < 0.2 and 0 < result["test_recon_error"] < 0.2


def test_set_values_parse_as_yaml_including_plain_exponents():
    assert parse_set_pairs(
        ["lr=1e-3", "normalize=false", "hidden_dims=[64, 32]", "label_names=null"]
    ) == {"lr": 0.001, "normalize": False, "hidden_dims": [64, 32], "label_names": None}
    with pytest.raises(TunerError):
        parse_set_pairs(["=3"])


def test_run_experiment_accepts_the_prior_works_arguments():
    table = tuner.run_experiment(
        "triplet",
        "embenc",
        "digits",
        [0.0, 1.0],
        [2, 3],
        num_iters=30,
        batch_size=40,
        keys=list("0123456789"),
        margin=1,
        dropout_val=0.1,
        normalize=True,
        feature_extractor="raw",
        hidden_dims=[32, 16],
        eval_every=30,
    )
    assert list(zip(table["mu"], table["latent_dim"])) == [(0.0, 2), (0.0, 3), (1.0, 2), (1.0, 3)]
    assert set(table["encoder"]) == {"ae"} and set(table["constraint"]) == {"triplet"}
    # Measured knn 0.42 / 0.52 (mu 0, latent 2 / 3) and 0.54 / 0.64 (mu 1): all far above chance
    # (0.1), and the metric loss alone places classes better than reconstruction alone.
    assert table["knn_accuracy"].min() >= 0.37
    by_mu = table.pivot(index="latent_dim", columns="mu", values="knn_accuracy")
    assert (by_mu[1.0] > by_mu[0.0]).all()
    # mu = 1 trains the encoder only: its reconstructions stay as poor as an untrained decoder's.
    assert (
        table.loc[table["mu"] == 1.0, "recon_error"].min()
        > table.loc[table["mu"] == 0.0, "recon_error"].max()
    )


def test_device_cuda_without_cuda_exits_2_before_training(capsys, monkeypatch):
    import torch

    # A machine without CUDA, whichever machine runs the tests.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", *QUICK, "--set", "device=cuda"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "tuner train: error: device = cuda but torch sees no CUDA device: "
        "use device: auto or cpu.\n"
    )


@pytest.mark.parametrize(
    "pairs, want",
    [
        (
            ["mu=0.1", "mu=0.9"],
            "--set 'mu=0.9': mu is given twice (also by --set 'mu=0.1'); keep one.",
        ),
        (
            ["weight=0.1", "mu=0.9"],
            "--set 'mu=0.9': mu is given twice (also by --set 'weight=0.1'); keep one.",
        ),
        (["composite_labels={0: 0, 00: 1}"], "given twice"),
        (["composite_labels={<<: {0: 0}, 1: 1}"], "merge keys are not accepted in --set"),
    ],
)
def test_a_setting_given_twice_is_refused_by_every_command(tmp_path, capsys, pairs, want):
    with pytest.raises(TunerError) as info:
        parse_set_pairs(pairs)
    assert want in str(info.value)
    space = tmp_path / "s.yaml"
    space.write_text("name: twice\n")
    flags = [a for p in pairs for a in ("--set", p)]
    for argv in (
        ["train", *flags],
        ["validate", "--space", str(space), *flags],
        [
            "search",
            "--space",
            str(space),
            *flags,
            "--storage-path",
            str(tmp_path / "ray"),
            "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
        ],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert (
            err.startswith(f"tuner {argv[0]}: error: --set ")
            and want in err
            and "Traceback" not in err
        )
    assert not (tmp_path / "ray").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("threads", ["0", "1025", "100000", str(10**20), "-3", "two", "²"])
def test_threads_outside_1_to_1024_is_a_usage_error(capsys, threads):
    with pytest.raises(SystemExit) as exited:  # argparse's usage error: exit 2, before torch starts
        main(["train", "--threads", threads, *QUICK])
    err = capsys.readouterr().err
    assert (
        exited.value.code == 2
        and f"argument --threads: expected an integer in 1..1024, got {threads!r}" in err
    )


@pytest.mark.parametrize(
    "pair, want",
    [
        (
            "seed=99999999999999999999",
            "seed = 99999999999999999999 is not valid: expected an integer in 0..4294967295",
        ),
        ("split_seed=-5", "split_seed = -5 is not valid: expected an integer in 0..4294967295"),
        (
            "latent_dim=100000000000000",
            "latent_dim = 100000000000000 is not valid: expected an integer in 1..65536",
        ),
        (
            "hidden_dims=[100000000000000]",
            "hidden_dims = [100000000000000] is not valid: expected layer widths in 1..65536",
        ),
        (
            "conv_channels=[100000000000000]",
            "expected one channel width in 1..65536 per conv layer",
        ),
        (
            "batch_size=100000000000000",
            "batch_size = 100000000000000 is not valid: expected an integer in 4..1048576",
        ),
        (
            "iterations=100000000000000000000",
            "iterations = 100000000000000000000 is not valid: expected integers within 64 bits",
        ),
    ],
)
def test_train_refuses_settings_beyond_their_limits_before_loading_data(capsys, pair, want):
    assert main(["train", "--set", pair]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tuner train: error: --set: ") and want in err and "Traceback" not in err
