"""Shared test set-up: quiet, structured logs that tests can capture."""

from __future__ import annotations

import os

import pytest

from replicator.local import LOCAL_CREDENTIALS
from replicator.logs import configure_logging


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first: with the suite spread over several processes
    (pytest-xdist), they start at once instead of finishing last, one after another."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True, scope="session")
def _environment() -> None:
    # Tests talk only to local moto servers: dummy credentials, no profile lookups.
    for name, value in LOCAL_CREDENTIALS.items():
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)
    configure_logging("warning", "json")
