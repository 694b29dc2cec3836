"""app/core stays framework-free: no web, queue, database or cache imports, no outer layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "app" / "core"
FORBIDDEN = (
    "fastapi", "starlette", "celery", "sqlalchemy", "redis", "httpx",
    "app.api", "app.db", "app.services", "app.media", "app.models", "app.settings", "workers",
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_modules_import_nothing_from_frameworks_or_outer_layers() -> None:
    files = sorted(CORE.glob("*.py"))
    assert {f.stem for f in files} >= {"tree", "protocol", "navigator", "trace", "scoring"}
    for path in files:
        for name in imported_modules(path):
            assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), (
                f"{path.name} imports {name}"
            )


def test_importing_core_loads_no_framework() -> None:
    code = (
        "import sys, app.core.navigator, app.core.scoring;"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN[:6]!r}];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=CORE.parents[1],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
