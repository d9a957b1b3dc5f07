"""`tuner validate`: check a search file and print the search it resolves to (no Ray, no MLflow)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tuner.commands.args import add_set, parse_set_pairs
from tuner.space.load import load_spec


def add_space_arguments(p: argparse.ArgumentParser) -> None:
    """What `search` and `validate` share: the file, and what may override it."""
    p.add_argument("--space", required=True, type=Path, help="search-space YAML file")
    add_set(p)
    p.add_argument("--samples", type=int, default=None, help="override the file's samples")
    p.add_argument(
        "--max-concurrent", type=int, default=None, help="override the file's max_concurrent"
    )


def add_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a search-space file and print the resolved search")
    add_space_arguments(p)
    p.set_defaults(func=validate_command)


def validate_command(args: argparse.Namespace) -> int:
    spec = load_spec(
        args.space,
        overrides=parse_set_pairs(args.set),
        samples=args.samples,
        max_concurrent=args.max_concurrent,
    )
    print(spec.describe())
    return 0
