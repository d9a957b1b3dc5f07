"""A search's data as MLflow dataset inputs (mlflow.log_input's records): name, a digest of the
featurized arrays, and the split with its size as context, so the runs table's Dataset column and
filter work, and two searches on different data are told apart in one experiment."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from tuner.data.features import FeatureSet

CONTEXT_TAG = "mlflow.data.context"


@dataclass(frozen=True)
class Split:
    name: str  # train | validation | test
    rows: int
    digest: str  # of the featurized arrays and labels


@dataclass(frozen=True)
class DataDescription:
    name: str  # e.g. digits/raw
    splits: tuple[Split, ...]


def _digest(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:10]


def describe(name: str, data: FeatureSet) -> DataDescription:
    splits = [
        ("train", data.x_train, data.y_train),
        ("validation", data.x_val, data.y_val),
        ("test", data.x_test, data.y_test),
    ]
    return DataDescription(
        name, tuple(Split(s, int(len(x)), _digest(x, y)) for s, x, y in splits if x is not None)
    )


def log_data(client, run_id: str, data: DataDescription, trial: bool) -> None:
    """A trial run gets the splits it reads (train, validation); the parent every split (its test
    figures read the test split)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = [
        DatasetInput(
            Dataset(
                name=f"{data.name} {s.name}",
                digest=s.digest,
                source_type="code",
                source='{"tags": {}}',
                schema=None,
                profile=f'{{"rows": {s.rows}}}',
            ),
            tags=[InputTag(CONTEXT_TAG, f"{s.name} ({s.rows} rows)")],
        )
        for s in data.splits
        if not (trial and s.name == "test")
    ]
    client.log_inputs(run_id, datasets=inputs)
