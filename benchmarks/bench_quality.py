"""Quality benchmark: each published quality figure (README, docs/, search file headers), rerun.

    python -m benchmarks.bench_quality [--json] [--only NAME] [--list] [--data-dir DIR] [--smoke]

Each entry reruns the command that produced one published figure (a table, a search's chosen
trial, its front) and prints, per number, published | measured | measured - published. The
digits entries need nothing; the MNIST ones need `--data-dir` (MNIST in torchvision's layout)
and are skipped without it, saying so. `--list` names the entries, where each figure is
published and how long it takes on 2 cores; `--only NAME` (repeatable) runs those alone.
`--smoke` shrinks every run to a few iterations: it proves the code path, its numbers are not
comparable to the published ones.

Trials are seeded, but a search's trials share the cores and their order varies (Optuna and
moasha see results in that order), so search figures move a little run to run; a `fit` in this
process (the mu tables) repeats exactly on the same machine and library versions. The
multi-objective efficiency figures of bench_pareto.py (moasha's hypervolume ratio at equal
budget, the tie-break replay, mnist_d2_moasha's wall ratio and front hypervolume) stay there:
`--list` names them as delegated.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from benchmarks.common import (
    ROOT,
    Machine,
    add_data_dir,
    add_json,
    emit_json,
    last_json,
    mnist_dir,
    run_python,
    run_tuner,
    scratch,
    skipped_text,
)

if TYPE_CHECKING:  # imported when a search runs: --list and the mu tables need no Ray
    from tuner.runner.result import SearchResult

Numbers = dict[str, float]
SPACES = ROOT / "search_spaces"


@dataclass
class Context:
    data_dir: Path | None
    smoke: bool
    tmp: Path
    ray_started: bool = False


@dataclass(frozen=True)
class Figure:
    """One published figure (a table or a search's result) and the run that reproduces it."""

    name: str
    where: str  # where it is published
    command: str  # the command that produced it, as published
    minutes: str  # on 2 cores, measured with other work on them (load average 5-9)
    published: Numbers
    measure: Callable[[Context], Numbers]
    mnist: bool = False
    note: str = ""


# ------------------------------------------------------------ the mu tables (examples/mu_table.py)

ROW = re.compile(
    r"^\| (\d+) \| ([^|]+) \| ([-\d.]+) \| (?:([\d.]+) \(mu ([\d.]+)\)|-) \| ([-\d.]+) \|$"
)


def mu_table(
    args: list[str | Path], sets: dict[str, str], smoke: bool, by_dim: bool = False
) -> Numbers:
    """examples/mu_table.py's table as numbers: per row, mu 0, the best 0 < mu < 1, its mu, mu 1.
    `by_dim`: rows named by latent_dim too ("latent 16, labels 10"), for tables over both."""
    sets = sets | ({"iterations": "20", "eval_every": "20"} if smoke else {})
    out: Numbers = {}
    stdout = run_python(["examples/mu_table.py", *args, *set_args(sets)], "mu_table")
    for line in stdout.splitlines():
        match = ROW.match(line.strip())
        if match is None:
            continue
        dim, row, zero, mid, mid_mu, one = match.groups()
        row = "judgments" if row.strip().endswith(".csv") else f"labels {row.strip()}"
        row = f"latent {dim}, {row}" if by_dim else row
        out |= {
            f"{row}: mu 0": _num(zero),
            f"{row}: best 0<mu<1": _num(mid),
            f"{row}: its mu": _num(mid_mu),
            f"{row}: mu 1": _num(one),
        }
    if not out:
        raise SystemExit(f"mu_table printed no table:\n{stdout[-2000:]}")
    return out


def set_args(sets: dict[str, str]) -> list[str]:
    return [x for key, value in sets.items() for x in ("--set", f"{key}={value}")]


def _num(text: str | None) -> float:
    return float(text) if text not in (None, "-") else math.nan


def table_figures(rows: dict[str, tuple[float, float, float, float]]) -> Numbers:
    """A published mu table: row -> (mu 0, best 0 < mu < 1, its mu, mu 1)."""
    out: Numbers = {}
    for row, (zero, mid, mid_mu, one) in rows.items():
        out |= {
            f"{row}: mu 0": zero,
            f"{row}: best 0<mu<1": mid,
            f"{row}: its mu": mid_mu,
            f"{row}: mu 1": one,
        }
    return out


DIGITS_FEW_LABELS = [
    "--space",
    "search_spaces/digits_few_labels.yaml",
    "--latent-dims",
    "16",
    "--labels",
    "3,10,all",
    "--mu",
    "0,0.25,0.5,0.75,1",
]
SHORT = {"iterations": "800", "eval_every": "400"}


def digits_few_labels(ctx: Context) -> Numbers:
    return mu_table(DIGITS_FEW_LABELS, SHORT, ctx.smoke)


def noisy_pairs(ctx: Context, dataset: str) -> Path:
    """1,000 pair judgments of `dataset`'s training split, 10% of them wrong."""
    pairs = ctx.tmp / f"{dataset}_pairs.csv"
    data = ["--data-dir", ctx.data_dir] if dataset != "digits" else []
    args = ["--dataset", dataset, *data, "--kind", "pairs", "--n", "1000", "--wrong", "0.1"]
    run_python(["examples/make_constraints.py", *args, "--out", pairs], "make_constraints")
    return pairs


def digits_judgments(ctx: Context) -> Numbers:
    pairs = noisy_pairs(ctx, "digits")
    return mu_table(
        [
            "--space",
            "search_spaces/digits_few_labels.yaml",
            "--latent-dims",
            "16",
            "--mu",
            "0,0.25,0.5,0.75,1",
        ],
        {"labels_per_class": "null", "constraints": str(pairs), **SHORT},
        ctx.smoke,
    )


# The MNIST tables: 3,000 steps (the file's), one seed, latent_dim 16 and 2; three inner mu where
# the goal is judged (10 labels per class), mu 0.5 elsewhere.
MNIST_FEW_LABELS = "search_spaces/mnist_few_labels.yaml"
MNIST_ROWS = (
    ["--labels", "10", "--mu", "0,0.1,0.3,0.5,1"],
    ["--labels", "100,all", "--mu", "0,0.5,1"],
)
MNIST_DIMS = ("16", "2")


def mnist_few_labels(ctx: Context) -> Numbers:
    out: Numbers = {}
    for dim in MNIST_DIMS:
        for rows in MNIST_ROWS:
            where = ["--space", MNIST_FEW_LABELS, "--data-dir", ctx.data_dir, "--latent-dims", dim]
            out |= mu_table([*where, *rows], {}, ctx.smoke, by_dim=True)
    return out


def mnist_judgments(ctx: Context) -> Numbers:
    pairs, out = noisy_pairs(ctx, "mnist"), {}
    for dim in MNIST_DIMS:
        where = ["--space", MNIST_FEW_LABELS, "--data-dir", ctx.data_dir, "--latent-dims", dim]
        sets = {"labels_per_class": "null", "constraints": str(pairs)}
        out |= mu_table([*where, "--mu", "0,0.5,1"], sets, ctx.smoke, by_dim=True)
    return out


# ---------------------------------------------------------------- searches (tuner.runner.search)


def body_of(file: str, ctx: Context, **changes: Any) -> dict[str, Any]:
    """A shipped search file as a dict, with top-level `changes` (`fixed` merged); `--smoke`
    shrinks its iterations, and a scheduler's first rung with them."""
    body = yaml.safe_load((SPACES / file).read_text())
    fixed = {**body.get("fixed", {}), **changes.pop("fixed", {})}
    body |= changes
    if ctx.smoke:
        fixed |= {"iterations": 40, "eval_every": 10}
        if isinstance(body.get("scheduler"), dict):
            body["scheduler"] = {**body["scheduler"], "grace_period": 10}
    body["fixed"] = fixed
    return body


def search(
    ctx: Context, body: dict[str, Any], experiment: str | None = None, warm_start: str | None = None
) -> SearchResult:
    """One search of `body` into this run's own MLflow store and Tune directory."""
    import ray

    from tuner.runner.search import run_search
    from tuner.space.load import load_spec

    if not ctx.ray_started:  # one Ray for every search of this run: run_search leaves it running
        ray.init(
            address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False
        )
        ctx.ray_started = True
    path = ctx.tmp / f"{experiment or body['name']}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return run_search(
        load_spec(path),
        tracking_uri=f"sqlite:///{ctx.tmp / 'mlflow.db'}",
        storage_path=ctx.tmp / "ray",
        experiment=experiment,
        data_dir=ctx.data_dir,
        warm_start=warm_start,
        verbose=False,
    )


