"""Search-space YAML file -> validated `SearchSpec`.

This module reads the file; every schema check lives in `checks` and runs as the file loads,
before Ray or MLflow start: a mistake is a TunerError naming the file, line, key and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tuner.errors import TunerError
from tuner.space.checks import (
    Ctx,
    check_objective,
    check_repeat_seeds,
    check_scheduler,
    check_top,
    check_weak_supervision,
)
from tuner.space.param_checks import check_params
from tuner.space.safe_yaml import check_yaml_events, read_search_text
from tuner.space.spec import SearchSpec


def load_spec(
    path: Path | str,
    overrides: dict | None = None,
    samples: int | None = None,
    max_concurrent: int | None = None,
) -> SearchSpec:
    """Read and validate a search-space file; `overrides` (the CLI's --set, `tuner.search`'s
    overrides=) fix trial settings. `tuner.search(spec)` runs the result."""
    path = Path(path)
    raw, text, lines = read_yaml(path)
    ctx = Ctx(path, lines)
    top = check_top(ctx, raw, path.stem)
    for key, value in (("--samples", samples), ("--max-concurrent", max_concurrent)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise TunerError(f"{key} {value!r} is not valid: expected an integer >= 1.")
    top["samples"] = samples if samples is not None else top["samples"]
    top["max_concurrent"] = max_concurrent if max_concurrent is not None else top["max_concurrent"]
    fixed, params, base = check_params(
        ctx, raw.get("fixed"), raw.get("params"), overrides or {}, top["search"]
    )
    check_objective(ctx, top, params, base)
    check_weak_supervision(ctx, params, base)
    check_repeat_seeds(ctx, top["repeats"], params, base)
    scheduler = check_scheduler(
        ctx, raw.get("scheduler", "none"), top["metric"], params, base, top["repeats"]
    )
    if top["search"] == "optuna" and not params:
        ctx.fail(
            "params",
            "search: optuna needs at least one searched parameter; with everything "
            "fixed use search: grid (one trial per repeat)",
        )
    if top["gpus"] == 0 and base.device == "cuda" and "device" not in params:
        ctx.fail(
            "resources.gpus",
            "device is cuda but trials get 0 GPUs: set resources: {gpus: 1} "
            "(or a fraction such as 0.5), or device: auto",
        )
    return SearchSpec(
        path=path,
        text=text,
        fixed=fixed,
        params=params,
        scheduler=scheduler,
        base_config=base,
        **top,
    )


# ----------------------------------------------------------------------------------
# Reading the file: the parsed mapping plus the line of every key, for error messages.


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-4` as a number (YAML 1.1 wants `1.0e-4`: a trap for lr)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> tuple[dict, str, dict[str, int]]:
    """The parsed mapping, its text, and the line of every key (dotted path -> line)."""
    try:
        text = read_search_text(path)  # refuses a huge or non-UTF-8 file
    except FileNotFoundError:
        raise TunerError(
            f"{path}: no such search-space file (examples: search_spaces/grid.yaml, "
            f"optuna.yaml, pareto.yaml)."
        ) from None
    except OSError as err:
        raise TunerError(f"{path}: cannot read the search-space file ({err.strerror}).") from None
    try:
        check_yaml_events(text, path, YamlLoader)  # before composing: aliases, deep nesting
        node = yaml.compose(text, Loader=YamlLoader)
        raw = yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise TunerError(
            f"{where}: not valid YAML: {getattr(err, 'problem', None) or err}. "
            f"Check indentation, colons and brackets near that line."
        ) from None
    if not isinstance(raw, dict):
        raise TunerError(
            f"{path}: expected a mapping of settings (name:, search:, params:, ...), "
            f"got {type(raw).__name__}."
        )
    lines: dict[str, int] = {}
    collect_lines(path, node, "", lines)
    return raw, text, lines


def collect_lines(path: Path, node: Any, prefix: str, lines: dict[str, int]) -> None:
    """The line of every key under `node`; a key given twice, or a merge key, is refused."""
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:  # composite_labels as a list of mappings, choice lists
            collect_lines(path, item, prefix, {})
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: {...}` would hide a duplicate key
            raise TunerError(
                f"{path}:{line}: {prefix}<<: YAML merge keys are not accepted in search files: "
                f"write the settings out where they are used."
            )
        parsed = _parsed_key(key_node)
        key = f"{prefix}{parsed}"
        # Compared as parsed, as the mapping PyYAML builds keeps them: 0 and 00, 1 and true are one
        # key, and PyYAML silently keeps the last.
        if parsed in seen:
            raise TunerError(
                f"{path}:{line}: {key}: given twice (first on line {seen[parsed]}"
                f"{'' if key_node.value == str(parsed) else f', here as {key_node.value!r}'}); "
                "keep one."
            )
        seen[parsed] = line
        lines.setdefault(key, line)
        collect_lines(path, value_node, f"{key}.", lines)


def _parsed_key(key_node: Any) -> Any:
    """The key as the loaded mapping holds it (a scalar); the text when that is not hashable."""
    try:
        key = YamlLoader("").construct_object(key_node, deep=True)
        hash(key)
        return key
    except (yaml.YAMLError, TypeError):
        return key_node.value
