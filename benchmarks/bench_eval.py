"""Evaluation benchmark: the share of a trial's time spent measuring it.

    python -m benchmarks.bench_eval [--json] [--rounds 3] [--set dataset=mnist --data-dir DIR]

Runs `fit` as `tuner train` does (one torch thread, defaults: 1,500 iterations, an evaluation
every 250) on what a trial receives (`without_test()`). Each evaluation (embedding train and
validation, knn_accuracy, recon_error, precision_at_1, r_precision, map_at_r, nmi, ami,
trustworthiness) is read off the fit's own history: at each one, `seconds` (since the fit began)
minus `train_seconds` (the training steps' share) grew by that evaluation's time; the first also
holds the fit's setup (model and tensors: milliseconds). eval_share: the fit's seconds outside
training steps / its seconds, the median of --rounds runs. Target on digits <= 0.10.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch

from benchmarks.common import Machine, add_json, emit_json
from tuner.commands.args import parse_set_pairs
from tuner.core.config import TrialConfig
from tuner.data import load_features
from tuner.trainer.train import fit


def one_trial(cfg: TrialConfig, data: Any) -> tuple[float, list[float]]:
    """(fit seconds, seconds of each evaluation) of one trial, from its history."""
    result = fit(cfg, data)
    outside = [
        h["seconds"] - h["train_seconds"] for h in result.history
    ]  # grows at each evaluation
    return result.seconds, [b - a for a, b in zip([0.0, *outside], outside)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_json(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a trial setting"
    )
    parser.add_argument(
        "--data-dir", default=None, help="mnist/cifar10 files (default: $TUNER_DATA_DIR or ./data)"
    )
    args = parser.parse_args()
    machine = Machine()
    torch.set_num_threads(1)
    cfg = TrialConfig.from_dict(parse_set_pairs(args.set), source="--set")
    data = load_features(cfg, data_dir=args.data_dir, progress=False).without_test()
    shares, fits, evals = [], [], []
    for round_ in range(args.rounds):
        seconds, spent = one_trial(cfg, data)
        shares.append(sum(spent) / seconds)
        fits.append(seconds)
        evals.append(sum(spent))
        print(
            f"round {round_ + 1}: fit {seconds:.2f} s, {len(spent)} evaluations {sum(spent):.3f} s "
            f"(each {', '.join(f'{s:.3f}' for s in spent)}), share {shares[-1]:.1%}"
        )
    figures = {
        "dataset": cfg.dataset,
        "n_train": len(data.y_train),
        "n_val": len(data.y_val),
        "fit_seconds": statistics.median(fits),
        "eval_seconds": statistics.median(evals),
        "eval_share": statistics.median(shares),
    }
    print(
        f"{cfg.dataset}: evaluation takes {figures['eval_share']:.1%} of a trial's time (median "
        f"of {args.rounds})"
    )
    figures |= machine.done()
    print(machine.line())
    if args.json:
        emit_json(figures)


if __name__ == "__main__":
    main()
