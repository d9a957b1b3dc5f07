"""Plots draw what they are given and write it as PNG; the Pareto front matches one computed by
hand."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from tuner.core.selection import pareto_front
from tuner.trainer import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, fig: matplotlib.figure.Figure) -> None:
    """The file is a PNG of the whole figure (what the figure holds is checked by each test)."""
    assert Path(path).read_bytes()[:8] == PNG_MAGIC
    height, width = matplotlib.image.imread(path).shape[:2]
    # saved at dpi 100
    assert (width, height) == tuple(round(v) for v in fig.get_size_inches() * 100)


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures the plot functions save, kept (and still saved) so a test can read what they
    hold."""
    figures = []
    real_save = plots._save

    def save(fig, path):
        figures.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    return figures


def scatter_points(ax) -> dict[str, np.ndarray]:
    return {c.get_label(): np.asarray(c.get_offsets()) for c in ax.collections}


def clustered(
    latent_dim: int, n_per_class: int = 40, n_classes: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    z = rng.normal(size=(len(labels), latent_dim)) * 0.2 + labels[:, None]
    return z.astype(np.float32), labels


def test_backend_is_agg() -> None:
    assert matplotlib.get_backend().lower() == "agg"


@pytest.mark.parametrize("latent_dim", [1, 2, 5])
def test_plot_embedding_writes_png(tmp_path: Path, latent_dim: int, drawn: list) -> None:
    z, labels = clustered(latent_dim)
    out = plots.plot_embedding(
        z, labels, ["zero", "one", "two"], tmp_path / "sub" / "emb.png", title="t"
    )
    assert out == tmp_path / "sub" / "emb.png"
    (fig,) = drawn
    assert_png(out, fig)
    # Every point, in its class's own scatter under its name, at its 2-D position.
    xy = plots._to_2d(z)[0]
    points = scatter_points(fig.axes[0])
    assert list(points) == ["zero", "one", "two"]
    for label, name in enumerate(points):
        np.testing.assert_allclose(points[name], xy[labels == label])
    assert len({tuple(c.get_facecolor()[0][:3]) for c in fig.axes[0].collections}) == 3
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["zero", "one", "two"]


def test_embedding_pca_axes_explain_variance(tmp_path: Path) -> None:
    # Above two dimensions the axes are principal components with their variance shares.
    z, labels = clustered(5)
    plots.plot_embedding(z, labels, ["a", "b", "c"], tmp_path / "e.png")
    xy, xlabel, ylabel = plots._to_2d(z)
    centred = z - z.mean(axis=0)
    top = np.linalg.svd(centred, full_matrices=False)[2][0]
    assert xy.shape == (len(z), 2)
    assert abs(abs(np.corrcoef(xy[:, 0], centred @ top)[0, 1]) - 1) < 1e-6
    assert xlabel.startswith("PC1 (") and ylabel.startswith("PC2 (")


def test_embedding_one_dimension_keeps_values(tmp_path: Path) -> None:
    z, _ = clustered(1)
    xy, xlabel, ylabel = plots._to_2d(z)
    np.testing.assert_allclose(xy[:, 0], z[:, 0], rtol=1e-6)
    assert ylabel == "jitter" and np.all(np.abs(xy[:, 1]) <= 0.5)


def test_embedding_unknown_label_gets_its_number(tmp_path: Path, drawn: list) -> None:
    # More label values than names must not crash: the number is used as the name.
    z, labels = clustered(2, n_classes=4)
    assert_png(plots.plot_embedding(z, labels, ["a", "b"], tmp_path / "e.png"), drawn[0])
    points = scatter_points(drawn[0].axes[0])
    assert list(points) == ["a", "b", "2", "3"]
    assert [len(p) for p in points.values()] == [40] * 4


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8)])
def test_plot_reconstructions(tmp_path: Path, shape: tuple[int, int, int], drawn: list) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.5, 1.5, size=(20, int(np.prod(shape))))  # out of range values get clipped
    out = plots.plot_reconstructions(x, x * 0.9, shape, tmp_path / "rec.png", n=6)
    (fig,) = drawn
    assert_png(out, fig)
    (image,) = fig.axes[0].get_images()
    grid = np.asarray(image.get_array())
    # Two rows of 6 images of 8x8, 2 pixels apart: originals above, reconstructions below, clipped.
    assert grid.shape[:2] == (8 + 2 + 8, 6 * 10 - 2)
    for i in range(6):
        for row, images in ((0, x), (10, x * 0.9)):
            expected = np.clip(images[i].reshape(shape), 0, 1).transpose(1, 2, 0)
            tile = grid[row : row + 8, 10 * i : 10 * i + 8]
            np.testing.assert_allclose(tile.reshape(expected.shape), expected, atol=1e-6)