def grid_importance(ctx: Context) -> Numbers:
    body = body_of("grid.yaml", ctx, fixed={} if ctx.smoke else {"iterations": 200})
    shares = search(ctx, body).trials.attrs["importances"].shares.get("knn_accuracy", {})
    return {
        f"importance of {s} for knn_accuracy": round(shares.get(s, math.nan), 2)
        for s in ("latent_dim", "constraint", "encoder", "mu")
    }


WARM_SEEDS = (0, 1, 2)


def warm_start(ctx: Context) -> Numbers:
    short = {"fixed": {"iterations": 300, "eval_every": 100}}
    source = search(
        ctx, body_of("optuna.yaml", ctx, **short, samples=4 if ctx.smoke else 20), "ws-source"
    )
    out: Numbers = {"source best": float(source.trials["knn_accuracy"].max())}
    for seed in WARM_SEEDS[:1] if ctx.smoke else WARM_SEEDS:
        for how in ("cold", "warm"):
            body = body_of("optuna.yaml", ctx, **short, seed=seed, samples=2 if ctx.smoke else 5)
            table = search(
                ctx, body, f"ws-{how}-{seed}", "ws-source" if how == "warm" else None
            ).trials
            out |= {f"seed {seed} {how}: {k}": v for k, v in new_trials(table).items()}
    return out


