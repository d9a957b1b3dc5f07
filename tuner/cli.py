"""`tuner search | train | validate | report | ui`: parse, call one function, map user errors to exit 2.

Heavy imports (torch, Ray, MLflow) happen inside each command so that `tuner --help`
and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from tuner.errors import TunerError
from tuner.processes import terminate_as_interrupt
from tuner.space.load import YamlLoader
from tuner.space.safe_yaml import check_yaml_events

DEFAULT_TRACKING_URI_HINT = "sqlite:///mlflow.db in the working directory (or $MLFLOW_TRACKING_URI)"


def parse_set_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs whose values parse as YAML (`normalize=false`, `hidden_dims=[64,32]`)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise TunerError(f"--set {pair!r}: expected key=value, e.g. --set iterations=200.")
        try:
            check_yaml_events(text, Path("--set"), YamlLoader)  # aliases and deep nesting, as in search files
            out[key.strip()] = yaml.load(text, Loader=YamlLoader) if text.strip() else None
        except yaml.YAMLError as err:
            raise TunerError(f"--set {pair!r}: the value is not valid YAML ({' '.join(str(err).split())}).") from None
        except TunerError as err:
            raise TunerError(f"--set {pair!r}: {str(err).split(': ', 1)[1].replace('search files', '--set')}") from None
    return out


# --------------------------------------------------------------------------- commands

def cmd_train(args: argparse.Namespace) -> int:
    from tuner.data import load_features
    from tuner.trainer.config import TrialConfig
    from tuner.trainer.train import evaluate_split, fit

    import torch

    source_run = None
    if args.from_run:  # rebuild a trial's config from its MLflow run
        from tuner.rerun import config_from_run

        cfg, source_run = config_from_run(args.from_run, args.tracking_uri, parse_set_pairs(args.set))
    else:
        cfg = TrialConfig.from_dict(parse_set_pairs(args.set), source="--set")
    torch.set_num_threads(args.threads)
    data = load_features(cfg, data_dir=args.data_dir, progress=not args.json)
    # Trained and measured on validation as a search's trial is; the test split is read once, at the end.
    result = fit(cfg, data.without_test(), report=None if args.json else _print_progress)
    test = evaluate_split(cfg, result.model, data, "test")
    timing = {"iterations": cfg.iterations, "seconds": round(result.seconds, 3)}
    if args.json:
        print(json.dumps({**result.metrics, **test, **timing}))
        return 0
    sections = ((f"validation ({len(data.y_val)} samples; what a search ranks by)", result.metrics),
                (f"test ({len(data.y_test)} samples, read once after training)", test), ("run", timing))
    width = max(len(k) for _, values in sections for k in values)
    for title, values in sections:
        print(f"{title}:")
        for key, value in values.items():
            if key not in ("iteration", "seconds") or values is timing:
                print(f"  {key:<{width}}  {_shown(value)}")
    if source_run is not None:
        from tuner.rerun import print_comparison

        print_comparison(source_run, result.metrics)
    return 0


def _shown(value: Any) -> str:
    # Counts reach us as floats (trustworthiness_n): 360, not 360.0000.
    return f"{value:.4f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 1-65535, got {text!r}")
    return value


def _print_progress(metrics: dict[str, float], _state: Any) -> None:
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "iteration")
    print(f"iteration {int(metrics['iteration'])}: {shown}", file=sys.stderr, flush=True)


def cmd_validate(args: argparse.Namespace) -> int:
    from tuner.space.load import load_spec

    spec = load_spec(args.space, overrides=parse_set_pairs(args.set), samples=args.samples,
                     max_concurrent=args.max_concurrent)
    print(spec.describe())
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from tuner.runner.search import run_search
    from tuner.space.load import load_spec

    spec = load_spec(args.space, overrides=parse_set_pairs(args.set), samples=args.samples,
                     max_concurrent=args.max_concurrent)
    run_search(spec, tracking_uri=args.tracking_uri, storage_path=args.storage_path,
               address=args.address, experiment=args.experiment, resume=args.resume,
               data_dir=args.data_dir, verbose=True, tune_console=args.verbose, warm_start=args.warm_start)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tuner.tracking.reader import print_report

    print_report(tracking_uri=args.tracking_uri, experiment=args.experiment, csv_path=args.csv)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from tuner.tracking.reader import serve_ui

    return serve_ui(tracking_uri=args.tracking_uri, host=args.host, port=args.port)


def cmd_sync(args: argparse.Namespace) -> int:
    from tuner.tracking.sync import sync_search

    sync_search(storage_path=args.storage_path, experiment=args.experiment, tracking_uri=args.tracking_uri)
    return 0


# --------------------------------------------------------------------------- parser

def _train_help() -> str:
    from tuner.trainer.config import FIELD_HELP, TrialConfig

    defaults = TrialConfig().to_dict()
    lines = ["trial settings for --set key=value (default in brackets):"]
    lines += [f"  {name:<20} {text} [{defaults[name]!r}]" for name, text in FIELD_HELP.items()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_set(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a trial setting; the value parses as YAML (repeatable)")

    def add_data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default=os.environ.get("TUNER_DATA_DIR", "data"),
                       help="where mnist/cifar10/imagenet files live (default: $TUNER_DATA_DIR or ./data)")

    def add_tracking(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tracking-uri", default=None,
                       help=f"MLflow tracking URI (default: {DEFAULT_TRACKING_URI_HINT})")

    train = sub.add_parser("train", help="train one trial: no Ray, no MLflow",
                           epilog=_train_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_set(train)
    add_data_dir(train)
    train.add_argument("--json", action="store_true", help="print one JSON object with the final metrics")
    train.add_argument("--threads", type=_positive_int, default=1,
                       help="torch threads (default 1: these MLPs gain little from more, and "
                            "lose a lot when the cores are busy)")
    train.add_argument("--from-run", default=None, metavar="RUN_ID",
                       help="start from the config of this trial's MLflow run (--set then changes it)")
    add_tracking(train)
    train.set_defaults(func=cmd_train)

    for name, func, text in (("search", cmd_search, "run a search on Ray Tune, logged to MLflow"),
                             ("validate", cmd_validate, "check a search-space file and print the resolved search")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--space", required=True, type=Path, help="search-space YAML file")
        add_set(p)
        p.add_argument("--samples", type=int, default=None, help="override the file's samples")
        p.add_argument("--max-concurrent", type=int, default=None, help="override the file's max_concurrent")
        p.set_defaults(func=func)
        if name == "search":
            add_tracking(p)
            add_data_dir(p)
            p.add_argument("--storage-path", default=None,
                           help="where Tune keeps results and checkpoints (default: ./ray_results)")
            p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                           help="existing Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
            p.add_argument("--experiment", default=None, help="MLflow experiment (default: the file's name)")
            p.add_argument("--resume", action="store_true", help="continue an interrupted search")
            p.add_argument("--warm-start", default=None, metavar="EXPERIMENT_OR_RUN_ID",
                           help="tell Optuna the finished trials of an earlier search (an experiment's latest, "
                                "a search id or a parent run id) that fit this space; optuna searches only")
            p.add_argument("--verbose", action="store_true",
                           help="show Ray Tune's own per-trial output instead of the progress line "
                                "(it is always in tune_output.log in the experiment directory)")

    report = sub.add_parser("report", help="table of a search's trials, best first")
    add_tracking(report)
    report.add_argument("--experiment", default=None, help="experiment name (default: the latest search)")
    report.add_argument("--csv", default=None, type=Path, help="also write the table as CSV")
    report.set_defaults(func=cmd_report)

    ui = sub.add_parser("ui", help="start the MLflow UI on this store")
    add_tracking(ui)
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    ui.add_argument("--port", type=_port, default=5000, help="TCP port, 1-65535 (default 5000)")
    ui.set_defaults(func=cmd_ui)

    sync = sub.add_parser("sync", help="write into MLflow what a search's Tune results hold and MLflow lacks "
                                       "(after the tracking server was unreachable); safe to repeat")
    add_tracking(sync)
    sync.add_argument("--storage-path", default=None,
                      help="the search's Tune storage path, or its experiment directory (default: ./ray_results)")
    sync.add_argument("--experiment", default=None,
                      help="the search's experiment (default: the one search under --storage-path)")
    sync.set_defaults(func=cmd_sync)

    # ---- issue 9: models (tuner embed); kept in its own module
    from tuner.embed_cmd import add_parser as add_embed_parser

    add_embed_parser(sub, add_data_dir, add_tracking)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with terminate_as_interrupt():
            return int(args.func(args) or 0)
    except TunerError as err:
        print(f"tuner {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tuner {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `tuner report | head`: the reader left; say nothing more on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
