"""Evaluation benchmark: the share of a trial's time spent measuring it.

    python benchmarks/bench_eval.py [--json] [--rounds 3] [--set dataset=mnist --data-dir DIR]

Runs `fit` as `tuner train` does (one torch thread, defaults: 1,500 iterations, an evaluation
every 250) on what a trial receives (`without_test()`), timing every call of the evaluation
(embedding train and validation, knn_accuracy, recon_error, precision_at_1, r_precision,
map_at_r, nmi, ami, trustworthiness). eval_share: evaluation seconds / fit seconds, the median
of --rounds runs. Target on digits <= 0.10.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tuner.trainer.train as train  # noqa: E402
from tuner.commands.args import parse_set_pairs  # noqa: E402
from tuner.data import load_features  # noqa: E402
from tuner.core.config import TrialConfig  # noqa: E402


def one_trial(cfg: TrialConfig, data: Any) -> tuple[float, list[float]]:
    """(fit seconds, seconds of each evaluation) of one trial."""
    spent: list[float] = []
    measure = train.evaluate

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = measure(*args, **kwargs)
        spent.append(time.perf_counter() - start)
        return out

    train.evaluate = timed
    try:
        result = train.fit(cfg, data)
    finally:
        train.evaluate = measure
    return result.seconds, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a trial setting")
    parser.add_argument("--data-dir", default=None, help="mnist/cifar10 files (default: $TUNER_DATA_DIR or ./data)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = TrialConfig.from_dict(parse_set_pairs(args.set), source="--set")
    data = load_features(cfg, data_dir=args.data_dir, progress=False).without_test()
    shares, fits, evals = [], [], []
    for round_ in range(args.rounds):
        seconds, spent = one_trial(cfg, data)
        shares.append(sum(spent) / seconds)
        fits.append(seconds)
        evals.append(sum(spent))
        print(f"round {round_ + 1}: fit {seconds:.2f} s, {len(spent)} evaluations {sum(spent):.3f} s "
              f"(each {', '.join(f'{s:.3f}' for s in spent)}), share {shares[-1]:.1%}")
    figures = {"dataset": cfg.dataset, "n_train": len(data.y_train), "n_val": len(data.y_val),
               "fit_seconds": statistics.median(fits), "eval_seconds": statistics.median(evals),
               "eval_share": statistics.median(shares)}
    print(f"{cfg.dataset}: evaluation takes {figures['eval_share']:.1%} of a trial's time (median of {args.rounds})")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
