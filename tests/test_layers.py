"""The floors of the house, read from the imports of every module: each floor imports only the floors
below it (ARCHITECTURE.md), and the library no orchestration, tracking or HTTP framework."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Top floor first. A package may import its own modules and any package on a lower floor.
FLOORS = [("cli",), ("service",), ("flows",), ("tasks",), ("mlflow_services",), ("zhasr",)]
PROJECT = {package for floor in FLOORS for package in floor}
# Frameworks that belong above the library.
LIBRARY_MUST_NOT_IMPORT = {"prefect", "mlflow", "fastapi", "starlette", "uvicorn", "tasks", "flows", "cli",
                           "service", "mlflow_services"}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, lazily inside functions too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def floor_of(package: str) -> int:
    return next(i for i, floor in enumerate(FLOORS) if package in floor)


def upward_imports(package: str, paths: list[Path]) -> set[str]:
    """``"<file> imports <package>"`` for each import in ``paths`` (modules of ``package``) of a higher floor."""
    return {f"{path.name} imports {name}" for path in paths for name in imported_packages(path) & PROJECT
            if floor_of(name) < floor_of(package)}


@pytest.mark.parametrize("package", sorted(PROJECT))
def test_each_floor_imports_only_floors_below(package):
    upward = upward_imports(package, modules(package))
    assert not upward, sorted(upward)


def test_the_library_imports_no_framework_of_the_floors_above():
    found = {f"{path.relative_to(ROOT)} imports {name}"
             for path in modules("zhasr") for name in imported_packages(path) & LIBRARY_MUST_NOT_IMPORT}
    assert not found, sorted(found)


def test_the_checker_reports_a_lazy_upward_import_and_passes_a_downward_one(tmp_path):
    module = tmp_path / "stage.py"
    module.write_text("from zhasr.context import StageContext\n\n\n"
                      "def f():\n    from flows.retrain import retrain\n    import prefect\n")
    assert imported_packages(module) == {"zhasr", "flows", "prefect"}
    assert upward_imports("tasks", [module]) == {"stage.py imports flows"}
    assert upward_imports("cli", [module]) == set()