def new_trials(table: pd.DataFrame) -> Numbers:
    """knn_accuracy of a search's trials: the best, the mean of the finished, the first proposed."""
    # Tune numbers trials in the order they were proposed
    first = table.sort_values("trial_id").iloc[0]
    return {
        "best": float(table["knn_accuracy"].max()),
        "mean finished": float(table.loc[table["status"] == "FINISHED", "knn_accuracy"].mean()),
        "first": float(first["knn_accuracy"]),
    }


def front_figures(front: list[tuple[float, float, float, float]], stopped: float) -> Numbers:
    """A front of (validation knn, validation recon, test knn, test recon) rows, summarised."""
    if not front:
        return {"front size": 0, "stopped by moasha": stopped}
    return {
        "front size": len(front),
        "stopped by moasha": stopped,
        "front best validation knn_accuracy": max(r[0] for r in front),
        "front best validation recon_error": min(r[1] for r in front),
        "front mean test knn_accuracy": round(sum(r[2] for r in front) / len(front), 4),
        "front mean test recon_error": round(sum(r[3] for r in front) / len(front), 5),
    }


def measured_front(table: pd.DataFrame) -> list[tuple[float, float, float, float]]:
    rows = table[table["pareto"].astype(bool)] if "pareto" in table else table.iloc[:0]
    cols = ["knn_accuracy", "recon_error", "test_knn_accuracy", "test_recon_error"]
    return [tuple(float(v) for v in r) for r in rows.reindex(columns=cols).itertuples(index=False)]


def pareto(ctx: Context) -> Numbers:
    table = search(ctx, body_of("pareto.yaml", ctx)).trials
    return front_figures(measured_front(table), float((table["status"] == "KILLED").sum()))


