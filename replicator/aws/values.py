"""``ValueCodec`` with boto3's TypeDeserializer and TypeSerializer: a transform sees an
item as boto3's resource layer would give it (``Decimal``, ``Binary``, ``set``), decoded
from the wire form the replicator keeps items in (``replicator.aws.codec``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.types import (  # type: ignore[import-untyped]
    TypeDeserializer,
    TypeSerializer,
)

from replicator.aws.codec import item_from_boto, item_to_boto
from replicator.records import Item


class BotoValues:
    """Wire values to Python values and back, as boto3 converts them."""

    __slots__ = ("_deserializer", "_serializer")

    def __init__(self) -> None:
        self._deserializer = TypeDeserializer()
        self._serializer = TypeSerializer()

    def to_python(self, item: Item) -> dict[str, Any]:
        deserialize = self._deserializer.deserialize
        return {name: deserialize(value) for name, value in item_to_boto(item).items()}

    def to_wire(self, item: Mapping[str, Any]) -> Item:
        serialize = self._serializer.serialize
        return item_from_boto({str(name): serialize(value) for name, value in item.items()})
