"""Class-stratified batches, and the pairs or triplets mined from one batch's labels.

Mining is kept apart from the losses (as in pytorch-metric-learning): a miner returns index
tensors, a loss consumes them. Everything here is tensor ops; the only Python loop is over
classes when drawing a batch, never over pairs or triplets.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

Tuples = tuple[Tensor, ...]

CONSTRAINTS = ("pairwise", "triplet")
MINING = ("all", "semihard")


class StratifiedBatchSampler:
    """Draws class-stratified batches of indices into a label array.

    Every class gets batch_size // n_classes samples; the remainder goes, one each, to
    randomly chosen classes. Within a class the samples are distinct when the class is
    large enough; a smaller class is taken whole and topped up with replacement. The
    generator is the only state, so checkpointing it checkpoints the sampler.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, generator: torch.Generator) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.classes = np.unique(labels)
        # Precomputed once: each class's indices, so a batch costs a few small draws.
        self._class_indices = [torch.from_numpy(np.flatnonzero(labels == c)).long() for c in self.classes]
        self.batch_size = batch_size
        self.generator = generator
        self._base, self._remainder = divmod(batch_size, len(self.classes))

    @property
    def n_classes(self) -> int:
        return len(self._class_indices)

    def class_counts(self) -> list[int]:
        """How many samples of each class the next batch takes (draws from the generator)."""
        counts = torch.full((self.n_classes,), self._base, dtype=torch.long)
        if self._remainder:
            lucky = torch.randperm(self.n_classes, generator=self.generator)[: self._remainder]
            counts[lucky] += 1
        return counts.tolist()

    def next_batch(self) -> Tensor:
        parts = []
        for indices, k in zip(self._class_indices, self.class_counts()):
            if k:
                parts.append(indices[_draw(len(indices), k, self.generator)])
        return torch.cat(parts)


def _draw(n: int, k: int, generator: torch.Generator) -> Tensor:
    """k positions in range(n): distinct when k <= n, else all n plus k - n with replacement."""
    if k <= n:
        return torch.randperm(n, generator=generator)[:k]
    extra = torch.randint(n, (k - n,), generator=generator)
    return torch.cat([torch.randperm(n, generator=generator), extra])


# ----------------------------------------------------------------------------------
# Miners: labels (and, for semi-hard mining, distances) in, index tensors out.

def all_pairs(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every unordered pair i < j of the batch, and whether the two share a label."""
    return _memo(_all_pairs, labels)


def all_triplets(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every (anchor, positive, negative) with a != p, y[a] == y[p], y[n] != y[a].

    Triplets come out sorted by (a, p, n).
    """
    return _memo(_all_triplets, labels)


def _all_pairs(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
    return i, j, labels.index_select(0, i) == labels.index_select(0, j)


def _all_triplets(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    # Ordered positive pairs x negatives rather than a full B^3 mask: the positive pairs
    # are few (about B^2 / n_classes), so the mask that nonzero() scans is small.
    same, pos_a, pos_p = _positive_pairs(labels)
    return _expand(pos_a, pos_p, ~same.index_select(0, pos_a))


_MEMO: OrderedDict[tuple[Any, ...], tuple[Tensor, Tensor, Tensor]] = OrderedDict()
_MEMO_SIZE = 512


def _memo(build: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]], labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mined index sets depend only on the batch's label sequence, and stratified batches
    repeat a few hundred sequences (their labels come grouped by class, the counts vary
    only by where the remainder lands): remember the last few hundred. Callers never
    modify the returned tensors in place (cap_tuples and the losses index into copies).
    """
    key = (build.__name__, labels.device, labels.dtype, labels.cpu().numpy().tobytes())
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
    keep = ~same.index_select(0, pos_a) & (d_ap < d_an) & (d_an < d_ap + margin)
    return _expand(pos_a, pos_p, keep)


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
    keep = torch.where(same, dist > 0, dist < margin).triu_(diagonal=1)
    i, j = torch.nonzero(keep, as_tuple=True)  # row-major: the order of all_pairs
    return i, j, _lookup(same, i, j)


def _lookup(matrix: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """matrix[i, j] through a flat index_select (much cheaper than advanced indexing)."""
    return matrix.reshape(-1).index_select(0, i * matrix.shape[1] + j)


def cap_tuples(tuples: Tuples, max_tuples: int | None, generator: torch.Generator) -> Tuples:
    """A uniform subsample without replacement of at most max_tuples (kept in order)."""
    count = len(tuples[0])
    if max_tuples is None or count <= max_tuples:
        return tuples
    keep = torch.randperm(count, generator=generator)[:max_tuples].sort().values
    keep = keep.to(tuples[0].device)
    return tuple(t.index_select(0, keep) for t in tuples)


def distance_matrix(embeddings: Tensor) -> Tensor:
    """Exact Euclidean distances, without grad: mining only compares them.

    The matmul shortcut of torch.cdist can put d(a, a) above zero, which would misplace
    semi-hard boundaries; the broadcast difference is exact and cheap at batch sizes.
    """
    with torch.no_grad():
        z = embeddings.detach()
        return (z[:, None, :] - z[None, :, :]).pow(2).sum(-1).sqrt()


def mine(labels: Tensor, embeddings: Tensor, constraint: str, mining: str, margin: float,
         max_tuples: int | None, generator: torch.Generator) -> Tuples:
    """The trainer's one entry point.

    pairwise -> (i, j, same) for `contrastive_loss`; triplet -> (a, p, n) for `triplet_loss`.
    mining "all" takes every valid tuple, "semihard" the semi-hard triplets or active pairs;
    then at most max_tuples are kept, uniformly.
    """
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
    if mining not in MINING:
        raise ValueError(f"mining must be one of {MINING}, got {mining!r}")
    if mining == "all":
        tuples = all_pairs(labels) if constraint == "pairwise" else all_triplets(labels)
    else:
        dist = distance_matrix(embeddings)
        miner = active_pairs if constraint == "pairwise" else semihard_triplets
        tuples = miner(labels, dist, margin)
    return cap_tuples(tuples, max_tuples, generator)
