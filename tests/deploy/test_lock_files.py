"""The image's lock files (requirements/image*.txt, from scripts/lock.sh) pin every
dependency pyproject.toml declares: the image installs from them alone (``--no-deps``), so a
dependency added to pyproject.toml but not re-locked would be missing from the image."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pinned(lock: str) -> dict[str, str]:
    """name -> version of each ``name==version`` line of a lock file."""
    pins = {}
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, _, version = line.split(";")[0].strip().partition("==")
            pins[canonicalize_name(name)] = version.split()[0]
    return pins


def declared(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in extras:
        names += project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


@pytest.mark.parametrize(("lock", "extras"), [("image.txt", ()), ("image-cpu.txt", ("cpu",))])
def test_every_declared_dependency_is_pinned_within_its_range(lock: str,
                                                              extras: tuple[str, ...]) -> None:
    pins = pinned(lock)
    for requirement in declared(*extras):
        version = pins.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not in requirements/{lock}: " \
                                    "run scripts/lock.sh"
        assert requirement.specifier.contains(version, prereleases=True), \
            f"requirements/{lock} pins {requirement.name}=={version}, outside {requirement}"
