"""The one param codec (tuner/core/params.py), the trial record built from it, and the tag names'
one home (tuner/tracking/tags.py)."""

from __future__ import annotations

import importlib.util
import re

import pytest

import tuner
from tests.paths import REPO_ROOT
from tuner.core.config import FIELDS, TrialConfig, field_kind
from tuner.core.params import (
    PARAM_LIMIT,
    cell,
    from_searcher,
    from_text,
    is_cut,
    params_from_text,
    params_text,
    same_value,
    stored_text,
    to_searcher,
    to_text,
)
from tuner.runner.moved_modules import MOVED
from tuner.space.spec import REPEAT_KEY, trial_record

# One value of each kind a TrialConfig field has, none of them the default.
EVERY_KIND = dict(
    constraint="triplet",
    encoder="vae",
    mu=0.25,
    lr=1e-05,
    latent_dim=3,
    hidden_dims=[48, 24],
    normalize=False,
    max_tuples=None,
    labels_per_class=7,
    label_names=["even", "odd"],
    composite_labels={i: i % 2 for i in range(10)},
    val_size=0.125,
    dataset="digits",
    batch_size=40,
    classes=None,
    conv_channels=[4],
    download=True,
    seed=2**32 - 1,
)


def test_every_field_kind_round_trips_with_its_type() -> None:
    cfg = TrialConfig.from_dict(EVERY_KIND)
    params = cfg.to_dict()
    kinds = {field_kind(name) for name in FIELDS}
    # Every kind a field has is among EVERY_KIND's values.
    assert kinds == {"int", "float", "bool", "str", "ints", "names", "pairs"}
    texts = params_text(params)
    assert all(isinstance(t, str) for t in texts.values())
    back = params_from_text(texts)
    for name, value in params.items():
        if field_kind(name) == "pairs" and value is not None:  # JSON keys are text: the config
            # makes them ints again
            assert {int(k): v for k, v in back[name].items()} == value
            continue
        assert back[name] == value and type(back[name]) is type(value), name
    assert TrialConfig.from_dict(back) == cfg
    # Integral floats stay floats, booleans stay booleans, 1e-05 stays a number.
    shown = (texts["mu"], texts["lr"], texts["normalize"], texts["max_tuples"])
    assert shown == ("0.25", "1e-05", "False", "None")
    assert type(from_text("2.0")) is float and from_text("True") is True and from_text("1") == 1


def test_texts_a_run_already_holds_read_back_as_before() -> None:
    """Stores written before the codec moved hold these texts: they read back unchanged."""
    assert from_text("[256, 128]") == [256, 128]
    assert from_text('{"0": 0, "1": 0}') == {"0": 0, "1": 0}
    assert from_text("pairwise") == "pairwise" and from_text("") == ""
    assert to_text((1, 2)) == "[1, 2]" and to_text("hog") == "hog" and to_text(None) == "None"


def test_a_long_value_is_cut_to_what_mlflow_keeps_with_the_hash_of_the_whole() -> None:
    short = to_text(list(range(10)))
    assert stored_text(short) == short and not is_cut(short)
    whole, other = to_text(list(range(3000))), to_text(list(range(1, 3001)))
    assert len(whole) > PARAM_LIMIT
    assert len(stored_text(whole)) == PARAM_LIMIT and is_cut(stored_text(whole))
    assert stored_text(whole) == stored_text(to_text(list(range(3000)))) != stored_text(other)


def test_searcher_and_table_forms() -> None:
    assert to_searcher([64, 32]) == "[64, 32]" and to_searcher(0.5) == 0.5
    assert to_searcher(None) is None
    assert from_searcher("[64, 32]") == [64, 32] and from_searcher([64, 32]) == [64, 32]
    assert cell([1, 2]) == "[1, 2]" and cell({"0": 1}) == '{"0": 1}' and cell(3) == 3
    assert same_value(2, 2.0) and not same_value(True, 1) and same_value([1, 2], (1, 2))
    assert not same_value([1, 2], [2, 1])


def test_a_trial_record_is_its_config_params_and_name() -> None:
    record = trial_record(
        {"iterations": 7, "seed": 3},
        ["mu", "hidden_dims"],
        "t_00001",
        {"mu": 0.4, "hidden_dims": "[64, 32]", REPEAT_KEY: 2},
    )
    assert record.trial_id == "t_00001"
    assert record.config.hidden_dims == (64, 32)
    assert record.config.seed == 5  # the repeat index seeds it
    assert record.params == record.config.to_dict() and record.params["hidden_dims"] == [64, 32]
    assert record.run_name == "pairwise ae mu=0.4 h=[64,32]"
    again = trial_record(
        {"iterations": 7, "seed": 3},
        ["mu", "hidden_dims"],
        "t_00002",
        {"mu": 0.4, "hidden_dims": [64, 32]},
    )
    assert again.config_id == record.config_id  # the seed differs, the configuration does not
    stored = record.stored_params()
    assert stored["hidden_dims"] == "[64, 32]" and stored["mu"] == "0.4"


TAG_LITERAL = re.compile(r"""["'`](tuner\.[a-z_]+)["'`]""")


def _module_path(name: str) -> bool:
    """A module's path (now or before the move to tuner/core and tuner/system) or a name the
    package exports (`tuner.search` in a docstring): not a tag."""
    exported = hasattr(tuner, name.split(".", 1)[1])
    return exported or name in MOVED or importlib.util.find_spec(name) is not None


def test_tuner_tag_names_are_written_only_in_tracking_tags() -> None:
    """A `"tuner.x"` literal anywhere else is a tag name outside its home (a module path such as
    "tuner.objective" is not one)."""
    package = REPO_ROOT / "tuner"
    found = []
    assert (package / "tracking" / "tags.py").is_file(), package
    for path in sorted(package.rglob("*.py")):
        if path == package / "tracking" / "tags.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for name in TAG_LITERAL.findall(line):
                if not _module_path(name):
                    found.append(f"{path.relative_to(package.parent)}:{number}: {name}")
    assert found == []


@pytest.mark.parametrize("line", ['x = {"tuner.node": 1}', "f\"tags.`tuner.role` = 'search'\""])
def test_the_tag_check_sees_a_literal(line: str) -> None:
    assert [n for n in TAG_LITERAL.findall(line) if not _module_path(n)]
