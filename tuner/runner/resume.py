"""A search's state in its Tune directory: started afresh (an earlier one moved aside) or
resumed."""

from __future__ import annotations

import json

from ray import tune

from tuner.errors import TunerError
from tuner.runner.tune_setup import tune_location
from tuner.space.spec import SearchSpec
from tuner.system.secrets import mask_uri
from tuner.system.tune_storage import STATE_FILE, ExperimentDir, read_state


def previous_search_id(exp_dir: ExperimentDir, spec: SearchSpec) -> str:
    """The id of the search to resume; its settings must match the current ones."""
    saved = read_state(exp_dir)
    path, fs = tune_location(exp_dir)
    if saved is None or not tune.Tuner.can_restore(path, storage_filesystem=fs):
        raise TunerError(
            f"--resume: no search to resume in {mask_uri(exp_dir.uri)}. Pass the --storage-path "
            f"and --experiment it ran with, or start it without --resume."
        )
    now = json.loads(json.dumps(spec.resolved()))
    changed = sorted(k for k in now if saved["spec"].get(k) != now[k])
    if changed:
        raise TunerError(
            f"--resume: the search in {mask_uri(exp_dir.uri)} ran with other settings "
            f"({', '.join(changed)} differ). Resume with the same file, --set, --samples and "
            f"--max-concurrent, or start a new search without --resume."
        )
    return str(saved["search_id"])


def init_storage(exp_dir: ExperimentDir, search_id: str, spec: SearchSpec, verbose: bool) -> None:
    """A fresh experiment directory; an earlier search's is moved aside, not deleted."""
    if exp_dir.entries():
        moved = exp_dir.move_aside()
        if verbose:
            print(f"moved the previous search's Tune results to {mask_uri(moved)}")
    exp_dir.write_text(
        STATE_FILE, json.dumps({"search_id": search_id, "spec": spec.resolved()}, indent=2)
    )
