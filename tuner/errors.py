"""The one exception type for user mistakes; the CLI turns it into exit code 2."""


class TunerError(Exception):
    """A user error: bad config, bad search-space file, missing data.

    The message names the file, key or value and says what would be valid. It is
    printed as-is, without a traceback.
    """


class TrainingDiverged(TunerError):
    """The loss became non-finite; the message names the iteration."""
