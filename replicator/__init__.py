"""replicator: keeps a DynamoDB table continuously copied into another from its stream."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def package_version() -> str:
    """The installed distribution's version; in a source tree that is not installed,
    pyproject.toml's."""
    try:
        return importlib.metadata.version("replicator")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        with PYPROJECT.open("rb") as file:
            project = tomllib.load(file)["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
    if project.get("name") != "replicator" or "version" not in project:
        return "unknown"
    return str(project["version"])


__version__ = package_version()
