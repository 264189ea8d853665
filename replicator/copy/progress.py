"""TODO"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

#: DynamoDB Streams keeps records 24 hours.
RETENTION_SECONDS = 24 * 3600.0


@dataclass
class CopyProgress:
    """What the copy did in this process."""

    segments: int = 0
    segments_skipped: int = 0
    segments_done: int = 0
    items_written: int = 0
    started_at: float = 0.0
    resumed: bool = False

    def rate(self, now: float) -> float:
        elapsed = now - self.started_at
        return self.items_written / elapsed if elapsed > 0 else 0.0


def _progress_bar(total: int) -> Any:
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total or None, unit="items", desc="copy", smoothing=0.1)
