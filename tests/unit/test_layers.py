"""The layering contract (``[tool.importlinter]`` in pyproject.toml) holds for the whole
package, and breaks when one of the circles it was written against comes back."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``root`` with the project's contracts."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))")
    env = {"PYTHONPATH": str(root), "PATH": "", "COLUMNS": "250"}  # no wrapped verdicts
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=120, env=env)


def test_the_package_keeps_its_layering_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# Each line reintroduces one of the import circles (or upward imports) the contract forbids.
REGRESSIONS = {
    "a service port that imports the task functions": (
        "app/services/queue.py", "from app.services.captions import caption_nodes",
        "No modules in a circle"),
    "services wiring the worker package": (
        "app/services/runtime.py", "import workers.celery_app", "Layers point one way"),
    "the trace and the reward importing each other": (
        "app/core/trace.py", "from app.core.scoring import score", "No modules in a circle"),
    "two model factories importing each other": (
        "app/models/cpu/__init__.py", "from app.models.factory import build_models",
        "No modules in a circle"),
    "the core reading settings": (
        "app/core/tree.py", "from app.settings import Settings",
        "The domain core imports no framework"),
    "the dashboard's pages reading a service": (
        "app/web/pages.py", "from app.services import dashboard", "Layers point one way"),
    "the dashboard's pages reading the tree": (
        "app/web/pages.py", "from app.core.tree import node_key",
        "The dashboard's pages are a leaf"),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_reintroducing_a_circle_breaks_the_contract(case: str, tmp_path: Path) -> None:
    path, line, contract = REGRESSIONS[case]
    for name in ("app", "workers"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.json"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / path
    target.write_text(target.read_text() + f"\n{line}\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    verdicts = [text for text in result.stdout.splitlines() if text.startswith(contract)]
    assert verdicts and verdicts[0].endswith(" BROKEN"), result.stdout
