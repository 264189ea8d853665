"""The settings of the core's jobs, from the service's: ``CopySettings`` and
``CoordinatorSettings``."""

from __future__ import annotations

from replicator.config import FENCE_SAFETY, Settings
from replicator.copy.table_copy import CopySettings
from replicator.stream.coordinator import CoordinatorSettings


def copy_settings(settings: Settings, *, hand_off: bool) -> CopySettings:
    return CopySettings(
        worker_id=str(settings.worker_id),
        segments=settings.copy_segments,
        concurrency=settings.copy_concurrency,
        writers=settings.copy_writers,
        max_rcu=settings.copy_max_rcu,
        max_wcu=settings.copy_max_wcu,
        lease_duration=settings.lease_duration,
        lease_renew_interval=settings.lease_renew_interval,
        coordinator_interval=settings.coordinator_interval,
        idle_interval=settings.idle_interval,
        write_window=write_window(settings),
        progress_interval=settings.progress_interval,
        call_timeout=settings.call_timeout,
        hand_off=hand_off,
    )


def coordinator_settings(settings: Settings) -> CoordinatorSettings:
    return CoordinatorSettings(
        worker_id=str(settings.worker_id),
        initial_position=settings.initial_sentinel,
        detach_after=settings.detach_after,
        get_records_limit=settings.get_records_limit,
        idle_interval=settings.idle_interval,
        checkpoint_interval=settings.checkpoint_interval,
        coordinator_interval=settings.coordinator_interval,
        shard_sync_interval=settings.shard_sync_interval,
        lease_duration=settings.lease_duration,
        lease_renew_interval=settings.lease_renew_interval,
        shutdown_timeout=settings.shutdown_timeout,
        skip_trimmed=settings.on_trimmed_data == "skip",
        write_window=write_window(settings),
    )


def write_window(settings: Settings) -> float:
    """How long a write may take, for the lease fences: a call's timeout, and a margin."""
    return settings.call_timeout + FENCE_SAFETY