def chosen_figures(result: SearchResult) -> Numbers:
    """The trial the search chose (`best_trial`, tuner's own rule): its validation and test
    figures."""
    best = result.best_trial
    if best is None:
        return {"chosen: no trial within require": math.nan}
    figures = ("knn_accuracy", "recon_error", "test_knn_accuracy", "test_recon_error")
    names = {
        k: f"chosen {'test' if k.startswith('test_') else 'validation'} {k.removeprefix('test_')}"
        for k in figures
    }
    return {"chosen mu": float(best.params["mu"])} | {
        names[k]: float(best.metrics.get(k, math.nan)) for k in figures
    }


def mnist_d2(ctx: Context) -> Numbers:
    result = search(ctx, body_of("mnist_d2.yaml", ctx))
    table = result.trials
    out = chosen_figures(result)
    tested = table.dropna(subset=["test_knn_accuracy"]).groupby("mu")  # the front's configurations
    for mu, runs in tested:
        means = runs[
            ["knn_accuracy", "recon_error", "test_knn_accuracy", "test_recon_error"]
        ].mean()
        out |= {
            f"front mu {mu:g}: {k}": round(float(v), 4 if "knn" in k else 5)
            for k, v in means.items()
        }
    return out


def mnist_d2_moasha(ctx: Context) -> Numbers:
    result = search(ctx, body_of("mnist_d2_moasha.yaml", ctx))
    stopped = float((result.trials["status"] == "KILLED").sum())
    return {**chosen_figures(result), "stopped by moasha": stopped}


# ----------------------------------------------------------- one trial each (`tuner train --json`)

D2_STEPS = {  # mnist_d2.yaml's header, "How it got here": each row adds to the one before
    "conv, mu 0.5, 2,000 steps": [
        "latent_dim=2",
        "mu=0.5",
        "iterations=2000",
        "eval_every=500",
        "dropout=0",
        "hidden_dims=[256]",
        "architecture=conv",
        "decoder_output=sigmoid",
    ],
    "+ shifts and turns, 3,000 steps": ["augment_shift=2", "augment_degrees=10", "iterations=3000"],
    "+ mu 0.3, cosine, 5,000 steps": [
        "mu=0.3",
        "lr_schedule=cosine",
        "iterations=5000",
        "eval_every=1000",
    ],
    "the same at mu 0": ["mu=0"],
}


def mnist_d2_steps(ctx: Context) -> Numbers:
    out: Numbers = {}
    settings: dict[str, str] = {"dataset": "mnist"}
    for label, pairs in D2_STEPS.items():
        settings |= dict(p.split("=", 1) for p in pairs)
        run = settings | ({"iterations": "20", "eval_every": "20"} if ctx.smoke else {})
        metrics = last_json(
            run_tuner(["train", "--json", "--data-dir", ctx.data_dir, *set_args(run)], label)
        )
        out |= {
            f"{label}: {k}": round(float(metrics[k]), 4)
            for k in ("knn_accuracy", "recon_error", "test_knn_accuracy", "test_recon_error")
        }
    return out


# ---------------------------------------------------------------- the published figures


def d2_steps_published() -> Numbers:
    rows = {
        "conv, mu 0.5, 2,000 steps": (0.9525, 0.0511, 0.954, 0.0502),
        "+ shifts and turns, 3,000 steps": (0.9742, 0.0510, 0.981, 0.0501),
        "+ mu 0.3, cosine, 5,000 steps": (0.9767, 0.0441, 0.980, 0.0434),
        "the same at mu 0": (0.7875, 0.0402, 0.811, 0.0396),
    }
    keys = ("knn_accuracy", "recon_error", "test_knn_accuracy", "test_recon_error")
    return {f"{label}: {k}": v for label, row in rows.items() for k, v in zip(keys, row)}


