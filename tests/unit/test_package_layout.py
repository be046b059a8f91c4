"""The domain package's shape: one folder per phase, each saying what it holds, and the plain modules free of
Airflow (the logic must import, and be tested, without it). No database, no Airflow services."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys

import pytest

import pgmigrate
from tests.conftest import REPO

pytestmark = pytest.mark.unit

PACKAGE = REPO / "plugins" / "pgmigrate"
AIRFLOW_LAYER = {"hooks", "operators", "sensors", "triggers", "notifications"}
PHASES = {
    "core",
    "control",
    "kafka",
    "preflight",
    "schema",
    "load",
    "stream",
    "validate",
    "cutover",
    "recovery",
    "alerts",
    "report",
    "cli",
}


def plain_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(pgmigrate.__path__, "pgmigrate."):
        top = info.name.split(".")[1]
        if top not in AIRFLOW_LAYER and not info.name.endswith("__main__"):
            names.append(info.name)
    return sorted(names)


def test_every_module_lives_in_a_phase_folder_that_says_what_it_holds():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside a phase folder: {loose}"
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == PHASES | AIRFLOW_LAYER, sorted(folders ^ (PHASES | AIRFLOW_LAYER))
    for folder in sorted(folders):
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc and len(doc) > 60, f"pgmigrate/{folder}/__init__.py must say what the folder holds"


def test_the_plain_modules_import_without_airflow():
    modules = plain_modules()
    assert len(modules) > 60, modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": "plugins"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"a plain module imports Airflow: {result.stdout.strip()[:500]}"
