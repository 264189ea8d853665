"""Item sizes as DynamoDB counts them, and the write units of a put."""

from __future__ import annotations

import pytest

from replicator.records import item_size, value_size, write_units


@pytest.mark.parametrize(("value", "size"), [
    ({"S": "abc"}, 3),
    ({"S": "é"}, 2),  # UTF-8 bytes, not characters
    ({"B": b"\x00\x01\x02\x03"}, 4),
    ({"N": "123"}, 3),  # 3 significant digits: 2 bytes, plus 1
    ({"N": "-0.00120"}, 2),  # leading and trailing zeroes do not count
    ({"N": "1E+10"}, 2),
    ({"BOOL": True}, 1),
    ({"NULL": True}, 1),
    ({"SS": ["ab", "c"]}, 3),
    ({"NS": ["1", "22"]}, 4),
    ({"BS": [b"ab", b"c"]}, 3),
    ({"L": [{"S": "ab"}, {"BOOL": False}]}, 3 + (1 + 2) + (1 + 1)),
    ({"M": {"k": {"S": "ab"}}}, 3 + 1 + 1 + 2),
    ({"L": []}, 3),
])
def test_each_attribute_type_is_sized_by_dynamodbs_rules(value: dict[str, object],
                                                          size: int) -> None:
    assert value_size(value) == size


def test_an_items_size_adds_each_attribute_names_length() -> None:
    assert item_size({"pk": {"S": "abc"}, "count": {"N": "7"}}) == (2 + 3) + (5 + 2)


def test_a_put_costs_one_unit_per_started_kilobyte() -> None:
    assert write_units({"pk": {"S": "a"}}) == 1
    assert write_units({"p": {"S": "x" * 1023}}) == 1
    assert write_units({"p": {"S": "x" * 1024}}) == 2
    assert write_units({"p": {"B": b"\0" * 4000}}) == 4
