"""Miners against the plain-loop enumeration of benchmarks/mining_reference.py, and batches."""

import importlib.util
from collections import Counter

import numpy as np
import pytest
import torch

from tests.paths import REPO_ROOT
from tuner.core.config import TrialConfig
from tuner.trainer.losses import contrastive_loss, triplet_loss
from tuner.trainer.miners import (
    active_pairs,
    all_pairs,
    all_triplets,
    cap_mask,
    cap_tuples,
    distance_matrix,
    mine,
    semihard_triplets,
)
from tuner.trainer.samplers import StratifiedBatchSampler
from tuner.trainer.train import metric_loss

_spec = importlib.util.spec_from_file_location(
    "mining_reference", REPO_ROOT / "benchmarks" / "mining_reference.py"
)
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

LABEL_VECTORS = [
    [0, 1],
    [3, 3, 3],  # one class: pairs, but no triplet
    [0, 1, 2, 3],  # all distinct: no positive pair, no triplet
    [0, 0, 1, 1, 2],  # a singleton class
    [2, 0, 1, 0, 2, 2, 1, 0, 7],  # unsorted, non-contiguous label values
    np.random.default_rng(0).integers(0, 5, 40).tolist(),
]


def _as_set(tensors: tuple[torch.Tensor, ...]) -> set[tuple]:
    return set(zip(*(t.tolist() for t in tensors)))


@pytest.mark.parametrize("labels", LABEL_VECTORS)
def test_all_pairs_is_exactly_the_loop_enumeration(labels: list[int]) -> None:
    i, j, same = all_pairs(torch.tensor(labels))
    expected = reference.python_loop_pairs(labels)
    assert len(i) == len(expected) == len(_as_set((i, j, same)))  # no duplicates
    assert _as_set((i, j, same)) == set(expected)


@pytest.mark.parametrize("labels", LABEL_VECTORS)
def test_all_triplets_is_exactly_the_loop_enumeration(labels: list[int]) -> None:
    a, p, n = all_triplets(torch.tensor(labels))
    expected = reference.python_loop_triplets(labels)
    assert len(a) == len(expected) == len(_as_set((a, p, n)))
    assert _as_set((a, p, n)) == set(expected)
    assert a.dtype == p.dtype == n.dtype == torch.long


def test_loop_reference_counts_match_the_closed_form() -> None:
    # Guards the oracle itself: class sizes 3, 2, 1 of 6 give sum m (m - 1) (6 - m) triplets.
    labels = [0, 0, 0, 1, 1, 2]
    assert len(reference.python_loop_triplets(labels)) == 3 * 2 * 3 + 2 * 1 * 4 + 0
    assert len(reference.python_loop_pairs(labels)) == 15


# 1-D points: 0 and 1 in class 0, 1.5 and 3 in class 1; every distance is exact in float.
SEMIHARD_Z = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
SEMIHARD_Y = torch.tensor([0, 0, 1, 1])


def test_semihard_triplets_selects_exactly_the_semihard_ones() -> None:
    dist = distance_matrix(SEMIHARD_Z)
    # d(a,p) < d(a,n) < d(a,p) + 1, strictly. Rejected: (1,0,2) hard (0.5 < 1);
    # (1,0,3) 2 is not < 1 + 1; (2,3,0) 1.5 is not < 1.5; (2,3,1) hard; (3,2,0) 3 >= 2.5;
    # (0,1,3) 3 >= 2.
    got = _as_set(semihard_triplets(SEMIHARD_Y, dist, margin=1.0))
    assert got == {(0, 1, 2), (3, 2, 1)}


def test_semihard_triplets_empty_when_none_exist() -> None:
    z = torch.tensor([[0.0], [0.1], [50.0], [50.1]])  # negatives far beyond the margin
    a, p, n = semihard_triplets(SEMIHARD_Y, distance_matrix(z), margin=1.0)
    assert a.numel() == p.numel() == n.numel() == 0 and a.dtype == torch.long


