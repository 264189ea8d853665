"""A destination's transform: a function of the user's, ``package.module:function``,
called with each item as plain Python values and the event name, returning the item
to write, or None to write nothing.

The values are converted by a ``ValueCodec`` (boto3's TypeDeserializer and
TypeSerializer, wired in from the AWS boundary): numbers are ``Decimal``, binaries
``Binary``, sets ``set``. A transform that raises, returns something that is no item,
or changes the item's key makes the record a poison record (``RuleError``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from replicator.errors import ReplicatorError
from replicator.protocols import ValueCodec
from replicator.records import Item

#: The user's function: (item, event name) -> item to write, or None.
TransformFunction = Callable[[dict[str, Any], str], "Mapping[str, Any] | None"]


class RuleError(ReplicatorError):
    """A destination's rules reject a record: its transform raised, or returned an item
    with another key or no item at all. Stored as a poison record."""

    exit_code = 3


def load_function(spec: str) -> TransformFunction:
    """The function ``spec`` names (``package.module:function``); ``ValueError`` with a
    one-line reason when it cannot be imported."""
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name:
        raise ValueError(f"{spec!r} is not package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error of the user's module at import
        raise ValueError(f"cannot import module {module_name}: "
                         f"{type(exc).__name__}: {exc}") from None
    function = getattr(module, name, None)
    if function is None:
        raise ValueError(f"module {module_name} has no attribute {name}")
    if not callable(function):
        raise ValueError(f"{spec} is not callable")
    transform: TransformFunction = function
    return transform


class Transform:
    """The user's function with the codec that converts items to and from Python."""

    __slots__ = ("_codec", "_function", "spec")

    def __init__(self, spec: str, function: TransformFunction, codec: ValueCodec) -> None:
        self.spec = spec
        self._function = function
        self._codec = codec

    def apply(self, item: Item, event_name: str, keys: Item) -> Item | None:
        """The item to write for ``item`` (an image), or None; ``RuleError`` when the
        function raises, returns no item, or returns one whose key is not ``keys``."""
        codec = self._codec
        try:
            result = self._function(codec.to_python(item), event_name)
        except Exception as exc:  # any error of the user's function
            raise RuleError(f"transform {self.spec} raised {type(exc).__name__}: {exc}") from exc
        if result is None:
            return None
        if not isinstance(result, Mapping):
            raise RuleError(f"transform {self.spec} returned a {type(result).__name__}, "
                            "not an item (a dict) or None")
        try:
            written = codec.to_wire(result)
        except Exception as exc:  # a value DynamoDB cannot hold (a float, an empty set)
            raise RuleError(f"transform {self.spec} returned a value DynamoDB cannot hold: "
                            f"{type(exc).__name__}: {exc}") from exc
        for name, value in keys.items():
            if written.get(name) != value:
                raise RuleError(f"transform {self.spec} changed key attribute {name}: "
                                "a transform keeps the item's key")
        return written
