"""Empty MLflow stores for tests whose subject is not a store's creation.

MLflow makes a new SQLite store by running every schema migration it has, about 0.8 CPU-s, and some
fifty tests (and the drivers they start) each made one. The store made once per process and copied
holds the same tables and rows. A store's own creation stays checked where it is the subject: the
README's job starts from an empty folder, and `tuner report`/`ui` refuse a store that is not there.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path


@functools.cache
def _template() -> Path:
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="tuner-test-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)
    return path


def empty_store(folder: Path, name: str = "mlflow.db") -> str:
    """`sqlite:///FOLDER/NAME`, where an empty store now lies unless a store already did (a test
    that resumes a search asks again for the store it searched in)."""
    path = folder / name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_template(), path)
    return f"sqlite:///{path}"
