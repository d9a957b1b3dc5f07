"""Stratified batches drawn on a device (here the CPU standing in for a GPU): the same rules as
the host's draws, the labels known on the host, and the trainer's device path end to end."""

from collections import Counter

import numpy as np
import pytest
import torch

from tuner.trainer.miners import all_triplets
from tuner.trainer.samplers import StratifiedBatchSampler

SIZES = [30, 12, 8, 50, 9, 10, 11, 13, 7, 20]


def _labels() -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(10), SIZES))


def _on_device(labels: np.ndarray, batch_size: int, seed: int = 0) -> StratifiedBatchSampler:
    return StratifiedBatchSampler(
        labels,
        batch_size,
        torch.Generator().manual_seed(seed),
        "cpu",
        torch.Generator().manual_seed(seed),
    )


@pytest.mark.parametrize("device_draw", [False, True])
def test_batches_are_stratified_and_their_labels_known_on_the_host(device_draw: bool) -> None:
    labels = _labels()
    sampler = (
        _on_device(labels, 25)
        if device_draw
        else StratifiedBatchSampler(labels, 25, torch.Generator())
    )
    assert sampler.on_device == device_draw
    extra = set()
    for _ in range(50):
        batch = sampler.next_batch()
        assert batch.dtype == torch.long and len(batch) == 25 and len(set(batch.tolist())) == 25
        # grouped by class, in order
        assert np.array_equal(labels[batch.numpy()], sampler.last_labels)
        counts = Counter(sampler.last_labels.tolist())
        assert sorted(counts.values()) == [2] * 5 + [3] * 5
        extra |= {c for c, k in counts.items() if k == 3}
    assert extra == set(range(10))


def test_device_batches_are_deterministic_per_seed_and_vary() -> None:
    def draw(seed: int) -> list[list[int]]:
        sampler = _on_device(_labels(), 32, seed)
        return [sampler.next_batch().tolist() for _ in range(3)]

    assert draw(4) == draw(4) and draw(4) != draw(5) and draw(4)[0] != draw(4)[1]


def test_device_draw_takes_a_small_class_whole_then_with_replacement() -> None:
    labels = np.array([0] * 40 + [1] * 2)
    for _ in range(20):
        batch = _on_device(labels, 10, seed=_).next_batch().tolist()
        small, big = [i for i in batch if labels[i] == 1], [i for i in batch if labels[i] == 0]
        assert len(small) == 5 and set(small) == {40, 41}
        assert len(big) == 5 and len(set(big)) == 5


def test_mining_memo_keyed_by_host_bytes_matches_the_labels() -> None:
    sampler = _on_device(_labels(), 32)
    sampler.next_batch()
    labels = torch.from_numpy(sampler.last_labels)
    by_key = all_triplets(labels, sampler.last_labels.tobytes())
    assert all(torch.equal(a, b) for a, b in zip(by_key, all_triplets(labels.clone())))
