"""`tuner search | validate | train | report | ui | sync | embed`: parse, call one function, map
user errors to exit 2.

Each command is a module of `tuner.commands` (its parser and its function); heavy imports (torch,
Ray, MLflow) happen when a command runs, so that `tuner --help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tuner.commands import embed, report, search, sync, train, ui, validate
from tuner.errors import TunerError
from tuner.system.disk import full_filesystems, is_disk_full
from tuner.system.processes import terminate_as_interrupt


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    # The order `tuner --help` lists them in.
    for command in (train, search, validate, report, ui, sync, embed):
        command.add_parser(sub)
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
        print(
            f"tuner {args.command}: error: no space left on {where}. Free space there and run it "
            "again.",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
