"""A timeout on every call, and botocore's and aiohttp's errors as ``replicator.errors``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from botocore import exceptions as boto_errors

from replicator import errors

_THROTTLING = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "LimitExceededException",
    "TooManyRequestsException",
}


_TRANSIENT = {
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ResourceInUseException",
}


_ACCESS = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "IncompleteSignature",
}


#: The fix an access error names, wherever it happens: the service's own message
#: says which permission is missing.
ACCESS_FIX = (
    "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, the container role) "
    "and their IAM permissions"
)


_BY_CODE: dict[str, type[errors.AwsError]] = {
    "ResourceNotFoundException": errors.ResourceNotFoundError,
    "ValidationException": errors.ValidationError,
    "SerializationException": errors.ValidationError,
    # An item that can never be written (its LSI item collection is full).
    "ItemCollectionSizeLimitExceededException": errors.ValidationError,
    "ConditionalCheckFailedException": errors.ConditionFailedError,
    "ExpiredIteratorException": errors.ExpiredIteratorError,
    "TrimmedDataAccessException": errors.TrimmedDataError,
}


def map_client_error(exc: boto_errors.ClientError, operation: str) -> errors.AwsError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")).strip()
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if "<html" in message.lower() or len(message) > 300:
        message = f"HTTP {status or code}"
    text = f"{operation}: {code}: {message}" if message else f"{operation}: {code}"
    cls: type[errors.AwsError]
    if code in _THROTTLING:
        cls = errors.ThrottledError
    elif code in _ACCESS:
        cls = errors.AccessDeniedError
        text = f"{text}; {ACCESS_FIX}"
    elif code in _BY_CODE:
        cls = _BY_CODE[code]
    elif code in _TRANSIENT or status >= 500 or (code.isdigit() and int(code) >= 500):
        cls = errors.TransientError
    else:
        cls = errors.AwsError
    return cls(text, code=code, operation=operation)


@asynccontextmanager
async def map_errors(operation: str, seconds: float) -> AsyncIterator[None]:
    """Bound a call by ``seconds`` and turn whatever botocore raises into our errors."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except boto_errors.ClientError as exc:
        raise map_client_error(exc, operation) from exc
    except (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError) as exc:
        raise errors.AccessDeniedError(
            f"{operation}: no AWS credentials found; {ACCESS_FIX}", operation=operation
        ) from exc
    except (boto_errors.EndpointConnectionError, boto_errors.ConnectTimeoutError) as exc:
        url = getattr(exc, "kwargs", {}).get("endpoint_url", "the endpoint")
        raise errors.EndpointUnreachableError(
            f"{operation}: cannot connect to {url}", operation=operation
        ) from exc
    except (
        boto_errors.ReadTimeoutError,
        boto_errors.ConnectionClosedError,
        boto_errors.HTTPClientError,
        aiohttp.ClientError,
        ConnectionError,
    ) as exc:
        raise errors.TransientError(
            f"{operation}: {type(exc).__name__}: {exc}", operation=operation
        ) from exc
    except TimeoutError as exc:
        raise errors.CallTimeoutError(
            f"{operation}: no answer within {seconds:g}s", operation=operation
        ) from exc
