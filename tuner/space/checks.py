"""The schema checks of a search file's top level (name, metric, search, resources, models,
scheduler), run by `load.load_spec` as the file loads; `param_checks` has those of fixed: and
params:. `Ctx.fail` turns a problem into "file:line: key: problem." and raises TunerError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from tuner.errors import TunerError, did_you_mean
from tuner.space.spec import SEARCHES, Param, Scheduler
from tuner.trainer.config import FIELDS, TrialConfig
from tuner.trainer.metrics import METRIC_MODES

TOP_KEYS = ("name", "description", "metric", "mode", "search", "samples", "max_concurrent",
            "scheduler", "resources", "seed", "checkpoint_every", "max_failures", "fixed", "params",
            "log_models", "register_as", "repeats", "require")
LOG_MODELS = ("best", "all", "none")  # best: the best trial, or a multi-objective search's Pareto front


@dataclass(frozen=True)
class Ctx:
    path: Path
    lines: dict[str, int]

    def fail(self, key: str, problem: str) -> NoReturn:
        parts = key.split(".")
        line = next((self.lines[".".join(parts[:i])] for i in range(len(parts), 0, -1)
                     if ".".join(parts[:i]) in self.lines), None)
        where = f"{self.path}:{line}" if line else str(self.path)
        raise TunerError(f"{where}: {key}: {problem}.")


def _int(ctx: Ctx, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        ctx.fail(key, f"{value!r} is not valid: expected an integer >= {minimum}")
    return value


def _number(ctx: Ctx, key: str, value: Any, minimum: float, inclusive: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (value == minimum and not inclusive):
        ctx.fail(key, f"{value!r} is not valid: expected a number {'>=' if inclusive else '>'} {minimum}")
    return float(value)


def _names(ctx: Ctx, key: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) for v in items):
        ctx.fail(key, f"{value!r} is not valid: expected a name or a list of names")
    return tuple(items)


def check_top(ctx: Ctx, raw: dict, default_name: str) -> dict[str, Any]:
    """Every top-level setting except fixed/params/scheduler, with defaults filled in."""
    for key in raw:
        if key not in TOP_KEYS:
            hint = (" (a trial setting: put it under fixed: or params:)" if str(key) in FIELDS
                    else did_you_mean(key, TOP_KEYS))
            ctx.fail(str(key), f"unknown key{hint}. Valid keys: {', '.join(TOP_KEYS)}")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        ctx.fail("name", f"{name!r} is not valid: expected the MLflow experiment name")
    metric = _names(ctx, "metric", raw.get("metric", "knn_accuracy"))
    for m in metric:
        if m not in METRIC_MODES:
            ctx.fail("metric", f"unknown metric {m!r}{did_you_mean(m, METRIC_MODES)}. "
                               f"Valid: {', '.join(METRIC_MODES)}")
    if len(set(metric)) != len(metric):
        ctx.fail("metric", "a metric is listed twice")
    mode = _names(ctx, "mode", raw["mode"]) if "mode" in raw else tuple(METRIC_MODES[m] for m in metric)
    if len(mode) != len(metric) or any(m not in ("max", "min") for m in mode):
        ctx.fail("mode", f"{raw.get('mode')!r} is not valid: expected max or min for each metric "
                         f"({len(metric)}: {', '.join(metric)})")
    search = raw.get("search", "grid")
    if search not in SEARCHES:
        ctx.fail("search", f"{search!r} is not valid: expected one of {', '.join(SEARCHES)}"
                           f"{did_you_mean(search, SEARCHES)}")
    max_concurrent = raw.get("max_concurrent")
    return {
        "name": name.strip(), "description": str(raw.get("description") or "").strip(),
        "metric": metric, "mode": mode, "search": search,
        "samples": _int(ctx, "samples", raw.get("samples", 1 if search == "grid" else 10), 1),
        "max_concurrent": None if max_concurrent is None else _int(ctx, "max_concurrent", max_concurrent, 1),
        **_check_resources(ctx, raw.get("resources") or {}),
        "seed": _int(ctx, "seed", raw.get("seed", 0), 0),
        "checkpoint_every": _int(ctx, "checkpoint_every", raw.get("checkpoint_every", 1), 1),
        "max_failures": _int(ctx, "max_failures", raw.get("max_failures", 0), 0),
        "repeats": _int(ctx, "repeats", raw.get("repeats", 1), 1),
        "require": _check_require(ctx, raw.get("require") or {}),
        **_check_models(ctx, raw, name.strip()),
    }


def _check_require(ctx: Ctx, require: Any) -> dict[str, float]:
    """Bounds the chosen trial must meet on validation, e.g. {recon_error: 0.045}: at most the
    bound for a minimised metric, at least it for a maximised one (the registry's mode)."""
    if not isinstance(require, dict):
        ctx.fail("require", f"{require!r} is not valid: expected metric: bound pairs, such as "
                            f"{{recon_error: 0.045}}")
    for metric, bound in require.items():
        if metric not in METRIC_MODES:
            ctx.fail(f"require.{metric}", f"unknown metric {metric!r}{did_you_mean(str(metric), METRIC_MODES)}. "
                                          f"Valid: {', '.join(METRIC_MODES)}")
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            ctx.fail(f"require.{metric}", f"{bound!r} is not valid: expected a number (the "
                                          f"{'largest' if METRIC_MODES[metric] == 'min' else 'smallest'} "
                                          f"{metric} a chosen trial may have)")
    return {str(m): float(b) for m, b in require.items()}


def _check_resources(ctx: Ctx, resources: Any) -> dict[str, float]:
    if not isinstance(resources, dict) or set(resources) - {"cpus", "gpus"}:
        ctx.fail("resources", f"{resources!r} is not valid: expected {{cpus: 1, gpus: 0}} per trial")
    return {"cpus": _number(ctx, "resources.cpus", resources.get("cpus", 1), 0, inclusive=False),
            "gpus": _number(ctx, "resources.gpus", resources.get("gpus", 0), 0)}


def _check_models(ctx: Ctx, raw: dict, name: str) -> dict[str, Any]:
    """Which trials' models are logged, and the registered model the best one joins (None: none)."""
    log_models = raw.get("log_models", "best")
    if log_models not in LOG_MODELS:
        ctx.fail("log_models", f"{log_models!r} is not valid: expected one of {', '.join(LOG_MODELS)}"
                               f"{did_you_mean(log_models, LOG_MODELS)}")
    register_as = raw.get("register_as", None if log_models == "none" else name)
    if register_as is not None and (not isinstance(register_as, str) or not register_as.strip()):
        ctx.fail("register_as", f"{register_as!r} is not valid: expected a registered model name, or null "
                                f"to register nothing")
    if register_as is not None and log_models == "none":
        ctx.fail("register_as", "log_models: none logs no model to register: set log_models: best, "
                                "or register_as: null")
    return {"log_models": log_models, "register_as": register_as.strip() if register_as else None}


def check_objective(ctx: Ctx, top: dict, params: dict[str, Param], base: TrialConfig) -> None:
    """Metrics (to rank by, or bound in require:) some trial would not report are refused: kl
    needs VAEs, fine_knn merged labels, and a loss term weighted by zero is not computed (at
    mu = 1 no reconstruction, at mu = 0 no mining), so its trials could not be compared."""
    encoders = {base.encoder} if "encoder" not in params else set(params["encoder"].probes())
    mus = {float(base.mu)} if "mu" not in params else {float(m) for m in params["mu"].probes()}
    if top["repeats"] > 1 and top["search"] == "optuna" and len(top["metric"]) > 1:
        ctx.fail("repeats", "Ray's Repeater (repeats under search: optuna) averages one metric, and "
                            f"this search has several ({', '.join(top['metric'])}): use repeats: 1, or "
                            "search: grid / random, where repeats are a seed axis")
    for key, metric in [("metric", m) for m in top["metric"]] + [(f"require.{m}", m) for m in top["require"]]:
        if metric == "kl" and encoders != {"vae"}:
            ctx.fail(key, "kl is reported by VAE trials only: fix encoder: vae, or choose another metric")
        if metric == "fine_knn_accuracy" and base.composite_labels is None:
            ctx.fail(key, "fine_knn_accuracy exists only when composite_labels merges classes "
                          "(fixed: composite_labels: {...})")
        if metric in ("recon_loss", "kl") and 1.0 in mus:
            ctx.fail(key, f"{metric} is not computed by trials with mu = 1 (no reconstruction): keep mu "
                          f"below 1, or rank by recon_error (validation), which every trial reports")
        if metric == "metric_loss" and 0.0 in mus:
            ctx.fail(key, "metric_loss is not computed by trials with mu = 0 (no constraints mined): keep "
                          "mu above 0, or rank by knn_accuracy (validation), which every trial reports")


def check_scheduler(ctx: Ctx, raw: Any, metric: tuple[str, ...], params: dict[str, Param],
                    base: TrialConfig, repeats: int = 1) -> Scheduler | None:
    if raw in (None, False, "none"):
        return None
    spec = {"type": raw} if isinstance(raw, str) else raw
    if not isinstance(spec, dict) or spec.get("type") != "asha":
        ctx.fail("scheduler", f"{raw!r} is not valid: expected none, asha, or {{type: asha, "
                              f"grace_period: N, reduction_factor: 3, brackets: 1}}")
    asha_keys = ("type", "grace_period", "reduction_factor", "brackets")
    for key in spec:
        if key not in asha_keys:
            ctx.fail(f"scheduler.{key}", f"unknown key{did_you_mean(key, asha_keys)}. Valid: {', '.join(asha_keys)}")
    if repeats > 1:
        ctx.fail("repeats", f"{repeats} seeds per configuration cannot run under scheduler: asha: early "
                            "stopping would stop some seeds of a configuration and not others, so their "
                            "mean would compare unequal runs. Use scheduler: none, or repeats: 1")
    if len(metric) > 1:
        ctx.fail("scheduler", "a scheduler stops trials on one metric, and this search has several "
                              f"({', '.join(metric)}): use scheduler: none")
    iters = params["iterations"].probes() if "iterations" in params else (base.iterations,)
    evals = params["eval_every"].probes() if "eval_every" in params else (base.eval_every,)
    max_t = int(max(iters))
    grace = _int(ctx, "scheduler.grace_period", spec.get("grace_period", min(int(min(evals)), max_t)), 1)
    if grace > max_t:
        ctx.fail("scheduler.grace_period", f"{grace} is beyond the last iteration ({max_t}): "
                                           f"ASHA would never stop a trial")
    rf = _number(ctx, "scheduler.reduction_factor", spec.get("reduction_factor", 3), 1, inclusive=False)
    return Scheduler(grace, rf, _int(ctx, "scheduler.brackets", spec.get("brackets", 1), 1), max_t)
