"""A search's runs read back from MLflow once it ended: what `tuner.search` returns beside the
trials table (the parent run, each trial's run, the registered version).

Read from the store rather than kept from the live search, so the ids are the ones MLflow holds
(a resumed search reuses its runs) and the search's internals need not carry them out.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from tuner.errors import TunerError, first_line
from tuner.system.secrets import mask_uri
from tuner.tracking import runs, tags
from tuner.tracking.store import connect, unreachable


@dataclass(frozen=True)
class SearchRuns:
    """The MLflow runs of one search."""

    parent_run_id: str
    trial_run_ids: Mapping[str, str] = field(default_factory=dict)  # trial id -> its run's id
    registered: str | None = None  # models:/NAME/VERSION when the search registered a model


def read_search_runs(tracking_uri: str, experiment: str, search_id: str) -> SearchRuns | None:
    """The search's runs, or None when the store holds none of it (MLflow was unreachable:
    `tuner sync` writes them later) or cannot be read now; the search's results stand either way."""
    try:
        client = connect(tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        parent = runs.parent_run(client, [exp.experiment_id], search_id) if exp else None
        if parent is None:
            return None
        trials = runs.trial_runs(client, exp.experiment_id, parent.info.run_id)
    except Exception as err:  # noqa: BLE001 - the search ended; only its run ids are lost
        # Unreachable or refused at connect: the search's tracker has said so already.
        if not (isinstance(err, TunerError) or unreachable(err)):
            print(
                f"tuner: could not read the search's runs back from MLflow "
                f"({mask_uri(first_line(err))}): the result names no run ids.",
                file=sys.stderr,
                flush=True,
            )
        return None
    ids = {
        r.data.tags[tags.TRIAL_ID]: r.info.run_id for r in trials if tags.TRIAL_ID in r.data.tags
    }
    return SearchRuns(parent.info.run_id, ids, parent.data.tags.get(tags.REGISTERED))
