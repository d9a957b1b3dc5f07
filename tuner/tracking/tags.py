"""The MLflow tags tuner writes and reads: every `tuner.*` name, in one place.

A search's parent run: ROLE (= search), SEARCH_ID, METRIC, MODE, REQUIRE, WARM_START, SEARCHED,
and at its end BEST_TRIAL, REGISTERED, CHAMPION. A trial's run: PARENT_RUN (MLflow's own nesting
tag), ROLE (= trial), SEARCH_ID, TRIAL_ID, CONFIG_ID, NODE. Runs are found by these tags
(`tuner.tracking.runs`), never by an in-memory map; renaming one strands the stores written
before, so they stay as they are.
"""

from __future__ import annotations

ROLE = "tuner.role"  # search (a parent run) or trial
ROLE_SEARCH, ROLE_TRIAL = "search", "trial"
SEARCH_ID = "tuner.search_id"  # on trials too: the UI's saved view groups runs by it
TRIAL_ID = "tuner.trial_id"
# On a trial's run: the configuration without its seed (selection.config_id); the runs of one
# configuration under `repeats` share it, and reports take their mean over them.
CONFIG_ID = "tuner.config_id"
NODE = "tuner.node"  # the nodes a trial ran on, in order (more than one when it moved)
METRIC = "tuner.metric"  # the search's metrics, comma-separated; MODE their modes
MODE = "tuner.mode"
REQUIRE = "tuner.require"  # the require bounds (selection.require_text): the best meets them
WARM_START = "tuner.warm_start"  # the search a warm start read
SEARCHED = "tuner.searched"  # the searched settings in the search file's order
BEST_TRIAL = "tuner.best_trial_id"
REGISTERED = "tuner.registered_model"  # models:/NAME/VERSION, set by note.record_registered
CHAMPION = "tuner.champion_version"
PARENT_RUN = "mlflow.parentRunId"  # MLflow's own: a nested run's parent

# The search's params a parent run repeats as tags (what reports and warm starts read back).
SEARCH_PARAM_TAGS = {"metric": METRIC, "mode": MODE, "warm_start": WARM_START, "require": REQUIRE}
