"""`tuner search | validate | train | report | ui | sync | embed`: parse, call one function, map
user errors to exit 2.

Heavy imports (torch, Ray, MLflow) happen inside each command so that `tuner --help`
and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from tuner.commands import embed, train
from tuner.commands.args import add_data_dir, add_set, add_tracking, parse_set_pairs, tcp_port
from tuner.system.disk import full_filesystems, is_disk_full
from tuner.errors import TunerError
from tuner.system.processes import terminate_as_interrupt


def cmd_validate(args: argparse.Namespace) -> int:
    from tuner.space.load import load_spec

    spec = load_spec(args.space, overrides=parse_set_pairs(args.set), samples=args.samples,
                     max_concurrent=args.max_concurrent)
    print(spec.describe())
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from tuner.runner.search import run_search
    from tuner.space.load import load_spec

    spec = load_spec(args.space, overrides=parse_set_pairs(args.set), samples=args.samples,
                     max_concurrent=args.max_concurrent)
    run_search(spec, tracking_uri=args.tracking_uri, storage_path=args.storage_path,
               address=args.address, experiment=args.experiment, resume=args.resume,
               data_dir=args.data_dir, verbose=True, tune_console=args.verbose, warm_start=args.warm_start)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tuner.tracking.reader import print_report

    print_report(tracking_uri=args.tracking_uri, experiment=args.experiment, csv_path=args.csv, html_path=args.html)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from tuner.tracking.reader import serve_ui

    return serve_ui(tracking_uri=args.tracking_uri, host=args.host, port=args.port)


def cmd_sync(args: argparse.Namespace) -> int:
    from tuner.tracking.sync import sync_search

    sync_search(storage_path=args.storage_path, experiment=args.experiment, tracking_uri=args.tracking_uri)
    return 0


def _add_search_parsers(sub: Any) -> None:
    for name, func, text in (("search", cmd_search, "run a search on Ray Tune, logged to MLflow"),
                             ("validate", cmd_validate, "check a search-space file and print the resolved search")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--space", required=True, type=Path, help="search-space YAML file")
        add_set(p)
        p.add_argument("--samples", type=int, default=None, help="override the file's samples")
        p.add_argument("--max-concurrent", type=int, default=None, help="override the file's max_concurrent")
        p.set_defaults(func=func)
    search = sub.choices["search"]
    add_tracking(search)
    add_data_dir(search)
    search.add_argument("--storage-path", default=None,
                        help="where Tune keeps results and checkpoints (default: ./ray_results)")
    search.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                        help="existing Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    search.add_argument("--experiment", default=None, help="MLflow experiment (default: the file's name)")
    search.add_argument("--resume", action="store_true", help="continue an interrupted search")
    search.add_argument("--warm-start", default=None, metavar="EXPERIMENT_OR_RUN_ID",
                        help="tell Optuna the finished trials of an earlier search (an experiment's latest, "
                             "a search id or a parent run id) that fit this space; optuna searches only")
    search.add_argument("--verbose", action="store_true",
                        help="show Ray Tune's own per-trial output instead of the progress line "
                             "(it is always in tune_output.log in the experiment directory)")


def _add_store_parsers(sub: Any) -> None:
    report = sub.add_parser("report", help="table of a search's trials, best first")
    add_tracking(report)
    report.add_argument("--experiment", default=None, help="experiment name (default: the latest search)")
    report.add_argument("--csv", default=None, type=Path, help="also write the table as CSV")
    report.add_argument("--html", default=None, type=Path, help="also write the search's report as one "
                        "self-contained HTML page (table, interactive front, importances, plots)")
    report.set_defaults(func=cmd_report)

    ui = sub.add_parser("ui", help="start the MLflow UI on this store")
    add_tracking(ui)
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    ui.add_argument("--port", type=tcp_port, default=5000, help="TCP port, 1-65535 (default 5000)")
    ui.set_defaults(func=cmd_ui)

    sync = sub.add_parser("sync", help="write into MLflow what a search's Tune results hold and MLflow lacks "
                                       "(after the tracking server was unreachable); safe to repeat")
    add_tracking(sync)
    sync.add_argument("--storage-path", default=None,
                      help="the search's Tune storage path, or its experiment directory (default: ./ray_results)")
    sync.add_argument("--experiment", default=None,
                      help="the search's experiment (default: the one search under --storage-path)")
    sync.set_defaults(func=cmd_sync)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_parser(sub)
    _add_search_parsers(sub)
    _add_store_parsers(sub)
    embed.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with terminate_as_interrupt():
            return int(args.func(args) or 0)
    except TunerError as err:
        print(f"tuner {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tuner {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `tuner report | head`: the reader left; say nothing more on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as err:  # noqa: BLE001 - only a full disk is answered here; the rest is re-raised
        if not is_disk_full(err):
            raise
        # Where a search has not started its trials yet (they name the filesystem themselves), or
        # another command's writes: the file that did not fit, when the error names one.
        path = getattr(err, "filename", None)
        where = full_filesystems({"writing": path}) if path else "a device this command writes to"
        print(f"tuner {args.command}: error: no space left on {where}. Free space there and run it again.",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