def test_plot_reconstructions_rejects_bad_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plots.plot_reconstructions(
            np.zeros((2, 32)), np.zeros((2, 32)), (2, 4, 4), tmp_path / "r.png"
        )


def test_plot_loss_curves(tmp_path: Path, drawn: list) -> None:
    history = [
        {
            "iteration": float(i),
            "loss": 1 / (i + 1),
            "metric_loss": 0.5 / (i + 1),
            "recon_loss": 0.2,
            "kl": 0.1,
            "knn_accuracy": 0.5 + i / 20,
        }
        for i in range(0, 10, 2)
    ]
    assert_png(plots.plot_loss_curves(history, tmp_path / "curves.png"), drawn[0])
    losses, accuracy = drawn[0].axes
    # One line per key present, through every evaluation; fine_knn_accuracy is absent, so not drawn.
    for axis, keys in (
        (losses, ["loss", "metric_loss", "recon_loss", "kl"]),
        (accuracy, ["knn_accuracy"]),
    ):
        assert [line.get_label() for line in axis.lines] == keys
        for line, key in zip(axis.lines, keys):
            assert list(line.get_xdata()) == [0.0, 2.0, 4.0, 6.0, 8.0]
            np.testing.assert_allclose(line.get_ydata(), [h[key] for h in history])
    assert_png(plots.plot_loss_curves([], tmp_path / "empty.png"), drawn[1])
    for axis in drawn[1].axes:
        assert not axis.lines and [t.get_text() for t in axis.texts] == ["no evaluations"]


def test_pareto_front_by_hand() -> None:
    # (recon_error, knn_accuracy): lower x, higher y better.
    points = {
        "a": (0.10, 0.50),  # best x: on the front
        "b": (0.20, 0.70),  # on the front
        "c": (0.20, 0.60),  # same x as b, lower y: dominated by b
        "d": (0.30, 0.70),  # same y as b, higher x: dominated by b
        "e": (0.40, 0.90),  # on the front
        "f": (0.40, 0.90),  # duplicate of e: neither dominates the other, both kept
        "g": (0.50, 0.80),  # dominated by e
        "h": (0.05, np.nan),  # no accuracy: left out
        "i": (0.60, 0.95),  # highest y: on the front
    }
    table = pd.DataFrame(
        [{"trial_id": k, "recon_error": x, "knn_accuracy": y} for k, (x, y) in points.items()]
    )
    front = pareto_front(table)
    assert list(front["trial_id"]) == ["a", "b", "e", "f", "i"]
    assert list(front["recon_error"]) == sorted(front["recon_error"])


def test_pareto_front_brute_force_agrees() -> None:
    rng = np.random.default_rng(3)
    # Coarse values make ties in x, in y and whole duplicate points common.
    table = pd.DataFrame(
        {"recon_error": rng.integers(0, 6, 60) / 10, "knn_accuracy": rng.integers(0, 6, 60) / 10}
    )
    x, y = table["recon_error"].to_numpy(), table["knn_accuracy"].to_numpy()
    dominated = [
        bool(np.any((x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i])))) for i in range(len(x))
    ]
    expected = {i for i, d in enumerate(dominated) if not d}
    front = pareto_front(table)
    assert set(front.index) == expected
    assert front["recon_error"].is_monotonic_increasing