def mnist_d2_published() -> Numbers:
    front = {
        0.4: (0.9821, 0.0464, 0.9805, 0.0459),
        0.3: (0.9771, 0.0444, 0.9788, 0.0438),
        0.2: (0.9738, 0.0430, 0.9740, 0.0423),
    }
    keys = ("knn_accuracy", "recon_error", "test_knn_accuracy", "test_recon_error")
    out: Numbers = {
        "chosen mu": 0.3,
        "chosen validation knn_accuracy": 0.9775,
        "chosen validation recon_error": 0.0446,
        "chosen test knn_accuracy": 0.9775,
        "chosen test recon_error": 0.0442,
    }
    return out | {
        f"front mu {mu:g}: {k}": v for mu, row in front.items() for k, v in zip(keys, row)
    }


FIGURES = [
    Figure(
        "digits_few_labels",
        "docs/weak-supervision.md: the digits table",
        "python examples/mu_table.py " + " ".join(DIGITS_FEW_LABELS + set_args(SHORT)),
        "5-15",
        table_figures(
            {
                "labels 3": (0.7611, 0.6972, 0.5, 0.6944),
                "labels 10": (0.8806, 0.8389, 0.25, 0.8167),
                "labels all": (0.9750, 0.9778, 0.5, 0.9778),
            }
        ),
        digits_few_labels,
        note="test knn_accuracy of the configuration chosen on validation, latent_dim 16, one seed",
    ),
    Figure(
        "digits_judgments",
        "docs/weak-supervision.md: 1,000 pairs, 10% wrong",
        "python examples/make_constraints.py --dataset digits --kind pairs --n 1000 --wrong 0.1 "
        "--out pairs.csv && python examples/mu_table.py --space "
        "search_spaces/digits_few_labels.yaml --latent-dims 16 --mu 0,0.25,0.5,0.75,1 --set "
        "labels_per_class=null --set constraints=pairs.csv --set iterations=800 --set "
        "eval_every=400",
        "2-5",
        table_figures({"judgments": (0.9722, 0.9167, 0.5, 0.8583)}),
        digits_judgments,
        note="test knn_accuracy of the configuration chosen on validation, latent_dim 16, one "
        "seed; kNN reference: every training label",
    ),
    Figure(
        "grid_importance",
        "docs/search.md, Which settings matter",
        "tuner search --space search_spaces/grid.yaml --set iterations=200",
        "1-2",
        {
            "importance of latent_dim for knn_accuracy": 0.90,
            "importance of constraint for knn_accuracy": 0.09,
            "importance of encoder for knn_accuracy": 0.01,
            "importance of mu for knn_accuracy": 0.00,
        },
        grid_importance,
        note="fANOVA shares of knn_accuracy's variance over the 24 finished trials",
    ),
    Figure(
        "warm_start",
        "docs/models.md, Warm start: the cold / warm table",
        "search_spaces/optuna.yaml with --set iterations=300 --set eval_every=100: a 20-trial "
        "source, then 5-trial searches with searcher seeds 0, 1, 2, cold and with --warm-start "
        "from it",
        "3-4",
        {
            "source best": 0.9867,
            **{
                f"seed {s} {how}: {k}": v
                for s, rows in {
                    0: ((0.9622, 0.9394, 0.9622), (0.9911, 0.9856, 0.9800)),
                    1: ((0.9867, 0.9563, 0.8444), (0.9844, 0.9806, 0.9778)),
                    2: ((0.9422, 0.9367, 0.9311), (0.9911, 0.9878, 0.9911)),
                }.items()
                for how, row in zip(("cold", "warm"), rows)
                for k, v in zip(("best", "mean finished", "first"), row)
            },
        },
        warm_start,
        note="validation knn_accuracy of the 5 new trials: best / mean of the finished / first",
    ),
    Figure(
        "pareto",
        "search_spaces/pareto.yaml's header: the front",
        "tuner search --space search_spaces/pareto.yaml",
        "2-4",
        front_figures(
            [
                (0.9889, 0.0095, 0.9778, 0.0096),
                (0.9861, 0.0076, 0.9778, 0.0078),
                (0.9778, 0.0075, 0.9806, 0.0076),
            ],
            13.0,
        ),
        pareto,
        note="Optuna proposes from results in the order trials end: the front differs run to run",
    ),
    Figure(
        "mnist_d2",
        "search_spaces/mnist_d2.yaml's header (the latent-2 goal); README.md's search files",
        "tuner search --space search_spaces/mnist_d2.yaml --data-dir DIR",
        "18-35",
        mnist_d2_published(),
        mnist_d2,
        mnist=True,
        note=(
            "the front by configuration mean over 2 seeds; the chosen run within require "
            "recon_error <= 0.045"
        ),
    ),
    Figure(
        "mnist_d2_steps",
        "search_spaces/mnist_d2.yaml's header, How it got here; docs/search.md, Model options "
        "(augmentation: test knn_accuracy 0.954 -> 0.981)",
        "tuner train --json --data-dir DIR --set dataset=mnist --set ... (each row adds to the "
        "one before)",
        "40-60",
        d2_steps_published(),
        mnist_d2_steps,
        mnist=True,
        note="one seed each; settings the header does not name are tuner train's defaults",
    ),
    Figure(
        "mnist_d2_moasha",
        "search_spaces/mnist_d2_moasha.yaml's header; docs/benchmarks.md",
        "tuner search --space search_spaces/mnist_d2_moasha.yaml --data-dir DIR",
        "10-20",
        {
            "chosen test knn_accuracy": 0.9805,
            "chosen test recon_error": 0.0415,
            "stopped by moasha": 5.0,
        },
        mnist_d2_moasha,
        mnist=True,
        note="its wall ratio to mnist_d2.yaml and front hypervolumes: bench_pareto.py --only-mnist",
    ),
    Figure(
        "mnist_few_labels",
        "docs/weak-supervision.md: the MNIST table",
        "for D in 16 2: python examples/mu_table.py --space search_spaces/mnist_few_labels.yaml "
        "--data-dir DIR --latent-dims D --labels 10 --mu 0,0.1,0.3,0.5,1, then the same with "
        "--labels 100,all --mu 0,0.5,1",
        "60-80",
        table_figures(
            {
                "latent 16, labels 10": (0.8120, 0.9265, 0.3, 0.9335),
                "latent 16, labels 100": (0.9300, 0.9875, 0.5, 0.9890),
                "latent 16, labels all": (0.9655, 0.9930, 0.5, 0.9920),
                "latent 2, labels 10": (0.7565, 0.8705, 0.3, 0.8010),
                "latent 2, labels 100": (0.8065, 0.9630, 0.5, 0.9670),
                "latent 2, labels all": (0.7840, 0.9780, 0.5, 0.9800),
            }
        ),
        mnist_few_labels,
        mnist=True,
        note="test knn_accuracy of the configuration chosen on validation, one seed, the MNIST "
        "t10k split",
    ),
    Figure(
        "mnist_judgments",
        "docs/weak-supervision.md: MNIST, 1,000 pairs, 10% wrong",
        "python examples/make_constraints.py --dataset mnist --data-dir DIR --kind pairs --n 1000 "
        "--wrong 0.1 --out pairs.csv, then for D in 16 2: python examples/mu_table.py --space "
        "search_spaces/mnist_few_labels.yaml --data-dir DIR --latent-dims D --mu 0,0.5,1 --set "
        "labels_per_class=null --set constraints=pairs.csv",
        "25-35",
        table_figures(
            {
                "latent 16, judgments": (0.9625, 0.9620, 0.5, 0.9530),
                "latent 2, judgments": (0.8000, 0.7070, 0.5, 0.7315),
            }
        ),
        mnist_judgments,
        mnist=True,
        note="test knn_accuracy of the configuration chosen on validation, one seed; kNN "
        "reference: every training label",
    ),
]

