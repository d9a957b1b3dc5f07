"""Guards a search file passes before PyYAML builds anything from it.

A search file is a few KiB of plain mappings and lists. What is refused here would otherwise end
in a traceback, a hang or gigabytes of memory: a file that is not UTF-8, a huge file, YAML
anchors and aliases (a self-referencing alias recurses; nine aliases of nine aliases, the
"billion laughs", expand to gigabytes wherever the values are walked), and nesting deep enough
to overflow PyYAML's recursive composer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuner.errors import TunerError

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64  # a search file needs about 5 levels; PyYAML's composer overflows near 300


def read_search_text(path: Path) -> str:
    """The file's text. OSError (no such file, a directory) is the caller's to report."""
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)  # a cap, not a stat: /dev/zero or a growing file has no size
    if len(data) > MAX_BYTES:
        raise TunerError(
            f"{path}: the search-space file is larger than {MAX_BYTES // 2**20} MiB; search "
            f"files are a few KiB of settings. Is this the right file?"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise TunerError(
            f"{path}:{line}: the search-space file is not UTF-8 text (byte 0x{data[err.start]:02x} "
            f"at offset {err.start}). Save it as UTF-8."
        ) from None


def check_yaml_events(text: str, path: Path, loader: Any) -> None:
    """Refuse anchors, aliases and deep nesting, scanning the parser's events (no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise TunerError(
                f"{path}:{line}: YAML anchors and aliases (&{event.anchor}, *{event.anchor}) are "
                f"not accepted in search files: an alias can refer to itself or expand a small "
                f"file to gigabytes. Write the values out where they are used."
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise TunerError(
                    f"{path}:{line}: lists and mappings nested more than {MAX_DEPTH} deep; a "
                    f"search file needs a handful of levels. Check the brackets near that line."
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
