"""A search as data: `SearchSpec` (validated from a search file by `load`), its searched `Param`s,
its `Scheduler`, and how one trial's TrialConfig is put together. Ray is imported only inside
`param_space()`, so `tuner validate` answers at once."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

from tuner.core.config import FIELDS, TrialConfig, field_kind
from tuner.core.config_values import check_batch_for_classes
from tuner.core.objective import Objective
from tuner.core.params import from_searcher, params_text, same_value, stored_text, to_searcher
from tuner.core.selection import config_id, require_text
from tuner.data.features import FeatureSet
from tuner.data.judgments import check_placed
from tuner.errors import TunerError
from tuner.trainer.labels import labeled_counts

SEARCHES = ("grid", "random", "optuna")
# The repeat index Tune's config carries: Ray's Repeater sets this very key
# (ray.tune.search.repeater.TRIAL_INDEX) under Optuna, and grid/random searches get it as a grid
# axis. trial_config turns it into the seed, so the repeats of one configuration differ only by
# seed.
REPEAT_KEY = "__trial_index__"


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

    def _choices(self, search: str) -> list[Any]:
        scalar = all(v is None or isinstance(v, (bool, int, float, str)) for v in self.values)
        # Optuna's categoricals take scalars only: lists travel as JSON text, decoded in the trial.
        return (
            list(self.values)
            if scalar or search != "optuna"
            else [to_searcher(v) for v in self.values]
        )

    def _index(self, value: Any) -> int | None:
        return next((i for i, v in enumerate(self.values) if same_value(value, v)), None)

    def contains(self, value: Any) -> bool:
        """Whether a trial of this search could have drawn `value` (a warm start's earlier
        point)."""
        if self.values:
            return self._index(value) is not None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not self.low <= value <= self.high
        ):
            return False
        if self.kind in ("randint", "qrandint"):  # Optuna's IntDistribution: on the step from low
            return (
                float(value).is_integer() and (int(value) - int(self.low)) % int(self.q or 1) == 0
            )
        return True

    def searcher_value(self, value: Any, search: str) -> Any:
        """`value` as the searcher holds it (see `domain`: Optuna's categoricals carry lists as
        JSON)."""
        if self.values:
            return self._choices(search)[self._index(value)]  # type: ignore[index]
        return int(value) if self.kind in ("randint", "qrandint") else float(value)

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
            return tune.choice(self._choices(search))
        if self.kind == "uniform":
            return tune.uniform(self.low, self.high)
        if self.kind == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.kind == "randint":
            return tune.randint(int(self.low), int(self.high) + 1)
        return tune.qrandint(int(self.low), int(self.high), int(self.q))


@dataclass(frozen=True)
class Scheduler:
    """ASHA (one metric) or MOASHA (the search's Objective) on the `iteration` metric; `max_t` is
    the largest possible iterations."""

    grace_period: int
    reduction_factor: float
    brackets: int
    max_t: int
    type: str = "asha"  # asha | moasha


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
    repeats: int = 1  # seeds per configuration; a trial's seed = its configured seed + repeat index
    base_config: TrialConfig = field(default_factory=TrialConfig)
    # After the search (not in resolved(): they change no trial, so --resume may change them).
    log_models: str = "best"  # best | all | none
    register_as: str | None = None  # registered model name; None: register nothing
    # Bounds the chosen (best, registered) trial must meet on validation: {metric: bound}.
    require: dict[str, float] = field(default_factory=dict)

    @property
    def objective(self) -> Objective:
        """What "better" means for this search: read by the selection, reports and schedulers."""
        return Objective(self.metric, self.mode, self.require)

    @property
    def multi_objective(self) -> bool:
        return len(self.metric) > 1

    @property
    def n_trials(self) -> int:
        """Trials Tune will run: grids multiply, the grid repeats `samples` times, and each
        configuration runs `repeats` times (one seed each)."""
        grid = reduce(
            lambda a, p: a * len(p.values), [p for p in self.params.values() if p.kind == "grid"], 1
        )
        return (self.samples if self.search == "optuna" else grid * self.samples) * self.repeats

    @property
    def n_configs(self) -> int:
        return self.n_trials // self.repeats

    def param_space(self) -> dict[str, Any]:
        """Searched fields as Tune domains; fixed ones travel beside (see `trial_config`)."""
        from ray import tune  # only a running search needs Ray

        space = {name: p.domain(tune, self.search) for name, p in self.params.items()}
        if self.repeats > 1 and self.search != "optuna":  # Optuna: Ray's Repeater sets the index
            space[REPEAT_KEY] = tune.grid_search(list(range(self.repeats)))
        return space

    def trial_config(self, config: Mapping[str, Any]) -> TrialConfig:
        return trial_config(self.fixed, config)

    def record(self, trial_id: str, config: Mapping[str, Any]) -> TrialRecord:
        """The record of one trial from Tune's config (or the searched values read back)."""
        return trial_record(self.fixed, self.params, trial_id, config)

    def check_classes(self, n_classes: int) -> None:
        """Every batch size a trial can get against the loaded data's class count (an image
        folder's is known only once it is read; the file's checks knew the others)."""
        sizes = (
            self.params["batch_size"].probes()
            if "batch_size" in self.params
            else (self.base_config.batch_size,)
        )
        try:
            if self.base_config.constraints is None:
                check_batch_for_classes(int(min(sizes)), n_classes, self.base_config.dataset)
        except TunerError as err:
            raise TunerError(f"{self.path}: {err}") from None

    def check_data(self, data: FeatureSet) -> None:
        """The settings the loaded data decides: the class count (check_classes), the largest
        labels_per_class against the smallest class, a constraints file's training judgments
        against the smallest batch."""
        self.check_classes(data.n_classes)
        base, params = self.base_config, self.params
        try:
            counts = (
                params["labels_per_class"].probes()
                if "labels_per_class" in params
                else (base.labels_per_class,)
            )
            counts = [int(c) for c in counts if c is not None]
            if counts:
                labeled_counts(data.y_train, max(counts), None)
            sizes = params["batch_size"].probes() if "batch_size" in params else (base.batch_size,)
            if data.judgments is not None:
                check_placed(data.judgments, int(min(sizes)))
        except TunerError as err:
            raise TunerError(f"{self.path}: {err}", key=err.key) from None

    def run_name(self, cfg: TrialConfig) -> str:
        return run_name(self.params, cfg)

    def resolved(self) -> dict[str, Any]:
        """Plain data describing the search (logged, and compared on --resume)."""
        sched = None if self.scheduler is None else dict(self.scheduler.__dict__)
        return {
            "name": self.name,
            "metric": list(self.metric),
            "mode": list(self.mode),
            "search": self.search,
            "samples": self.samples,
            "max_concurrent": self.max_concurrent,
            "scheduler": sched,
            "resources": {"cpus": self.cpus, "gpus": self.gpus},
            "seed": self.seed,
            "checkpoint_every": self.checkpoint_every,
            "max_failures": self.max_failures,
            "fixed": dict(self.fixed),
            "params": {n: p.describe() for n, p in self.params.items()},
            "n_trials": self.n_trials,
            # Only when set: a search saved before repeats existed still resumes (resume compares
            # keys).
            **({"repeats": self.repeats} if self.repeats > 1 else {}),
        }

    def describe(self) -> str:
        metric = ", ".join(f"{m} ({d})" for m, d in zip(self.metric, self.mode))
        if self.scheduler is None:
            sched = "none"
        else:
            s = self.scheduler
            sched = (
                f"{s.type} on iterations"
                f"{' (non-dominated rank, crowding distance)' if s.type == 'moasha' else ''}: "
                f"grace_period {s.grace_period}, reduction_factor "
                f"{s.reduction_factor}, brackets {s.brackets}, max_t {s.max_t}"
            )
        per_seed = " x repeats" if self.repeats > 1 else ""
        count = {
            "grid": f"{self.n_trials} trials ({self.samples} pass(es) over the grid{per_seed})",
            "random": f"{self.n_trials} trials ({self.samples} sample(s) per grid point{per_seed})",
            "optuna": (
                f"{self.n_trials} trials "
                f"(TPE sampler{', multi-objective' if self.multi_objective else ''})"
            ),
        }
        seeds = (
            (
                f"{self.repeats} per configuration ({self.n_configs} configurations x "
                f"{self.repeats} seeds: seed + 0..{self.repeats - 1}; ranked by the mean)"
            )
            if self.repeats > 1
            else "1 per configuration"
        )
        rows = (
            [
                ("file", str(self.path)),
                ("name", f"{self.name} (MLflow experiment)"),
                ("metric", metric + ("  -> Pareto front" if self.multi_objective else "")),
                ("search", f"{self.search}: {count[self.search]}"),
                ("scheduler", sched),
                (
                    "resources",
                    f"{self.cpus:g} CPU, {self.gpus:g} GPU per trial; max_concurrent "
                    f"{self.max_concurrent or 'unlimited (as resources allow)'}",
                ),
                (
                    "checkpoints",
                    f"every {self.checkpoint_every} evaluation(s); "
                    f"max_failures {self.max_failures}",
                ),
                ("seed", f"{self.seed} (searcher)"),
                ("repeats", seeds),
            ]
            + (
                [
                    (
                        "require",
                        f"{require_text(self.require).replace(',', ', ')} on validation, for the "
                        "chosen trial",
                    )
                ]
                if self.require
                else []
            )
            + ([("description", self.description)] if self.description else [])
        )
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        lines.append("fixed" + ("" if self.fixed else "  (none: TrialConfig defaults)"))
        lines += [f"  {k:<18} {json.dumps(v)}" for k, v in self.fixed.items()]
        lines.append("params" + ("" if self.params else "  (none: one configuration)"))
        lines += [f"  {k:<18} {p.describe()}" for k, p in self.params.items()]
        if (
            self.search == "grid"
            and self.samples > 1
            and "seed" not in self.params
            and self.repeats == 1
        ):
            lines.append(
                "note: samples > 1 runs the grid again, and these repeats share one seed, so they "
                "give identical results on CPU; set `repeats: 3` instead (one seed each, ranked by "
                "the mean)."
            )
        return "\n".join(lines)


def run_name(searched: Iterable[str], cfg: TrialConfig) -> str:
    """What a trial is, for the MLflow UI: objective and encoder, then the searched values
    (`triplet vae mu=0.5 d=8`). Not unique: the trial id stays a tag of the run."""
    shown = [n for n in searched if n not in ("constraint", "encoder")]
    parts = [cfg.constraint, cfg.encoder] + [_name_part(n, getattr(cfg, n)) for n in shown]
    return " ".join(parts)[:250]  # MLflow's limit on a run name


SHORT_NAMES = {"latent_dim": "d", "hidden_dims": "h", "batch_size": "bs", "iterations": "it"}


def _name_part(name: str, value: Any) -> str:
    if isinstance(value, str):  # pairwise, vae, hog: the value says what it is
        return value
    text = f"{value:.3g}" if isinstance(value, float) else json.dumps(value, separators=(",", ":"))
    return f"{SHORT_NAMES.get(name, name)}={text}"


def trial_config(fixed: Mapping[str, Any], config: Mapping[str, Any]) -> TrialConfig:
    """The TrialConfig of one trial from the fixed values and Tune's sampled ones."""
    # Optuna's categoricals carry list values as JSON text (see Param.domain).
    decoded = {
        k: from_searcher(v) if k in FIELDS and field_kind(k) in ("ints", "names", "pairs") else v
        for k, v in config.items()
        if k != REPEAT_KEY
    }
    cfg = TrialConfig.from_dict({**fixed, **decoded}, source="trial config")
    repeat = int(config.get(REPEAT_KEY, 0))
    return cfg.replace(seed=cfg.seed + repeat) if repeat else cfg


@dataclass(frozen=True, eq=False)
class TrialRecord:
    """One trial as the driver knows it, built once where the trial first appears (Tune's start
    event, Tune's files for `tuner sync`, a run's params for a warm start) and carried from there:
    the callback, the results table, the final test and the models step read it, none rebuilds it.
    """

    trial_id: str
    config: TrialConfig
    params: Mapping[str, Any]  # what its run logs as params: the config's plain values (to_dict())
    run_name: str  # what the MLflow UI shows (`run_name`)

    @property
    def config_id(self) -> str:
        """The configuration without its seed (`selection.config_id`): repeats share it."""
        return config_id(self.params)

    def stored_params(self) -> dict[str, str]:
        """Each param as a run holds it (`tuner.core.params`): compared with a run's params."""
        return {k: stored_text(v) for k, v in params_text(self.params).items()}


def trial_record(
    fixed: Mapping[str, Any], searched: Iterable[str], trial_id: str, config: Mapping[str, Any]
) -> TrialRecord:
    """A trial's record from the search's fixed values, its searched names and Tune's sampled
    values: the one place a trial's TrialConfig is built on the driver."""
    cfg = trial_config(fixed, config)
    return TrialRecord(trial_id, cfg, cfg.to_dict(), run_name(searched, cfg))
