"""The pairs or triplets mined from one batch's labels.

Mining is kept apart from the losses (as in pytorch-metric-learning): a miner returns index
tensors, a loss consumes them. Everything here is tensor ops, on the embeddings' device; no
Python loop over pairs or triplets. The batches come from samplers.py.

Semi-hard mining has two forms with one result. On the CPU it selects with nonzero(), so the
loss touches only the selected tuples. On a GPU nonzero() would make the host wait for the
device at every step (it must learn how many tuples there are), so there the candidates are
every valid tuple (memoised by the host-side labels, as for "all") and a mask says which count.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

Tuples = tuple[Tensor, ...]


class Mined(NamedTuple):
    """What a loss consumes: pairs (i, j, same) or triplets (a, p, n), and which of them count
    (a bool mask from the device miners; None: every one)."""

    tuples: Tuples
    keep: Tensor | None = None

    def selected(self) -> Tuples:
        """The tuples that count (nonzero() on a mask: a host sync on a GPU; for tests and
        tools)."""
        return self.tuples if self.keep is None else tuple(t[self.keep] for t in self.tuples)


__all__ = [
    "Mined",
    "mine",
    "all_pairs",
    "all_triplets",
    "enumerate_pairs",
    "enumerate_triplets",
    "semihard_triplets",
    "semihard_mask",
    "active_pairs",
    "active_pair_mask",
    "cap_tuples",
    "cap_mask",
    "distance_matrix",
]

CONSTRAINTS = ("pairwise", "triplet")
MINING = ("all", "semihard")


# ----------------------------------------------------------------------------------
# Miners: labels (and, for semi-hard mining, distances) in, index tensors out.


def all_pairs(labels: Tensor, key: bytes | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Every unordered pair i < j of the batch, and whether the two share a label.

    `key`: the labels' bytes as the host knows them (the sampler's `last_labels`), so that a
    memo hit reads nothing back from the device."""
    return _memo(enumerate_pairs, labels, key)


