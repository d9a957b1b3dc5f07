"""`tuner sync`: write into MLflow what a search's Tune results hold and MLflow lacks."""

from __future__ import annotations

import argparse
from typing import Any

from tuner.commands.args import add_tracking


def add_parser(sub: Any) -> None:
    sync = sub.add_parser(
        "sync",
        help="write into MLflow what a search's Tune results hold and MLflow lacks "
        "(after the tracking server was unreachable); safe to repeat",
    )
    add_tracking(sync)
    sync.add_argument(
        "--storage-path",
        default=None,
        help="the search's Tune storage path, or its experiment directory (default: ./ray_results)",
    )
    sync.add_argument(
        "--experiment",
        default=None,
        help="the search's experiment (default: the one search under --storage-path)",
    )
    sync.set_defaults(func=sync_command)


def sync_command(args: argparse.Namespace) -> int:
    from tuner.tracking.sync import sync_search  # MLflow: only when the command runs

    sync_search(
        storage_path=args.storage_path, experiment=args.experiment, tracking_uri=args.tracking_uri
    )
    return 0
