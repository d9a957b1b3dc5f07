"""Where mu helps: test knn_accuracy at mu = 0, the best 0 < mu < 1 (chosen on validation) and
mu = 1, for each number of labels per class, from a search file's fixed settings.

    python examples/mu_table.py --space search_spaces/mnist_few_labels.yaml \
        --data-dir DIR --latent-dims 16 --labels 10,100,all --mu 0,0.5,1

(DIR: a torchvision-layout MNIST directory, e.g. the MNIST t10k split of docs/data.md.)

One `fit` per (latent_dim, labels, mu), in this process (no Ray, no MLflow): a table, not a
search. Each cell is the test figure of the configuration chosen on validation; the test split
is read only after training, as `tuner search` reads it. With `constraints:` fixed in the file
there is one row, the judgments. `--set key=value` overrides fixed settings (e.g. iterations).
"""

from __future__ import annotations

import argparse
import sys
import time

from tuner.commands.args import parse_set_pairs
from tuner.data import load_features
from tuner.errors import TunerError
from tuner.space.load import load_spec
from tuner.trainer.evaluation import evaluate_split
from tuner.trainer.train import fit


def _values(text: str | None, grid: tuple | None, parse) -> list:
    if text is not None:
        return [None if v == "all" else parse(v) for v in text.split(",")]
    return list(grid) if grid is not None else [None]


def _cell(found: tuple | None) -> str:
    """A table cell: the test knn_accuracy of a (mu, score) pair, or "-" when none ran."""
    return f"{found[1]:.4f}" if found else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--latent-dims", default=None, help="comma-separated (default: the file's grid)"
    )
    parser.add_argument(
        "--labels", default=None, help="labels per class, comma-separated, 'all' for every label"
    )
    parser.add_argument("--mu", default=None, help="comma-separated (default: the file's grid)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        spec = load_spec(args.space, overrides=parse_set_pairs(args.set))
        grid = {name: tuple(p.probes()) for name, p in spec.params.items()}
        dims = _values(args.latent_dims, grid.get("latent_dim"), int)
        dims = [spec.base_config.latent_dim if d is None else d for d in dims]
        labels = _values(args.labels, grid.get("labels_per_class"), int)
        if spec.base_config.constraints is not None:
            labels = [None]
        mus = sorted(_values(args.mu, grid.get("mu"), float), key=lambda m: (m is None, m))
        data = load_features(spec.base_config, data_dir=args.data_dir, progress=False)
        trial_data = data.without_test()
        rows = []
        for dim in dims:
            for n in labels:
                cells = {}
                for mu in mus:
                    cfg = spec.trial_config({"latent_dim": dim, "labels_per_class": n, "mu": mu})
                    result = fit(cfg, trial_data)
                    test = evaluate_split(cfg, result.model, data, "test")
                    cells[mu] = (result.metrics["knn_accuracy"], test["test_knn_accuracy"])
                    row = (
                        "judgments"
                        if spec.base_config.constraints is not None
                        else f"labels {n or 'all'}"
                    )
                    print(
                        f"latent_dim {dim}, {row}, mu {mu}: validation {cells[mu][0]:.4f}, "
                        f"test {cells[mu][1]:.4f} ({time.perf_counter() - started:.0f} s)",
                        flush=True,
                    )
                inner = {mu: c for mu, c in cells.items() if 0.0 < mu < 1.0}
                best = max(inner, key=lambda mu: inner[mu][0]) if inner else None
                rows.append(
                    (
                        dim,
                        n,
                        cells.get(0.0),
                        (best, inner[best]) if best is not None else None,
                        cells.get(1.0),
                    )
                )
    except TunerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    what = "judgments" if spec.base_config.constraints is not None else "labels per class"
    print(f"\ntest knn_accuracy (the configuration chosen on validation), {args.space}")
    print(
        f"| latent_dim | {what} | mu = 0 | best 0 < mu < 1 | mu = 1 |\n"
        "| --- | --- | --- | --- | --- |"
    )
    for dim, n, zero, best, one in rows:
        mid = f"{best[1][1]:.4f} (mu {best[0]:g})" if best else "-"
        name = spec.base_config.constraints if what == "judgments" else (n or "all")
        print(f"| {dim} | {name} | {_cell(zero)} | {mid} | {_cell(one)} |")
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
