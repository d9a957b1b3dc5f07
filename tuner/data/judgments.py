"""A `constraints:` file of pair or triplet judgments: read and checked (`read_judgments`, what
`tuner validate` runs too), then placed on the loaded splits (`place_judgments`).

Items are named by their index in the dataset's own training order (digits as scikit-learn
returns it, MNIST and CIFAR-10 as their training files hold them) or, for an image folder, by
path relative to its class root (`class/image.png`). The data layer splits that training order
into train / validation (/ test, where the data has no official one); a judgment trains only when
all its items lie in the training split, so validation images never meet the metric term.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuner.data.features import Judgments
from tuner.data.files import open_regular
from tuner.errors import TunerError

HEADERS = {("a", "b", "similar"): "pairwise", ("anchor", "positive", "negative"): "triplet"}
MAX_BYTES = 256 * 1024 * 1024  # a typo'd path to a huge file should not be read whole
# Where a search gives no val_size: the share of the file's rows held out for constraint_accuracy.
DEFAULT_HELD_SHARE = 0.15


@dataclass(frozen=True)
class JudgmentFile:
    """The rows of a constraints file, unplaced: item names as written, and pairs' similar flags."""

    path: Path
    kind: str  # pairwise | triplet, the `constraint:` it serves
    items: tuple[tuple[str, ...], ...]
    similar: np.ndarray | None  # bool per row, pairs only
    lines: tuple[int, ...]  # the file line of each row, for messages


def _fail(path: Path, line: int | None, problem: str) -> TunerError:
    where = f"{path}:{line}" if line else str(path)
    return TunerError(f"constraints: {where}: {problem}.", key="constraints")


