"""The layers contract (pyproject.toml, run by `make lint`) holds, and it really catches an upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

PACKAGES = ("app", "indexer", "training", "catalog", "model", "migrations")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def copy_tree(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_repository_keeps_its_layers(tmp_path: Path) -> None:
    result = lint_imports(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    with open(root / "catalog" / "code_cache.py", "a") as f:
        f.write("\nfrom app import schemas  # noqa: E402,F401  (points up: must be refused)\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "catalog.code_cache -> app.schemas" in result.stdout


def test_the_service_may_not_import_the_cli_or_training(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    with open(root / "app" / "deps.py", "a") as f:
        f.write("\nimport training.metrics  # noqa: E402,F401\n")
    result = lint_imports(root)
    assert result.returncode != 0 and "app.deps -> training.metrics" in result.stdout
