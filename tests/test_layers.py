"""The layers contract of pyproject.toml ([tool.importlinter]): imports point downwards only.

Run by import-linter, whose graph (grimp) holds imports inside functions as well as those at a
module's top. The second test shows the contract fails, naming the edge, when a low module
imports a higher one inside a function.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the `tuner` under `root`, with the contract of its pyproject.toml."""
    code = "import sys; from importlinter.cli import lint_imports_command as lint; sys.exit(lint())"
    env = {**os.environ, "PYTHONPATH": str(root)}
    config = str(root / "pyproject.toml")
    return subprocess.run(
        [sys.executable, "-c", code, "--config", config, "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_import_points_downwards() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, f"an import points upwards:\n{done.stdout}{done.stderr}"
    assert "Contracts: 1 kept, 0 broken." in done.stdout, done.stdout


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "tuner", tmp_path / "tuner", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "tuner" / "core" / "datasets.py", "a") as f:
        f.write("\n\ndef _upward() -> None:\n    from tuner.runner.search import run_search\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "0 kept, 1 broken" in done.stdout, done.stdout
    assert "tuner.core.datasets -> tuner.runner.search" in done.stdout, done.stdout
