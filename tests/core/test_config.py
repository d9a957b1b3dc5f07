import dataclasses

import pytest

from tuner.core.config import FIELD_HELP, TrialConfig
from tuner.errors import TunerError


def test_defaults_are_valid_and_every_field_is_documented():
    cfg = TrialConfig()
    assert set(FIELD_HELP) == set(cfg.to_dict())


def test_prior_work_aliases_map_to_our_names():
    cfg = TrialConfig.from_dict(
        {
            "constraint_type": "triplet",
            "encoder_type": "embenc",
            "weight": 0.25,
            "num_iters": 7,
            "dropout_val": 0.1,
            "keys": list("abcdefghij"),
        }
    )
    assert (cfg.constraint, cfg.encoder, cfg.mu, cfg.iterations, cfg.dropout) == (
        "triplet",
        "ae",
        0.25,
        7,
        0.1,
    )
    assert cfg.label_names == tuple("abcdefghij")


def test_loose_input_is_normalised_to_declared_types():
    import numpy as np

    cfg = TrialConfig.from_dict(
        {
            "latent_dim": np.int64(3),
            "mu": 1,
            "hidden_dims": [64.0, 32],
            "composite_labels": {"2": 1, 0: 0, 1: 0},
            "batch_size": 8,
        }
    )
    assert cfg.latent_dim == 3 and type(cfg.latent_dim) is int
    assert cfg.mu == 1.0 and type(cfg.mu) is float
    assert cfg.hidden_dims == (64, 32)
    assert cfg.composite_labels == ((0, 0), (1, 0), (2, 1))
    assert cfg.to_dict()["composite_labels"] == {0: 0, 1: 0, 2: 1}
    hash(cfg)  # frozen and hashable: usable as a cache key


def test_round_trip_through_dict():
    cfg = TrialConfig(encoder="vae", hidden_dims=(32, 16), label_names=tuple("0123456789"))
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


