"""The code's layout rules (docs/architecture.md), checked on the source itself."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("flows", "transforms", "models")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _sources(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("top,forbidden", [("transforms", ("prefect", "tensorflow", "keras")),
                                           ("models", ("prefect", "apache_beam"))])
def test_layers_do_not_import_upwards(top, forbidden):
    offenders = [f"{path.relative_to(ROOT)} imports {name}" for path in _sources(top)
                 for name in _imported_modules(path) if name.split(".")[0] in forbidden]
    assert not offenders


def test_no_old_top_level_import_names():
    offenders = [f"{path.relative_to(ROOT)} imports {name}" for path in _sources(*PACKAGES, "tests", "bench")
                 for name in _imported_modules(path) if name.split(".")[0] in PACKAGES]
    assert not offenders


def test_modules_and_functions_stay_small():
    """Long compiled kernels are allowed when a comment right above them says why."""
    too_long = []
    for path in _sources(*PACKAGES):
        lines = path.read_text().splitlines()
        if len(lines) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            compiled = any("jit" in ast.unparse(d) for d in node.decorator_list)
            reason = lines[first - 2].lstrip().startswith("#") if first >= 2 else False
            if length > MAX_FUNCTION_LINES and not (compiled and reason):
                too_long.append(f"{path.relative_to(ROOT)}: {node.name} is {length} lines")
    assert not too_long


def test_pyproject_lists_every_package_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    present = {"melodyflow." + ".".join(init.parent.relative_to(ROOT).parts)
               for top in PACKAGES for init in (ROOT / top).rglob("__init__.py")}
    assert listed == present
    assert config["package-dir"] == {f"melodyflow.{top}": top for top in PACKAGES}


def test_installed_package_imports_from_any_directory(tmp_path):
    probe = ("import importlib.util, melodyflow.transforms, melodyflow.models, melodyflow.flows;"
             "print(all(importlib.util.find_spec(n) is None for n in ('transforms', 'models', 'flows')))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