def all_triplets(labels: Tensor, key: bytes | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Every (anchor, positive, negative) with a != p, y[a] == y[p], y[n] != y[a].

    Triplets come out sorted by (a, p, n). `key` as in all_pairs.
    """
    return _memo(enumerate_triplets, labels, key)


def enumerate_pairs(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """all_pairs without its memo: the build a label sequence not seen before costs."""
    i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
    return i, j, labels.index_select(0, i) == labels.index_select(0, j)


def enumerate_triplets(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """all_triplets without its memo."""
    # Ordered positive pairs x negatives rather than a full B^3 mask: the positive pairs
    # are few (about B^2 / n_classes), so the mask that nonzero() scans is small.
    same, pos_a, pos_p = _positive_pairs(labels)
    return _expand(pos_a, pos_p, ~same.index_select(0, pos_a))


_MEMO: OrderedDict[tuple[Any, ...], tuple[Tensor, Tensor, Tensor]] = OrderedDict()
_MEMO_SIZE = 512


def _memo(
    build: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]],
    labels: Tensor,
    labels_bytes: bytes | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mined index sets depend only on the batch's label sequence, and stratified batches
    repeat a few hundred sequences (their labels come grouped by class, the counts vary
    only by where the remainder lands): remember the last few hundred. Callers never
    modify the returned tensors in place (cap_tuples and the losses index into copies).
    """
    if labels_bytes is None:
        labels_bytes = labels.cpu().numpy().tobytes()  # a host sync when labels sit on a GPU
    key = (build.__name__, labels.device, labels.dtype, labels_bytes)
    hit = _MEMO.get(key)
    if hit is not None:
        _MEMO.move_to_end(key)
        return hit
    result = _MEMO[key] = build(labels)
    if len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return result


def semihard_triplets(labels: Tensor, dist: Tensor, margin: float) -> tuple[Tensor, Tensor, Tensor]:
    """The valid triplets with d(a,p) < d(a,n) < d(a,p) + margin (FaceNet's semi-hard).

    Empty tensors when there are none; the losses turn an empty set into a zero loss.
    """
    same, pos_a, pos_p = _positive_pairs(labels)
    d_ap = _lookup(dist, pos_a, pos_p)[:, None]
    d_an = dist.index_select(0, pos_a)  # row k: d(a_k, every n)
    return _expand(pos_a, pos_p, ~same.index_select(0, pos_a) & _is_semihard(d_ap, d_an, margin))


def semihard_mask(triplets: Tuples, dist: Tensor, margin: float) -> Tensor:
    """Which valid triplets (all_triplets') are semi-hard: semihard_triplets' rule as a mask."""
    a, p, n = triplets
    return _is_semihard(_lookup(dist, a, p), _lookup(dist, a, n), margin)


def _is_semihard(d_ap: Tensor, d_an: Tensor, margin: float) -> Tensor:
    return (d_ap < d_an) & (d_an < d_ap + margin)


def _positive_pairs(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The B x B same-label matrix and every ordered pair (a, p), a != p, of one label."""
    same = labels[:, None] == labels[None, :]
    pos_a, pos_p = torch.nonzero(same.clone().fill_diagonal_(False), as_tuple=True)
    return same, pos_a, pos_p


def _expand(pos_a: Tensor, pos_p: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Triplets from positive pair k and each n where negatives[k, n] holds."""
    k, negative = torch.nonzero(negatives, as_tuple=True)
    # index_select rather than pos_a[k]: the advanced-indexing path costs several times more on CPU.
    return pos_a.index_select(0, k), pos_p.index_select(0, k), negative


def active_pairs(labels: Tensor, dist: Tensor, margin: float) -> tuple[Tensor, Tensor, Tensor]:
    """The pairs the contrastive loss can learn from: positives with d > 0, negatives with
    d < margin (pytorch-metric-learning's PairMarginMiner with pos 0, neg margin). This is
    what "semihard" means for the pairwise constraint.
    """
    same = labels[:, None] == labels[None, :]
    keep = _is_active(same, dist, margin).triu_(diagonal=1)
    i, j = torch.nonzero(keep, as_tuple=True)  # row-major: the order of all_pairs
    return i, j, _lookup(same, i, j)


def active_pair_mask(pairs: Tuples, dist: Tensor, margin: float) -> Tensor:
    """Which of all_pairs' pairs are active: active_pairs' rule as a mask."""
    i, j, same = pairs
    return _is_active(same, _lookup(dist, i, j), margin)


def _is_active(same: Tensor, d: Tensor, margin: float) -> Tensor:
    return torch.where(same, d > 0, d < margin)


def _lookup(matrix: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """matrix[i, j] through a flat index_select (much cheaper than advanced indexing)."""
    return matrix.reshape(-1).index_select(0, i * matrix.shape[1] + j)


def cap_tuples(tuples: Tuples, max_tuples: int | None, generator: torch.Generator) -> Tuples:
    """A uniform subsample without replacement of at most max_tuples (kept in order)."""
    count = len(tuples[0])
    if max_tuples is None or count <= max_tuples:
        return tuples
    # Drawn where the generator lives: the device's own generator when batches are drawn there.
    keep = (
        torch.randperm(count, generator=generator, device=generator.device)[:max_tuples]
        .sort()
        .values
    )
    keep = keep.to(tuples[0].device)
    return tuple(t.index_select(0, keep) for t in tuples)


def cap_mask(keep: Tensor, max_tuples: int | None, generator: torch.Generator) -> Tensor:
    """cap_tuples for a mask, in a fixed shape (no count read back): the kept entries with the
    max_tuples smallest uniform draws stay, which is a uniform subsample without replacement."""
    if max_tuples is None or keep.numel() <= max_tuples:
        return keep
    draws = torch.rand(keep.shape, generator=generator, device=generator.device).to(keep.device)
    # kept draws are < 1
    chosen = torch.where(keep, draws, 2.0).topk(max_tuples, largest=False).indices
    return torch.zeros_like(keep).index_fill_(0, chosen, True) & keep


def distance_matrix(embeddings: Tensor) -> Tensor:
    """Exact Euclidean distances, without grad: mining only compares them.

    The matmul shortcut of torch.cdist can put d(a, a) above zero, which would misplace
    semi-hard boundaries; the broadcast difference is exact and cheap at batch sizes.
    """
    with torch.no_grad():
        z = embeddings.detach()
        return (z[:, None, :] - z[None, :, :]).pow(2).sum(-1).sqrt()


def mine(
    labels: Tensor,
    embeddings: Tensor,
    constraint: str,
    mining: str,
    margin: float,
    max_tuples: int | None,
    generator: torch.Generator,
    labels_key: bytes | None = None,
    masked: bool | None = None,
) -> Mined:
    """The trainer's one entry point.

    pairwise -> (i, j, same) for `contrastive_loss`; triplet -> (a, p, n) for `triplet_loss`.
    mining "all" takes every valid tuple, "semihard" the semi-hard triplets or active pairs;
    then at most max_tuples are kept, uniformly. `labels_key` as all_pairs' `key`. `masked`:
    semi-hard mining's form (see the module's docstring); None chooses by the device: selected
    on the CPU, where it is cheaper, masked elsewhere.
    """
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
    if mining not in MINING:
        raise ValueError(f"mining must be one of {MINING}, got {mining!r}")
    pairwise = constraint == "pairwise"
    if masked is None:
        masked = embeddings.device.type != "cpu"
    if mining == "semihard" and not masked:
        tuples = (active_pairs if pairwise else semihard_triplets)(
            labels, distance_matrix(embeddings), margin
        )
        return Mined(cap_tuples(tuples, max_tuples, generator))
    candidates = all_pairs(labels, labels_key) if pairwise else all_triplets(labels, labels_key)
    if mining == "all":
        return Mined(cap_tuples(candidates, max_tuples, generator))
    keep = (active_pair_mask if pairwise else semihard_mask)(
        candidates, distance_matrix(embeddings), margin
    )
    return Mined(candidates, cap_mask(keep, max_tuples, generator))
