"""Turn a labeled dataset into a `constraints:` file of pair or triplet judgments, a chosen share
of them wrong, so the judgments path of tuner runs on real images.

    python examples/make_constraints.py --dataset digits --kind pairs --n 1000 --wrong 0.1 \
        --out digits_pairs.csv
    python examples/make_constraints.py --dataset mnist --data-dir /data --kind triplets --n 1000 \
        --wrong 0.1 --out mnist_triplets.csv

Items are drawn from the images that tuner's training split holds for the given split settings
(--split-seed, --val-size, --test-size: give the search's), so no judgment is dropped for naming a
validation or test image. Pairs are half similar (same label), half not; a wrong pair has its
flag flipped. A wrong triplet has its positive and negative swapped.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from tuner.core.config import TrialConfig
from tuner.data.pipeline import item_places, open_source
from tuner.errors import TunerError


def make_judgments(
    y: np.ndarray, candidates: np.ndarray, kind: str, n: int, wrong: float, seed: int
) -> list[tuple[int, ...]]:
    """`n` judgments among `candidates` (training-order indices) from their labels `y[candidates]`;
    pairs as (a, b, similar), triplets as (anchor, positive, negative); a `wrong` share is wrong."""
    rng = np.random.default_rng(seed)
    labels = y[candidates]
    by_class = {c: candidates[labels == c] for c in np.unique(labels) if (labels == c).sum() >= 2}
    classes = sorted(by_class)
    if len(classes) < 2:
        raise TunerError(
            "make_constraints: need two classes with at least two training images each."
        )
    flips = rng.random(n) < wrong
    rows: list[tuple[int, ...]] = []
    for k in range(n):
        c, other = rng.choice(classes, size=2, replace=False)
        a, p = rng.choice(by_class[c], size=2, replace=False)
        neg = int(rng.choice(by_class[other]))
        if kind == "pairs":
            similar = bool(rng.random() < 0.5)
            b = int(p) if similar else neg
            rows.append((int(a), b, int(similar != flips[k])))
        else:
            rows.append((int(a), neg, int(p)) if flips[k] else (int(a), int(p), neg))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", default="digits", choices=("digits", "mnist", "cifar10", "imagenet")
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--kind", default="pairs", choices=("pairs", "triplets"))
    parser.add_argument("--n", type=int, default=1000, help="judgments to write")
    parser.add_argument(
        "--wrong", type=float, default=0.1, help="share of wrong judgments, in [0, 1]"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--val-size", type=float, default=None)
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.n < 1 or not 0.0 <= args.wrong <= 1.0:
            raise TunerError(
                f"make_constraints: --n {args.n} must be >= 1 and --wrong {args.wrong} in [0, 1]."
            )
        cfg = TrialConfig.from_dict(
            {
                "dataset": args.dataset,
                "split_seed": args.split_seed,
                "val_size": args.val_size,
                "test_size": args.test_size,
            },
            source="make_constraints",
        )
        source = open_source(cfg, args.data_dir)
        images = source.load(False)
        arrays = {"y_train": images.y_train}
        if images.y_test is not None:
            arrays["x_test"], arrays["y_test"] = images.y_test[:, None], images.y_test
        where, _ = item_places(cfg, arrays)
        rows = make_judgments(
            images.y_train, np.flatnonzero(where == 0), args.kind, args.n, args.wrong, args.seed
        )
    except TunerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    names = source.item_names() if source.item_names is not None else None
    with open(args.out, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            ("a", "b", "similar") if args.kind == "pairs" else ("anchor", "positive", "negative")
        )
        for row in rows:
            items = [
                names[i] if names is not None else i
                for i in row[: 2 if args.kind == "pairs" else 3]
            ]
            out.writerow([*items, row[2]] if args.kind == "pairs" else items)
    print(f"wrote {len(rows)} {args.kind} ({args.wrong:.0%} wrong) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
