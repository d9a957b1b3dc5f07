"""The schema checks of a search file's top level (name, metric, search, resources, models,
scheduler), run by `load.load_spec` as the file loads; `param_checks` has those of fixed: and
params:. `Ctx.fail` turns a problem into "file:line: key: problem." and raises TunerError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from tuner.core.config import FIELDS, TrialConfig
from tuner.core.config_values import MAX_SEED
from tuner.core.metrics import METRIC_MODES, METRIC_RANGES
from tuner.data.judgments import check_enough, n_held, read_judgments
from tuner.errors import TunerError, did_you_mean
from tuner.space.spec import SEARCHES, Param, Scheduler
from tuner.system.tune_storage import check_experiment_name

TOP_KEYS = (
    "name",
    "description",
    "metric",
    "mode",
    "search",
    "samples",
    "max_concurrent",
    "scheduler",
    "resources",
    "seed",
    "checkpoint_every",
    "max_failures",
    "fixed",
    "params",
    "log_models",
    "register_as",
    "repeats",
    "require",
)
LOG_MODELS = (
    "best",
    "all",
    "none",
)  # best: the best trial, or a multi-objective search's Pareto front


@dataclass(frozen=True)
class Ctx:
    path: Path
    lines: dict[str, int]

    def fail(self, key: str, problem: str) -> NoReturn:
        parts = key.split(".")
        line = next(
            (
                self.lines[".".join(parts[:i])]
                for i in range(len(parts), 0, -1)
                if ".".join(parts[:i]) in self.lines
            ),
            None,
        )
        where = f"{self.path}:{line}" if line else str(self.path)
        raise TunerError(f"{where}: {key}: {problem}.")


def _int(ctx: Ctx, key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        valid = (
            f"an integer >= {minimum}" if maximum is None else f"an integer in {minimum}..{maximum}"
        )
        ctx.fail(key, f"{value!r} is not valid: expected {valid}")
    return value


def _number(ctx: Ctx, key: str, value: Any, minimum: float, inclusive: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (value == minimum and not inclusive):
        ctx.fail(
            key, f"{value!r} is not valid: expected a number {'>=' if inclusive else '>'} {minimum}"
        )
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
            hint = (
                " (a trial setting: put it under fixed: or params:)"
                if str(key) in FIELDS
                else did_you_mean(key, TOP_KEYS)
            )
            ctx.fail(str(key), f"unknown key{hint}. Valid keys: {', '.join(TOP_KEYS)}")
    name = _check_name(ctx, raw.get("name", default_name))
    metric = _names(ctx, "metric", raw.get("metric", "knn_accuracy"))
    for m in metric:
        if m not in METRIC_MODES:
            ctx.fail(
                "metric",
                f"unknown metric {m!r}{did_you_mean(m, METRIC_MODES)}. "
                f"Valid: {', '.join(METRIC_MODES)}",
            )
    if len(set(metric)) != len(metric):
        ctx.fail("metric", "a metric is listed twice")
    mode = (
        _names(ctx, "mode", raw["mode"])
        if "mode" in raw
        else tuple(METRIC_MODES[m] for m in metric)
    )
    if len(mode) != len(metric) or any(m not in ("max", "min") for m in mode):
        ctx.fail(
            "mode",
            f"{raw.get('mode')!r} is not valid: expected max or min for each metric "
            f"({len(metric)}: {', '.join(metric)})",
        )
    search = raw.get("search", "grid")
    if search not in SEARCHES:
        ctx.fail(
            "search",
            f"{search!r} is not valid: expected one of {', '.join(SEARCHES)}"
            f"{did_you_mean(search, SEARCHES)}",
        )
    max_concurrent = raw.get("max_concurrent")
    return {
        "name": name.strip(),
        "description": str(raw.get("description") or "").strip(),
        "metric": metric,
        "mode": mode,
        "search": search,
        "samples": _int(ctx, "samples", raw.get("samples", 1 if search == "grid" else 10), 1),
        "max_concurrent": None
        if max_concurrent is None
        else _int(ctx, "max_concurrent", max_concurrent, 1),
        **_check_resources(ctx, raw.get("resources") or {}),
        # The searcher's seed: Optuna hands it to numpy's RandomState, which takes 32 bits.
        "seed": _int(ctx, "seed", raw.get("seed", 0), 0, MAX_SEED),
        "checkpoint_every": _int(ctx, "checkpoint_every", raw.get("checkpoint_every", 1), 1),
        "max_failures": _int(ctx, "max_failures", raw.get("max_failures", 0), 0),
        "repeats": _int(ctx, "repeats", raw.get("repeats", 1), 1),
        "require": _check_require(ctx, raw.get("require") or {}),
        **_check_models(ctx, raw, name),
    }


def _check_name(ctx: Ctx, name: Any) -> str:
    """The experiment name, refused here by the rule `search` applies to it (it names the
    search's directory under the storage path), so validate finds what search would."""
    if not isinstance(name, str) or not name.strip():
        ctx.fail("name", f"{name!r} is not valid: expected the MLflow experiment name")
    try:
        check_experiment_name(name.strip())
    except TunerError as err:
        rule = str(err).removeprefix(f"--experiment {name.strip()!r}: ").rstrip(".")
        ctx.fail("name", f"{name!r} is not valid: {rule}")
    return name.strip()


def _check_require(ctx: Ctx, require: Any) -> dict[str, float]:
    """Bounds the chosen trial must meet on validation, e.g. {recon_error: 0.045}: at most the
    bound for a minimised metric, at least it for a maximised one (the registry's mode)."""
    if not isinstance(require, dict):
        ctx.fail(
            "require",
            f"{require!r} is not valid: expected metric: bound pairs, such as "
            f"{{recon_error: 0.045}}",
        )
    for metric, bound in require.items():
        if metric not in METRIC_MODES:
            ctx.fail(
                f"require.{metric}",
                f"unknown metric {metric!r}{did_you_mean(str(metric), METRIC_MODES)}. "
                f"Valid: {', '.join(METRIC_MODES)}",
            )
        what = (
            f"{'largest' if METRIC_MODES[metric] == 'min' else 'smallest'} {metric} a chosen "
            "trial may have"
        )
        if (
            isinstance(bound, bool)
            or not isinstance(bound, (int, float))
            or not math.isfinite(bound)
        ):
            ctx.fail(f"require.{metric}", f"{bound!r} is not valid: expected a number (the {what})")
        low, high = METRIC_RANGES[metric]
        if not low <= bound <= high:  # a bound no trial can meet, or one every trial meets
            span = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
            ctx.fail(
                f"require.{metric}",
                f"{bound!r} is not valid: {metric} is always {span}, so expected "
                f"a number {span} (the {what})",
            )
    return {str(m): float(b) for m, b in require.items()}


def _check_resources(ctx: Ctx, resources: Any) -> dict[str, float]:
    if not isinstance(resources, dict) or set(resources) - {"cpus", "gpus"}:
        ctx.fail(
            "resources", f"{resources!r} is not valid: expected {{cpus: 1, gpus: 0}} per trial"
        )
    return {
        "cpus": _number(ctx, "resources.cpus", resources.get("cpus", 1), 0, inclusive=False),
        "gpus": _number(ctx, "resources.gpus", resources.get("gpus", 0), 0),
    }


def _check_models(ctx: Ctx, raw: dict, name: str) -> dict[str, Any]:
    """Which trials' models are logged, and the registered model the best one joins (None: none)."""
    log_models = raw.get("log_models", "best")
    if log_models not in LOG_MODELS:
        ctx.fail(
            "log_models",
            f"{log_models!r} is not valid: expected one of {', '.join(LOG_MODELS)}"
            f"{did_you_mean(log_models, LOG_MODELS)}",
        )
    register_as = raw.get("register_as", None if log_models == "none" else name)
    if register_as is not None and (not isinstance(register_as, str) or not register_as.strip()):
        ctx.fail(
            "register_as",
            f"{register_as!r} is not valid: expected a registered model name, or null "
            f"to register nothing",
        )
    if register_as is not None and log_models == "none":
        ctx.fail(
            "register_as",
            "log_models: none logs no model to register: set log_models: best, "
            "or register_as: null",
        )
    register_as = register_as.strip() if register_as else None
    problem = register_as and registered_model_name_problem(register_as)
    if problem and "register_as" not in raw:  # the name, by default: say so where the name is
        ctx.fail(
            "name",
            f"{name!r} is also the registered model name the best trial joins (register_as "
            f"defaults to the name), and {problem}: set register_as: to a name without them "
            f"(e.g. {_model_name_like(name)!r}), or register_as: null",
        )
    if problem:
        ctx.fail(
            "register_as",
            f"{register_as!r} is not valid: {problem}; e.g. "
            f"{_model_name_like(register_as)!r}, or null to register nothing",
        )
    return {"log_models": log_models, "register_as": register_as}


def registered_model_name_problem(name: str) -> str | None:
    """Why MLflow's model registry would refuse `name` (None: it accepts it), found before the
    search rather than after its last trial. The rule of mlflow.utils.validation
    ._validate_model_name (the SQL store's): no '/' or ':', and no name a path would resolve
    elsewhere ('.', or one starting with '..'). Kept here because importing MLflow would slow
    `tuner validate` by seconds."""
    if "/" in name or ":" in name:
        return "MLflow's registry refuses model names that contain '/' or ':'"
    if name == "." or name.startswith(".."):
        return (
            "MLflow's registry refuses model names that read as a path ('.', or starting with '..')"
        )
    return None


def _model_name_like(name: str) -> str:
    return name.replace("/", "-").replace(":", "-").lstrip(".") or "model"


def check_objective(ctx: Ctx, top: dict, params: dict[str, Param], base: TrialConfig) -> None:
    """Metrics (to rank by, or bound in require:) some trial would not report are refused: kl
    needs VAEs, fine_knn merged labels, and a loss term weighted by zero is not computed (at
    mu = 1 no reconstruction, at mu = 0 no mining), so its trials could not be compared."""
    encoders = {base.encoder} if "encoder" not in params else set(params["encoder"].probes())
    mus = {float(base.mu)} if "mu" not in params else {float(m) for m in params["mu"].probes()}
    if top["repeats"] > 1 and top["search"] == "optuna" and len(top["metric"]) > 1:
        ctx.fail(
            "repeats",
            "Ray's Repeater (repeats under search: optuna) averages one metric, and "
            f"this search has several ({', '.join(top['metric'])}): use repeats: 1, or "
            "search: grid / random, where repeats are a seed axis",
        )
    for key, metric in [("metric", m) for m in top["metric"]] + [
        (f"require.{m}", m) for m in top["require"]
    ]:
        if metric == "kl" and encoders != {"vae"}:
            ctx.fail(
                key, "kl is reported by VAE trials only: fix encoder: vae, or choose another metric"
            )
        if metric == "fine_knn_accuracy" and base.composite_labels is None:
            ctx.fail(
                key,
                "fine_knn_accuracy exists only when composite_labels merges classes "
                "(fixed: composite_labels: {...})",
            )
        if metric in ("recon_loss", "kl") and 1.0 in mus:
            ctx.fail(
                key,
                f"{metric} is not computed by trials with mu = 1 (no reconstruction): keep mu "
                f"below 1, or rank by recon_error (validation), which every trial reports",
            )
        if metric == "constraint_accuracy" and base.constraints is None:
            ctx.fail(
                key,
                "constraint_accuracy scores the held-out judgments of a constraints file: fix "
                "constraints: FILE (a CSV of pairs or triplets), or choose another metric",
            )
        if metric == "metric_loss" and 0.0 in mus:
            ctx.fail(
                key,
                "metric_loss is not computed by trials with mu = 0 (no constraints mined): keep "
                "mu above 0, or rank by knn_accuracy (validation), which every trial reports",
            )


def check_weak_supervision(ctx: Ctx, params: dict[str, Param], base: TrialConfig) -> None:
    """What trials would refuse once combined (one label setting fixed, the other searched), and
    a constraints file's own checks (its rows, its kind against `constraint`, enough judgments for
    the smallest batch), so `tuner validate` refuses what `tuner search` would. Items are checked
    against the data when it loads (the search's start, before any run exists)."""

    def given(name: str) -> bool:
        if name in params:
            return any(v is not None for v in params[name].probes())
        return getattr(base, name) is not None

    settings = [
        name for name in ("labels_per_class", "labeled_fraction", "constraints") if given(name)
    ]
    if len(settings) > 1:
        key = next((f"params.{n}" for n in settings if n in params), f"fixed.{settings[-1]}")
        ctx.fail(
            key,
            f"{' and '.join(settings)} are both set: labels_per_class and labeled_fraction say the "
            f"same thing two ways, and constraints replaces labels in training; keep one",
        )
    if base.constraints is None:
        return
    kinds = set(params["constraint"].probes()) if "constraint" in params else {base.constraint}
    sizes = params["batch_size"].probes() if "batch_size" in params else (base.batch_size,)
    for kind in sorted(kinds):
        file = read_judgments(base.constraints, kind)
        rows = len(file.items)
        check_enough(
            file.path,
            file.kind,
            rows - n_held(rows, base.val_size),
            int(min(sizes)),
            f" (of {rows} rows, after the held-out val_size share)",
        )


def check_repeat_seeds(ctx: Ctx, repeats: int, params: dict[str, Param], base: TrialConfig) -> None:
    """Repeat i of a configuration trains with its seed + i (spec.trial_config): the last one must
    still be a seed numpy takes."""
    seed = int(max(params["seed"].probes())) if "seed" in params else base.seed
    if seed + repeats - 1 > MAX_SEED:
        ctx.fail(
            "repeats",
            f"{repeats} repeats train with seeds up to {seed} + {repeats - 1}, beyond "
            f"{MAX_SEED} (2**32 - 1, the largest seed): lower the seed or the repeats",
        )


SCHEDULERS = ("asha", "moasha")
SCHEDULER_KEYS = ("type", "grace_period", "reduction_factor", "brackets")


def check_scheduler(
    ctx: Ctx,
    raw: Any,
    metric: tuple[str, ...],
    params: dict[str, Param],
    base: TrialConfig,
    repeats: int = 1,
) -> Scheduler | None:
    if raw in (None, False, "none"):
        return None
    spec = {"type": raw} if isinstance(raw, str) else raw
    if not isinstance(spec, dict) or spec.get("type") not in SCHEDULERS:
        ctx.fail(
            "scheduler",
            f"{raw!r} is not valid: expected none, asha (one metric), moasha (one or several "
            f"metrics), or {{type: moasha, grace_period: N, reduction_factor: 3, brackets: 1}}",
        )
    kind = spec["type"]
    for key in spec:
        if key not in SCHEDULER_KEYS:
            ctx.fail(
                f"scheduler.{key}",
                f"unknown {kind} key{did_you_mean(str(key), SCHEDULER_KEYS)}. "
                f"Valid: {', '.join(SCHEDULER_KEYS)}",
            )
    if repeats > 1:
        ctx.fail(
            "repeats",
            f"{repeats} seeds per configuration cannot run under scheduler: {kind}: early "
            "stopping would stop some seeds of a configuration and not others, so their "
            "mean would compare unequal runs. Use scheduler: none, or repeats: 1",
        )
    if len(metric) > 1 and kind == "asha":
        ctx.fail(
            "scheduler",
            "asha stops trials on one metric, and this search has several "
            f"({', '.join(metric)}): use scheduler: moasha (it ranks trials on the front), "
            "or scheduler: none",
        )
    iters = params["iterations"].probes() if "iterations" in params else (base.iterations,)
    evals = params["eval_every"].probes() if "eval_every" in params else (base.eval_every,)
    max_t = int(max(iters))
    grace = _int(
        ctx, "scheduler.grace_period", spec.get("grace_period", min(int(min(evals)), max_t)), 1
    )
    if grace > max_t:
        ctx.fail(
            "scheduler.grace_period",
            f"{grace} is beyond the last iteration ({max_t}): "
            f"{kind} would never stop a trial; set a grace_period below {max_t}",
        )
    rf = spec.get("reduction_factor", 3)
    if isinstance(rf, (int, float)) and not isinstance(rf, bool) and rf <= 1:
        ctx.fail(
            "scheduler.reduction_factor",
            f"{rf!r} is not valid: a rung keeps 1/reduction_factor of its "
            f"trials, so expected a number > 1 (3 keeps the best third)",
        )
    rf = _number(ctx, "scheduler.reduction_factor", rf, 1, inclusive=False)
    rungs = asha_rungs(max_t, grace, rf)
    brackets = spec.get("brackets", 1)
    if not isinstance(brackets, bool) and isinstance(brackets, int) and brackets > rungs:
        ctx.fail(
            "scheduler.brackets",
            f"{brackets} is not valid: with max_t {max_t} (the last iteration), "
            f"grace_period {grace} and reduction_factor {rf:g}, {kind} has {rungs} "
            f"rung(s), and bracket s starts at rung s, so brackets must be in "
            f"1..{rungs} (Ray would build a bracket per value, rungs or not)",
        )
    brackets = _int(ctx, "scheduler.brackets", brackets, 1)
    if kind == "moasha":
        _check_rungs_stop(ctx, grace, rf, brackets, max_t, int(min(evals)))
    return Scheduler(grace, rf, brackets, max_t, kind)


def _check_rungs_stop(
    ctx: Ctx, grace: int, rf: float, brackets: int, max_t: int, eval_min: int
) -> None:
    """A trial is compared at a rung at its first report at or past the milestone, and a trial
    reports every eval_every iterations: a rung whose first report is the last iteration stops
    nothing that would not end anyway. Judged by the trials reporting most often (the smallest
    eval_every when it is searched): a rung they meet in time can stop them."""
    milestones = [grace * rf**k for k in range(asha_rungs(max_t, grace, rf))]
    useful = [m for m in milestones if math.ceil(m / eval_min) * eval_min < max_t]
    if not useful:
        ctx.fail(
            "scheduler.grace_period",
            f"{grace} with reduction_factor {rf:g}: every rung "
            f"({', '.join(f'{m:g}' for m in milestones)}) is first reported at "
            f"the last iteration ({max_t}, with eval_every {eval_min}), so moasha "
            f"would never stop a trial; lower grace_period, or eval_every below it",
        )
    # Bracket s's rungs start at milestones[s]: a bracket whose first rung is not useful lets
    # every trial drawn into it run to the end.
    if brackets > len(useful):
        first = milestones[len(useful)]
        ctx.fail(
            "scheduler.brackets",
            f"{brackets} is not valid: bracket {len(useful)} would never stop a trial: "
            f"its first rung ({first:g}) is first reported at the last iteration "
            f"({max_t}, with eval_every {eval_min}); use brackets: {len(useful)}",
        )


def asha_rungs(max_t: int, grace_period: int, reduction_factor: float) -> int:
    """Rungs of ASHA's first bracket, computed as Ray's AsyncHyperBandScheduler computes them
    (ray.tune.schedulers.async_hyperband._Bracket: MAX_RUNGS for s = 0, in numpy floats, so
    the two agree at exact powers). Bracket s has that many minus s: beyond it, none."""
    return int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)