def test_active_pairs_keep_learnable_pairs_only() -> None:
    z = torch.tensor([[0.0], [0.0], [0.5], [2.0], [5.0]])
    labels = torch.tensor([0, 0, 1, 0, 1])
    got = _as_set(active_pairs(labels, distance_matrix(z), margin=1.0))
    # Positives with d > 0: (0,3), (1,3), (2,4); (0,1) coincide. Negatives with d < 1:
    # (0,2), (1,2); the others are at least 1.5 apart.
    assert got == {(0, 3, True), (1, 3, True), (2, 4, True), (0, 2, False), (1, 2, False)}


def test_cap_tuples_subsamples_uniquely_and_deterministically() -> None:
    tuples = all_triplets(torch.tensor([0, 0, 0, 1, 1, 1, 2, 2]))
    full = _as_set(tuples)
    first = cap_tuples(tuples, 10, torch.Generator().manual_seed(1))
    again = cap_tuples(tuples, 10, torch.Generator().manual_seed(1))
    other = cap_tuples(tuples, 10, torch.Generator().manual_seed(2))
    assert len(first[0]) == 10 and len(_as_set(first)) == 10 and _as_set(first) <= full
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert _as_set(first) != _as_set(other)
    assert cap_tuples(tuples, None, torch.Generator()) is tuples
    assert cap_tuples(tuples, len(full), torch.Generator()) is tuples


def test_mine_dispatches_and_caps() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    z = torch.randn(6, 3, generator=gen)
    assert _as_set(mine(labels, z, "pairwise", "all", 1.0, None, gen).tuples) == _as_set(
        all_pairs(labels)
    )
    assert _as_set(mine(labels, z, "triplet", "all", 1.0, None, gen).tuples) == _as_set(
        all_triplets(labels)
    )
    semihard = mine(SEMIHARD_Y, SEMIHARD_Z, "triplet", "semihard", 1.0, None, gen)
    assert semihard.keep is None and _as_set(semihard.tuples) == {(0, 1, 2), (3, 2, 1)}
    assert len(mine(labels, z, "triplet", "all", 1.0, 5, gen).tuples[0]) == 5
    with pytest.raises(ValueError, match="constraint"):
        mine(labels, z, "quadruplet", "all", 1.0, None, gen)


def _labels_with_unequal_classes() -> np.ndarray:
    sizes = [30, 12, 8, 50, 9, 10, 11, 13, 7, 20]
    return np.random.default_rng(0).permutation(np.repeat(np.arange(10), sizes))


def test_stratified_batches_hold_every_class_at_least_twice() -> None:
    labels = _labels_with_unequal_classes()
    sampler = StratifiedBatchSampler(labels, 25, torch.Generator().manual_seed(0))
    got_extra = set()
    for _ in range(50):
        batch = sampler.next_batch()
        assert batch.dtype == torch.long and len(batch) == 25
        assert len(set(batch.tolist())) == 25  # every class is large enough: no repeats
        counts = Counter(labels[batch.numpy()].tolist())
        assert sorted(counts) == list(range(10))
        assert sorted(counts.values()) == [2] * 5 + [3] * 5  # 25 = 10 * 2 + 5 extra
        got_extra |= {c for c, k in counts.items() if k == 3}
    assert got_extra == set(range(10))  # the remainder goes to randomly chosen classes


def test_stratified_batches_are_deterministic_per_seed() -> None:
    labels = _labels_with_unequal_classes()

    def draw(seed: int) -> list[list[int]]:
        sampler = StratifiedBatchSampler(labels, 32, torch.Generator().manual_seed(seed))
        return [sampler.next_batch().tolist() for _ in range(3)]

    assert draw(4) == draw(4)
    assert draw(4) != draw(5)
    assert draw(4)[0] != draw(4)[1]


def test_small_class_is_taken_whole_then_with_replacement() -> None:
    labels = np.array([0] * 40 + [1] * 2)
    sampler = StratifiedBatchSampler(labels, 10, torch.Generator().manual_seed(0))
    batch = sampler.next_batch().tolist()
    small = [i for i in batch if labels[i] == 1]
    assert len(small) == 5 and set(small) == {40, 41}
    big = [i for i in batch if labels[i] == 0]
    assert len(big) == 5 and len(set(big)) == 5


