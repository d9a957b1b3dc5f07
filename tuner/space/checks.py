"""Every schema check of a search-space file, run by `space.load_spec` as the file loads.

`Ctx.fail` turns a problem into "file:line: key: problem." and raises TunerError.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from tuner.errors import TunerError, did_you_mean
from tuner.space.spec import SEARCHES, Param, Scheduler
from tuner.trainer.config import DATA_FIELDS, FIELDS, KEY_ALIASES, TrialConfig, field_kind
from tuner.trainer.metrics import METRIC_MODES

TOP_KEYS = ("name", "description", "metric", "mode", "search", "samples", "max_concurrent",
            "scheduler", "resources", "seed", "checkpoint_every", "max_failures", "fixed", "params",
            "log_models", "register_as")
LOG_MODELS = ("best", "all", "none")  # best: the best trial, or a multi-objective search's Pareto front
KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "qrandint")


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
    resources = raw.get("resources") or {}
    if not isinstance(resources, dict) or set(resources) - {"cpus", "gpus"}:
        ctx.fail("resources", f"{resources!r} is not valid: expected {{cpus: 1, gpus: 0}} per trial")
    max_concurrent = raw.get("max_concurrent")
    return {
        "name": name.strip(), "description": str(raw.get("description") or "").strip(),
        "metric": metric, "mode": mode, "search": search,
        "samples": _int(ctx, "samples", raw.get("samples", 1 if search == "grid" else 10), 1),
        "max_concurrent": None if max_concurrent is None else _int(ctx, "max_concurrent", max_concurrent, 1),
        "cpus": _number(ctx, "resources.cpus", resources.get("cpus", 1), 0, inclusive=False),
        "gpus": _number(ctx, "resources.gpus", resources.get("gpus", 0), 0),
        "seed": _int(ctx, "seed", raw.get("seed", 0), 0),
        "checkpoint_every": _int(ctx, "checkpoint_every", raw.get("checkpoint_every", 1), 1),
        "max_failures": _int(ctx, "max_failures", raw.get("max_failures", 0), 0),
        **_check_models(ctx, raw, name.strip()),
    }


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
    """Metrics a trial cannot report are refused: kl needs VAEs, fine_knn merged labels."""
    encoders = {base.encoder} if "encoder" not in params else set(params["encoder"].probes())
    for metric in top["metric"]:
        if metric == "kl" and encoders != {"vae"}:
            ctx.fail("metric", "kl is reported by VAE trials only: fix encoder: vae, or choose "
                               "another metric")
        if metric == "fine_knn_accuracy" and base.composite_labels is None:
            ctx.fail("metric", "fine_knn_accuracy exists only when composite_labels merges classes "
                               "(fixed: composite_labels: {...})")


def _mapping(ctx: Ctx, key: str, value: Any) -> dict[str, tuple[str, Any]]:
    """canonical name -> (name as written, value); the prior art's aliases resolved."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        ctx.fail(key, f"expected a mapping of trial settings, got {type(value).__name__}")
    out: dict[str, tuple[str, Any]] = {}
    for raw, item in value.items():
        name = KEY_ALIASES.get(str(raw), str(raw))
        if name in out:
            ctx.fail(f"{key}.{raw}", f"given twice (also as {out[name][0]!r}); keep one")
        out[name] = (str(raw), item)
    return out


def _check_fixed(ctx: Ctx, file_fixed: dict[str, Any], overrides: dict[str, Any]) -> TrialConfig:
    """The shared TrialConfig; a refusal names `fixed.<key>` (with its line) or `--set <key>`."""
    try:
        return TrialConfig.from_dict({**file_fixed, **overrides}, source="@")
    except TunerError as err:
        text = str(err).removeprefix("@: ").rstrip(".")
        name = KEY_ALIASES.get(err.key, err.key) if err.key else ""
        if name in overrides:
            raise TunerError(f"--set {name}: {text}.") from None
        ctx.fail(f"fixed.{name}" if name else "fixed", text)


