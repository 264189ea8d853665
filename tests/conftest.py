"""Shared test set-up: quiet, structured logs that tests can capture."""

from __future__ import annotations

import os

import pytest

from replicator.local import LOCAL_CREDENTIALS
from replicator.logs import configure_logging


@pytest.fixture(autouse=True, scope="session")
def _environment() -> None:
    # Tests talk only to local moto servers: dummy credentials, no profile lookups.
    for name, value in LOCAL_CREDENTIALS.items():
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)
    configure_logging("warning", "json")
