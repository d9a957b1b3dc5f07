"""The loss terms: pure functions of tensors, each a 0-dim tensor.

Metric losses take the embeddings and index tensors from `tuner.trainer.miners`, average over
the tuples (or, given a `keep` mask, over the tuples it marks), and return a zero that still
depends on the embeddings when there are none, so such a batch needs no special case.
batch_all_triplet_loss is the exception: it takes the labels, and sums over every valid triplet
without listing them (the trainer's path for `mining: all` without a cap).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Inside the square root: d/dx sqrt(x) is infinite at 0, and coincident embeddings
# (d = 0) are common early in training. 1e-12 moves a distance by at most 1e-6.
SQRT_EPS = 1e-12


def squared_distances(z: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """||z[i] - z[j]||^2 per pair, exact (no |x|^2 + |y|^2 - 2xy cancellation).

    When the pairs outnumber half the batch's B^2 (triplets), the B x B matrix is
    computed once and looked up, instead of gathering one difference per pair.
    """
    if i.numel() > z.shape[0] ** 2 // 2:
        return _lookup(squared_distance_matrix(z), i, j)
    return (z.index_select(0, i) - z.index_select(0, j)).pow(2).sum(-1)


def squared_distance_matrix(z: Tensor) -> Tensor:
    return (z[:, None, :] - z[None, :, :]).pow(2).sum(-1)


def _lookup(matrix: Tensor, i: Tensor, j: Tensor) -> Tensor:
    # A flat index_select: forward and backward both far cheaper than matrix[i, j].
    return matrix.reshape(-1).index_select(0, i * matrix.shape[1] + j)


def distances(z: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """||z[i] - z[j]|| per pair, with a finite gradient at d = 0."""
    return torch.sqrt(squared_distances(z, i, j) + SQRT_EPS)


def _empty_loss(z: Tensor) -> Tensor:
    # Zero, but in the graph: backward() and optimizers treat it like any other loss.
    return z.sum() * 0.0


def _mean(per_tuple: Tensor, keep: Tensor | None) -> Tensor:
    if keep is None:
        return per_tuple.mean()
    # A count read back would be a host sync: divide by it on the device (0 kept: 0 / 1).
    return torch.where(keep, per_tuple, 0.0).sum() / keep.sum().clamp(min=1)


def contrastive_loss(
    z: Tensor, i: Tensor, j: Tensor, same: Tensor, margin: float, keep: Tensor | None = None
) -> Tensor:
    """Mean over pairs (those `keep` marks) of d^2 (same label) or relu(margin - d)^2 (different
    labels)."""
    if i.numel() == 0:
        return _empty_loss(z)
    d2 = squared_distances(z, i, j)
    # d^2 straight for positives: no sqrt, so no gradient issue there at all.
    negative = torch.relu(margin - torch.sqrt(d2 + SQRT_EPS)).pow(2)
    return _mean(torch.where(same, d2, negative), keep)


def triplet_loss(
    z: Tensor, a: Tensor, p: Tensor, n: Tensor, margin: float, keep: Tensor | None = None
) -> Tensor:
    """Mean over triplets (those `keep` marks) of relu(d(a, p) - d(a, n) + margin)."""
    if a.numel() == 0:
        return _empty_loss(z)
    if 2 * a.numel() > z.shape[0] ** 2:
        # Many triplets over few points: one distance matrix serves both terms.
        d = torch.sqrt(squared_distance_matrix(z) + SQRT_EPS)
        d_ap, d_an = _lookup(d, a, p), _lookup(d, a, n)
    else:
        d_ap, d_an = distances(z, a, p), distances(z, a, n)
    return _mean(torch.relu(d_ap - d_an + margin), keep)


def batch_all_triplet_loss(z: Tensor, labels: Tensor, margin: float) -> Tensor:
    """triplet_loss over every valid triplet of the batch, without enumerating them.

    Per anchor a and positive p, the sum over a's negatives n of relu(d(a,p) - d(a,n) + margin)
    is k * (d(a,p) + margin) minus the sum of a's k nearest negative distances, where k counts
    the negatives closer than d(a,p) + margin. One sort of each anchor's negative distances, a
    prefix sum and a searchsorted give every (a, p) term at once: O(B^2 log B) work instead of
    one gather per triplet (about B^3 / n_classes), and no host sync. The gradient is the
    enumeration's (each d(a,p) gets k, each d(a,n) minus the number of (a,p) reaching it); the
    value agrees up to float rounding.
    """
    d = torch.sqrt(squared_distance_matrix(z) + SQRT_EPS)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    negative = ~same
    # Each row: the anchor's negative distances, ascending; the others sort last as +inf and
    # are never reached, since the threshold below is finite.
    nearest = torch.where(negative, d, torch.inf).sort(dim=1).values.double()
    # Float64: k * threshold and the prefix sum are close, and their difference is the value.
    prefix = torch.cat([nearest.new_zeros(len(labels), 1), nearest.cumsum(1)], 1)
    threshold = d.double() + margin
    k = torch.searchsorted(nearest.detach(), threshold.detach())  # negatives below threshold
    hinge_sums = k * threshold - prefix.gather(1, k)
    triplets = (positive.sum(1) * negative.sum(1)).sum()
    total = torch.where(positive, hinge_sums, 0.0).sum()
    return (total / triplets.clamp(min=1)).to(z.dtype)


def reconstruction_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error over all elements."""
    return torch.mean((x_hat - x) ** 2)


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)): summed over latent dims, averaged over the batch."""
    per_sample = -0.5 * torch.sum(1.0 + logvar - mean.pow(2) - logvar.exp(), dim=-1)
    return per_sample.mean()


def total_loss(metric: Tensor, recon: Tensor, kl: Tensor | None, mu: float, beta: float) -> Tensor:
    """mu * metric + (1 - mu) * (recon + beta * kl); kl None (an AE) counts as 0.

    A term whose weight is exactly 0 is left out rather than multiplied by 0, so it gets
    no gradient at all and a non-finite value there (a diverging unused term) cannot
    turn the total into NaN.
    """
    terms: list[Tensor] = []
    if mu != 0.0:
        terms.append(mu * metric)
    if mu != 1.0:
        generative = recon
        if kl is not None and beta != 0.0:
            generative = generative + beta * kl
        terms.append((1.0 - mu) * generative)
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]