def check_params(ctx: Ctx, fixed_raw: Any, params_raw: Any, overrides: dict,
                 search: str) -> tuple[dict[str, Any], dict[str, Param], TrialConfig]:
    """Fixed values (file, then --set) and searched parameters, all probed through TrialConfig."""
    file_fixed = {name: v for name, (_, v) in _mapping(ctx, "fixed", fixed_raw).items()}
    overrides = {KEY_ALIASES.get(k, k): v for k, v in overrides.items()}
    base = _check_fixed(ctx, file_fixed, overrides)
    fixed = {k: base.to_dict()[k] for k in {**file_fixed, **overrides}}
    params: dict[str, Param] = {}
    for name, (raw, spec) in _mapping(ctx, "params", params_raw).items():
        key = f"params.{raw}"
        if name not in FIELDS:
            ctx.fail(key, f"unknown trial setting{did_you_mean(name, FIELDS)}. "
                          f"Valid: {', '.join(FIELDS)}")
        if name in DATA_FIELDS:
            ctx.fail(key, "data settings must be fixed: the data is loaded and featurized once per "
                          "search, on the driver. Move it under fixed: (one search per value)")
        if name in overrides:
            continue  # --set fixes a searched setting
        if name in file_fixed:
            ctx.fail(key, "both fixed and searched; remove one of the two")
        params[name] = _check_param(ctx, key, name, spec, search, base)
    return fixed, params, base


def _check_param(ctx: Ctx, key: str, name: str, spec: Any, search: str, base: TrialConfig) -> Param:
    forms = "{grid: [a, b]}, {choice: [a, b]}, {uniform: [low, high]}, {loguniform: [low, high]}, " \
            "{randint: [low, high]} or {qrandint: [low, high, step]}"
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        kind = next(iter(spec)) if isinstance(spec, dict) and len(spec) == 1 else None
        hint = did_you_mean(kind, KINDS) if kind is not None else ""
        ctx.fail(key, f"{spec!r} is not valid{hint}: expected one of {forms}")
    kind, args = next(iter(spec.items()))
    if kind == "grid" and search == "optuna":
        ctx.fail(key, "grid parameters cannot be searched by Optuna: use {choice: [...]} or a range, "
                      "or search: grid / random")
    if kind != "grid" and search == "grid":
        ctx.fail(key, f"search: grid takes grid parameters only; use search: random or optuna to "
                      f"sample {kind}, or write {{grid: [...]}}")
    if kind in ("grid", "choice"):
        if not isinstance(args, list) or not args:
            ctx.fail(key, f"{kind} needs a non-empty list of values, e.g. {{{kind}: [0.25, 0.5]}}")
        values = tuple(_probe(ctx, key, name, v, base, kind) for v in args)
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            ctx.fail(key, f"{kind} lists a value twice: {json.dumps(list(values))}")
        return Param(kind, values=values)
    return _check_range(ctx, key, name, kind, args, base)


def _check_range(ctx: Ctx, key: str, name: str, kind: str, args: Any, base: TrialConfig) -> Param:
    field = field_kind(name)
    is_int = kind in ("randint", "qrandint")
    if (is_int and field != "int") or (not is_int and field != "float"):
        want = "randint/qrandint (integers)" if field == "int" else \
            "uniform/loguniform (numbers)" if field == "float" else "grid or choice"
        ctx.fail(key, f"{name} is {FIELDS[name].type}: {kind} does not fit it; use {want}")
    n = 3 if kind == "qrandint" else 2
    number = int if is_int else (int, float)
    if (not isinstance(args, list) or len(args) != n
            or not all(isinstance(a, number) and not isinstance(a, bool) and math.isfinite(a) for a in args)):
        shape = "[low, high, step]" if n == 3 else "[low, high]"
        ctx.fail(key, f"{kind} needs {shape} as {'integers' if is_int else 'numbers'}, got {args!r}")
    low, high = args[0], args[1]
    if low >= high:
        ctx.fail(key, f"{kind} range [{low}, {high}] is {'empty' if low == high else 'inverted'}: "
                      f"low must be below high" + (" (to use one value, fix it under fixed:)" if low == high else ""))
    if kind == "loguniform" and low <= 0:
        ctx.fail(key, f"loguniform needs low > 0, got {low}")
    q = args[2] if n == 3 else None
    if q is not None and (q < 1 or (high - low) % q):
        ctx.fail(key, f"qrandint step {q} must be >= 1 and divide high - low = {high - low}")
    lo, hi = (_probe(ctx, key, name, v, base, f"{kind} bound") for v in (low, high))
    return Param(kind, low=lo, high=hi, q=q)


def _probe(ctx: Ctx, key: str, name: str, value: Any, base: TrialConfig, what: str) -> Any:
    """The value as a trial will see it (aliases resolved), or the reason TrialConfig refuses it."""
    try:
        return base.replace(**{name: value}).to_dict()[name]
    except TunerError as err:
        ctx.fail(key, f"{what} value {value!r} is not valid: {str(err).removeprefix('config: ').rstrip('.')}")


def check_scheduler(ctx: Ctx, raw: Any, metric: tuple[str, ...], params: dict[str, Param],
                    base: TrialConfig) -> Scheduler | None:
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
