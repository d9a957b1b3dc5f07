"""`tuner train`: one trial, no Ray, no MLflow (except --from-run, which reads a trial's config
back).

Trained and measured on validation as a search's trial is; the test split is read once, at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tuner.commands.args import add_data_dir, add_set, add_tracking, parse_set_pairs, positive_int
from tuner.core.config import FIELD_HELP, TrialConfig
from tuner.core.config_values import check_batch_for_classes


def add_parser(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train one trial: no Ray, no MLflow",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_set(train)
    add_data_dir(train)
    train.add_argument(
        "--json", action="store_true", help="print one JSON object with the final metrics"
    )
    train.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads (default 1: these MLPs gain little from more, and "
        "lose a lot when the cores are busy)",
    )
    train.add_argument(
        "--from-run",
        default=None,
        metavar="RUN_ID",
        help="start from the config of this trial's MLflow run (--set then changes it)",
    )
    add_tracking(train)
    train.set_defaults(func=train_command)


def _settings_help() -> str:
    defaults = TrialConfig().to_dict()
    lines = ["trial settings for --set key=value (default in brackets):"]
    lines += [f"  {name:<20} {text} [{defaults[name]!r}]" for name, text in FIELD_HELP.items()]
    return "\n".join(lines)


def train_command(args: argparse.Namespace) -> int:
    import torch

    from tuner.data import load_features
    from tuner.data.judgments import check_placed
    from tuner.trainer.evaluation import evaluate_split
    from tuner.trainer.labels import labeled_rows_of
    from tuner.trainer.train import fit

    source_run = None
    if args.from_run:  # rebuild a trial's config from its MLflow run
        from tuner.tracking.rerun import config_from_run

        cfg, source_run = config_from_run(
            args.from_run, args.tracking_uri, parse_set_pairs(args.set)
        )
    else:
        cfg = TrialConfig.from_dict(parse_set_pairs(args.set), source="--set")
    torch.set_num_threads(args.threads)
    data = load_features(cfg, data_dir=args.data_dir, progress=not args.json)
    if cfg.constraints is None:  # judgments' batches are not class-stratified
        check_batch_for_classes(cfg.batch_size, data.n_classes, cfg.dataset)
    # labels_per_class above the smallest class: refused before training
    labeled_rows_of(cfg, data.y_train)
    if data.judgments is not None:
        check_placed(data.judgments, cfg.batch_size)
    result = fit(cfg, data.without_test(), on_evaluation=None if args.json else _print_progress)
    test = evaluate_split(cfg, result.model, data, "test")
    timing = {"iterations": cfg.iterations, "seconds": round(result.seconds, 3)}
    if args.json:
        print(json.dumps({**result.metrics, **test, **timing}))
        return 0
    _print_sections(
        (
            (f"validation ({len(data.y_val)} samples; what a search ranks by)", result.metrics),
            (f"test ({len(data.y_test)} samples, read once after training)", test),
            ("run", timing),
        )
    )
    if source_run is not None:
        from tuner.tracking.rerun import print_comparison

        print_comparison(source_run, result.metrics)
    return 0


def _print_sections(sections: tuple[tuple[str, dict[str, Any]], ...]) -> None:
    width = max(len(k) for _, values in sections for k in values)
    for title, values in sections:
        print(f"{title}:")
        for key, value in values.items():
            if key not in ("iteration", "seconds") or title == "run":
                print(f"  {key:<{width}}  {_shown(value)}")


def _shown(value: Any) -> str:
    # Counts reach us as floats (trustworthiness_n): 360, not 360.0000.
    return f"{value:.4f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


def _print_progress(metrics: dict[str, float], _state: Any) -> None:
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "iteration")
    print(f"iteration {int(metrics['iteration'])}: {shown}", file=sys.stderr, flush=True)
