"""Search-space files: YAML -> SearchSpec -> Tune param space, and every user mistake."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tests.paths import SPACES
from tests.spaces import write_space
from tuner.cli import main
from tuner.errors import TunerError
from tuner.space.load import load_spec
from tuner.space.spec import REPEAT_KEY, trial_config


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    return write_space(tmp_path / name, text)


def spec_of(tmp_path: Path, text: str, **kwargs):
    return load_spec(write(tmp_path, text), **kwargs)


def fails(tmp_path: Path, text: str, *parts: str, **kwargs) -> str:
    with pytest.raises(TunerError) as info:
        spec_of(tmp_path, text, **kwargs)
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


# ------------------------------------------------------------------ shipped files


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_file_loads_and_builds_its_tune_space(path: Path) -> None:
    spec = load_spec(path)
    space = spec.param_space()
    assert set(space) == set(spec.params) | (
        {REPEAT_KEY} if spec.repeats > 1 and spec.search != "optuna" else set()
    )
    assert spec.n_trials >= 1 and spec.describe().startswith(f"file         {path}")


def test_shipped_files_hold_what_their_comments_promise() -> None:
    grid = load_spec(SPACES / "grid.yaml")
    assert (grid.search, grid.n_trials) == ("grid", 24)
    assert set(grid.params) == {"constraint", "encoder", "mu", "latent_dim"}
    optuna = load_spec(SPACES / "optuna.yaml")
    assert optuna.search == "optuna" and optuna.scheduler is not None
    assert {"mu", "latent_dim", "margin", "dropout", "lr"} <= set(optuna.params)
    pareto = load_spec(SPACES / "pareto.yaml")
    assert pareto.multi_objective and pareto.metric == ("knn_accuracy", "recon_error")
    assert pareto.mode == ("max", "min") and pareto.scheduler.type == "moasha"
    assert load_spec(SPACES / "mnist.yaml").base_config.dataset == "mnist"
    seed = load_spec(SPACES / "seed_cifar10_hog.yaml").base_config
    assert (
        seed.constraint,
        seed.encoder,
        seed.dataset,
        seed.mu,
        seed.latent_dim,
        seed.feature_extractor,
        seed.normalize,
    ) == ("pairwise", "vae", "cifar10", 0.75, 3, "hog", True)


# ------------------------------------------------------------------ parameter kinds


def test_every_parameter_kind_becomes_the_matching_tune_domain(tmp_path: Path) -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    spec = spec_of(
        tmp_path,
        """
        search: random
        params:
          constraint: {grid: [pairwise, triplet]}
          encoder: {choice: [ae, vae]}
          mu: {uniform: [0.1, 0.9]}
          lr: {loguniform: [1e-4, 1e-2]}
          latent_dim: {randint: [2, 4]}
          batch_size: {qrandint: [32, 64, 16]}
        """,
    )
    space = spec.param_space()
    assert space["constraint"] == {"grid_search": ["pairwise", "triplet"]}
    assert isinstance(space["encoder"], Categorical) and space["encoder"].categories == [
        "ae",
        "vae",
    ]
    assert isinstance(space["mu"], Float) and (space["mu"].lower, space["mu"].upper) == (0.1, 0.9)
    assert "LogUniform" in type(space["lr"].get_sampler()).__name__ and space["lr"].lower == 1e-4
    assert isinstance(space["latent_dim"], Integer)
    rng = np.random.default_rng(0)
    # Our int ranges include both ends (Tune's randint alone would never give 4).
    assert set(space["latent_dim"].sample(size=300, random_state=rng)) == {2, 3, 4}
    assert set(space["batch_size"].sample(size=300, random_state=rng)) == {32, 48, 64}
    lr = np.asarray(space["lr"].sample(size=300, random_state=rng))
    assert lr.min() >= 1e-4 and lr.max() <= 1e-2 and np.median(lr) < 3e-3  # log-spread, not uniform
    assert spec.n_trials == 2 * 10  # random: 10 samples (default) per grid point


def test_aliases_and_value_aliases_resolve_to_canonical_names(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        """
        fixed: {num_iters: 50}
        params:
          weight: {grid: [0.25, 0.5]}
          encoder_type: {grid: [embenc, vae]}
        """,
    )
    assert spec.fixed == {"iterations": 50}
    assert spec.params["mu"].values == (0.25, 0.5)
    assert spec.params["encoder"].values == ("ae", "vae")
    assert spec.n_trials == 4


def test_trial_config_merges_fixed_and_sampled_values(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        """
        search: optuna
        fixed: {iterations: 30, dataset: digits}
        params:
          hidden_dims: {choice: [[64, 32], [128]]}
          mu: {uniform: [0.2, 0.4]}
        """,
    )
    # Optuna's categoricals take scalars only: list choices travel as JSON text.
    assert spec.param_space()["hidden_dims"].categories == ["[64, 32]", "[128]"]
    cfg = spec.trial_config({"hidden_dims": "[64, 32]", "mu": 0.3})
    assert (cfg.hidden_dims, cfg.mu, cfg.iterations, cfg.dataset) == ((64, 32), 0.3, 30, "digits")
    assert trial_config({"iterations": 7}, {"latent_dim": np.int64(3)}).latent_dim == 3


def test_set_overrides_fix_settings_even_searched_ones(tmp_path: Path) -> None:
    text = """
        fixed: {iterations: 400}
        params:
          mu: {grid: [0.25, 0.5, 0.75]}
          latent_dim: {grid: [2, 8]}
        """
    spec = spec_of(
        tmp_path, text, overrides={"iterations": 20, "mu": 0.5}, samples=2, max_concurrent=3
    )
    assert spec.fixed == {"iterations": 20, "mu": 0.5}
    assert list(spec.params) == ["latent_dim"]
    assert (spec.samples, spec.max_concurrent, spec.n_trials) == (2, 3, 4)
    assert "repeats share one seed" in spec.describe()


def test_defaults_and_scheduler_settings(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        """
        search: optuna
        scheduler: asha
        fixed: {iterations: 900, eval_every: 150}
        params: {mu: {uniform: [0.0, 1.0]}}
        """,
    )
    assert (spec.name, spec.metric, spec.mode) == ("space", ("knn_accuracy",), ("max",))
    assert (spec.samples, spec.cpus, spec.gpus, spec.checkpoint_every, spec.max_failures) == (
        10,
        1,
        0,
        1,
        0,
    )
    s = spec.scheduler
    assert (s.max_t, s.grace_period, s.reduction_factor, s.brackets) == (900, 150, 3, 1)
    searched = spec_of(
        tmp_path,
        """
        search: random
        metric: recon_error
        scheduler: {type: asha, grace_period: 10, reduction_factor: 2}
        params: {iterations: {choice: [100, 300]}}
        """,
    )
    assert searched.mode == ("min",) and searched.scheduler.max_t == 300


def test_numbers_in_exponent_form_read_as_numbers(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        """
        search: random
        fixed: {lr: 1e-3, margin: 2E0}
        params: {dropout: {uniform: [0, 5e-1]}}
        """,
    )
    assert spec.fixed == {"lr": 0.001, "margin": 2.0} and spec.params["dropout"].high == 0.5


# ------------------------------------------------------------------ mistakes


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match="no such search-space file"):
        load_spec(tmp_path / "nope.yaml")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    fails(tmp_path, "name: x\nparams:\n  mu: {grid: [0.1, 0.2}\n", "space.yaml:3", "not valid YAML")
    fails(tmp_path, "- just\n- a list\n", "expected a mapping")


@pytest.mark.parametrize(
    "text, parts",
    [
        ("serach: grid\n", ["space.yaml:1", "serach", "did you mean 'search'"]),
        ("mu: 0.5\n", ["mu", "put it under fixed: or params:"]),
        ("name: a\nname: b\n", ["space.yaml:2", "given twice", "line 1"]),
        ("samples: ten\n", ["samples", "'ten'", "integer >= 1"]),
        ("samples: 0\n", ["samples", "integer >= 1"]),
        ("max_concurrent: 0\n", ["max_concurrent"]),
        ("seed: -1\n", ["seed", "integer in 0..4294967295"]),
        ("checkpoint_every: 1.5\n", ["checkpoint_every"]),
        ("max_failures: true\n", ["max_failures"]),
        ("name: 5\n", ["name", "experiment name"]),
        ("search: bayes\n", ["search", "grid, random, optuna"]),
        ("resources: {cpus: 0}\n", ["resources.cpus", "> 0"]),
        ("resources: {gpu: 1}\n", ["resources", "{cpus: 1, gpus: 0}"]),
        ("resources: {gpus: -1}\n", ["resources.gpus", ">= 0"]),
        ("metric: knn_acc\n", ["metric", "did you mean 'knn_accuracy'"]),
        ("metric: [knn_accuracy, knn_accuracy]\n", ["metric", "twice"]),
        ("mode: maximum\n", ["mode", "max or min"]),
        ("metric: [knn_accuracy, recon_error]\nmode: max\n", ["mode", "for each metric"]),
        ("metric: kl\n", ["kl", "VAE"]),
        ("require: {kl: 1.0}\n", ["require.kl", "VAE trials only"]),
        # Terms weighted by zero are not computed: a search ranking by one could not compare its
        # trials.
        (
            "search: random\nfixed: {encoder: vae}\nmetric: recon_loss\nparams:\n"
            "  mu: {uniform: [0.5, 1.0]}\n",
            ["metric", "recon_loss is not computed by trials with mu = 1", "recon_error"],
        ),
        ("fixed: {encoder: vae, mu: 1.0}\nrequire: {kl: 0.5}\n", ["require.kl", "mu = 1"]),
        (
            "metric: metric_loss\nparams:\n  mu: {grid: [0.0, 0.5]}\n",
            ["metric", "mu = 0", "knn_accuracy"],
        ),
        ("metric: fine_knn_accuracy\n", ["composite_labels"]),
        ("fixed: [1, 2]\n", ["fixed", "mapping"]),
        ("fixed: {mu: 1.5}\n", ["space.yaml:1: fixed.mu", "mu = 1.5", "[0, 1]"]),
        (
            "fixed:\n  weight: 0.5\n  mu: 0.2\n",
            ["space.yaml:3: fixed.mu", "given twice", "'weight'"],
        ),
        (
            "fixed:\n  seed: 1\n  latent_dims: 3\n",
            ["space.yaml:3: fixed.latent_dims", "did you mean 'latent_dim'"],
        ),
        ("fixed: {device: cuda}\n", ["resources.gpus", "cuda"]),
        # The searcher's seed goes to numpy's RandomState (Optuna's TPE): 32 bits.
        ("seed: 4294967296\n", ["space.yaml:1: seed", "4294967296", "integer in 0..4294967295"]),
        # Trial settings a trial would only meet as a traceback (allocator, numpy,
        # torch.manual_seed).
        (
            "fixed: {seed: 99999999999999999999}\n",
            ["space.yaml:1: fixed.seed", "integer in 0..4294967295"],
        ),
        (
            "fixed: {split_seed: -5}\n",
            ["space.yaml:1: fixed.split_seed", "split_seed = -5", "0..4294967295"],
        ),
        (
            "fixed:\n  latent_dim: 100000000000000\n",
            ["space.yaml:2: fixed.latent_dim", "integer in 1..65536"],
        ),
        (
            "fixed: {hidden_dims: [64, 100000000000000]}\n",
            ["fixed.hidden_dims", "layer widths in 1..65536"],
        ),
        (
            "fixed: {conv_channels: [100000000000000]}\n",
            ["fixed.conv_channels", "width in 1..65536"],
        ),
        ("fixed: {batch_size: 100000000000000}\n", ["fixed.batch_size", "integer in 4..1048576"]),
        (
            "fixed: {iterations: 100000000000000000000}\n",
            ["fixed.iterations", "integers within 64 bits"],
        ),
        ("repeats: 3\nfixed: {seed: 4294967294}\n", ["repeats", "4294967294 + 2", "4294967295"]),
        # MLflow's registry refuses '/' and ':' (register_as defaults to the name): found before the
        # trials.
        (
            'name: "grid:v2"\n',
            [
                "space.yaml:1: name",
                "'grid:v2'",
                "register_as defaults to the name",
                "'/' or ':'",
                "register_as: to a name",
                "'grid-v2'",
                "register_as: null",
            ],
        ),
        (
            'name: ok\nregister_as: "team/model"\n',
            ["space.yaml:2: register_as", "'team/model'", "'/' or ':'", "'team-model'"],
        ),
        ("name: ok\nregister_as: ..model\n", ["space.yaml:2: register_as", "starting with '..'"]),
        # The name is the search's directory: the rule `search --experiment` applies, found by
        # validate.
        (
            'name: "runs/v2"\n',
            ["space.yaml:1: name", "'runs/v2'", "path separator", "Pick a plain name"],
        ),
        ('name: ".."\n', ["space.yaml:1: name", "'..'", "cannot be empty, '.' or '..'"]),
        # require: bounds outside what the metric can take could never hold.
        (
            "require: {knn_accuracy: 1.5}\n",
            ["space.yaml:1: require.knn_accuracy", "1.5", "in [0, 1]"],
        ),
        ("require:\n  recon_error: -0.1\n", ["space.yaml:2: require.recon_error", "-0.1", ">= 0"]),
        ("require: {trustworthiness: 2}\n", ["require.trustworthiness", "in [0, 1]"]),
        ("require: {ami: -1.5}\n", ["require.ami", "in [-1, 1]"]),
        ("require: {seconds: -1}\n", ["require.seconds", ">= 0"]),
        # Keys compared as parsed: PyYAML would keep the last of 0 and 00 silently.
        (
            "fixed:\n  composite_labels: {0: 0, 00: 1}\n",
            ["space.yaml:2: fixed.composite_labels.0", "given twice", "here as '00'"],
        ),
        (
            "fixed:\n  composite_labels: {1: 0, true: 1}\n",
            ["space.yaml:2: fixed.composite_labels", "given twice"],
        ),
        (
            "fixed:\n  <<: {lr: 0.1}\n  lr: 0.2\n",
            ["space.yaml:2: fixed.<<", "merge keys are not accepted"],
        ),
        ("<<: {name: x}\nname: y\n", ["space.yaml:1: <<", "merge keys are not accepted"]),
        (
            "fixed: {composite_labels: [[0, 0], [0, 1]]}\n",
            [
                "space.yaml:1: fixed.composite_labels",
                "fine label 0 is given twice",
                "coarse labels 0 and 1",
            ],
        ),
        # Ray builds one ASHA bracket per value: a billion of them hung the search.
        (
            "scheduler: {type: asha, brackets: 1000000000}\n",
            [
                "space.yaml:1: scheduler.brackets",
                "1000000000",
                "max_t 1500",
                "grace_period 250",
                "in 1..2",
            ],
        ),
    ],
)
def test_top_level_mistakes(tmp_path: Path, text: str, parts: list[str]) -> None:
    fails(tmp_path, text, *parts)


@pytest.mark.parametrize(
    "search, params, parts",
    [
        ("grid", "latent_dims: {grid: [2]}", ["params.latent_dims", "did you mean 'latent_dim'"]),
        (
            "grid",
            "dataset: {grid: [digits, mnist]}",
            ["params.dataset", "must be fixed", "featurized once"],
        ),
        ("grid", "mu: {grid: []}", ["params.mu", "non-empty list"]),
        ("grid", "mu: {grid: [0.5, 0.5]}", ["params.mu", "twice"]),
        ("grid", "mu: [0.1, 0.2]", ["params.mu", "{grid: [a, b]}"]),
        ("random", "mu: {uniformm: [0.1, 0.2]}", ["params.mu", "did you mean 'uniform'"]),
        ("random", "mu: {uniform: [0.5, 0.5]}", ["params.mu", "empty", "fixed:"]),
        ("random", "mu: {uniform: [0.9, 0.1]}", ["params.mu", "inverted"]),
        ("random", "mu: {uniform: [0.1]}", ["params.mu", "[low, high]"]),
        ("random", "mu: {uniform: [a, b]}", ["params.mu", "numbers"]),
        ("random", "lr: {loguniform: [0, 0.1]}", ["params.lr", "low > 0"]),
        ("random", "latent_dim: {uniform: [2, 8]}", ["params.latent_dim", "randint/qrandint"]),
        ("random", "mu: {randint: [0, 1]}", ["params.mu", "uniform/loguniform"]),
        ("random", "latent_dim: {randint: [2.5, 8]}", ["params.latent_dim", "integers"]),
        ("random", "batch_size: {qrandint: [32, 70, 16]}", ["params.batch_size", "divide"]),
        ("random", "hidden_dims: {uniform: [1, 2]}", ["params.hidden_dims", "grid or choice"]),
        (
            "optuna",
            "mu: {grid: [0.1, 0.2]}",
            ["params.mu", "cannot be searched by Optuna", "choice"],
        ),
        (
            "grid",
            "mu: {uniform: [0.1, 0.2]}",
            ["params.mu", "grid parameters only", "search: random"],
        ),
        (
            "random",
            "dropout: {uniform: [0.0, 1.0]}",
            ["params.dropout", "bound value 1.0", "[0, 1)"],
        ),
        ("grid", "dropout: {grid: [0.1, 1.0]}", ["params.dropout", "grid value 1.0", "[0, 1)"]),
        ("random", "encoder: {choice: [ae, gan]}", ["params.encoder", "'gan'", "ae, vae"]),
        ("grid", "batch_size: {grid: [16, 64]}", ["params.batch_size", "at least 20"]),
        ("grid", "margin: {grid: [1.0, -1.0]}", ["params.margin", "> 0"]),
        (
            "grid",
            "seed: {grid: [0, 4294967296]}",
            ["space.yaml:3: params.seed", "grid value 4294967296", "0..4294967295"],
        ),
        (
            "random",
            "batch_size: {randint: [32, 100000000000000]}",
            ["params.batch_size", "4..1048576"],
        ),
    ],
)
def test_parameter_mistakes(tmp_path: Path, search: str, params: str, parts: list[str]) -> None:
    fails(tmp_path, f"search: {search}\nparams:\n  {params}\n", *parts)


def test_fixed_and_searched_at_once(tmp_path: Path) -> None:
    fails(
        tmp_path,
        "fixed: {mu: 0.5}\nparams:\n  mu: {grid: [0.2]}\n",
        "params.mu",
        "both fixed and searched",
    )


def test_error_names_the_line_of_the_bad_parameter(tmp_path: Path) -> None:
    message = fails(
        tmp_path, "search: grid\nparams:\n  mu: {grid: [0.5]}\n  dropout: {grid: [2.0]}\n"
    )
    assert message.startswith(f"{tmp_path / 'space.yaml'}:4: params.dropout")


def test_scheduler_mistakes(tmp_path: Path) -> None:
    two = "metric: [knn_accuracy, recon_error]\nsearch: optuna\nparams: {mu: {uniform: [0, 1]}}\n"
    fails(tmp_path, two + "scheduler: asha\n", "scheduler", "several", "scheduler: none")
    fails(tmp_path, "scheduler: hyperband\n", "scheduler", "none, asha")
    fails(
        tmp_path,
        "scheduler: {type: asha, grace_periods: 5}\n",
        "scheduler.grace_periods",
        "did you mean 'grace_period'",
        "Valid: type, grace_period",
    )
    fails(
        tmp_path,
        "fixed: {iterations: 100}\nscheduler: {type: asha, grace_period: 200}\n",
        "grace_period",
        "beyond the last iteration (100)",
    )
    fails(tmp_path, "scheduler: {type: asha, reduction_factor: 1}\n", "reduction_factor", "> 1")


def test_optuna_needs_something_to_search(tmp_path: Path) -> None:
    fails(
        tmp_path,
        "search: optuna\nparams:\n  mu: {uniform: [0, 1]}\n",
        "search: optuna needs",
        overrides={"mu": 0.5},
    )


def test_overrides_are_checked_too(tmp_path: Path) -> None:
    fails(tmp_path, "name: x\n", "--set lr: lr = -1.0", "> 0", overrides={"lr": -1.0})
    fails(tmp_path, "name: x\n", "--set", "did you mean 'latent_dim'", overrides={"latent_dims": 2})
    fails(tmp_path, "name: x\n", "--samples 0", samples=0)
    fails(tmp_path, "name: x\n", "--max-concurrent", max_concurrent=-2)


# ------------------------------------------------------------------ through the CLI


def test_cli_validate_prints_the_resolved_search(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--space", str(SPACES / "grid.yaml"), "--set", "iterations=50"]) == 0
    out = capsys.readouterr().out
    assert "grid: 24 trials" in out and "iterations         50" in out
    assert 'constraint         grid ["pairwise", "triplet"]' in out


def test_cli_validate_bad_file_exits_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "search: grid\nparams:\n  dataset: {grid: [digits, mnist]}\n", "bad.yaml")
    assert main(["validate", "--space", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tuner validate: error: ") and "bad.yaml:3: params.dataset" in err
    assert "Traceback" not in err
    assert main(["validate", "--space", str(tmp_path / "missing.yaml")]) == 2
    assert "no such search-space file" in capsys.readouterr().err


def test_random_probe_of_valid_files_never_raises(tmp_path: Path) -> None:
    """Any mu/dropout range inside the valid intervals loads; its bounds come back unchanged."""
    rng = random.Random(0)
    for _ in range(20):
        lo, hi = sorted(rng.uniform(0, 0.99) for _ in range(2))
        spec = spec_of(
            tmp_path, f"search: random\nparams:\n  dropout: {{uniform: [{lo!r}, {hi!r}]}}\n"
        )
        assert (spec.params["dropout"].low, spec.params["dropout"].high) == (lo, hi)


# ---------------------------------------------------------------- limits that match the libraries'


def test_values_at_the_limits_are_accepted(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        'name: "grid:v2"\nregister_as: grid-v2\nseed: 4294967295\nrepeats: 2\n'
        "fixed: {seed: 4294967294, split_seed: 4294967295, latent_dim: 65536}\n"
        "require: {knn_accuracy: 1, recon_error: 0, ami: -1}\n",
    )
    assert (spec.name, spec.register_as, spec.seed) == ("grid:v2", "grid-v2", 4294967295)
    assert spec_of(tmp_path, 'name: "grid:v2"\nlog_models: none\n').register_as is None


def test_every_metric_has_a_range() -> None:
    from tuner.core.metrics import METRIC_MODES, METRIC_RANGES

    assert set(METRIC_RANGES) == set(METRIC_MODES)


@pytest.mark.parametrize(
    "name", ["grid:v2", "a/b", ".", "..", "..x", "x..", "a.b", "grid-v2", "a b", "%x", "é"]
)
def test_the_registered_model_name_rule_is_mlflows(name: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    from tuner.space.checks import registered_model_name_problem

    try:
        _validate_model_name(name)
        refused = False
    except MlflowException:
        refused = True
    assert (registered_model_name_problem(name) is not None) == refused


@pytest.mark.parametrize(
    "max_t, grace, rf",
    [(1500, 250, 3), (81, 1, 3), (100, 1, 10), (64, 2, 2), (9, 9, 3), (1000, 10, 3.5)],
)
def test_asha_brackets_are_capped_at_rays_rungs(
    tmp_path: Path, max_t: int, grace: int, rf: float
) -> None:
    from ray.tune.schedulers import ASHAScheduler

    from tuner.space.checks import asha_rungs

    rungs = asha_rungs(max_t, grace, rf)
    built = ASHAScheduler(max_t=max_t, grace_period=grace, reduction_factor=rf, brackets=rungs + 1)
    assert [len(b._rungs) for b in built._brackets][-2:] == [
        1,
        0,
    ]  # the last useful bracket, then none
    text = (
        f"fixed: {{iterations: {max_t}}}\nscheduler: {{type: asha, grace_period: {grace}, "
        f"reduction_factor: {rf}, brackets: BRACKETS}}\n"
    )
    assert spec_of(tmp_path, text.replace("BRACKETS", str(rungs))).scheduler.brackets == rungs
    fails(
        tmp_path, text.replace("BRACKETS", str(rungs + 1)), "scheduler.brackets", f"in 1..{rungs}"
    )


def test_an_alias_and_its_name_in_overrides_are_refused(tmp_path: Path) -> None:
    fails(
        tmp_path,
        "name: x\n",
        "--set",
        "mu is given twice",
        "weight",
        overrides={"weight": 0.1, "mu": 0.9},
    )
