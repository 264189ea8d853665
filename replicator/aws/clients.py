"""The AWS clients: aioboto3 makes them, aiobotocore runs them.

``open_dynamodb``, ``open_streams`` and ``open_cloudwatch`` open one typed client
each; ``open_client`` opens whichever ``Endpoint.service`` names, and ``AwsClients``
keeps the clients of a command open together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast

import aioboto3
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore import exceptions as boto_errors
from botocore.context import get_context

from replicator import errors
from replicator.aws import codec
from replicator.config import LONGEST_CALL

if TYPE_CHECKING:
    # Re-exported: the commands name the clients' types without importing the SDK.
    from types_aiobotocore_cloudwatch import CloudWatchClient as CloudWatchClient
    from types_aiobotocore_dynamodb import DynamoDBClient as DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient as DynamoDBStreamsClient

C = TypeVar("C")

#: The services ``open_client`` opens, by ``Endpoint.service``.
SERVICES = ("dynamodb", "dynamodbstreams", "cloudwatch")


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


def client_config(*, call_timeout: float, max_connections: int = 10) -> AioConfig:
    """Our timeouts, without botocore's own retries and parameter checks.

    Retrying is ours to do (``replicator.backoff``), so that a throttled call is
    retried for as long as it takes and every retry is counted and logged.

    botocore does not check the parameters before sending them: the service
    checks them anyway and answers a ValidationException, which ``map_errors``
    translates (botocore's own ParamValidationError it would not), and the
    check walks every attribute of every item a copy or a writer sends, which
    costs about as much as serializing them.
    """
    return AioConfig(
        connect_timeout=min(call_timeout, 5.0),
        # Every call is bounded by ``map_errors``'s timeout; a Scan's may grow past the
        # call timeout (``scan.ScanPacing``), so botocore's own is only a backstop.
        read_timeout=max(call_timeout, LONGEST_CALL),
        retries={"total_max_attempts": 1},
        max_pool_connections=max_connections,
        parameter_validation=False,
    )


def known_profiles() -> set[str]:
    """The profiles of the AWS config and credentials files (AWS_CONFIG_FILE and
    AWS_SHARED_CREDENTIALS_FILE are followed)."""
    return set(AioSession().available_profiles)


def session_for(endpoint: Endpoint) -> aioboto3.Session:
    """An aioboto3 session with the endpoint's profile (None: the standard chain).

    Raises ``ConfigError`` when the profile is not in the AWS config files.
    Credentials are read on the first call.
    """
    botocore_session = AioSession(profile=endpoint.profile)
    try:
        botocore_session.get_scoped_config()  # reads the profile
    except boto_errors.ProfileNotFound as exc:
        raise errors.ConfigError(
            f"{endpoint.profile_setting}: AWS profile {endpoint.profile!r} is not in the AWS "
            "config files (~/.aws/config, or AWS_CONFIG_FILE): add it, or name another"
        ) from exc
    return aioboto3.Session(botocore_session=botocore_session)


class _Where(TypedDict):
    region_name: str
    endpoint_url: str | None
    config: AioConfig


def _where(endpoint: Endpoint, call_timeout: float, max_connections: int) -> _Where:
    """Where a client connects, and with which configuration (``client_config``)."""
    return _Where(region_name=endpoint.region, endpoint_url=endpoint.endpoint_url,
                  config=client_config(call_timeout=call_timeout,
                                       max_connections=max_connections))


@asynccontextmanager
async def open_dynamodb(
    endpoint: Endpoint, *, call_timeout: float, max_connections: int = 10,
    session: aioboto3.Session | None = None,
) -> AsyncIterator[DynamoDBClient]:
    """A DynamoDB client (``client_config``) that reads and writes items in wire form
    (``replicator.aws.codec``)."""
    async with (session or session_for(endpoint)).client(
        "dynamodb", **_where(endpoint, call_timeout, max_connections)
    ) as client:
        yield codec.install(_user_agent_once(client))


@asynccontextmanager
async def open_streams(
    endpoint: Endpoint, *, call_timeout: float, max_connections: int = 10,
    session: aioboto3.Session | None = None,
) -> AsyncIterator[DynamoDBStreamsClient]:
    """A DynamoDB Streams client (``client_config``) that reads records in wire form
    (``replicator.aws.codec``)."""
    async with (session or session_for(endpoint)).client(
        "dynamodbstreams", **_where(endpoint, call_timeout, max_connections)
    ) as client:
        yield codec.install(_user_agent_once(client))


@asynccontextmanager
async def open_cloudwatch(
    endpoint: Endpoint, *, call_timeout: float, max_connections: int = 10,
    session: aioboto3.Session | None = None,
) -> AsyncIterator[CloudWatchClient]:
    """A CloudWatch client (``client_config``)."""
    async with (session or session_for(endpoint)).client(
        "cloudwatch", **_where(endpoint, call_timeout, max_connections)
    ) as client:
        yield client


def _user_agent_once(client: C) -> C:
    """The client with its User-Agent header built once for each set of SDK features
    in use, not twice for every call: botocore builds it from a dozen components,
    each cleaned character by character, a fifth of what a BatchWriteItem costs the
    client. The header is the one botocore would send."""
    creator: Any = cast(Any, client)._user_agent_creator
    build = creator.to_string
    built: dict[frozenset[str], str] = {}

    def to_string() -> str:
        context = get_context()
        features = frozenset(context.features) if context is not None else frozenset()
        header = built.get(features)
        if header is None:
            header = built[features] = str(build())
        return header

    creator.to_string = to_string
    return client


def open_client(
    endpoint: Endpoint, *, call_timeout: float, max_connections: int = 10
) -> AbstractAsyncContextManager[Any]:
    """The client of ``endpoint.service`` (one of ``SERVICES``), opened by its own opener.

    The service is known at run time only, so the client is typed ``Any``: code that
    knows its service opens it with ``open_dynamodb``, ``open_streams`` or
    ``open_cloudwatch`` instead.
    """
    if endpoint.service == "dynamodb":
        return open_dynamodb(endpoint, call_timeout=call_timeout, max_connections=max_connections)
    if endpoint.service == "dynamodbstreams":
        return open_streams(endpoint, call_timeout=call_timeout, max_connections=max_connections)
    if endpoint.service == "cloudwatch":
        return open_cloudwatch(
            endpoint, call_timeout=call_timeout, max_connections=max_connections
        )
    raise ValueError(f"no client for service {endpoint.service!r}: one of {', '.join(SERVICES)}")


class AwsClients:
    """The service's clients, opened together and closed together.

    The clients of one profile share one session: each session loads the service
    models and endpoint rules of its clients again, about 9 MB for each client that
    could share them.
    """

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._sessions: dict[str | None, aioboto3.Session] = {}

    def _session(self, endpoint: Endpoint) -> aioboto3.Session:
        session = self._sessions.get(endpoint.profile)
        if session is None:
            session = self._sessions[endpoint.profile] = session_for(endpoint)
        return session

    async def __aenter__(self) -> AwsClients:
        await self._stack.__aenter__()
        return self

    async def dynamodb(
        self, endpoint: Endpoint, *, call_timeout: float, max_connections: int = 10
    ) -> DynamoDBClient:
        return await self._stack.enter_async_context(
            open_dynamodb(endpoint, call_timeout=call_timeout, max_connections=max_connections,
                          session=self._session(endpoint))
        )

    async def streams(
        self, endpoint: Endpoint, *, call_timeout: float, max_connections: int = 10
    ) -> DynamoDBStreamsClient:
        return await self._stack.enter_async_context(
            open_streams(endpoint, call_timeout=call_timeout, max_connections=max_connections,
                         session=self._session(endpoint))
        )

    async def cloudwatch(
        self, endpoint: Endpoint, *, call_timeout: float, max_connections: int = 10
    ) -> CloudWatchClient:
        return await self._stack.enter_async_context(
            open_cloudwatch(endpoint, call_timeout=call_timeout, max_connections=max_connections,
                            session=self._session(endpoint))
        )

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.__aexit__(None, None, None)
