"""`tuner report`: a search's trials as a table, best first (and as CSV or one HTML page)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tuner.commands.args import add_tracking


def add_parser(sub: Any) -> None:
    report = sub.add_parser("report", help="table of a search's trials, best first")
    add_tracking(report)
    report.add_argument(
        "--experiment", default=None, help="experiment name (default: the latest search)"
    )
    report.add_argument("--csv", default=None, type=Path, help="also write the table as CSV")
    report.add_argument(
        "--html",
        default=None,
        type=Path,
        help="also write the search's report as one "
        "self-contained HTML page (table, interactive front, importances, plots)",
    )
    report.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    from tuner.tracking.reader import print_report  # MLflow: only when the command runs

    print_report(
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        csv_path=args.csv,
        html_path=args.html,
    )
    return 0
