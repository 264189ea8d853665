"""Transform functions for the tests (``REPLICATOR_TRANSFORM`` / a destination's
``transform``), named ``tests.transforms:NAME``: importable from the repository's root,
which the integration tests put on the workers' PYTHONPATH."""

from __future__ import annotations

from typing import Any

#: What ``mask_email`` writes in place of an address.
MASK = "***"


def mask_email(item: dict[str, Any], event_name: str) -> dict[str, Any]:
    """The item with its ``email`` attribute, when it has one, replaced by ``MASK``."""
    if "email" in item:
        return {**item, "email": MASK}
    return item
