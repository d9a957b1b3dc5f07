"""Search files for the tests: written from a test's own text."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tuner.space.load import load_spec


def write_space(path: Path, body: str) -> Path:
    """A search file of `body` (indented as in the test's source) at `path`."""
    path.write_text(textwrap.dedent(body))
    return path


def spec_of(tmp_path: Path, body: str, **kwargs):
    """The search `body` describes, loaded as `tuner search` loads it (kwargs: load_spec's)."""
    return load_spec(write_space(tmp_path / "s.yaml", body), **kwargs)
