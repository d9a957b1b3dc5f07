"""Finding a search's runs in an MLflow store: the one place that knows how they are tagged.

A search's parent run carries the role tag (search) and its search id; a trial's run MLflow's
parent run tag (the parent's id) and its trial id (the names: `tuner.tracking.tags`). Runs are
always found by these tags, never by an in-memory map, so a resumed search or `tuner sync`
reuses the same runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuner.errors import TunerError
from tuner.tracking import tags

PARENT_FILTER = f"tags.`{tags.ROLE}` = '{tags.ROLE_SEARCH}'"


def parent_tags(search_id: str) -> dict[str, str]:
    return {tags.ROLE: tags.ROLE_SEARCH, tags.SEARCH_ID: search_id}


def trial_tags(parent_run_id: str, search_id: str, trial_id: str) -> dict[str, str]:
    return {
        tags.PARENT_RUN: parent_run_id,
        tags.TRIAL_ID: trial_id,
        tags.ROLE: tags.ROLE_TRIAL,
        tags.SEARCH_ID: search_id,
    }


def all_pages(fetch: Callable[[str | None], Any]) -> list:
    """Every item of a paged MLflow listing; `fetch(page_token)` returns one page."""
    items, token = [], None
    while True:
        page = fetch(token)
        items += list(page)
        token = page.token
        if not token:
            return items


def experiments(client: Any) -> list:
    return all_pages(lambda token: client.search_experiments(max_results=1000, page_token=token))


def parent_run(client: Any, experiment_ids: list[str], search_id: str) -> Any | None:
    """The parent run of the search with this id, or None."""
    if not experiment_ids:
        return None
    found = client.search_runs(
        experiment_ids,
        f"{PARENT_FILTER} and tags.`{tags.SEARCH_ID}` = '{search_id}'",
        max_results=1,
    )
    return found[0] if found else None


def find_search(client: Any, search_id: str) -> tuple[Any, Any] | None:
    """(experiment, parent run) of the search with this id in any experiment, or None."""
    exps = experiments(client)
    run = parent_run(client, [e.experiment_id for e in exps], search_id)
    if run is None:
        return None
    return next(e for e in exps if e.experiment_id == run.info.experiment_id), run


def latest_search(client: Any, experiment: str | None) -> tuple[Any, Any]:
    """(experiment, parent run) of the newest search, optionally within one experiment."""
    exps = experiments(client)
    chosen = [e for e in exps if experiment is None or e.name == experiment]
    runs = (
        client.search_runs(
            [e.experiment_id for e in chosen],
            PARENT_FILTER,
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if chosen
        else []
    )
    if not runs:
        with_searches = sorted(
            {
                e.name
                for e in exps
                if client.search_runs([e.experiment_id], PARENT_FILTER, max_results=1)
            }
        )
        what = f"experiment {experiment!r}" if experiment else "this store"
        raise TunerError(
            f"no tuner search found in {what}. Experiments with searches: "
            f"{', '.join(with_searches) or 'none (run `tuner search` first)'}."
        )
    return next(e for e in chosen if e.experiment_id == runs[0].info.experiment_id), runs[0]


def trial_run(client: Any, experiment_id: str, parent_run_id: str, trial_id: str) -> Any | None:
    found = client.search_runs(
        [experiment_id],
        f"tags.`{tags.PARENT_RUN}` = '{parent_run_id}' and tags.`{tags.TRIAL_ID}` = '{trial_id}'",
        max_results=1,
    )
    return found[0] if found else None


def trial_runs(client: Any, experiment_id: str, parent_run_id: str) -> list:
    return all_pages(
        lambda token: client.search_runs(
            [experiment_id],
            f"tags.`{tags.PARENT_RUN}` = '{parent_run_id}'",
            max_results=1000,
            page_token=token,
        )
    )
