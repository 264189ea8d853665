"""The AWS clients: our timeouts, no botocore retries, one profile per side."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore import exceptions as boto_errors

from replicator import errors
from replicator.aws.codec import _parse_scan_items
from replicator.config import LONGEST_CALL


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one AWS client connects, and with which profile's credentials
    (None: the standard chain)."""

    service: str
    region: str
    endpoint_url: str | None
    profile: str | None = None
    #: The setting that named the profile, for error messages.
    profile_setting: str = "the profile setting"


@asynccontextmanager
async def open_client(
    endpoint: Endpoint, *, call_timeout: float, max_connections: int = 10
) -> AsyncIterator[Any]:
    """An aiobotocore client with our timeouts and without botocore's own retries.

    Retrying is ours to do (``replicator.backoff``), so that a throttled call is
    retried for as long as it takes and every retry is counted and logged.
    Credentials come from the standard AWS chain.

    botocore does not check the parameters before sending them: the service
    checks them anyway and answers a ValidationException, which ``map_errors``
    translates (botocore's own ParamValidationError it would not), and the
    check walks every attribute of every item a copy or a writer sends, which
    costs about as much as serializing them. Scan pages are parsed by
    ``_parse_scan_items``.
    """
    config = AioConfig(
        connect_timeout=min(call_timeout, 5.0),
        # Every call is bounded by ``map_errors``'s timeout; a Scan's may grow past the
        # call timeout (``scan.ScanPacing``), so botocore's own is only a backstop.
        read_timeout=max(call_timeout, LONGEST_CALL),
        retries={"total_max_attempts": 1},
        max_pool_connections=max_connections,
        parameter_validation=False,
    )
    session = get_session() if endpoint.profile is None else AioSession(profile=endpoint.profile)
    try:
        # botocore reads the profile here, and its credentials on the first call.
        session.get_scoped_config()
    except boto_errors.ProfileNotFound as exc:
        raise errors.ConfigError(
            f"{endpoint.profile_setting}: AWS profile {endpoint.profile!r} is not in the AWS "
            "config files (~/.aws/config, or AWS_CONFIG_FILE): add it, or name another"
        ) from exc
    async with session.create_client(
        endpoint.service,
        region_name=endpoint.region,
        endpoint_url=endpoint.endpoint_url,
        config=config,
    ) as client:
        if endpoint.service == "dynamodb":
            client.meta.events.register(
                "before-parse.dynamodb.Scan", _parse_scan_items, unique_id="replicator-scan"
            )
        yield client


class AwsClients:
    """The service's clients, opened together and closed together."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> AwsClients:
        await self._stack.__aenter__()
        return self

    async def open(
        self, endpoint: Endpoint, *, call_timeout: float, max_connections: int = 10
    ) -> Any:
        return await self._stack.enter_async_context(
            open_client(endpoint, call_timeout=call_timeout, max_connections=max_connections)
        )

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.__aexit__(None, None, None)
