"""Search-space YAML file -> validated `SearchSpec` (and the Ray Tune param space).

This module holds the data model and the reading of the file; every schema check lives
in `space_checks` and runs when the file loads, before Ray or MLflow start: a mistake is
a TunerError naming the file, line, key and the fix. Ray is imported only inside
`param_space()`, so `tuner validate` answers at once.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any, Mapping

import yaml

from tuner.trainer.config import TrialConfig
from tuner.errors import TunerError

SEARCHES = ("grid", "random", "optuna")
FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(TrialConfig)}


@dataclass(frozen=True)
class Param:
    """One searched TrialConfig field: grid/choice take `values`, ranges `low`/`high`(/`q`)."""

    kind: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    q: int | None = None

    def probes(self) -> tuple[Any, ...]:
        """Values that bound what a trial can get: every listed value, or both range ends."""
        return self.values if self.values else (self.low, self.high)

    def describe(self) -> str:
        if self.values:
            return f"{self.kind} {json.dumps(list(self.values))}"
        step = f" step {self.q}" if self.q else ""
        return f"{self.kind} [{self.low}, {self.high}]{step}"

    def domain(self, tune: Any, search: str) -> Any:
        """The Tune domain; our int ranges include `high` (Tune's randint excludes it)."""
        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            scalar = all(v is None or isinstance(v, (bool, int, float, str)) for v in self.values)
            # Optuna's categoricals take scalars only: lists travel as JSON text, decoded in the trial.
            values = self.values if scalar or search != "optuna" else [json.dumps(v) for v in self.values]
            return tune.choice(list(values))
        if self.kind == "uniform":
            return tune.uniform(self.low, self.high)
        if self.kind == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.kind == "randint":
            return tune.randint(int(self.low), int(self.high) + 1)
        return tune.qrandint(int(self.low), int(self.high), int(self.q))


@dataclass(frozen=True)
class Scheduler:
    """ASHA on the `iteration` metric; `max_t` is the largest possible iterations."""

    grace_period: int
    reduction_factor: float
    brackets: int
    max_t: int


@dataclass(frozen=True)
class SearchSpec:
    path: Path
    text: str
    name: str
    metric: tuple[str, ...]
    mode: tuple[str, ...]
    search: str
    samples: int
    max_concurrent: int | None
    scheduler: Scheduler | None
    cpus: float
    gpus: float
    seed: int
    checkpoint_every: int
    max_failures: int
    fixed: dict[str, Any]
    params: dict[str, Param]
    description: str = ""
    base_config: TrialConfig = field(default_factory=TrialConfig)
    # After the search (not in resolved(): they change no trial, so --resume may change them).
    log_models: str = "best"  # best | all | none
    register_as: str | None = None  # registered model name; None: register nothing

    @property
    def multi_objective(self) -> bool:
        return len(self.metric) > 1

    @property
    def n_trials(self) -> int:
        """Trials Tune will run: grids multiply, and the grid repeats `samples` times."""
        grid = reduce(lambda a, p: a * len(p.values), [p for p in self.params.values() if p.kind == "grid"], 1)
        return self.samples if self.search == "optuna" else grid * self.samples

    def param_space(self) -> dict[str, Any]:
        """Searched fields as Tune domains; fixed ones travel beside (see `trial_config`)."""
        from ray import tune  # only a running search needs Ray

        return {name: p.domain(tune, self.search) for name, p in self.params.items()}

    def trial_config(self, config: Mapping[str, Any]) -> TrialConfig:
        return trial_config(self.fixed, config)

    def resolved(self) -> dict[str, Any]:
        """Plain data describing the search (logged, and compared on --resume)."""
        sched = None if self.scheduler is None else {"type": "asha", **self.scheduler.__dict__}
        return {
            "name": self.name, "metric": list(self.metric), "mode": list(self.mode),
            "search": self.search, "samples": self.samples, "max_concurrent": self.max_concurrent,
            "scheduler": sched, "resources": {"cpus": self.cpus, "gpus": self.gpus},
            "seed": self.seed, "checkpoint_every": self.checkpoint_every,
            "max_failures": self.max_failures, "fixed": dict(self.fixed),
            "params": {n: p.describe() for n, p in self.params.items()}, "n_trials": self.n_trials,
        }

    def describe(self) -> str:
        metric = ", ".join(f"{m} ({d})" for m, d in zip(self.metric, self.mode))
        if self.scheduler is None:
            sched = "none"
        else:
            s = self.scheduler
            sched = (f"asha on iterations: grace_period {s.grace_period}, reduction_factor "
                     f"{s.reduction_factor}, brackets {s.brackets}, max_t {s.max_t}")
        count = {"grid": f"{self.n_trials} trials ({self.samples} repeat(s) of the grid)",
                 "random": f"{self.n_trials} trials ({self.samples} sample(s) per grid point)",
                 "optuna": f"{self.n_trials} trials (TPE sampler{', multi-objective' if self.multi_objective else ''})"}
        rows = [
            ("file", str(self.path)), ("name", f"{self.name} (MLflow experiment)"),
            ("metric", metric + ("  -> Pareto front" if self.multi_objective else "")),
            ("search", f"{self.search}: {count[self.search]}"), ("scheduler", sched),
            ("resources", f"{self.cpus:g} CPU, {self.gpus:g} GPU per trial; max_concurrent "
                          f"{self.max_concurrent or 'unlimited (as resources allow)'}"),
            ("checkpoints", f"every {self.checkpoint_every} evaluation(s); max_failures {self.max_failures}"),
            ("seed", f"{self.seed} (searcher)"),
        ] + ([("description", self.description)] if self.description else [])
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        lines.append("fixed" + ("" if self.fixed else "  (none: TrialConfig defaults)"))
        lines += [f"  {k:<18} {json.dumps(v)}" for k, v in self.fixed.items()]
        lines.append("params" + ("" if self.params else "  (none: one configuration)"))
        lines += [f"  {k:<18} {p.describe()}" for k, p in self.params.items()]
        if self.search == "grid" and self.samples > 1 and "seed" not in self.params:
            lines.append("note: repeats share one seed and so give identical results on CPU; "
                         "search `seed: {grid: [0, 1, 2]}` for independent repeats.")
        return "\n".join(lines)


def trial_config(fixed: Mapping[str, Any], config: Mapping[str, Any]) -> TrialConfig:
    """The TrialConfig of one trial from the fixed values and Tune's sampled ones."""
    decoded = {k: json.loads(v) if isinstance(v, str) and FIELD_TYPES.get(k, "").startswith("tuple") else v
               for k, v in config.items()}
    return TrialConfig.from_dict({**fixed, **decoded}, source="trial config")


def load_spec(path: Path | str, overrides: dict | None = None, samples: int | None = None,
              max_concurrent: int | None = None) -> SearchSpec:
    """Read and validate a search-space file; `overrides` (--set) fix trial settings."""
    # Imported here, not above: space_checks builds this module's Param and Scheduler.
    from tuner.space.checks import Ctx, check_objective, check_params, check_scheduler, check_top

    path = Path(path)
    raw, text, lines = read_yaml(path)
    ctx = Ctx(path, lines)
    top = check_top(ctx, raw, path.stem)
    for key, value in (("--samples", samples), ("--max-concurrent", max_concurrent)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise TunerError(f"{key} {value!r} is not valid: expected an integer >= 1.")
    top["samples"] = samples if samples is not None else top["samples"]
    top["max_concurrent"] = max_concurrent if max_concurrent is not None else top["max_concurrent"]
    fixed, params, base = check_params(ctx, raw.get("fixed"), raw.get("params"), overrides or {},
                                       top["search"])
    check_objective(ctx, top, params, base)
    scheduler = check_scheduler(ctx, raw.get("scheduler", "none"), top["metric"], params, base)
    if top["search"] == "optuna" and not params:
        ctx.fail("params", "search: optuna needs at least one searched parameter; with everything "
                           "fixed use search: grid (one trial per repeat)")
    if top["gpus"] == 0 and base.device == "cuda" and "device" not in params:
        ctx.fail("resources.gpus", "device is cuda but trials get 0 GPUs: set resources: {gpus: 1} "
                                   "(or a fraction such as 0.5), or device: auto")
    return SearchSpec(path=path, text=text, fixed=fixed, params=params, scheduler=scheduler,
                      base_config=base, **top)


# ----------------------------------------------------------------------------------
# Reading the file: the parsed mapping plus the line of every key, for error messages.


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-4` as a number (YAML 1.1 wants `1.0e-4`: a trap for lr)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def read_yaml(path: Path) -> tuple[dict, str, dict[str, int]]:
    """The parsed mapping, its text, and the line of every key (dotted path -> line)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TunerError(f"{path}: no such search-space file (examples: search_spaces/grid.yaml, "
                         f"optuna.yaml, pareto.yaml).") from None
    except OSError as err:
        raise TunerError(f"{path}: cannot read the search-space file ({err.strerror}).") from None
    try:
        node = yaml.compose(text, Loader=YamlLoader)
        raw = yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise TunerError(f"{where}: not valid YAML: {getattr(err, 'problem', None) or err}. "
                         f"Check indentation, colons and brackets near that line.") from None
    if not isinstance(raw, dict):
        raise TunerError(f"{path}: expected a mapping of settings (name:, search:, params:, ...), "
                         f"got {type(raw).__name__}.")
    lines: dict[str, int] = {}
    _collect_lines(path, node, "", lines)
    return raw, text, lines


def _collect_lines(path: Path, node: Any, prefix: str, lines: dict[str, int]) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        if key in lines:  # PyYAML would silently keep the last one
            raise TunerError(f"{path}:{key_node.start_mark.line + 1}: {key}: given twice "
                             f"(first on line {lines[key]}); keep one.")
        lines[key] = key_node.start_mark.line + 1
        _collect_lines(path, value_node, f"{key}.", lines)

