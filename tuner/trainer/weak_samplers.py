"""The batches of one trial: which rows of the training split feed the metric term, and which
feed only the reconstruction (and KL) term.

With every label (the default) a batch is StratifiedBatchSampler's, unchanged. At mu = 0 with
few labels or judgments, whose batches would otherwise overweight the few, every row is drawn
from the whole training split. With few labels
(`labels_per_class`, `labeled_fraction`) the class-stratified part is drawn from the labeled
rows only, and `unlabeled_per_batch` rows of the unlabeled rest follow it. With `constraints`
the metric part is a draw of judgments (their items, in order) and the unlabeled rows come from
the whole training split: an item no judgment names still trains the reconstruction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tuner.core.config import TrialConfig
from tuner.data.features import Judgments
from tuner.data.judgments import judgments_per_batch
from tuner.trainer.samplers import StratifiedBatchSampler


@dataclass(frozen=True)
class Batch:
    """Rows of x_train: the first `n_metric` feed the metric term (all of them feed the
    reconstruction). `labels` (host bytes in `labels_key`) label the metric rows when labels train;
    `judged` holds the judgments' tuples in batch positions when a constraints file trains."""

    idx: Tensor
    n_metric: int
    labels: Tensor | None = None
    labels_key: bytes | None = None
    judged: tuple[Tensor, ...] | None = None


def unlabeled_count(cfg: TrialConfig) -> int:
    """Unlabeled rows per batch: none at mu = 1, which has no reconstruction term to feed."""
    if cfg.mu == 1.0:
        return 0
    return cfg.batch_size if cfg.unlabeled_per_batch is None else cfg.unlabeled_per_batch


class BatchSource:
    """Draws each step's Batch; its state is the generators (checkpointed with the trial)."""

    def __init__(
        self,
        cfg: TrialConfig,
        y_train: Tensor,
        labeled: np.ndarray | None,
        judgments: Judgments | None,
        generator: torch.Generator,
        device: torch.device,
        device_generator: torch.Generator | None,
    ) -> None:
        self.y_train, self.generator, self.device = y_train, generator, device
        y_host = y_train.cpu().numpy()
        n = len(y_host)
        self.judgments = judgments
        self.labeled: Tensor | None = None
        if judgments is not None:
            self.per_batch = judgments_per_batch(judgments.kind, cfg.batch_size)
            width = judgments.train.shape[1]
            self.judged_rows = torch.from_numpy(judgments.train).to(device)
            self.similar = (
                torch.from_numpy(judgments.train_similar).to(device)
                if judgments.train_similar is not None
                else None
            )
            # Batch positions of the judgments' items: judgment m takes rows
            # m*width .. m*width+width-1.
            self.positions = torch.arange(self.per_batch * width, device=device).reshape(
                self.per_batch, width
            )
            pool = np.arange(n)
        else:
            rows = np.arange(n) if labeled is None else labeled
            self.sampler = StratifiedBatchSampler(
                y_host[rows], cfg.batch_size, generator, device, device_generator
            )
            if labeled is not None:
                self.labeled = torch.from_numpy(labeled).to(device)
            pool = np.setdiff1d(np.arange(n), rows)
        self.pool = torch.from_numpy(pool).to(device)
        self.n_unlabeled = unlabeled_count(cfg) if len(pool) else 0
        # mu = 0 has no metric term: nothing to stratify or judge, and a batch half made of a few
        # labeled images (with replacement) would weigh them far above the rest in the
        # reconstruction. As many rows as at any other mu, drawn from the whole training split.
        metric_rows = self.per_batch * width if judgments is not None else cfg.batch_size
        weak = labeled is not None or judgments is not None
        self.n_uniform = metric_rows + self.n_unlabeled if cfg.mu == 0.0 and weak else 0
        self.n_rows = n

    def next(self) -> Batch:
        if self.n_uniform:
            pick = torch.randint(self.n_rows, (self.n_uniform,), generator=self.generator)
            return Batch(pick.to(self.device), 0)
        if self.judgments is not None:
            chosen = torch.randperm(len(self.judged_rows), generator=self.generator)[
                : self.per_batch
            ].to(self.device)
            metric_rows = self.judged_rows.index_select(0, chosen).reshape(-1)
            cols = self.positions.unbind(1)
            judged = (
                (*cols, self.similar.index_select(0, chosen)) if self.similar is not None else cols
            )
            return Batch(self._with_unlabeled(metric_rows), len(metric_rows), judged=judged)
        idx = self.sampler.next_batch()
        if self.labeled is not None:
            idx = self.labeled.index_select(0, idx)
        key = self.sampler.last_labels.tobytes()
        return Batch(self._with_unlabeled(idx), len(idx), self.y_train.index_select(0, idx), key)

    def _with_unlabeled(self, metric_rows: Tensor) -> Tensor:
        if not self.n_unlabeled:
            return metric_rows
        # Drawn on the host generator, with replacement: a few hundred small ints copied per step.
        pick = torch.randint(len(self.pool), (self.n_unlabeled,), generator=self.generator).to(
            self.device
        )
        return torch.cat([metric_rows, self.pool.index_select(0, pick)])
