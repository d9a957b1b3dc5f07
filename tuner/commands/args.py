"""What several commands share: --set pairs, --data-dir, --tracking-uri, and argument types."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tuner.core.config import KEY_ALIASES
from tuner.core.datasets import DATASETS
from tuner.errors import TunerError
from tuner.space.load import YamlLoader, collect_lines
from tuner.space.safe_yaml import check_yaml_events

DEFAULT_TRACKING_URI_HINT = "sqlite:///mlflow.db in the working directory (or $MLFLOW_TRACKING_URI)"
# More torch threads than this is a typo (10**20 overflows torch; 100000 fails to start them).
MAX_THREADS = 1024


def parse_set_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs whose values parse as YAML (`normalize=false`, `hidden_dims=[64,32]`)."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}  # canonical name -> the pair that set it
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise TunerError(f"--set {pair!r}: expected key=value, e.g. --set iterations=200.")
        name = KEY_ALIASES.get(key.strip(), key.strip())
        # the last one would win silently, and an alias beside its name is ambiguous
        if name in given:
            raise TunerError(
                f"--set {pair!r}: {name} is given twice (also by --set {given[name]!r}); keep one."
            )
        given[name] = pair
        out[key.strip()] = _set_value(pair, text)
    return out


def _set_value(pair: str, text: str) -> Any:
    """The value of one pair, through the guards a search file passes."""
    try:
        # aliases and deep nesting, as in search files
        check_yaml_events(text, Path("--set"), YamlLoader)
        # duplicate, merge keys
        collect_lines(Path("--set"), yaml.compose(text, Loader=YamlLoader), "", {})
        return yaml.load(text, Loader=YamlLoader) if text.strip() else None
    except yaml.YAMLError as err:
        raise TunerError(
            f"--set {pair!r}: the value is not valid YAML ({' '.join(str(err).split())})."
        ) from None
    except TunerError as err:
        raise TunerError(
            f"--set {pair!r}: {str(err).split(': ', 1)[1].replace('search files', '--set')}"
        ) from None


def add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a trial setting; the value parses as YAML (repeatable)",
    )


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        default=os.environ.get("TUNER_DATA_DIR", "data"),
        help=f"where {'/'.join(n for n, d in DATASETS.items() if d.from_files)} files "
        "live (default: $TUNER_DATA_DIR or ./data)",
    )


def add_tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        default=None,
        help=f"MLflow tracking URI (default: {DEFAULT_TRACKING_URI_HINT})",
    )


def positive_int(text: str) -> int:
    """A count of threads: 1..MAX_THREADS."""
    digits = text.strip()
    value = int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 6 else 0
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..{MAX_THREADS}, got {text!r}")
    return value


def tcp_port(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 1-65535, got {text!r}")
    return value
