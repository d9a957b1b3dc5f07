"""Figures of one trial and of a search: arrays in, PNG file out, nothing else touched.

Every function closes its figure, so thousands of trials in one worker do not leak memory.
A trial's figures are drawn once, at its end, on the trial's own core, so they are kept cheap:
fixed margins (automatic layouts and bbox_inches="tight" measure every text, which cost more
than the drawing), and the reconstructions as one tiled image, not an axes per digit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg")  # before pyplot: trials and the driver have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tuner.core.selection import pareto_front  # noqa: E402

LOSS_KEYS = ("loss", "metric_loss", "recon_loss", "kl")
ACCURACY_KEYS = ("knn_accuracy", "fine_knn_accuracy")
# Text as the user wrote it: label names and titles such as "$x^$" or "a_$b" would otherwise
# be parsed as math text (or sent to LaTeX by a matplotlibrc with usetex) and fail the save,
# and with it the trial.
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}

F = TypeVar("F", bound=Callable[..., Any])


def _plain_text(plot: F) -> F:
    @functools.wraps(plot)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context(PLAIN_TEXT):
            return plot(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def _to_2d(z: np.ndarray) -> tuple[np.ndarray, str, str]:
    """Points to draw and their axis labels: PCA above two dimensions, jitter for one."""
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    if z.shape[1] == 1:
        jitter = np.random.default_rng(0).uniform(-0.5, 0.5, size=len(z))
        return np.column_stack([z[:, 0], jitter]), "z1", "jitter"
    if z.shape[1] == 2:
        return z, "z1", "z2"
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0)
    xy = pca.fit_transform(z)
    share = pca.explained_variance_ratio_ * 100
    return xy, f"PC1 ({share[0]:.0f}%)", f"PC2 ({share[1]:.0f}%)"


@_plain_text
def plot_embedding(
    z: np.ndarray, labels: np.ndarray, label_names: Sequence[str], path: Path, title: str = ""
) -> Path:
    """2-D scatter of an embedding, one colour and legend entry per label name."""
    xy, xlabel, ylabel = _to_2d(z)
    labels = np.asarray(labels).reshape(-1)
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(8.5, 6))
    # the legend's column on the right
    fig.subplots_adjust(left=0.09, right=0.78, bottom=0.09, top=0.94)
    for i, label in enumerate(classes):
        name = label_names[int(label)] if 0 <= int(label) < len(label_names) else str(label)
        name = f" {name}" if name.startswith("_") else name  # matplotlib's legend skips "_" labels
        mask = labels == label
        ax.scatter(xy[mask, 0], xy[mask, 1], s=6, alpha=0.7, color=cmap(i % cmap.N), label=name)
    ax.set(
        xlabel=xlabel,
        ylabel=ylabel,
        title=title or f"test embedding (latent_dim={np.shape(z)[-1]})",
    )
    ax.legend(markerscale=3, fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


@_plain_text
def plot_reconstructions(
    x: np.ndarray, x_hat: np.ndarray, image_shape: tuple[int, ...], path: Path, n: int = 16
) -> Path:
    """Top row originals, bottom row reconstructions; images (C, H, W) with C in {1, 3}."""
    if len(image_shape) != 3 or image_shape[0] not in (1, 3):
        raise ValueError(f"image_shape {image_shape} is not (C, H, W) with C = 1 or 3")
    n = max(1, min(n, len(x)))
    rows = [
        _tile(np.asarray(images[:n], dtype=np.float32).reshape(n, *image_shape))
        for images in (x, x_hat)
    ]
    gap = np.ones((2, *rows[0].shape[1:]), dtype=np.float32)
    grid = np.concatenate([rows[0], gap, rows[1]])  # originals above, reconstructions below
    fig, ax = plt.subplots(figsize=(1.2 * n, 2.6))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.88)
    ax.imshow(
        grid[:, :, 0] if image_shape[0] == 1 else grid,
        cmap="gray",
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
    )
    ax.set_axis_off()
    ax.set_title("originals (top), reconstructions (bottom)", loc="left", fontsize=9)
    return _save(fig, path)


def _tile(batch: np.ndarray) -> np.ndarray:
    """(n, C, H, W) in [0, 1] -> one (H, n * (W + 2) - 2, C) row of images, 2 white pixels apart."""
    images = np.clip(batch, 0.0, 1.0).transpose(0, 2, 3, 1)
    gap = np.ones((images.shape[1], 2, images.shape[3]), dtype=np.float32)
    return np.concatenate([part for image in images for part in (image, gap)][:-1], axis=1)


@_plain_text
def plot_loss_curves(history: Sequence[Mapping[str, float]], path: Path) -> Path:
    """Losses over iterations (left) and kNN accuracy (right)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.96, wspace=0.22)
    steps = [h.get("iteration", i) for i, h in enumerate(history)]
    for axis, keys in ((ax_loss, LOSS_KEYS), (ax_acc, ACCURACY_KEYS)):
        for key in keys:
            if any(key in h for h in history):
                values = [h.get(key, np.nan) for h in history]
                axis.plot(steps, values, marker="o", markersize=3, label=key)
        if axis.lines:
            axis.legend(fontsize="small")
        else:
            axis.text(
                0.5, 0.5, "no evaluations", ha="center", va="center", transform=axis.transAxes
            )
        axis.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    ax_acc.set_ylabel("kNN accuracy")
    return _save(fig, path)


@_plain_text
def plot_pareto(
    table: pd.DataFrame, path: Path, x: str = "recon_error", y: str = "knn_accuracy"
) -> Path:
    """Finished trials in grey, trials stopped early (or failed: not their final figures) apart as
    open markers, the Pareto front of the finished ones highlighted and joined."""
    fig, ax = plt.subplots(figsize=(7, 5))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.93)
    valid = table.dropna(subset=[x, y])
    ended = (
        valid["status"] != "FINISHED" if "status" in valid else pd.Series(False, index=valid.index)
    )
    done = valid[~ended]
    ax.scatter(done[x], done[y], color="0.6", s=20, label=f"finished trials ({len(done)})")
    if ended.any():
        ax.scatter(
            valid[x][ended],
            valid[y][ended],
            facecolors="none",
            edgecolors="tab:blue",
            marker="v",
            s=24,
            label=f"stopped early or failed ({int(ended.sum())}): figures at their last report",
        )
    front = pareto_front(valid, x, y)
    if len(front):
        ax.plot(
            front[x],
            front[y],
            color="tab:red",
            marker="o",
            markersize=6,
            drawstyle="steps-post",
            label=f"Pareto front ({len(front)})",
        )
        if "trial_id" in front:
            for _, row in front.iterrows():
                ax.annotate(
                    str(row["trial_id"]),
                    (row[x], row[y]),
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
    ax.set(
        xlabel=f"{x} (lower is better)",
        ylabel=f"{y} (higher is better)",
        title="trials and Pareto front",
    )
    ax.legend(fontsize="small")
    return _save(fig, path)
