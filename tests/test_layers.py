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


# Inside the library, top first: a module imports its own package and the floors below. Evaluation's
# statistics (error rates, the bootstrap, slices) sit below the models that training scores with them;
# its judging (scoring of decoded sets, the gate, the export verdict) above the engine it judges.
LIBRARY_FLOORS = [
    ("zhasr/archive", "zhasr/labelling", "zhasr/serve", "zhasr/context.py"),
    ("zhasr/evaluation",),
    ("zhasr/transcribe",),
    ("zhasr/export",),
    ("zhasr/model",),
    ("zhasr/evaluation/metrics.py", "zhasr/evaluation/bootstrap.py", "zhasr/evaluation/slices.py"),
    ("zhasr/data",),
    ("zhasr/calltext",),
    ("zhasr/calltext/email.py",),
    ("zhasr/calltext/checks.py", "zhasr/calltext/heard.py"),
    ("zhasr/config.py", "zhasr/project.py", "zhasr/progress.py", "zhasr/__init__.py"),
]


def library_floor(relative: str) -> tuple[int, str]:
    """(floor, the entry it matched) of a library file, by its longest matching entry."""
    matches = [(len(entry), i, entry) for i, floor in enumerate(LIBRARY_FLOORS) for entry in floor
               if relative == entry or relative.startswith(entry + "/")]
    _, floor, entry = max(matches)
    return floor, entry


def library_module(name: str) -> str | None:
    """``zhasr/...`` path of a dotted library module name (a package's ``__init__.py`` as the package)."""
    path = ROOT / Path(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py").relative_to(ROOT).as_posix()
    return path.relative_to(ROOT).as_posix() if (path / "__init__.py").is_file() else None


def upward_library_imports(here: str, source: str) -> set[str]:
    """``"<here> imports <module>"`` for each library import in ``source`` (the text of the module at
    ``here``, a ``zhasr/...`` path) of a higher floor."""
    floor, entry = library_floor(here)
    found = set()
    for node in ast.walk(ast.parse(source)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
        for name in names:
            target = library_module(name) if name.startswith("zhasr.") else None
            if target and library_floor(target)[0] < floor and library_floor(target)[1] != entry:
                found.add(f"{here} imports {name}")
    return found


def test_inside_the_library_each_floor_imports_only_floors_below():
    upward = set().union(*(upward_library_imports(path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8"))
                           for path in modules("zhasr")))
    assert not upward, sorted(upward)


def test_the_library_checker_reports_an_upward_import_and_passes_a_downward_one():
    source = "from zhasr.data.text import normalize\n\n\ndef f():\n    from zhasr.transcribe.engine import Transcriber\n"
    assert upward_library_imports("zhasr/model/decode.py", source) == {
        "zhasr/model/decode.py imports zhasr.transcribe.engine"}
    assert upward_library_imports("zhasr/labelling/calls.py", source) == set()


def test_the_checker_reports_a_lazy_upward_import_and_passes_a_downward_one(tmp_path):
    module = tmp_path / "stage.py"
    module.write_text("from zhasr.context import StageContext\n\n\n"
                      "def f():\n    from flows.retrain import retrain\n    import prefect\n")
    assert imported_packages(module) == {"zhasr", "flows", "prefect"}
    assert upward_imports("tasks", [module]) == {"stage.py imports flows"}
    assert upward_imports("cli", [module]) == set()