def test_pareto_custom_columns_and_empty() -> None:
    table = pd.DataFrame({"err": [2.0, 1.0, 3.0], "acc": [0.9, 0.8, 0.95]})
    assert list(pareto_front(table, x="err", y="acc").index) == [1, 0, 2]
    assert pareto_front(table.iloc[:0], x="err", y="acc").empty


def test_plot_pareto(tmp_path: Path, drawn: list) -> None:
    rng = np.random.default_rng(2)
    table = pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(12)],
            "recon_error": rng.uniform(0, 1, 12),
            "knn_accuracy": rng.uniform(0, 1, 12),
        }
    )
    assert_png(plots.plot_pareto(table, tmp_path / "pareto.png"), drawn[0])
    ax = drawn[0].axes[0]
    points = scatter_points(ax)
    assert list(points) == ["finished trials (12)"]
    np.testing.assert_allclose(
        points["finished trials (12)"], table[["recon_error", "knn_accuracy"]]
    )
    front = pareto_front(table)
    (line,) = ax.lines
    assert line.get_label() == f"Pareto front ({len(front)})" and len(front) >= 2
    np.testing.assert_allclose(line.get_xdata(), front["recon_error"])
    np.testing.assert_allclose(line.get_ydata(), front["knn_accuracy"])
    # the front's trials named
    assert sorted(t.get_text() for t in ax.texts) == sorted(front["trial_id"])


def test_label_names_that_read_as_math_text_are_drawn_as_written(
    tmp_path: Path, monkeypatch
) -> None:
    # "$x^$" and "a_$b$c" are broken math text: matplotlib's parser raised at savefig, failing the
    # trial.
    names = ["$x^$", "a_$b$c", r"$\frac{$", "_hidden"]
    drawn: list[tuple[str, bool]] = []
    real_save = plots._save

    def save(fig, path):
        drawn.extend(
            (t.get_text(), t.get_parse_math()) for t in fig.axes[0].get_legend().get_texts()
        )
        drawn.append((fig.axes[0].get_title(), fig.axes[0].title.get_parse_math()))
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    z, labels = clustered(2, n_classes=4)
    out = plots.plot_embedding(z, labels, names, tmp_path / "emb.png", title="$bad^$")
    assert out.read_bytes()[:8] == PNG_MAGIC  # saved: the broken math text did not raise
    assert drawn == [
        ("$x^$", False),
        ("a_$b$c", False),
        (r"$\frac{$", False),
        (" _hidden", False),
        ("$bad^$", False),
    ]
    # the setting is the plot's, not the process's
    assert matplotlib.rcParams["text.parse_math"] is True


def test_pareto_plot_draws_stopped_trials_apart_and_off_the_front(
    tmp_path: Path, monkeypatch
) -> None:
    kept = {}

    def keep(fig, path):
        kept["ax"] = fig.axes[0]
        return path

    monkeypatch.setattr(plots, "_save", keep)
    table = pd.DataFrame(
        {
            "trial_id": ["a", "b", "s", "f"],
            "status": ["FINISHED", "FINISHED", "KILLED", "FAILED"],
            "knn_accuracy": [0.9, 0.8, 0.99, 0.5],
            "recon_error": [0.05, 0.03, 0.01, 0.2],
        }
    )
    plots.plot_pareto(table, tmp_path / "p.png")
    ax = kept["ax"]
    labels = [c.get_label() for c in ax.collections]
    assert labels[0] == "finished trials (2)" and labels[1].startswith(
        "stopped early or failed (2)"
    )
    assert sorted(map(tuple, ax.collections[1].get_offsets().tolist())) == [
        (0.01, 0.99),
        (0.2, 0.5),
    ]
    front = ax.lines[0]
    assert front.get_label() == "Pareto front (2)" and sorted(front.get_xdata()) == [
        0.03,
        0.05,
    ]  # s is not on it