def batch_and_embeddings(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified-looking batch (10 classes, 128 points) and embeddings spread so that some,
    not all, tuples are semi-hard / active (test_gpu.py uses it too)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(13)[:128][torch.randperm(128, generator=gen)]
    return labels, torch.randn(128, 4, generator=gen) * 0.6


@pytest.mark.parametrize("constraint", ["pairwise", "triplet"])
def test_masked_semihard_mining_matches_the_selected_form(constraint: str) -> None:
    """The GPU's form (every candidate, a mask) against the CPU's (nonzero): the same tuples, the
    same loss and the same gradient, computed here on the CPU."""
    loss = contrastive_loss if constraint == "pairwise" else triplet_loss
    for seed in range(3):
        labels, z0 = batch_and_embeddings(seed)
        results = []
        for masked in (False, True):
            z = z0.clone().requires_grad_()
            mined = mine(
                labels, z, constraint, "semihard", 1.0, None, torch.Generator(), masked=masked
            )
            value = loss(z, *mined.tuples, 1.0, keep=mined.keep)
            value.backward()
            results.append((mined, value.detach(), z.grad))
        (selected, v_sel, g_sel), (masked_mined, v_mask, g_mask) = results
        assert masked_mined.keep is not None and selected.keep is None
        kept = _as_set(masked_mined.selected())
        assert kept == _as_set(selected.tuples) and 0 < len(kept) < len(masked_mined.tuples[0])
        assert torch.allclose(v_mask, v_sel, rtol=1e-5) and torch.allclose(
            g_mask, g_sel, rtol=1e-4, atol=1e-7
        )
        capped = mine(
            labels,
            z0,
            constraint,
            "semihard",
            1.0,
            10,
            torch.Generator().manual_seed(seed),
            masked=True,
        )
        assert len(capped.tuples[0]) == len(masked_mined.tuples[0]) and int(
            capped.keep.sum()
        ) == min(10, len(kept))
        assert _as_set(capped.selected()) <= kept


@pytest.mark.parametrize("max_tuples", [None, 10**9])  # summed without enumerating; enumerated
def test_the_trainers_triplet_loss_over_every_triplet_is_the_mined_ones(
    max_tuples: int | None,
) -> None:
    labels, z0 = batch_and_embeddings(1)
    cfg = TrialConfig(constraint="triplet", mining="all", max_tuples=max_tuples, margin=0.5)
    grads = []
    for trainer in (True, False):
        z = z0.clone().requires_grad_()
        if trainer:
            value = metric_loss(cfg, z, labels, torch.Generator())
        else:
            value = triplet_loss(z, *all_triplets(labels), cfg.margin)
        value.backward()
        grads.append((value.detach(), z.grad))
    (v_trainer, g_trainer), (v_mined, g_mined) = grads
    assert v_mined.item() > 0.0 and torch.allclose(v_trainer, v_mined, rtol=1e-6)
    assert torch.allclose(g_trainer, g_mined, rtol=1e-5, atol=1e-8)


def test_a_mask_that_keeps_nothing_gives_a_zero_loss_with_a_gradient() -> None:
    labels, z0 = batch_and_embeddings(0)
    z = z0.clone().requires_grad_()
    a, p, n = all_triplets(labels)
    value = triplet_loss(z, a, p, n, 1.0, keep=torch.zeros(len(a), dtype=torch.bool))
    value.backward()
    assert value.item() == 0.0 and z.grad is not None and not z.grad.any()


def test_cap_mask_keeps_a_uniform_subsample_of_the_kept_entries() -> None:
    keep = torch.zeros(40, dtype=torch.bool)
    keep[::2] = True  # 20 kept entries
    counts = torch.zeros(40)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2000):
        capped = cap_mask(keep, 5, gen)
        assert int(capped.sum()) == 5 and not (capped & ~keep).any()
        counts += capped
    assert counts[1::2].sum() == 0
    # each 1 in 4, +- ~4 sigma
    assert torch.allclose(counts[::2] / 2000, torch.full((20,), 5 / 20), atol=0.04)
    assert torch.equal(cap_mask(keep, 30, gen), keep)  # fewer kept than the cap: every one
    few = keep.clone()
    few[4:] = False  # 2 kept, cap 5 of 40 entries: both stay
    assert torch.equal(cap_mask(few, 5, gen), few)
    assert cap_mask(keep, None, gen) is keep and cap_mask(keep, 40, gen) is keep
