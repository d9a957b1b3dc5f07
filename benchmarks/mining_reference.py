"""Plain Python-loop enumeration of pairs and triplets, as the prior work did it.

The oracle for tests/trainer/test_miners.py and the baseline of the mining benchmark: obviously
correct, and slow on purpose (no vectorisation).
"""

from __future__ import annotations

import itertools


def python_loop_pairs(labels: list[int]) -> list[tuple[int, int, bool]]:
    """Every unordered pair (i, j), i < j, with whether the labels match."""
    return [
        (i, j, labels[i] == labels[j]) for i, j in itertools.combinations(range(len(labels)), 2)
    ]


def python_loop_triplets(labels: list[int]) -> list[tuple[int, int, int]]:
    """Every (anchor, positive, negative): a != p, same label for a and p, another for n."""
    out = []
    n = len(labels)
    for a in range(n):
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            for neg in range(n):
                if labels[neg] != labels[a]:
                    out.append((a, p, neg))
    return out
