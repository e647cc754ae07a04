"""dvc.yaml against the code: each stage declares every params section its task reads and the library
code it runs, so that ``dvc repro`` reruns a stage (and what follows) when either changes."""

from __future__ import annotations

import ast
import dataclasses
import re
from functools import cache
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from zhasr.config import Params

# Sections that say where things are or where runs are logged, not what a stage computes: the folders
# are the stages' deps and outs themselves.
NOT_RESULTS = {"paths", "tracking"}
# Library modules every stage uses that compute nothing a stage writes (settings, paths, progress bars).
PLUMBING = {"zhasr/config.py", "zhasr/context.py", "zhasr/project.py", "zhasr/progress.py", "zhasr/__init__.py",
            "zhasr/data/manifest.py"}


def _module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(path: Path) -> set[Path]:
    """Project modules ``path`` imports (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(_parsed(path)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in ("zhasr", "tasks", "mlflow_services") and (file := _module_file(name)):
                found.add(file)
    return found


def _reach(start: Path) -> set[Path]:
    """``start`` and the project modules it runs, through its imports; not through the plumbing (config.py
    checks export formats by importing them: that is not code a stage runs)."""
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            if path.relative_to(REPO).as_posix() not in PLUMBING:
                todo += _imports(path)
    return seen


SECTIONS = {f.name for f in dataclasses.fields(Params)}


def _sections_read(path: Path) -> set[str]:
    """Every params section ``X`` of an ``<anything>.params.X`` in the module."""
    return {node.attr for node in ast.walk(_parsed(path)) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute) and node.value.attr == "params" and node.attr in SECTIONS}


def _stages() -> dict[str, dict]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: s for name, s in stages.items() if s["cmd"] == f"zhasr {name}"}


def _covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(REPO).as_posix()
    return any(relative == d or relative.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_a_stage_declares_the_params_sections_its_task_reads(stage):
    reached = _reach(REPO / "tasks" / f"{stage}.py")
    read = set().union(*(_sections_read(p) for p in reached if p.parts[-2] in ("tasks", "mlflow_services")))
    declared = set(_stages()[stage].get("params", []))
    missing = sorted(read - declared - NOT_RESULTS)
    assert not missing, f"dvc.yaml stage {stage}: reads params {missing} but declares {sorted(declared)}"


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_a_stage_depends_on_the_library_code_it_runs(stage):
    reached = _reach(REPO / "tasks" / f"{stage}.py")
    library = sorted(p.relative_to(REPO).as_posix() for p in reached if p.relative_to(REPO).parts[0] == "zhasr")
    deps = [d if isinstance(d, str) else next(iter(d)) for d in _stages()[stage].get("deps", [])]
    missing = [m for m in library if m not in PLUMBING and not _covered(REPO / m, deps)]
    assert not missing, f"dvc.yaml stage {stage}: runs {missing} but its deps do not name them"


def test_the_check_sees_a_section_a_stage_does_not_declare(tmp_path):
    module = tmp_path / "stage.py"
    module.write_text("def run(ctx):\n    return ctx.params.transcribe.batch_size, ctx.params.gate\n")
    assert _sections_read(module) == {"transcribe", "gate"}


def test_dvc_reads_the_pipeline_in_a_fresh_checkout(tmp_path):
    """``make repro`` runs ``dvc repro``: DVC must read the pipeline although dvc.lock, run state, is kept
    out of git (``core.no_scm`` in .dvc/config; with git, DVC refuses a git-ignored dvc.lock)."""
    import shutil
    import subprocess
    import sys

    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():  # the checkout as a fresh clone has it: no data, no run state
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc = Path(sys.executable).with_name("dvc")
    done = subprocess.run([str(dvc), "dag", "--dot"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    stages = set(re.findall(r'"(\w+)"', done.stdout))
    assert {"synth", "ingest", "merge", "evaluate", "gate", "export", "register"} <= stages
