"""The schema checks of a search file's `fixed:` and `params:`: every value is probed through
TrialConfig, so a search never starts with a setting a trial would refuse."""

from __future__ import annotations

import json
import math
from typing import Any

from tuner.core.config import DATA_FIELDS, FIELDS, KEY_ALIASES, TrialConfig, field_kind
from tuner.errors import TunerError, did_you_mean
from tuner.space.checks import Ctx
from tuner.space.spec import Param

KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "qrandint")
# Integer ranges pass through float64 (Tune's qrandint rounds a float, Optuna maps ranges to floats)
# and int64 (Tune's randint, given high + 1): beyond 2**53 a drawn value is not the integer meant.
MAX_EXACT_INT = 2**53


def _mapping(ctx: Ctx, key: str, value: Any) -> dict[str, tuple[str, Any]]:
    """canonical name -> (name as written, value); the prior work's aliases resolved."""
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


def _canonical_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """--set pairs by canonical name; an alias beside its name would leave one of them unused."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        name = KEY_ALIASES.get(key, key)
        if name in out:
            raise TunerError(
                f"--set {key}: {name} is given twice (also as --set "
                f"{next(k for k in overrides if KEY_ALIASES.get(k, k) == name)}); keep one."
            )
        out[name] = value
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


def check_params(
    ctx: Ctx, fixed_raw: Any, params_raw: Any, overrides: dict, search: str
) -> tuple[dict[str, Any], dict[str, Param], TrialConfig]:
    """Fixed values (file, then --set) and searched parameters, all probed through TrialConfig."""
    file_fixed = {name: v for name, (_, v) in _mapping(ctx, "fixed", fixed_raw).items()}
    overrides = _canonical_overrides(overrides)
    base = _check_fixed(ctx, file_fixed, overrides)
    fixed = {k: base.to_dict()[k] for k in {**file_fixed, **overrides}}
    params: dict[str, Param] = {}
    for name, (raw, spec) in _mapping(ctx, "params", params_raw).items():
        key = f"params.{raw}"
        if name not in FIELDS:
            ctx.fail(
                key,
                f"unknown trial setting{did_you_mean(name, FIELDS)}. Valid: {', '.join(FIELDS)}",
            )
        if name in DATA_FIELDS:
            ctx.fail(
                key,
                "data settings must be fixed: the data is loaded and featurized once per "
                "search, on the driver. Move it under fixed: (one search per value)",
            )
        if name in overrides:
            continue  # --set fixes a searched setting
        if name in file_fixed:
            ctx.fail(key, "both fixed and searched; remove one of the two")
        params[name] = _check_param(ctx, key, name, spec, search, base)
    return fixed, params, base


def _check_param(ctx: Ctx, key: str, name: str, spec: Any, search: str, base: TrialConfig) -> Param:
    forms = (
        "{grid: [a, b]}, {choice: [a, b]}, {uniform: [low, high]}, {loguniform: [low, high]}, "
        "{randint: [low, high]} or {qrandint: [low, high, step]}"
    )
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        kind = next(iter(spec)) if isinstance(spec, dict) and len(spec) == 1 else None
        hint = did_you_mean(kind, KINDS) if kind is not None else ""
        ctx.fail(key, f"{spec!r} is not valid{hint}: expected one of {forms}")
    kind, args = next(iter(spec.items()))
    if kind == "grid" and search == "optuna":
        ctx.fail(
            key,
            "grid parameters cannot be searched by Optuna: use {choice: [...]} or a range, "
            "or search: grid / random",
        )
    if kind != "grid" and search == "grid":
        ctx.fail(
            key,
            f"search: grid takes grid parameters only; use search: random or optuna to "
            f"sample {kind}, or write {{grid: [...]}}",
        )
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
        want = (
            "randint/qrandint (integers)"
            if field == "int"
            else "uniform/loguniform (numbers)"
            if field == "float"
            else "grid or choice"
        )
        ctx.fail(key, f"{name} is {FIELDS[name].type}: {kind} does not fit it; use {want}")
    n = 3 if kind == "qrandint" else 2
    number = int if is_int else (int, float)
    if (
        not isinstance(args, list)
        or len(args) != n
        or not all(
            isinstance(a, number) and not isinstance(a, bool) and math.isfinite(a) for a in args
        )
    ):
        shape = "[low, high, step]" if n == 3 else "[low, high]"
        ctx.fail(
            key, f"{kind} needs {shape} as {'integers' if is_int else 'numbers'}, got {args!r}"
        )
    low, high = args[0], args[1]
    if low >= high:
        ctx.fail(
            key,
            f"{kind} range [{low}, {high}] is {'empty' if low == high else 'inverted'}: "
            f"low must be below high"
            + (" (to use one value, fix it under fixed:)" if low == high else ""),
        )
    if kind == "loguniform" and low <= 0:
        ctx.fail(key, f"loguniform needs low > 0, got {low}")
    q = args[2] if n == 3 else None
    if q is not None and (q < 1 or (high - low) % q):
        ctx.fail(key, f"qrandint step {q} must be >= 1 and divide high - low = {high - low}")
    lo, hi = (_probe(ctx, key, name, v, base, f"{kind} bound") for v in (low, high))
    if is_int and not (-MAX_EXACT_INT <= lo and hi <= MAX_EXACT_INT):
        ctx.fail(
            key,
            f"{kind} range [{lo}, {hi}] is too wide: Tune and Optuna draw integers through "
            f"floating-point numbers, exact only between -2**53 and 2**53 ({MAX_EXACT_INT})",
        )
    return Param(kind, low=lo, high=hi, q=q)


def _probe(ctx: Ctx, key: str, name: str, value: Any, base: TrialConfig, what: str) -> Any:
    """The value as a trial will see it (aliases resolved), or the reason TrialConfig refuses it."""
    try:
        return base.replace(**{name: value}).to_dict()[name]
    except TunerError as err:
        ctx.fail(
            key,
            f"{what} value {value!r} is not valid: {str(err).removeprefix('config: ').rstrip('.')}",
        )
