"""Trainer options: architecture (mlp | conv on raw image pixels), decoder_output (linear |
sigmoid), lr_schedule (constant | cosine) and weight_decay. Each default is the trainer as it
was."""

from __future__ import annotations

import pytest
import torch

from tuner.core.config import TrialConfig
from tuner.data import load_features
from tuner.errors import TunerError
from tuner.trainer.networks import build_model, image_shape
from tuner.trainer.optim import lr_at, make_optimizer
from tuner.trainer.train import fit


def test_the_default_model_is_the_mlp_it_was() -> None:
    """Same parameter names and shapes as before the options: older checkpoints and models load."""
    model = build_model(TrialConfig(hidden_dims=(16, 8)), 64)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "head.weight": (2, 8),
        "head.bias": (2,),
        "encoder.0.weight": (16, 64),
        "encoder.0.bias": (16,),
        "encoder.3.weight": (8, 16),
        "encoder.3.bias": (8,),
        "decoder.0.0.weight": (8, 2),
        "decoder.0.0.bias": (8,),
        "decoder.0.2.weight": (16, 8),
        "decoder.0.2.bias": (16,),
        "decoder.1.weight": (64, 16),
        "decoder.1.bias": (64,),
    }
    x_hat = model(torch.full((3, 64), 50.0)).x_hat
    assert x_hat is not None and not ((x_hat > 0) & (x_hat < 1)).all()  # linear: unbounded


@pytest.mark.parametrize(
    "n_features, shape", [(64, (1, 8, 8)), (784, (1, 28, 28)), (3072, (3, 32, 32))]
)
@pytest.mark.parametrize("encoder", ["ae", "vae"])
def test_conv_models_read_square_images_and_give_back_flat_pixels(
    n_features: int, shape: tuple, encoder: str
) -> None:
    cfg = TrialConfig(
        architecture="conv",
        encoder=encoder,
        decoder_output="sigmoid",
        latent_dim=3,
        hidden_dims=(32,),
        conv_channels=(8, 16),
    )
    assert image_shape(cfg, n_features) == shape
    model = build_model(cfg, n_features)
    out = model(torch.randn(4, n_features) * 10)
    assert out.embedding.shape == (4, 3) and out.x_hat.shape == (4, n_features)
    assert ((out.x_hat > 0) & (out.x_hat < 1)).all()  # sigmoid: in the range of raw pixels


def test_conv_is_refused_where_there_are_no_images() -> None:
    with pytest.raises(TunerError, match="architecture.*conv reads images.*feature_extractor hog"):
        TrialConfig(architecture="conv", feature_extractor="hog")
    with pytest.raises(TunerError, match="100 input features are not square"):
        build_model(TrialConfig(architecture="conv"), 100)
    with pytest.raises(TunerError, match=r"divisible by 8 \(2 \*\* 3 conv layers\)"):
        build_model(TrialConfig(architecture="conv", conv_channels=(4, 4, 4)), 784)  # 28 = 4 * 7
    with pytest.raises(TunerError, match="conv_channels"):
        TrialConfig(conv_channels=(8, 0))


def test_sigmoid_reconstructions_only_of_raw_unstandardized_pixels() -> None:
    """Standardized digits lie 80% outside (0, 1): a sigmoid decoder could not fit them (validation
    recon_error 2.50 against 1.52 linear, measured), and nothing said so."""
    assert TrialConfig(decoder_output="sigmoid").decoder_output == "sigmoid"
    with pytest.raises(
        TunerError, match=r"decoder_output = 'sigmoid'.*normalize: true.*decoder_output: linear"
    ):
        TrialConfig(decoder_output="sigmoid", normalize=True)
    with pytest.raises(
        TunerError, match=r"decoder_output = 'sigmoid'.*hog features are not pixels"
    ):
        TrialConfig(decoder_output="sigmoid", feature_extractor="hog")


def test_a_conv_trial_trains_on_digits_and_learns() -> None:
    cfg = TrialConfig(
        architecture="conv",
        decoder_output="sigmoid",
        hidden_dims=(32,),
        conv_channels=(8, 16),
        iterations=150,
        eval_every=75,
        latent_dim=4,
    )
    result = fit(cfg, load_features(cfg, progress=False).without_test())
    first, last = result.history
    assert last["loss"] < first["loss"] and last["knn_accuracy"] > 0.5


