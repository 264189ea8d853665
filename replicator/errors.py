"""The project's error tree.

Every error the core sees is a ``ReplicatorError``. The class says whether the
failed operation may be retried (``retriable``); retry loops consult that flag
and nothing else. AWS exceptions are translated into this tree in one place,
``replicator.aws.errors.map_errors``.
"""

from __future__ import annotations


class ReplicatorError(Exception):
    """Base of every error raised by the replicator."""

    retriable: bool = False
    #: Process exit code when this error ends the service.
    exit_code: int = 1


class ConfigError(ReplicatorError):
    """A setting is missing or malformed, or the environment contradicts it."""

    exit_code = 2


class StartupCheckError(ReplicatorError):
    """A fact checked at start-up makes replication impossible (table missing, ...)."""

    exit_code = 2


# -- errors from AWS calls, mapped at the boundary --------------------------


class AwsError(ReplicatorError):
    """An AWS call failed. ``code`` is the service's error code, when there is one."""

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class ThrottledError(AwsError):
    """The service asked us to slow down; back off and retry."""

    retriable = True


class TransientError(AwsError):
    """A server error, a dropped connection or a timeout; retry."""

    retriable = True


class CallTimeoutError(TransientError):
    """No answer within the call timeout."""


class EndpointUnreachableError(TransientError):
    """Nothing answers at the endpoint. Retriable while running, fatal at start-up."""


class ResourceNotFoundError(AwsError):
    """A table or stream does not exist."""


class ValidationError(AwsError):
    """The request was rejected as invalid (an item the destination refuses, ...)."""


class AccessDeniedError(AwsError):
    """Credentials are missing, invalid, or lack a permission."""

    exit_code = 2


class ConditionFailedError(AwsError):
    """A conditional write found the row not as expected."""


class ExpiredIteratorError(AwsError):
    """A shard iterator is older than 15 minutes; get a new one."""


class TrimmedDataError(AwsError):
    """The records asked for are past the stream's 24-hour retention."""


# -- errors of the replication itself ----------------------------------------


class LeaseLostError(ReplicatorError):
    """Another worker took the lease, or it was released; stop the shard at once."""


class PoisonRecordError(ReplicatorError):
    """The destination rejects a stream record; its shard stops without passing it."""

    exit_code = 3


class DataLossError(ReplicatorError):
    """Stream records were trimmed before they were applied."""

    exit_code = 4
