"""A store that stops answering mid-search: the writer goes offline, and the offline spool keeps
what it could not log (plots, the search's end status) in the search's Tune directory for `tuner
sync` (tuner.tracking.sync), which writes it once the store answers again.

The search goes on either way: Tune keeps every result, and a writer's call once offline is a no-op
(`tolerant`) instead of an error that would stop Tune.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.errors import first_line
from tuner.system.disk import is_disk_full
from tuner.system.secrets import mask_uri
from tuner.system.tune_storage import ExperimentDir, spool
from tuner.tracking.store import unreachable


@dataclass
class OfflineSpool:
    """Whether the store still answers, and where what it missed is kept (None: nowhere)."""

    tracking_uri: str
    sync_hint: str = "tuner sync --storage-path <Tune's storage path>"
    storage: ExperimentDir | None = None
    offline: bool = False
    disk_full: bool = False  # offline because the store's (or its artifacts') filesystem is full

    def go_offline(self, err: BaseException) -> None:
        if self.offline:
            return
        self.offline = True
        if is_disk_full(err):  # the search stops and names the filesystem: nothing to say here
            self.disk_full = True
            return
        first = first_line(err)[:300]
        print(
            f"tuner: MLflow at {mask_uri(self.tracking_uri)} stopped answering "
            f"({mask_uri(first)}). The search goes on without it and Tune keeps every result; once "
            f"the server is back, run:\n  {self.sync_hint}",
            file=sys.stderr,
            flush=True,
        )

    def keep(
        self, trial_id: str | None, status: str | None, artifact_dir: Path | None = None
    ) -> None:
        """A trial's files (or, with no trial, the search's end status) kept for `tuner sync`."""
        try:
            if self.storage is not None:
                spool(self.storage, trial_id, status, artifact_dir)
        except Exception as err:  # noqa: BLE001 - losing plots must not stop the search
            print(
                f"tuner: could not keep {trial_id or 'the search'}'s results for tuner sync: "
                f"{mask_uri(err)}",
                file=sys.stderr,
                flush=True,
            )

    def search_ended(self, status: str) -> None:
        """Offline at the search's end: its status kept, and the sync command said again, where
        people look."""
        if self.offline and not self.disk_full:
            self.keep(None, status)
            print(
                f"tuner: MLflow at {mask_uri(self.tracking_uri)} missed part of this search; once "
                f"it answers again, run:\n  {self.sync_hint}",
                file=sys.stderr,
                flush=True,
            )


def tolerant(default: Any = None) -> Callable:
    """A writer's method (on an object with a `spool`) that, once the store stops answering, is a
    no-op returning `default` instead of an error that would stop Tune."""

    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.spool.offline:
                return default
            try:
                return method(self, *args, **kwargs)
            except Exception as err:  # noqa: BLE001 - sorted by `unreachable`; the rest re-raised
                if not (unreachable(err) or is_disk_full(err)):
                    raise
                self.spool.go_offline(err)
                return default

        return call

    return wrap
