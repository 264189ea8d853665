"""``MetricsSink`` over CloudWatch's PutMetricData."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from replicator.aws.errors import map_errors

if TYPE_CHECKING:
    from types_aiobotocore_cloudwatch import CloudWatchClient
    from types_aiobotocore_cloudwatch.type_defs import MetricDatumTypeDef

#: PutMetricData takes at most 1,000 metric data a call.
METRIC_DATA_PER_CALL = 1000


class CloudWatchMetrics:
    """PutMetricData, in calls of at most ``METRIC_DATA_PER_CALL`` data."""

    def __init__(self, client: CloudWatchClient, *, call_timeout: float) -> None:
        self._client = client
        self._timeout = call_timeout

    async def put_metric_data(self, namespace: str, data: list[dict[str, Any]]) -> None:
        metric_data = cast(list["MetricDatumTypeDef"], data)
        for start in range(0, len(metric_data), METRIC_DATA_PER_CALL):
            async with map_errors("PutMetricData", self._timeout):
                await self._client.put_metric_data(
                    Namespace=namespace,
                    MetricData=metric_data[start:start + METRIC_DATA_PER_CALL],
                )
