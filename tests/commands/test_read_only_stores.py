"""Commands that only read MLflow refuse a store that is not there, and create none: `tuner ui`,
`train --from-run`, `embed --model`, `search --warm-start` (as `tuner report` does). And `tuner
embed --images` names a file that is not an image instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.drivers import free_port
from tuner.cli import main

NO_STORE = "no MLflow store at"
OPTUNA = """name: warm
search: optuna
samples: 2
fixed: {hidden_dims: [32], batch_size: 40, iterations: 20, eval_every: 20}
params:
  mu: {uniform: [0.1, 0.9]}
"""


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def refused(capfd: pytest.CaptureFixture[str], *args: str) -> str:
    """Exit 2 with one paragraph, last, and nothing of MLflow creating a database before it."""
    capfd.readouterr()
    assert main(list(args)) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Creating initial MLflow database tables" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith(f"tuner {args[0]}: error: ") and err.endswith(last + "\n"), err
    return last


def test_ui_refuses_a_missing_sqlite_file_a_folder_and_a_plain_file(empty_cwd: Path, capfd) -> None:
    port = str(free_port())
    err = refused(capfd, "ui", "--tracking-uri", f"sqlite:///{empty_cwd}/typo.db", "--port", port)
    assert f"{NO_STORE} '{empty_cwd}/typo.db'" in err
    err = refused(capfd, "ui", "--port", port)  # the default store, ./mlflow.db
    assert f"{NO_STORE} '{empty_cwd}/mlflow.db'" in err
    assert not (empty_cwd / "typo.db").exists() and not (empty_cwd / "mlflow.db").exists()
    (empty_cwd / "runs").mkdir()
    err = refused(capfd, "ui", "--tracking-uri", str(empty_cwd / "runs"), "--port", port)
    assert (
        f"tracking URI '{empty_cwd}/runs' is a folder, which MLflow reads as its old file store"
        in err
    )
    assert "sqlite:////abs/path/mlflow.db" in err and "migrate-filestore" in err
    (empty_cwd / "m.db").write_bytes(b"")
    err = refused(capfd, "ui", "--tracking-uri", str(empty_cwd / "m.db"), "--port", port)
    assert "is a plain path" in err and f"pass sqlite:///{empty_cwd}/m.db" in err
    assert sorted(p.name for p in empty_cwd.iterdir()) == ["m.db", "runs"]
    assert list((empty_cwd / "runs").iterdir()) == []


def test_train_from_run_without_a_store_creates_none(empty_cwd: Path, capfd) -> None:
    err = refused(capfd, "train", "--from-run", "0123456789abcdef")
    assert f"--from-run 0123456789abcdef: {NO_STORE} '{empty_cwd}/mlflow.db'" in err
    err = refused(
        capfd, "train", "--from-run", "0123456789abcdef", "--tracking-uri", "sqlite:///typo.db"
    )
    assert f"{NO_STORE} '{empty_cwd}/typo.db'" in err
    assert list(empty_cwd.iterdir()) == []


def test_embed_model_without_a_store_creates_none(empty_cwd: Path, capfd) -> None:
    err = refused(
        capfd, "embed", "--model", "models:/nope@champion", "--dataset", "digits", "--out", "z.csv"
    )
    assert f"model 'models:/nope@champion': {NO_STORE} '{empty_cwd}/mlflow.db'" in err
    assert list(empty_cwd.iterdir()) == []


def test_a_refused_warm_start_leaves_no_store(empty_cwd: Path, capfd) -> None:
    (empty_cwd / "s.yaml").write_text(OPTUNA)
    err = refused(capfd, "search", "--space", "s.yaml", "--warm-start", "nope")
    assert f"--warm-start nope: {NO_STORE} '{empty_cwd}/mlflow.db'" in err
    assert sorted(p.name for p in empty_cwd.iterdir()) == ["s.yaml"]


# ------------------------------------------------------------------ tuner embed --images


@pytest.fixture(scope="module")
def digits_model():
    from tuner.core.config import TrialConfig
    from tuner.data import load_features
    from tuner.embedding import EmbeddingModel
    from tuner.trainer.train import fit

    cfg = TrialConfig(iterations=1, eval_every=1)
    data = load_features(cfg, progress=False)
    return EmbeddingModel.from_training(cfg, fit(cfg, data).model, data)


def _png(path: Path) -> bytes:
    from PIL import Image

    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path)
    return path.read_bytes()


@pytest.mark.parametrize("bad", ["text", "truncated", "unreadable", "directory"])
def test_embed_images_names_a_file_that_is_not_an_image(
    empty_cwd: Path, digits_model, monkeypatch, capfd, bad: str
) -> None:
    import os

    import tuner.tracking.registry

    monkeypatch.setattr(
        tuner.tracking.registry, "load_model", lambda uri, tracking_uri=None: digits_model
    )
    folder = empty_cwd / "imgs"
    folder.mkdir()
    whole = _png(folder / "0.png")
    broken = folder / "1.png"
    if bad == "text":
        broken.write_text("not an image\n")
    elif bad == "truncated":
        broken.write_bytes(whole[: len(whole) // 2])
    elif bad == "unreadable":
        broken.write_bytes(whole)
        broken.chmod(0)
        if os.geteuid() == 0:  # root reads a file of mode 000: refuse it as the kernel would
            from PIL import Image

            opened = Image.open

            def denied(path, *a, **k):
                if Path(path) == broken:
                    raise PermissionError(13, "Permission denied", str(path))
                return opened(path, *a, **k)

            monkeypatch.setattr(Image, "open", denied)
    else:
        broken.mkdir()  # a folder named like an image is not one of the images
    args = ["embed", "--model", "m", "--images", str(folder), "--out", str(empty_cwd / "z.csv")]
    if bad == "directory":
        capfd.readouterr()
        assert main(args) == 0
        assert len((empty_cwd / "z.csv").read_text().splitlines()) == 2  # the header and 0.png
        return
    err = refused(capfd, *args)
    assert f"--images: could not read image {broken}" in err and "Replace or remove it." in err
    assert not (empty_cwd / "z.csv").exists()
