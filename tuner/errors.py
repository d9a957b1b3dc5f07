"""The one exception type for user mistakes; the CLI turns it into exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class TunerError(Exception):
    """A user error: bad config, bad search-space file, missing data.

    The message names the file, key or value and says what would be valid. It is
    printed as-is, without a traceback. `key` names the setting at fault when there is one,
    so a caller can say where it came from (a search file's line, a --set flag).
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class TrainingDiverged(TunerError):
    """The loss became non-finite; the message names the iteration."""


def did_you_mean(word: Any, choices: Iterable[Any]) -> str:
    """ " (did you mean 'x'?)" for the closest choice, or nothing."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what one
    paragraph of a user-facing message has room for."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
