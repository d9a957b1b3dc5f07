"""Losses recomputed by hand for explicit points (3-4-5 triangles and friends)."""

import math

import pytest
import torch

from tuner.trainer.losses import (
    batch_all_triplet_loss,
    contrastive_loss,
    distances,
    kl_divergence,
    reconstruction_loss,
    total_loss,
    triplet_loss,
)
from tuner.trainer.miners import all_pairs, all_triplets, enumerate_triplets


def _long(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


# Point 0 at the origin, point 1 at distance 5 (3-4-5), point 2 at distance 1 from 0.
POINTS = [[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]


def test_contrastive_loss_by_hand() -> None:
    z = torch.tensor(POINTS)
    i, j, same = _long(0, 0, 1), _long(1, 2, 2), torch.tensor([True, False, False])
    # (0,1) same: d^2 = 25; (0,2) different, d = 1: (2 - 1)^2 = 1; (1,2) different,
    # d = sqrt(18) > 2: 0.
    loss = contrastive_loss(z, i, j, same, margin=2.0)
    assert loss.item() == pytest.approx((25.0 + 1.0 + 0.0) / 3, rel=1e-6)


def test_triplet_loss_by_hand() -> None:
    z = torch.tensor(POINTS)
    # (a=0, p=2, n=1): relu(1 - 5 + 1) = 0;  (a=0, p=1, n=2): relu(5 - 1 + 1) = 5.
    loss = triplet_loss(z, _long(0, 0), _long(2, 1), _long(1, 2), margin=1.0)
    assert loss.item() == pytest.approx(2.5, rel=1e-6)


@pytest.mark.parametrize("n_tuples", [3, None])  # a few: per-tuple gather; all: distance matrix
def test_metric_losses_match_a_per_tuple_python_computation(n_tuples: int | None) -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(9, 3, generator=gen)
    labels = _long(0, 0, 0, 1, 1, 1, 2, 2, 2)
    points = z.tolist()
    a, p, n = (t[:n_tuples] for t in all_triplets(labels))
    expected = sum(
        max(math.dist(points[x], points[y]) - math.dist(points[x], points[w]) + 0.7, 0.0)
        for x, y, w in zip(a.tolist(), p.tolist(), n.tolist())
    ) / len(a)
    assert triplet_loss(z, a, p, n, 0.7).item() == pytest.approx(expected, rel=1e-5)

    i, j, same = (t[:n_tuples] for t in all_pairs(labels))
    terms = [
        math.dist(points[x], points[y]) ** 2
        if s
        else max(1.5 - math.dist(points[x], points[y]), 0.0) ** 2
        for x, y, s in zip(i.tolist(), j.tolist(), same.tolist())
    ]
    assert contrastive_loss(z, i, j, same, 1.5).item() == pytest.approx(
        sum(terms) / len(terms), rel=1e-5
    )


@pytest.mark.parametrize(
    "labels",
    [
        [0, 0, 0, 1, 1, 1, 2, 2, 2],  # the 3-class batch above
        [3, 1, 3, 0, 1, 1, 3, 0, 2, 2, 1, 0, 3, 2],  # unsorted, uneven classes, a gap in the ids
        [5, 5, 5, 5, 5, 5, 5, 7],  # one big class: each anchor has many positives, few negatives
        [0, 1, 1, 2, 3, 4],  # most anchors have no positive
    ],
)
@pytest.mark.parametrize("margin", [0.3, 1.0, 4.0])  # few, some, or every triplet inside the margin
def test_the_batch_all_triplet_loss_is_the_mean_over_every_enumerated_triplet(
    labels: list[int], margin: float
) -> None:
    y = torch.tensor(labels)
    gen = torch.Generator().manual_seed(len(labels))
    z_enumerated = torch.randn(len(labels), 3, generator=gen, requires_grad=True)
    z_closed = z_enumerated.detach().clone().requires_grad_(True)
    enumerated = triplet_loss(z_enumerated, *enumerate_triplets(y), margin)
    closed = batch_all_triplet_loss(z_closed, y, margin)
    enumerated.backward()
    closed.backward()
    assert 0.0 < enumerated.item() and closed.dtype == torch.float32
    assert closed.item() == pytest.approx(enumerated.item(), rel=1e-6)
    assert torch.allclose(z_closed.grad, z_enumerated.grad, rtol=1e-5, atol=1e-7)


def test_the_batch_all_triplet_loss_without_a_triplet_is_a_zero_in_the_graph() -> None:
    for labels in ([4, 4, 4], [0, 1, 2, 3]):  # no negative; no positive
        z = torch.randn(len(labels), 2, requires_grad=True)
        loss = batch_all_triplet_loss(z, torch.tensor(labels), 1.0)
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
        assert torch.equal(z.grad, torch.zeros_like(z))


def test_empty_tuples_give_zero_that_backpropagates() -> None:
    z = torch.randn(4, 2, requires_grad=True)
    empty = torch.empty(0, dtype=torch.long)
    for loss in (
        contrastive_loss(z, empty, empty, torch.empty(0, dtype=torch.bool), 1.0),
        triplet_loss(z, empty, empty, empty, 1.0),
    ):
        assert loss.dim() == 0 and loss.item() == 0.0
        assert loss.requires_grad
        loss.backward()
        assert torch.equal(z.grad, torch.zeros_like(z))
        z.grad = None


def test_gradients_finite_when_embeddings_coincide() -> None:
    # Points 0 and 1 coincide (d = 0): sqrt'(0) would be infinite without the epsilon.
    z = torch.tensor([[1.0, 2.0], [1.0, 2.0], [4.0, 6.0]], requires_grad=True)
    for same in (True, False):
        loss = contrastive_loss(z, _long(0), _long(1), torch.tensor([same]), margin=1.0)
        loss.backward()
        assert torch.isfinite(z.grad).all()
        z.grad = None
    # Negative coincides with the anchor, and positive with the anchor.
    for a, p, n in ((0, 2, 1), (0, 1, 2)):
        loss = triplet_loss(z, _long(a), _long(p), _long(n), margin=1.0)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
        z.grad = None
    assert distances(z, _long(0), _long(1)).item() < 1e-5


def test_negative_pair_inside_margin_is_pushed_apart() -> None:
    z = torch.tensor([[0.0, 0.0], [0.0, 1.0]], requires_grad=True)
    contrastive_loss(z, _long(0), _long(1), torch.tensor([False]), margin=2.0).backward()
    # d(loss)/d(z1) = -2 (m - d) * (z1 - z0) / d = (0, -2): descent moves z1 away from z0.
    assert z.grad[1].tolist() == pytest.approx([0.0, -2.0], abs=1e-5)
    assert z.grad[0].tolist() == pytest.approx([0.0, 2.0], abs=1e-5)


def test_reconstruction_loss_is_elementwise_mse() -> None:
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    x_hat = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    assert reconstruction_loss(x_hat, x).item() == pytest.approx((1 + 0 + 0 + 9) / 4)


def test_kl_divergence_known_values() -> None:
    zeros = torch.zeros(3, 4)
    assert kl_divergence(zeros, zeros).item() == 0.0
    # Row 0: 0.5 * (var + mean^2 - 1 - logvar) per dim:
    # dim 0 (mean 1, var 2): 0.5 * (2 + 1 - 1 - ln 2); dim 1 (mean 2, var 1): 0.5 * 4 = 2.
    # Row 1 is the prior: 0. The batch mean halves the sum.
    mean = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    logvar = torch.tensor([[math.log(2.0), 0.0], [0.0, 0.0]])
    expected = (0.5 * (2.0 - math.log(2.0)) + 2.0) / 2
    assert kl_divergence(mean, logvar).item() == pytest.approx(expected, rel=1e-6)


def _leaves() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(2.0, requires_grad=True),
        torch.tensor(3.0, requires_grad=True),
        torch.tensor(5.0, requires_grad=True),
    )


def test_total_loss_weights() -> None:
    metric, recon, kl = _leaves()
    loss = total_loss(metric, recon, kl, mu=0.25, beta=0.5)
    assert loss.item() == pytest.approx(0.25 * 2 + 0.75 * (3 + 0.5 * 5))
    assert total_loss(metric, recon, None, mu=0.25, beta=0.5).item() == pytest.approx(
        0.5 + 0.75 * 3
    )


def test_total_loss_at_mu_one_ignores_reconstruction() -> None:
    metric, recon, kl = _leaves()
    loss = total_loss(metric, recon, kl, mu=1.0, beta=1.0)
    loss.backward()
    assert loss.item() == 2.0
    assert metric.grad.item() == 1.0
    assert recon.grad is None and kl.grad is None
    # An unused term that blew up does not poison the total.
    assert torch.isfinite(total_loss(metric, torch.tensor(float("nan")), kl, mu=1.0, beta=1.0))


def test_total_loss_at_mu_zero_ignores_metric() -> None:
    metric, recon, kl = _leaves()
    loss = total_loss(metric, recon, kl, mu=0.0, beta=2.0)
    loss.backward()
    assert loss.item() == 3.0 + 2.0 * 5.0
    assert metric.grad is None
    assert recon.grad.item() == 1.0 and kl.grad.item() == 2.0
