"""Class-stratified batches of indices, drawn on the host (CPU) or on the model's device (GPU).

Every class gets batch_size // n_classes samples; the remainder goes, one each, to randomly
chosen classes. Within a class the samples are distinct when the class is large enough; a
smaller class is taken whole and topped up with replacement. A batch comes grouped by class,
in class order, so its label sequence follows from the per-class counts alone: the counts are
drawn on the host, and the mining memo is keyed by that sequence without reading the device.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class StratifiedBatchSampler:
    """Draws class-stratified batches of indices into a label array.

    `generator` (a CPU generator) draws the per-class counts; on the CPU it draws the samples
    too, one class at a time, as it always has (same seed, same batches). Given a non-CPU
    `device`, the samples are drawn there with `device_generator`, every class at once, so a
    step needs no copy to the device and no host sync. The generators are the only state, so
    checkpointing them checkpoints the sampler.
    """

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
        device_generator: torch.Generator | None = None,
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.classes = np.unique(labels)
        # Precomputed once: each class's indices, so a batch costs a few small draws.
        self._class_indices = [
            torch.from_numpy(np.flatnonzero(labels == c)).long() for c in self.classes
        ]
        self.batch_size = batch_size
        self.generator = generator
        self._base, self._remainder = divmod(batch_size, len(self.classes))
        self.device = torch.device(device)
        self.device_generator = device_generator
        self.last_labels = np.empty(0, dtype=labels.dtype)  # the label sequence of the last batch
        if self.on_device:
            self._draw_on_device = _DeviceDraw(
                self._class_indices,
                self._base + (self._remainder > 0),
                self.device,
                device_generator,
            )

    @property
    def n_classes(self) -> int:
        return len(self._class_indices)

    @property
    def on_device(self) -> bool:
        """Whether the samples are drawn on the device (with `device_generator`)."""
        return self.device_generator is not None

    def class_counts(self) -> list[int]:
        """How many samples of each class the next batch takes (draws from the generator)."""
        counts = torch.full((self.n_classes,), self._base, dtype=torch.long)
        if self._remainder:
            lucky = torch.randperm(self.n_classes, generator=self.generator)[: self._remainder]
            counts[lucky] += 1
        return counts.tolist()

    def next_batch(self) -> Tensor:
        """The indices of the next batch, on `device`; `last_labels` holds their labels (host)."""
        counts = self.class_counts()
        self.last_labels = np.repeat(self.classes, counts)
        if self.on_device:
            return self._draw_on_device(tuple(counts))
        parts = []
        for indices, k in zip(self._class_indices, counts):
            if k:
                parts.append(indices[_draw(len(indices), k, self.generator)])
        return torch.cat(parts).to(self.device)


def _draw(n: int, k: int, generator: torch.Generator) -> Tensor:
    """k positions in range(n): distinct when k <= n, else all n plus k - n with replacement."""
    if k <= n:
        return torch.randperm(n, generator=generator)[:k]
    extra = torch.randint(n, (k - n,), generator=generator)
    return torch.cat([torch.randperm(n, generator=generator), extra])


class _DeviceDraw:
    """Every class's samples in a few tensor ops on the device: random keys over a padded
    (classes x largest class) table of indices, sorted per row, give each class a random
    order; a class smaller than its count is taken whole and topped up with replacement.
    Which of the `width` columns a batch keeps depends on the host-drawn counts only: the
    flat positions are built once per counts pattern and stay on the device."""

    def __init__(
        self,
        class_indices: list[Tensor],
        width: int,
        device: torch.device,
        generator: torch.Generator,
    ) -> None:
        sizes = torch.tensor([len(i) for i in class_indices])
        table = torch.zeros(len(class_indices), max(int(sizes.max()), width), dtype=torch.long)
        for row, indices in enumerate(class_indices):
            table[row, : len(indices)] = indices
        self.table, self.sizes = table.to(device), sizes.to(device)
        self.padding = (torch.arange(table.shape[1])[None, :] >= sizes[:, None]).to(device)
        self.columns = torch.arange(width, device=device)[None, :]
        self.width, self.device, self.generator = width, device, generator
        self._keep: dict[tuple[int, ...], Tensor] = {}

    def __call__(self, counts: tuple[int, ...]) -> Tensor:
        keys = torch.rand(self.table.shape, generator=self.generator, device=self.device)
        order = keys.masked_fill_(self.padding, 2.0).argsort(dim=1)[
            :, : self.width
        ]  # padding sorts last
        extra = (
            torch.rand(order.shape, generator=self.generator, device=self.device)
            * self.sizes[:, None]
        ).long()  # with replacement, for columns past a class's size
        position = torch.where(self.columns < self.sizes[:, None], order, extra)
        return self.table.gather(1, position).reshape(-1).index_select(0, self._positions(counts))

    def _positions(self, counts: tuple[int, ...]) -> Tensor:
        keep = self._keep.get(counts)
        if keep is None:  # a few dozen patterns at most: C(n_classes, remainder)
            flat = [row * self.width + col for row, k in enumerate(counts) for col in range(k)]
            keep = self._keep[counts] = torch.tensor(flat, device=self.device)
        return keep
