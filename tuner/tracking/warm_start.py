"""Warm start: the finished trials of an earlier search, read back from MLflow as points a searcher
is told about before its first proposal (`tuner search --warm-start SOURCE`).

Only trials this search could have run itself are kept: every setting it does not search must be
the one the earlier trial ran with (compared as the tracker logged them, so defaults count too),
and every searched value must lie in this search's space. The rest are counted, not used.
Finished trials go to Optuna as complete; trials ASHA stopped (KILLED in a finished search with a
scheduler) as pruned, with their last value: Optuna ranks them below every complete trial.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner.core.config import FIELDS
from tuner.core.params import from_text
from tuner.errors import TunerError
from tuner.space.spec import SearchSpec
from tuner.system.secrets import mask_uri
from tuner.tracking import runs, tags
from tuner.tracking.store import connect, existing_store

RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class WarmStart:
    source: str  # the earlier search's id
    # searched values, as the searcher holds them
    points: list[dict[str, Any]] = field(default_factory=list)
    # per point: the metric, or a list of the metrics
    rewards: list[Any] = field(default_factory=list)
    # ASHA-stopped: (point, last value)
    stopped: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    outside: int = 0  # skipped: a searched value lies outside this space
    other_settings: int = 0  # skipped: a setting this search does not search had another value
    unfinished: int = 0  # not used: did not finish, or lacks a metric of this search

    @property
    def used(self) -> int:
        return len(self.points) + len(self.stopped)

    def summary(self) -> str:
        pruned = (
            f" ({len(self.stopped)} of them stopped by ASHA, as pruned)" if self.stopped else ""
        )
        parts = [
            f"warm start: {self.used} earlier trials given to Optuna{pruned}",
            f"{self.outside} outside this space skipped",
        ]
        if self.other_settings:
            parts.append(f"{self.other_settings} with other fixed settings skipped")
        if self.unfinished:
            parts.append(f"{self.unfinished} unfinished not used")
        return ", ".join(parts) + f" (from search {self.source})"


def read_warm_start(tracking_uri: str | None, source: str, spec: SearchSpec) -> WarmStart:
    """The earlier search named by `source` (an experiment: its latest search; a search id; or a
    parent run id), its trials filtered for `spec`."""
    # a refused warm start leaves no new store
    uri = existing_store(tracking_uri, f"--warm-start {source}")
    client = connect(uri)
    experiment, parent = find_source(client, source, uri)
    trials = runs.trial_runs(client, experiment.experiment_id, parent.info.run_id)
    # In a search that ran to its end under a scheduler, a KILLED trial is one ASHA stopped.
    asha = (
        parent.data.params.get("scheduler", "none") != "none" and parent.info.status == "FINISHED"
    )
    return select(
        spec,
        parent.data.tags[tags.SEARCH_ID],
        [(t.info.status, t.data.params, t.data.metrics) for t in trials],
        stopped_by_asha=asha,
    )


def find_source(client: Any, source: str, uri: str) -> tuple[Any, Any]:
    """(experiment, parent run) of the search `source` names; TunerError when it names none."""
    if RUN_ID.fullmatch(source):
        run = _get_run(client, source)
        if run is not None:
            if run.data.tags.get(tags.ROLE) != tags.ROLE_SEARCH:
                parent = run.data.tags.get(tags.PARENT_RUN, "its search's parent run id")
                raise TunerError(
                    f"--warm-start {source}: that run is not a search's parent run (it is "
                    f"{run.info.run_name!r}); pass {parent} or the experiment's name."
                )
            return client.get_experiment(run.info.experiment_id), run
    found = runs.find_search(client, source)
    if found is not None:
        return found
    if client.get_experiment_by_name(source) is None:
        names = sorted(e.name for e in runs.experiments(client))
        raise TunerError(
            f"--warm-start {source!r}: no experiment, search id or parent run id of that name in "
            f"{mask_uri(uri)}. Experiments there: {', '.join(names) or 'none'}."
        )
    try:
        return runs.latest_search(client, source)
    except TunerError as err:
        raise TunerError(f"--warm-start {source!r}: {err}") from None


def _get_run(client: Any, run_id: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def select(
    spec: SearchSpec,
    source: str,
    trials: Iterable[tuple[str, Mapping[str, str], Mapping[str, float]]],
    stopped_by_asha: bool = False,
) -> WarmStart:
    """Trials as (run status, params, final metrics) -> the points and rewards `spec` can use.
    `stopped_by_asha`: the KILLED trials are ones a scheduler stopped (not interrupted ones)."""
    warm, skipped = WarmStart(source), {"outside": 0, "other_settings": 0, "unfinished": 0}
    for status, params, metrics in trials:
        values = [metrics.get(m) for m in spec.metric]
        known = [isinstance(v, float) and math.isfinite(v) for v in values]
        finished, stopped = (
            status == "FINISHED" and all(known),
            stopped_by_asha and status == "KILLED" and known[0],
        )
        if not finished and not stopped:
            skipped["unfinished"] += 1
            continue
        verdict, point = _match(spec, params)
        if point is None:
            skipped[verdict] += 1
        elif finished:
            warm.points.append(point)
            warm.rewards.append(values[0] if len(values) == 1 else values)
        else:
            warm.stopped.append((point, values[0]))
    return dataclasses.replace(warm, **skipped)


def _match(spec: SearchSpec, params: Mapping[str, str]) -> tuple[str, dict[str, Any] | None]:
    """("", point) when this search could have run the trial; else why not."""
    if any(name not in params for name in spec.params):
        return "other_settings", None  # the setting did not exist when it ran
    searched = {name: from_text(params[name]) for name in spec.params}
    if not all(spec.params[name].contains(value) for name, value in searched.items()):
        return "outside", None
    try:  # the trial as this search would have run it: the record its own trials get
        same = spec.record("", searched).stored_params()
    except TunerError:  # a combination this search's settings refuse
        return "outside", None
    if any(same[k] != params.get(k) for k in FIELDS if k not in spec.params):
        return "other_settings", None
    return "", {
        name: spec.params[name].searcher_value(v, spec.search) for name, v in searched.items()
    }
