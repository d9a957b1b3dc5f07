"""`tuner search`: one search on Ray Tune, logged to MLflow.

Ray, torch and MLflow are imported when the command runs (`tuner.runner.search`), so that
`tuner --help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from tuner.commands.args import add_data_dir, add_tracking, parse_set_pairs
from tuner.commands.validate import add_space_arguments
from tuner.space.load import load_spec


def add_parser(sub: Any) -> None:
    search = sub.add_parser("search", help="run a search on Ray Tune, logged to MLflow")
    add_space_arguments(search)
    search.set_defaults(func=search_command)
    add_tracking(search)
    add_data_dir(search)
    search.add_argument(
        "--storage-path",
        default=None,
        help="where Tune keeps results and checkpoints (default: ./ray_results)",
    )
    search.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="existing Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)",
    )
    search.add_argument(
        "--experiment", default=None, help="MLflow experiment (default: the file's name)"
    )
    search.add_argument("--resume", action="store_true", help="continue an interrupted search")
    search.add_argument(
        "--warm-start",
        default=None,
        metavar="EXPERIMENT_OR_RUN_ID",
        help="tell Optuna the finished trials of an earlier search (an experiment's latest, "
        "a search id or a parent run id) that fit this space; optuna searches only",
    )
    search.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray Tune's own per-trial output instead of the progress line "
        "(it is always in tune_output.log in the experiment directory)",
    )


def search_command(args: argparse.Namespace) -> int:
    from tuner.runner.search import run_search  # Ray and torch: only when a search runs

    spec = load_spec(
        args.space,
        overrides=parse_set_pairs(args.set),
        samples=args.samples,
        max_concurrent=args.max_concurrent,
    )
    run_search(
        spec,
        tracking_uri=args.tracking_uri,
        storage_path=args.storage_path,
        address=args.address,
        experiment=args.experiment,
        resume=args.resume,
        data_dir=args.data_dir,
        verbose=True,
        tune_console=args.verbose,
        warm_start=args.warm_start,
    )
    return 0
