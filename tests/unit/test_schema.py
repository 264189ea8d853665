"""The CreateTable request of a destination made like its source, and the indexes an
existing destination lacks."""

from __future__ import annotations

from typing import Any

from replicator.aws.schema import create_table_request, missing_indexes

KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
DEFINITIONS = [{"AttributeName": "pk", "AttributeType": "S"},
               {"AttributeName": "sk", "AttributeType": "N"},
               {"AttributeName": "g", "AttributeType": "S"}]


def described(**extra: Any) -> dict[str, Any]:
    """A DescribeTable ``Table``, with what DescribeTable adds that CreateTable refuses."""
    return {
        "TableName": "source", "TableStatus": "ACTIVE", "ItemCount": 12,
        "TableArn": "arn:aws:dynamodb:us-east-1:1:table/source",
        "KeySchema": KEYS, "AttributeDefinitions": DEFINITIONS,
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        **extra,
    }


GSI = {
    "IndexName": "by-g", "IndexStatus": "ACTIVE", "ItemCount": 3, "IndexArn": "arn:...",
    "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["a", "b"]},
    "ProvisionedThroughput": {"ReadCapacityUnits": 9, "WriteCapacityUnits": 2,
                              "NumberOfDecreasesToday": 0},
}
LSI = {
    "IndexName": "by-g-local", "IndexSizeBytes": 0, "IndexArn": "arn:...",
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                  {"AttributeName": "g", "KeyType": "RANGE"}],
    "Projection": {"ProjectionType": "ALL"},
}


def test_an_on_demand_source_gives_an_on_demand_table_with_its_indexes() -> None:
    request = create_table_request(described(
        BillingModeSummary={"BillingMode": "PAY_PER_REQUEST"},
        ProvisionedThroughput={"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
        GlobalSecondaryIndexes=[{**GSI, "ProvisionedThroughput": {
            "ReadCapacityUnits": 0, "WriteCapacityUnits": 0}}],
        LocalSecondaryIndexes=[LSI],
    ), "copy")
    assert request == {
        "TableName": "copy",
        "KeySchema": KEYS,
        "AttributeDefinitions": DEFINITIONS,
        "BillingMode": "PAY_PER_REQUEST",
        "GlobalSecondaryIndexes": [{
            "IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["a", "b"]},
        }],
        "LocalSecondaryIndexes": [{
            "IndexName": "by-g-local", "KeySchema": LSI["KeySchema"],
            "Projection": {"ProjectionType": "ALL"},
        }],
    }


def test_a_provisioned_source_gives_its_capacity_to_the_table_and_each_index() -> None:
    request = create_table_request(described(
        BillingModeSummary={"BillingMode": "PROVISIONED"},
        ProvisionedThroughput={"ReadCapacityUnits": 20, "WriteCapacityUnits": 10,
                               "NumberOfDecreasesToday": 1},
        GlobalSecondaryIndexes=[GSI],
    ), "copy")
    assert request["BillingMode"] == "PROVISIONED"
    assert request["ProvisionedThroughput"] == {"ReadCapacityUnits": 20,
                                                "WriteCapacityUnits": 10}
    assert request["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"] == {
        "ReadCapacityUnits": 9, "WriteCapacityUnits": 2}
    assert "StreamSpecification" not in request
    assert "LocalSecondaryIndexes" not in request


def test_a_source_without_a_billing_summary_is_read_from_its_capacity() -> None:
    provisioned = described(ProvisionedThroughput={"ReadCapacityUnits": 5,
                                                   "WriteCapacityUnits": 5})
    assert create_table_request(provisioned, "copy")["BillingMode"] == "PROVISIONED"
    on_demand = described(ProvisionedThroughput={"ReadCapacityUnits": 0,
                                                 "WriteCapacityUnits": 0})
    assert create_table_request(on_demand, "copy")["BillingMode"] == "PAY_PER_REQUEST"


def test_the_indexes_a_destination_lacks_are_named() -> None:
    source = described(GlobalSecondaryIndexes=[GSI], LocalSecondaryIndexes=[LSI])
    assert missing_indexes(source, described()) == ["by-g", "by-g-local"]
    assert missing_indexes(source, described(GlobalSecondaryIndexes=[GSI])) == ["by-g-local"]
    assert missing_indexes(source, source) == []