PARETO = "python -m benchmarks.bench_pareto --json"
DELEGATED = {  # published efficiency figures another benchmark reruns
    "moasha_hv_ratio, no_stopping_hv_ratio (docs/benchmarks.md)": PARETO,
    "tie_break_replay hypervolume ratio 0.970 (docs/search.md, moasha)": PARETO,
    "mnist_d2_wall_ratio, *_front_hv (mnist_d2_moasha.yaml's header)": (
        f"{PARETO} --only-mnist --data-dir DIR"
    ),
}


def compare(published: Numbers, measured: Numbers) -> list[dict[str, Any]]:
    """One row per figure, published first, then what only the measurement has."""
    rows = []
    for key in [*published, *(k for k in measured if k not in published)]:
        pub, got = published.get(key), measured.get(key)
        both = pub is not None and got is not None and not (math.isnan(pub) or math.isnan(got))
        rows.append(
            {
                "figure": key,
                "published": pub,
                "measured": _round(got),
                "difference": _round(got - pub) if both else None,
            }
        )
    return rows


def _round(value: float | None) -> float | None:
    """Four decimals, five below 0.1 (recon_error's scale), as the figures are published."""
    if value is None or math.isnan(value):
        return value
    return round(value, 5 if abs(value) < 0.1 else 4)


