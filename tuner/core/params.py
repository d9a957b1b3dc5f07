"""A trial's params as text and back: the one codec.

MLflow stores a param as a string; Optuna's categoricals take scalars only; a results table
wants one hashable cell per setting. Each of those meets a trial's settings as
`TrialConfig.to_dict()` gives them (bool, int, float, str, None, lists, a mapping) and goes
through here, so a value written by one reads back the same in every other:

- `to_text` / `from_text`: a value as an MLflow param and back. Lists and mappings as JSON,
  the rest with str() (True, None, 1e-05: what runs logged so far hold, so old stores read back).
- `stored_text`: what a run holds for a value, cut to MLflow's limit with the hash of the whole.
- `to_searcher` / `from_searcher`: a list value as JSON text, for a searcher that takes scalars.
- `cell`: a value as a results-table cell (lists and mappings as their JSON text).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# MLflow cuts a param value longer than this (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH) with
# only a warning: composite_labels merging ImageNet's 1000 classes is 9,890 characters.
PARAM_LIMIT = 6000
FULL_PARAMS = "params.json"  # a run's params whole, logged beside them when one passes PARAM_LIMIT
CUT = f"... (cut: the whole is in {FULL_PARAMS}, sha256 "  # how a cut value ends, before its hash


def to_text(value: Any) -> str:
    """A value as an MLflow param: JSON for lists and mappings, str() for the rest."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def from_text(text: str) -> Any:
    """Invert `to_text`: None, booleans, numbers, lists and mappings get their type back; any
    other text (pairwise, a path) stays text."""
    if text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return json.loads(text)
    except ValueError:
        return text  # a plain string such as pairwise (a float str() wrote as 1e-05 JSON reads)


def stored_text(text: str) -> str:
    """What a run holds for a param's text: the text, or when too long, its head and the hash of
    the whole (the same for the same value, so runs still compare; the whole is in FULL_PARAMS)."""
    if len(text) <= PARAM_LIMIT:
        return text
    tail = f"{CUT}{hashlib.sha256(text.encode()).hexdigest()[:16]})"
    return text[: PARAM_LIMIT - len(tail)] + tail


def is_cut(text: str) -> bool:
    """Whether a run's param text was cut by `stored_text` (the whole is in FULL_PARAMS)."""
    return text.endswith(")") and CUT in text


def params_text(params: Mapping[str, Any]) -> dict[str, str]:
    """Every value of `params` as its MLflow text (`to_text`), whole."""
    return {str(k): to_text(v) for k, v in params.items()}


def params_from_text(texts: Mapping[str, str]) -> dict[str, Any]:
    """Every text of `texts` as its value (`from_text`)."""
    return {k: from_text(v) for k, v in texts.items()}


def to_searcher(value: Any) -> Any:
    """A value as a searcher that takes scalars holds it: lists and mappings as JSON text."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def from_searcher(value: Any) -> Any:
    """Invert `to_searcher` for a setting whose values are lists or mappings."""
    return json.loads(value) if isinstance(value, str) else value


def cell(value: Any) -> Any:
    """A value as one cell of a results table: lists and mappings as their JSON text (hashable,
    comparable, and what a store's params show), the rest as they are."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def same_value(a: Any, b: Any) -> bool:
    """Whether two values are one setting: 2 and 2.0 are (a number read back from text), True and
    1 are not; lists and mappings compare by their JSON text."""
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    return (numbers and a == b) or json.dumps(a) == json.dumps(b)