def test_replace_validates():
    cfg = TrialConfig()
    assert cfg.replace(mu=0.0).mu == 0.0
    with pytest.raises(TunerError, match="mu"):
        cfg.replace(mu=-0.1)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrialConfig().mu = 0.3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        ({"mu": 1.5}, ["mu = 1.5", "[0, 1]"]),
        ({"mu": -0.01}, ["mu", "[0, 1]"]),
        ({"latent_dim": 0}, ["latent_dim = 0", "in 1..65536"]),
        ({"latent_dim": 2.5}, ["latent_dim", "integer"]),
        ({"dropout": 1.0}, ["dropout = 1.0", "[0, 1)"]),
        ({"dropout": -0.2}, ["dropout"]),
        ({"margin": 0}, ["margin", "> 0"]),
        ({"lr": 0}, ["lr", "> 0"]),
        ({"beta": -1}, ["beta", ">= 0"]),
        ({"batch_size": 12}, ["batch_size = 12", "at least 20", "10 classes"]),
        ({"iterations": 0}, ["iterations"]),
        ({"eval_every": 0}, ["eval_every"]),
        ({"knn_k": 0}, ["knn_k"]),
        ({"max_tuples": 0}, ["max_tuples"]),
        ({"test_size": 1.0}, ["test_size", "(0, 1)"]),
        ({"val_size": 0}, ["val_size = 0.0", "(0, 1)", "or null"]),
        ({"val_size": "half"}, ["val_size = 'half'", "a number"]),
        ({"constraint": "pairs"}, ["constraint = 'pairs'", "pairwise, triplet"]),
        ({"encoder": "vea"}, ["encoder", "did you mean 'vae'"]),
        ({"dataset": "mnsit"}, ["dataset", "did you mean 'mnist'"]),
        ({"feature_extractor": "sift"}, ["feature_extractor", "raw, hog, resnet"]),
        ({"mining": "hard"}, ["mining"]),
        ({"device": "tpu"}, ["device"]),
        ({"resnet_weights": "v2"}, ["resnet_weights"]),
        ({"normalize": "yes"}, ["normalize", "true or false"]),
        ({"hidden_dims": []}, ["hidden_dims", "non-empty"]),
        ({"hidden_dims": [64, 0]}, ["hidden_dims", "in 1..65536"]),
        ({"label_names": ["a", "b"]}, ["label_names", "expected 10 names"]),
        (
            {"composite_labels": {0: 0, 1: 1}, "label_names": ["x"]},
            ["label_names", "expected 2 names"],
        ),
        ({"composite_labels": "zero"}, ["composite_labels"]),
        ({"image_size": 4}, ["image_size"]),
        ({"mux": 0.5}, ["unknown key 'mux'", "did you mean 'mu'"]),
        # Limits a trial would otherwise meet as a traceback from torch, numpy or the allocator.
        ({"seed": 2**32}, ["seed = 4294967296", "integer in 0..4294967295"]),
        ({"seed": 10**20}, ["seed = 100000000000000000000", "integer in 0..4294967295"]),
        ({"split_seed": -5}, ["split_seed = -5", "integer in 0..4294967295"]),
        ({"latent_dim": 10**14}, ["latent_dim = 100000000000000", "integer in 1..65536"]),
        ({"hidden_dims": [64, 10**14]}, ["hidden_dims", "layer widths in 1..65536"]),
        ({"conv_channels": [10**14]}, ["conv_channels", "in 1..65536"]),
        ({"batch_size": 10**14}, ["batch_size = 100000000000000", "integer in 4..1048576"]),
        ({"image_size": 10**6}, ["image_size = 1000000", "8..4096"]),
        ({"iterations": 10**20}, ["iterations = 100000000000000000000", "integers within 64 bits"]),
        ({"max_tuples": 2**63}, ["max_tuples", "integers within 64 bits"]),
        (
            {"composite_labels": [[0, 0], [0, 1], [1, 1]]},
            ["composite_labels", "fine label 0 is given twice (to coarse labels 0 and 1)"],
        ),
        (
            {"composite_labels": {0: 0, "0": 1, 1: 1}},
            ["composite_labels", "fine label 0 is given twice"],
        ),
    ],
)
def test_each_invalid_value_names_field_and_what_is_valid(values, fragments):
    with pytest.raises(TunerError) as info:
        TrialConfig.from_dict(values, source="test.yaml")
    message = str(info.value)
    assert message.startswith("test.yaml: ")
    for fragment in fragments:
        assert fragment in message


def test_alias_and_name_together_is_an_error():
    with pytest.raises(TunerError, match="twice"):
        TrialConfig.from_dict({"mu": 0.5, "weight": 0.5})


def test_batch_size_check_uses_merged_class_count():
    merged = {i: i % 2 for i in range(10)}
    assert TrialConfig.from_dict({"composite_labels": merged, "batch_size": 4}).batch_size == 4


def test_a_yaml_boolean_given_for_a_named_choice_says_to_quote_the_word():
    with pytest.raises(TunerError) as info:
        TrialConfig.from_dict({"torch_compile": False})  # `torch_compile: off`, as YAML reads it
    assert "torch_compile = False (bool) is not valid: expected one of none, default" in str(
        info.value
    )
    assert "quote the word" in str(info.value)
    with pytest.raises(TunerError) as info:
        TrialConfig.from_dict({"torch_compile": "fast"})
    assert "quote" not in str(info.value)
    assert (
        TrialConfig.from_dict({"torch_compile": "reduce-overhead"}).torch_compile
        == "reduce-overhead"
    )


def test_the_largest_valid_values_are_accepted():
    cfg = TrialConfig.from_dict(
        {
            "seed": 2**32 - 1,
            "split_seed": 2**32 - 1,
            "latent_dim": 65536,
            "hidden_dims": [65536],
            "batch_size": 2**20,
            "iterations": 2**63 - 1,
        }
    )
    assert (cfg.seed, cfg.latent_dim, cfg.batch_size) == (2**32 - 1, 65536, 2**20)
