"""``MetricsSink`` over CloudWatch's PutMetricData."""

from __future__ import annotations

from typing import Any

from replicator.aws.errors import map_errors

#: PutMetricData takes at most 1,000 metric data a call.
METRIC_DATA_PER_CALL = 1000


class CloudWatchMetrics:
    """PutMetricData, in calls of at most ``METRIC_DATA_PER_CALL`` data."""

    def __init__(self, client: Any, *, call_timeout: float) -> None:
        self._client = client
        self._timeout = call_timeout

    async def put_metric_data(self, namespace: str, data: list[dict[str, Any]]) -> None:
        for start in range(0, len(data), METRIC_DATA_PER_CALL):
            async with map_errors("PutMetricData", self._timeout):
                await self._client.put_metric_data(
                    Namespace=namespace, MetricData=data[start:start + METRIC_DATA_PER_CALL]
                )