def read_judgments(path: str | Path, constraint: str | None = None) -> JudgmentFile:
    """The file's rows, or a TunerError naming file, line and the fix (malformed rows, a header
    that is neither form, a file of pairs for `constraint: triplet` and the reverse)."""
    path = Path(path).expanduser()
    with open_regular(path, "constraints") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise _fail(
            path, None, f"larger than {MAX_BYTES // 2**20} MiB: is this the judgments file?"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _fail(
            path, None, f"not UTF-8 text ({err.reason} at byte {err.start}): save it as UTF-8 CSV"
        ) from None
    rows = list(csv.reader(io.StringIO(text)))
    numbered = [
        (i + 1, [cell.strip() for cell in row])
        for i, row in enumerate(rows)
        if any(c.strip() for c in row)
    ]
    if not numbered:
        raise _fail(
            path,
            None,
            "empty: expected a header a,b,similar (pairs) or anchor,positive,negative "
            "(triplets), then one judgment per row",
        )
    header_line, header = numbered[0]
    kind = HEADERS.get(tuple(h.lower() for h in header))
    if kind is None:
        raise _fail(
            path,
            header_line,
            f"header {','.join(header)!r} is neither a,b,similar (pairs) nor "
            f"anchor,positive,negative (triplets): write one of them as the first row",
        )
    if constraint is not None and constraint != kind:
        wanted = (
            "triplets (anchor,positive,negative)"
            if constraint == "triplet"
            else "pairs (a,b,similar)"
        )
        raise _fail(
            path,
            header_line,
            f"holds {'pairs' if kind == 'pairwise' else 'triplets'} ({','.join(header)}), "
            f"but constraint is {constraint}: set constraint: {kind}, or give a file "
            f"of {wanted}",
        )
    items, similar, lines = [], [], []
    for line, row in numbered[1:]:
        if len(row) != 3 or not all(row):
            raise _fail(
                path,
                line,
                f"row {','.join(row)!r} is malformed: expected three non-empty fields "
                f"({','.join(header)})",
            )
        named = row[:2] if kind == "pairwise" else row
        if len({_item_key(name) for name in named}) < len(named):
            raise _fail(
                path,
                line,
                f"row {','.join(row)!r} names item {_repeated(named)!r} twice: a judgment "
                f"compares different items (a dissimilar self-pair is never satisfied, a "
                f"similar one always): remove the row or fix its items",
            )
        if kind == "pairwise":
            if row[2] not in ("0", "1"):
                raise _fail(
                    path,
                    line,
                    f"similar = {row[2]!r} is not valid: expected 1 (alike) or 0 (not alike)",
                )
            items.append((row[0], row[1]))
            similar.append(row[2] == "1")
        else:
            items.append(tuple(row))
        lines.append(line)
    if not items:
        raise _fail(path, header_line, "holds a header but no judgment: add one row per judgment")
    return JudgmentFile(
        path,
        kind,
        tuple(items),
        np.array(similar, dtype=bool) if kind == "pairwise" else None,
        tuple(lines),
    )


def _item_key(name: str) -> str:
    """One spelling per item, as placing the rows reads them: 7 and 007, cat\\a.png and
    cat/a.png."""
    return str(int(name)) if name.isascii() and name.isdigit() else name.replace("\\", "/")


def _repeated(names: list[str]) -> str:
    keys = [_item_key(name) for name in names]
    return next(name for i, name in enumerate(names) if keys[i] in keys[:i])


def held_share(val_size: float | None) -> float:
    return DEFAULT_HELD_SHARE if val_size is None else val_size


def n_held(n_rows: int, val_size: float | None) -> int:
    """How many of a file's rows are held out for constraint_accuracy (at least one)."""
    return min(n_rows, max(1, math.ceil(held_share(val_size) * n_rows)))


def judgments_per_batch(kind: str, batch_size: int) -> int:
    """A batch of judgments names about batch_size items: batch_size // 2 pairs or // 3 triplets."""
    return max(1, batch_size // (2 if kind == "pairwise" else 3))


def check_placed(judgments: Judgments, batch_size: int) -> None:
    """Enough training judgments, once placed on the splits, for a batch of `batch_size`."""
    check_enough(
        judgments.source,
        judgments.kind,
        len(judgments.train),
        batch_size,
        f" ({len(judgments.held)} more held out, {judgments.dropped} dropped for naming validation "
        f"or test images)",
    )


def check_enough(path: Path | str, kind: str, n_train: int, batch_size: int, why: str = "") -> None:
    need = judgments_per_batch(kind, batch_size)
    if n_train < need:
        noun = "pairs" if kind == "pairwise" else "triplets"
        raise _fail(
            Path(path),
            None,
            f"{n_train} judgments train{why}, fewer than a batch needs: batch_size "
            f"{batch_size} draws {need} {noun} per batch. Add judgments, or lower "
            f"batch_size to {max(4, n_train * (2 if kind == 'pairwise' else 3))} or less",
        )


def place_judgments(
    file: JudgmentFile,
    where: np.ndarray,
    position: np.ndarray,
    n_train: int,
    item_names: tuple[str, ...] | None,
    val_size: float | None,
    seed: int,
) -> Judgments:
    """The file's rows on the splits: a seeded `val_size` share held out (constraint_accuracy, on
    train and validation images), the rest training where every item is a training image.

    `where[i]` is 0 (train), 1 (validation) or 2 (test) for training-order item i, `position[i]` its
    row in that split. Rows naming a test image are dropped (trials never see the test split),
    and so are training rows naming a validation image; `Judgments.dropped` counts both.
    """
    index = _item_index(file, len(where), item_names)
    rows = np.array(
        [[index(name, line) for name in row] for row, line in zip(file.items, file.lines)],
        dtype=np.int64,
    )
    held = _held_rows(rows, file.kind, n_held(len(rows), val_size), seed)
    split = where[rows]
    train_rows = ~held & (split == 0).all(axis=1)
    held_rows = held & (split != 2).all(axis=1)
    # Held-out judgments are scored on train and validation images: one table, validation after
    # train.
    in_both = np.where(split == 0, position[rows], n_train + position[rows])
    similar = file.similar
    out = Judgments(
        kind=file.kind,
        train=position[rows[train_rows]],
        held=in_both[held_rows],
        train_similar=None if similar is None else similar[train_rows],
        held_similar=None if similar is None else similar[held_rows],
        dropped=int(len(rows) - train_rows.sum() - held_rows.sum()),
        source=str(file.path),
    )
    if len(out.held) == 0:
        raise _fail(
            file.path,
            None,
            f"none of the {int(held.sum())} held-out judgments (a seeded val_size share "
            f"of the rows) names training or validation images only, so "
            f"constraint_accuracy has nothing to score: add judgments among training images",
        )
    return out


def _held_rows(rows: np.ndarray, kind: str, count: int, seed: int) -> np.ndarray:
    """A seeded `count` rows held out (a few more where copies round it up), copies together: rows
    naming the same items (b,a for a,b; a,n,p for a,p,n) go to one side, so that no held-out
    judgment is one the model trained on."""
    ends = (
        np.sort(rows, axis=1)
        if kind == "pairwise"
        else np.column_stack([rows[:, :1], np.sort(rows[:, 1:], axis=1)])
    )
    _, first, group = np.unique(ends, axis=0, return_index=True, return_inverse=True)
    # Groups numbered in the order of their first row: a file without copies holds what it always
    # did.
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    group = rank[np.asarray(group).reshape(-1)]
    chosen = np.random.default_rng(seed).permutation(len(first))
    taken = int(np.searchsorted(np.cumsum(np.bincount(group)[chosen]), count)) + 1
    return np.isin(group, chosen[:taken])


def _item_index(
    file: JudgmentFile, n_items: int, names: tuple[str, ...] | None
) -> Callable[[str, int], int]:
    lookup = {name: i for i, name in enumerate(names)} if names is not None else None

    def index(name: str, line: int) -> int:
        if lookup is not None:
            found = lookup.get(name.replace("\\", "/"))
            if found is None:
                raise _fail(
                    file.path,
                    line,
                    f"item {name!r} is not an image of the folder: name images by "
                    f"their path relative to the class root, e.g. {names[0]!r}",
                )
            return found
        # Plain ASCII digits only: int() would also read "1_0" as 10, "+3" or a full-width digit as
        # 3.
        value = int(name) if name.isascii() and name.isdigit() else -1
        if not 0 <= value < n_items:
            raise _fail(
                file.path,
                line,
                f"item {name!r} does not exist: expected an index into the dataset's "
                f"training order, 0..{n_items - 1}",
            )
        return value

    return index
