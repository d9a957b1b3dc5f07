"""`tuner ui`: the MLflow UI on a search's store, opened on tuner's saved view."""

from __future__ import annotations

import argparse
from typing import Any

from tuner.commands.args import add_tracking, tcp_port


def add_parser(sub: Any) -> None:
    ui = sub.add_parser("ui", help="start the MLflow UI on this store")
    add_tracking(ui)
    ui.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: loopback only)"
    )
    ui.add_argument("--port", type=tcp_port, default=5000, help="TCP port, 1-65535 (default 5000)")
    ui.set_defaults(func=ui_command)


def ui_command(args: argparse.Namespace) -> int:
    from tuner.tracking.reader import serve_ui  # MLflow: only when the command runs

    return serve_ui(tracking_uri=args.tracking_uri, host=args.host, port=args.port)