def test_cosine_schedule_by_hand_and_constant_by_default() -> None:
    cfg = TrialConfig(lr=0.01, iterations=4)
    assert [lr_at(cfg, i) for i in (1, 2, 3, 4)] == [0.01] * 4
    cosine = cfg.replace(lr_schedule="cosine")
    # 0.01 * (1 + cos(pi * (i - 1) / 4)) / 2 for i = 1..4
    assert [lr_at(cosine, i) for i in (1, 2, 3, 4)] == pytest.approx(
        [0.01, 0.01 * (1 + 2**-0.5) / 2, 0.005, 0.01 * (1 - 2**-0.5) / 2]
    )


def test_weight_decay_switches_to_adamw_and_shrinks_weights() -> None:
    model = build_model(TrialConfig(), 64)
    assert not make_optimizer(TrialConfig(), model).decoupled
    decayed = make_optimizer(TrialConfig(weight_decay=0.5, lr=0.1), model)
    assert decayed.decoupled
    before = model.head.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves the weights
    decayed.step()
    assert torch.allclose(model.head.weight, before * (1 - 0.1 * 0.5))
    with pytest.raises(TunerError, match="weight_decay"):
        TrialConfig(weight_decay=-1.0)


def test_a_cosine_trial_resumed_midway_matches_one_run_straight() -> None:
    cfg = TrialConfig(
        lr_schedule="cosine", weight_decay=1e-3, iterations=40, eval_every=20, hidden_dims=(16,)
    )
    data = load_features(cfg, progress=False).without_test()
    states: list[dict] = []
    straight = fit(cfg, data, on_evaluation=lambda m, s: states.append(s.state_dict()))
    resumed = fit(cfg, data, resume=states[0])
    assert resumed.metrics["knn_accuracy"] == straight.metrics["knn_accuracy"]
    assert resumed.metrics["loss"] == pytest.approx(straight.metrics["loss"], rel=1e-6)


@pytest.mark.slow
def test_a_compiled_model_trains_as_the_eager_one_does_and_its_checkpoints_load_eagerly(
    monkeypatch,
) -> None:
    """torch_compile: training of the same quality (dropout's random stream differs: generated code
    draws it), and the same state-dict keys, so a compiled trial's checkpoint resumes eagerly."""
    import tuner.trainer.train as train_module

    data = load_features(TrialConfig(), progress=False).without_test()
    cfg = TrialConfig(
        encoder="vae", constraint="triplet", hidden_dims=(64, 32), iterations=150, eval_every=75
    )
    compiled_cfg = cfg.replace(torch_compile="default")
    model = build_model(compiled_cfg, data.n_features)
    seen = {"compiling": False}  # one key, only ever set: no guard of the graph depends on it
    model.register_forward_pre_hook(lambda *_: seen.update(compiling=torch.compiler.is_compiling()))
    monkeypatch.setattr(train_module, "build_model", lambda *_: model)
    checkpoints: dict[float, dict] = {}
    compiled = fit(
        compiled_cfg,
        data,
        on_evaluation=lambda m, state: checkpoints.update({m["iteration"]: state.state_dict()}),
    )
    monkeypatch.undo()
    eager = fit(cfg, data)
    # the hook last ran inside a compiled graph
    assert seen["compiling"] and compiled.model is model
    # chance: 0.1
    assert compiled.metrics["knn_accuracy"] > 0.6 and eager.metrics["knn_accuracy"] > 0.6
    # Untrained, recon_error is ~0.25; eager training reaches ~0.053, compiled ~0.053-0.059 (its
    # dropout draws depend on the process's earlier compiles).
    assert compiled.metrics["recon_error"] == pytest.approx(eager.metrics["recon_error"], rel=0.25)
    assert (
        checkpoints[75.0]["model"].keys() == build_model(cfg, data.n_features).state_dict().keys()
    )
    resumed = fit(cfg, data, resume=checkpoints[75.0])
    assert resumed.history[0] == compiled.history[0] and [
        h["iteration"] for h in resumed.history
    ] == [75.0, 150.0]
    assert resumed.metrics["knn_accuracy"] > 0.6
