"""The copy's progress: counts, the progress line or bar, the retention warning."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import structlog

from replicator.clock import Clock

log = structlog.get_logger("replicator.copy")

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


class ProgressReport:
    """What the copy logs while it runs, and its warning about the stream's retention."""

    def __init__(self, progress: CopyProgress, *, table_items: int, interval: float,
                 clock: Clock) -> None:
        self.progress = progress
        self._table_items = table_items
        self._interval = interval
        self._clock = clock
        self._warned_retention = False

    async def run(self) -> None:
        """Log the progress (or draw a bar on a terminal) until cancelled."""
        progress = self.progress
        bar = _progress_bar(self._table_items)
        try:
            interval = 0.5 if bar is not None else self._interval
            last = 0
            while True:
                await self._clock.sleep(interval)
                rate = progress.rate(self._clock.monotonic())
                eta = (max(0, self._table_items - progress.items_written) / rate
                       if rate > 0 else None)
                if bar is not None:
                    bar.update(progress.items_written - last)
                    last = progress.items_written
                else:
                    log.info("copy progress", items_written=progress.items_written,
                             items_per_second=round(rate, 1),
                             segments_done=progress.segments_done
                             + progress.segments_skipped,
                             segments=progress.segments,
                             eta_seconds=None if eta is None else round(eta))
                self._check_retention(eta)
        finally:
            if bar is not None:
                bar.close()

    def _check_retention(self, eta: float | None) -> None:
        """Warn when the copy may outlast the stream's 24-hour retention."""
        if eta is None or self._warned_retention:
            return
        elapsed = self._clock.monotonic() - self.progress.started_at
        if elapsed < 10:  # too early to measure a rate
            return
        total = elapsed + eta
        if total > 0.5 * RETENTION_SECONDS:
            self._warned_retention = True
            level = log.error if total > 0.9 * RETENTION_SECONDS else log.warning
            level(
                "the copy may outlast the stream's 24-hour retention",
                estimated_hours=round(total / 3600, 1),
                advice="records written when the copy began are trimmed after 24 hours; "
                "raise the destination's write capacity or REPLICATOR_COPY_WRITERS and "
                "REPLICATOR_COPY_CONCURRENCY, or the copy must be redone",
            )