def _cell(value: float | None) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:g}"
    )


def print_rows(rows: list[dict[str, Any]]) -> None:
    width = max(len(r["figure"]) for r in rows)
    print(f"  {'figure':<{width}}  {'published':>9}  {'measured':>9}  {'diff':>8}")
    for r in rows:
        print(
            f"  {r['figure']:<{width}}  {_cell(r['published']):>9}  {_cell(r['measured']):>9}  "
            f"{_cell(r['difference']):>8}"
        )


def run_figure(figure: Figure, ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"where": figure.where, "command": figure.command, "note": figure.note}
    print(f"\n{figure.name}: {figure.where}\n  {figure.command}\n  ({figure.note})", flush=True)
    if figure.mnist and mnist_dir(ctx.data_dir) is None:
        out["status"] = skipped_text(ctx.data_dir)
        print(f"  {out['status']}", flush=True)
        return out
    start = time.perf_counter()
    try:
        measured = figure.measure(ctx)
    except (Exception, SystemExit) as err:  # one entry's failure costs that entry, not the others
        out |= {"status": f"failed: {err}"[:2000], "seconds": round(time.perf_counter() - start, 1)}
        print(f"  {out['status']}", flush=True)
        return out
    out |= {
        "status": "smoke (not comparable)" if ctx.smoke else "measured",
        "seconds": round(time.perf_counter() - start, 1),
        "rows": compare(figure.published, measured),
    }
    print_rows(out["rows"])
    print(f"  {out['status']} in {out['seconds']:.0f} s", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_json(parser)
    add_data_dir(parser, "the MNIST figures")
    names = [f.name for f in FIGURES]
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run this entry alone (repeatable): {', '.join(names)}",
    )
    parser.add_argument(
        "--list", action="store_true", help="name the entries and what they reproduce"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few iterations each: the code path only"
    )
    args = parser.parse_args()
    if args.list:
        for f in FIGURES:
            print(
                f"{f.name:18s} {'MNIST, --data-dir' if f.mnist else 'digits':18s} ~{f.minutes} "
                f"min  {f.where}"
            )
        for what, command in DELEGATED.items():
            print(f"{'(delegated)':18s} {what}: {command}")
        return 0
    machine = Machine()
    chosen = [f for f in FIGURES if not args.only or f.name in args.only]
    figures: dict[str, Any] = {}
    with scratch("bq-") as tmp:
        ctx = Context(args.data_dir, args.smoke, tmp)
        try:
            for figure in chosen:
                figures[figure.name] = run_figure(figure, ctx)
        finally:
            if ctx.ray_started:
                import ray

                ray.shutdown()
    report: dict[str, Any] = {
        "figures": figures,
        "delegated": DELEGATED,
        "smoke": args.smoke,
        **machine.done(),
    }
    print(f"\n{machine.line()}")
    if args.json:
        emit_json(report)
    return 1 if any(f["status"].startswith("failed") for f in figures.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
