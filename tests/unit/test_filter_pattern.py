"""FilterPattern: Lambda's filter rule syntax, matched against DynamoDB stream records."""

from __future__ import annotations

import re
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

from replicator.records import EventName
from replicator.rules.pattern import FilterPattern, PatternError

ITEM: dict[str, Any] = {
    "pk": {"S": "order#1"},
    "tenant": {"S": "acme"},
    "status": {"S": "shipped"},
    "email": {"S": "Ann.Lee@Example.COM"},
    "nickname": {"S": ""},
    "qty": {"N": "5"},
    "total": {"N": "42.50"},
    "delta": {"N": "-1E+2"},
    "gift": {"BOOL": True},
    "archived": {"BOOL": False},
    "note": {"NULL": True},
    "tags": {"SS": ["red", "sale"]},
    "sizes": {"NS": ["38", "40.5"]},
    "address": {"M": {"city": {"S": "Paris"}, "zip": {"S": "75001"}}},
    "lines": {"L": [{"M": {"sku": {"S": "A-1"}, "n": {"N": "2"}}},
                    {"M": {"sku": {"S": "B-2"}, "n": {"N": "1"}}}]},
    "history": {"L": []},
}
OLD_ITEM: dict[str, Any] = {"pk": {"S": "order#1"}, "tenant": {"S": "acme"},
                            "status": {"S": "pending"}, "qty": {"N": "4"}}


def record(event_name: str = "MODIFY", new: dict[str, Any] | None = ITEM,
           old: dict[str, Any] | None = OLD_ITEM, **fields: Any) -> dict[str, Any]:
    """A stream record as GetRecords returns it (NEW_AND_OLD_IMAGES)."""
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": 1_700_000_000.0,
        "Keys": {"pk": {"S": "order#1"}},
        "SequenceNumber": "4200000000000000000001",
        "SizeBytes": 26,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    return {"eventID": "c81e728d", "eventName": event_name, "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "eu-west-1", "dynamodb": body,
            **fields}


RECORD = record()


def new_image(attribute: str, type_: str, matchers: list[Any]) -> dict[str, Any]:
    return {"dynamodb": {"NewImage": {attribute: {type_: matchers}}}}


def matches(pattern: dict[str, Any], event: dict[str, Any] = RECORD) -> bool:
    return FilterPattern.parse(pattern).matches(event)


@pytest.mark.parametrize(("pattern", "expected"), [
    ({"eventName": ["INSERT", "MODIFY"]}, True),
    ({"eventName": ["REMOVE"]}, False),
    ({"eventSource": ["aws:dynamodb"], "awsRegion": ["eu-west-1"]}, True),
    ({"dynamodb": {"Keys": {"pk": {"S": ["order#1"]}}}}, True),
    ({"dynamodb": {"Keys": {"pk": {"S": ["order#2"]}}}}, False),
    (new_image("tenant", "S", ["acme"]), True),
    (new_image("tenant", "S", ["ACME"]), False),  # equality is case-sensitive
    (new_image("tenant", "S", ["globex", "acme"]), True),
    (new_image("tenant", "N", ["acme"]), False),  # the attribute is an S, not an N
    (new_image("nickname", "S", [""]), True),  # Lambda's "Empty"
    (new_image("tenant", "S", [""]), False),
    (new_image("gift", "BOOL", [True]), True),
    (new_image("gift", "BOOL", [False]), False),
    (new_image("archived", "BOOL", [False]), True),
    (new_image("gift", "BOOL", [1]), False),  # a number never equals a boolean
    (new_image("gift", "BOOL", ["true"]), False),
    (new_image("note", "NULL", [True]), True),
    (new_image("tags", "SS", ["sale"]), True),  # a set matches when one element does
    (new_image("tags", "SS", ["blue", "green"]), False),
    (new_image("sizes", "NS", [40.5]), True),
    (new_image("sizes", "NS", [39]), False),
    ({"dynamodb": {"NewImage": {"address": {"M": {"city": {"S": ["Paris"]}}}}}}, True),
    ({"dynamodb": {"NewImage": {"address": {"M": {"city": {"S": ["London"]}}}}}}, False),
    ({"dynamodb": {"NewImage": {"lines": {"L": {"M": {"sku": {"S": ["B-2"]}}}}}}}, True),
    ({"dynamodb": {"NewImage": {"lines": {"L": {"M": {"sku": {"S": ["C-3"]}}}}}}}, False),
    ({"dynamodb": {"OldImage": {"status": {"S": ["pending"]}}}}, True),
    ({"dynamodb": {"OldImage": {"status": {"S": ["shipped"]}}}}, False),
])
def test_literals_match_equal_values_of_each_attribute_type(pattern: dict[str, Any],
                                                            expected: bool) -> None:
    assert matches(pattern) is expected


@pytest.mark.parametrize(("matchers", "value", "expected"), [
    ([5], "5", True),  # N values are strings: a number literal compares them by value
    ([5], "5.00", True),
    ([5.0], "5", True),
    ([5], "6", False),
    ([42.5], "42.50", True),
    ([-100], "-1E+2", True),
    (["5"], "5", True),  # a string literal compares strings
    (["5"], "5.0", False),
    ([12345678901234567890123456789012345678], "12345678901234567890123456789012345678", True),
    ([12345678901234567890123456789012345678], "12345678901234567890123456789012345679", False),
    ([5], "five", False),
])
def test_number_literals_compare_n_values_as_decimals(matchers: list[Any], value: str,
                                                      expected: bool) -> None:
    event = record(new={"qty": {"N": value}})
    assert matches(new_image("qty", "N", matchers), event) is expected


def test_a_number_literal_matches_a_number_of_the_event() -> None:
    assert matches({"dynamodb": {"SizeBytes": [26]}})
    assert matches({"dynamodb": {"SizeBytes": [26.0]}})
    assert not matches({"dynamodb": {"SizeBytes": ["26"]}})
    assert matches({"dynamodb": {"SizeBytes": [Decimal("26")]}})


@pytest.mark.parametrize(("matchers", "expected"), [
    ([None], True),
    (["null"], False),
    ([{"exists": True}], True),  # a null is a value
    ([{"exists": False}], False),
])
def test_null_matches_a_json_null(matchers: list[Any], expected: bool) -> None:
    event = record(userIdentity=None)
    assert matches({"userIdentity": matchers}, event) is expected
    assert not matches({"userIdentity": [None]}, record())  # absent is not null


@pytest.mark.parametrize(("attribute", "matcher", "expected"), [
    ("status", {"prefix": "ship"}, True),
    ("status", {"prefix": "shipped"}, True),
    ("status", {"prefix": "Ship"}, False),
    ("status", {"prefix": "pend"}, False),
    ("status", {"suffix": "ped"}, True),
    ("status", {"suffix": "ing"}, False),
    ("email", {"suffix": "@Example.COM"}, True),
    ("email", {"suffix": "@example.com"}, False),
    ("email", {"equals-ignore-case": "ann.lee@example.com"}, True),
    ("email", {"equals-ignore-case": "ANN.LEE@EXAMPLE.COM"}, True),
    ("email", {"equals-ignore-case": "bob@example.com"}, False),
    ("tenant", {"equals-ignore-case": "acm"}, False),
    ("nickname", {"prefix": ""}, True),
    ("pk", {"prefix": "order#"}, True),
])
def test_prefix_suffix_and_equals_ignore_case_match_strings(attribute: str,
                                                            matcher: dict[str, str],
                                                            expected: bool) -> None:
    assert matches(new_image(attribute, "S", [matcher])) is expected


@pytest.mark.parametrize(("pattern", "expected"), [
    (new_image("tags", "SS", [{"prefix": "sa"}]), True),
    (new_image("tags", "SS", [{"suffix": "ed"}]), True),
    (new_image("tags", "SS", [{"prefix": "bl"}]), False),
    (new_image("qty", "N", [{"prefix": "5"}]), True),  # an N value is a string
    (new_image("gift", "BOOL", [{"prefix": "t"}]), False),  # a boolean is no string
    (new_image("gift", "BOOL", [{"equals-ignore-case": "TRUE"}]), False),
])
def test_string_matchers_take_strings_only(pattern: dict[str, Any], expected: bool) -> None:
    assert matches(pattern) is expected


@pytest.mark.parametrize(("pattern", "expected"), [
    (new_image("status", "S", [{"anything-but": "pending"}]), True),
    (new_image("status", "S", [{"anything-but": "shipped"}]), False),
    (new_image("status", "S", [{"anything-but": ["pending", "cancelled"]}]), True),
    (new_image("status", "S", [{"anything-but": ["pending", "shipped"]}]), False),
    (new_image("status", "S", [{"anything-but": {"prefix": "pend"}}]), True),
    (new_image("status", "S", [{"anything-but": {"prefix": "ship"}}]), False),
    (new_image("status", "S", [{"anything-but": {"suffix": "ing"}}]), True),
    (new_image("status", "S", [{"anything-but": {"suffix": "ped"}}]), False),
    (new_image("status", "S", [{"anything-but": {"equals-ignore-case": "SHIPPED"}}]), False),
    (new_image("status", "S", [{"anything-but": {"equals-ignore-case": "PENDING"}}]), True),
    (new_image("qty", "N", [{"anything-but": [5]}]), False),  # "5" equals 5
    (new_image("qty", "N", [{"anything-but": [4, 6]}]), True),
    (new_image("qty", "N", [{"anything-but": "5"}]), False),
    (new_image("gift", "BOOL", [{"anything-but": False}]), True),
    (new_image("gift", "BOOL", [{"anything-but": True}]), False),
    (new_image("tags", "SS", [{"anything-but": "red"}]), True),  # "sale" is not "red"
    (new_image("tags", "SS", [{"anything-but": ["red", "sale"]}]), False),
    (new_image("missing", "S", [{"anything-but": "pending"}]), False),  # absent: no value
    ({"eventName": [{"anything-but": ["REMOVE"]}]}, True),
])
def test_anything_but_matches_present_values_other_than_those_given(pattern: dict[str, Any],
                                                                    expected: bool) -> None:
    assert matches(pattern) is expected


@pytest.mark.parametrize(("numeric", "value", "expected"), [
    ([">", 5], "5", False),
    ([">", 5], "5.01", True),
    ([">=", 5], "5", True),
    ([">=", 5], "4.999", False),
    (["<", 5], "4.99", True),
    (["<", 5], "5", False),
    (["<=", 5], "5.0", True),
    (["<=", 5], "5.0001", False),
    (["=", 5], "5.00", True),
    (["=", 5], "5.1", False),
    (["=", 0.1], "0.1", True),  # compared as decimals: no binary rounding
    ([">", 0, "<=", 5], "0", False),
    ([">", 0, "<=", 5], "0.0001", True),
    ([">", 0, "<=", 5], "5", True),
    ([">", 0, "<=", 5], "5.0001", False),
    ([">=", 0, "<", 5], "0", True),
    ([">=", 0, "<", 5], "5", False),
    ([">=", -200, "<", -99], "-1E+2", True),
    (["<", 1e3], "1E+3", False),
    ([">", 5], "abc", False),  # not a number: no numeric matcher matches
    ([">", 5], "NaN", False),
    ([">", 5], "Infinity", False),
])
def test_numeric_compares_n_values_with_its_boundaries(numeric: list[Any], value: str,
                                                      expected: bool) -> None:
    event = record(new={"total": {"N": value}})
    assert matches(new_image("total", "N", [{"numeric": numeric}]), event) is expected


@pytest.mark.parametrize(("pattern", "expected"), [
    ({"dynamodb": {"SizeBytes": [{"numeric": [">", 10]}]}}, True),  # an event number
    ({"dynamodb": {"SizeBytes": [{"numeric": ["<", 10]}]}}, False),
    (new_image("sizes", "NS", [{"numeric": [">", 40]}]), True),  # 40.5, one of the set
    (new_image("sizes", "NS", [{"numeric": [">", 41]}]), False),
    (new_image("gift", "BOOL", [{"numeric": [">=", 0]}]), False),  # true is not a number
    (new_image("tenant", "S", [{"numeric": [">=", 0]}]), False),
])
def test_numeric_takes_numbers_and_numeric_strings_only(pattern: dict[str, Any],
                                                        expected: bool) -> None:
    assert matches(pattern) is expected


@pytest.mark.parametrize(("pattern", "expected"), [
    (new_image("tenant", "S", [{"exists": True}]), True),
    (new_image("tenant", "S", [{"exists": False}]), False),
    (new_image("missing", "S", [{"exists": True}]), False),
    (new_image("missing", "S", [{"exists": False}]), True),
    (new_image("tenant", "N", [{"exists": False}]), True),  # tenant is no N
    (new_image("nickname", "S", [{"exists": True}]), True),  # "" is a value
    (new_image("gift", "BOOL", [{"exists": True}]), True),
    (new_image("tags", "SS", [{"exists": True}]), True),
    (new_image("history", "L", [{"exists": True}]), False),  # an empty list holds no value
    (new_image("history", "L", [{"exists": False}]), True),
    # As in Lambda, exists tests leaves: an attribute's {"S": ...} object is no value.
    ({"dynamodb": {"NewImage": {"tenant": [{"exists": True}]}}}, False),
    ({"dynamodb": {"NewImage": {"tenant": [{"exists": False}]}}}, True),
    ({"dynamodb": {"NewImage": {"address": {"M": {"zip": {"S": [{"exists": True}]}}}}}}, True),
    ({"dynamodb": {"NewImage": {"address": {"M": {"apt": {"S": [{"exists": True}]}}}}}}, False),
    ({"dynamodb": {"NewImage": {"address": {"M": {"apt": {"S": [{"exists": False}]}}}}}},
     True),
    (new_image("missing", "S", ["x", {"exists": False}]), True),  # either one
    (new_image("tenant", "S", ["x", {"exists": False}]), False),
])
def test_exists_tests_whether_a_field_holds_a_value(pattern: dict[str, Any],
                                                    expected: bool) -> None:
    assert matches(pattern) is expected


@pytest.mark.parametrize("matcher", [
    "x", "", 5, True, False, None,
    {"prefix": ""}, {"suffix": ""}, {"equals-ignore-case": "x"},
    {"anything-but": "x"}, {"anything-but": {"prefix": "x"}},
    {"numeric": [">", -1e9]}, {"exists": True},
])
def test_an_absent_field_matches_no_matcher_but_exists_false(matcher: Any) -> None:
    for event in (RECORD, record("INSERT", old=None), record("REMOVE", new=None)):
        assert not matches(new_image("missing", "S", [matcher]), event)
        assert not matches({"dynamodb": {"Missing": {"x": [matcher]}}}, event)
        assert matches(new_image("missing", "S", [matcher, {"exists": False}]), event)


def test_an_absent_image_has_no_value_in_it() -> None:
    insert = record("INSERT", old=None)
    assert matches({"dynamodb": {"OldImage": {"tenant": {"S": [{"exists": False}]}}}}, insert)
    assert not matches({"dynamodb": {"OldImage": {"tenant": {"S": ["acme"]}}}}, insert)
    assert not matches({"dynamodb": {"OldImage": {"tenant": {"S": ["acme"]},
                                                  "qty": {"N": [{"exists": False}]}}}},
                       insert)
    assert matches({"dynamodb": {"OldImage": {"tenant": {"S": [{"exists": False}]},
                                              "qty": {"N": [{"exists": False}]}}}}, insert)


@pytest.mark.parametrize(("event_name", "tenant", "expected"), [
    ("INSERT", "acme", True),
    ("MODIFY", "acme", True),
    ("REMOVE", "acme", False),
    ("INSERT", "globex", False),
])
def test_every_field_of_a_pattern_must_match(event_name: str, tenant: str,
                                             expected: bool) -> None:
    pattern = {"eventName": ["INSERT", "MODIFY"],
               "dynamodb": {"NewImage": {"tenant": {"S": ["acme"]}, "qty": {"N": [5]}}}}
    event = record(event_name, new={**ITEM, "tenant": {"S": tenant}})
    assert matches(pattern, event) is expected


@pytest.mark.parametrize(("lines", "expected"), [
    ([("A-1", "2"), ("B-2", "1")], True),
    ([("A-1", "1"), ("B-2", "2")], False),  # the sku and n of one line, not of two
    ([("B-2", "1")], True),
    ([], False),
])
def test_an_object_pattern_matches_one_element_of_a_list_whole(lines: list[tuple[str, str]],
                                                               expected: bool) -> None:
    items = [{"M": {"sku": {"S": sku}, "n": {"N": n}}} for sku, n in lines]
    event = record(new={**ITEM, "lines": {"L": items}})
    pattern = {"dynamodb": {"NewImage": {"lines": {"L": {"M": {"sku": {"S": ["B-2"]},
                                                                "n": {"N": [1]}}}}}}}
    assert matches(pattern, event) is expected


OR_PATTERN: dict[str, Any] = {
    "eventName": ["INSERT", "MODIFY"],
    "$or": [
        {"dynamodb": {"NewImage": {"tenant": {"S": ["acme"]}}}},
        {"dynamodb": {"NewImage": {"qty": {"N": [{"numeric": [">", 100]}]}}}},
    ],
}


@pytest.mark.parametrize(("event_name", "tenant", "qty", "expected"), [
    ("MODIFY", "acme", "1", True),
    ("MODIFY", "globex", "101", True),
    ("MODIFY", "acme", "101", True),
    ("MODIFY", "globex", "100", False),
    ("REMOVE", "acme", "101", False),  # the other fields must match too
])
def test_or_takes_one_of_its_patterns(event_name: str, tenant: str, qty: str,
                                      expected: bool) -> None:
    event = record(event_name, new={**ITEM, "tenant": {"S": tenant}, "qty": {"N": qty}})
    assert matches(OR_PATTERN, event) is expected


@pytest.mark.parametrize(("status", "gift", "expected"), [
    ("shipped", False, True),
    ("pending", True, True),
    ("pending", False, False),
])
def test_or_nests_in_an_object(status: str, gift: bool, expected: bool) -> None:
    pattern = {"dynamodb": {"NewImage": {
        "tenant": {"S": ["acme"]},
        "$or": [{"status": {"S": ["shipped"]}}, {"gift": {"BOOL": [True]}},
                {"$or": [{"qty": {"N": [1000]}}, {"qty": {"N": [2000]}}]}],
    }}}
    event = record(new={**ITEM, "status": {"S": status}, "gift": {"BOOL": gift}})
    assert matches(pattern, event) is expected
    assert not matches(pattern, record(new={**ITEM, "tenant": {"S": "globex"}}))
    assert matches(pattern, record(new={"tenant": {"S": "acme"}, "qty": {"N": "2e3"}}))


def test_a_pattern_parses_from_json_or_a_mapping_alike() -> None:
    text = '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"qty": {"N": [5]}}}}'
    parsed = FilterPattern.parse(text)
    source = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"qty": {"N": [5]}}}}
    assert parsed.source == source
    assert parsed == FilterPattern.parse(source) == FilterPattern.parse(MappingProxyType(source))
    assert FilterPattern(source).matches(record("INSERT"))
    assert parsed.matches(record("INSERT"))
    assert not parsed.matches(record("MODIFY"))


def test_matching_accepts_any_mapping_and_string_enums() -> None:
    pattern = FilterPattern.parse({"eventName": ["MODIFY"],
                                   "dynamodb": {"NewImage": {"tenant": {"S": ["acme"]}}}})
    assert pattern.matches(MappingProxyType(record(EventName.MODIFY.value)))
    assert pattern.matches({**RECORD, "eventName": EventName.MODIFY})
    assert pattern.matches({**RECORD, "dynamodb": MappingProxyType(RECORD["dynamodb"])})


@pytest.mark.parametrize(("path", "expected"), [
    ((), True),
    (("eventName",), True),
    (("dynamodb",), True),
    (("dynamodb", "NewImage"), True),
    (("dynamodb", "NewImage", "tenant"), True),
    (("dynamodb", "NewImage", "tenant", "S"), True),
    (("dynamodb", "NewImage", "qty", "N"), True),  # in an $or
    (("dynamodb", "OldImage"), True),  # under an object of several fields
    (("dynamodb", "OldImage", "status", "S"), True),
    (("dynamodb", "OldImage", "tenant"), False),
    (("dynamodb", "Keys"), False),
    (("dynamodb", "NewImage", "tenant", "S", "x"), False),
    (("NewImage",), False),
    (("$or",), False),
])
def test_mentions_tells_which_paths_the_pattern_looks_at(path: tuple[str, ...],
                                                         expected: bool) -> None:
    pattern = FilterPattern.parse({
        "eventName": ["MODIFY"],
        "dynamodb": {
            "NewImage": {"tenant": {"S": ["acme"]}},
            "OldImage": {"status": {"S": ["pending"]}},
            "$or": [{"NewImage": {"qty": {"N": [1]}}}, {"NewImage": {"qty": {"N": [2]}}}],
        },
    })
    assert pattern.mentions(*path) is expected


def test_mentions_finds_no_old_image_in_a_pattern_of_new_images() -> None:
    pattern = FilterPattern.parse(new_image("tenant", "S", ["acme"]))
    assert not pattern.mentions("dynamodb", "OldImage")
    assert not pattern.mentions("eventName")


ERRORS: list[tuple[Any, str]] = [
    ("{eventName", "not valid JSON: Expecting property name enclosed in double quotes"),
    ("", "not valid JSON: Expecting value: line 1 column 1 (char 0)"),
    ('["INSERT"]', 'a pattern is a JSON object, got ["INSERT"]'),
    ("5", "a pattern is a JSON object, got 5"),
    ({}, "an object needs at least one field, got {}"),
    ({"eventName": "INSERT"}, 'eventName: a list of matchers is needed, got "INSERT"'),
    ({"eventName": []}, "eventName: a list of matchers is needed, got []"),
    ({"dynamodb": {"NewImage": {"n": {"N": 5}}}},
     "dynamodb.NewImage.n.N: a list of matchers is needed, got 5"),
    ({"dynamodb": {"NewImage": {}}}, "dynamodb.NewImage: an object needs at least one field"),
    ({"dynamodb": {"NewImage": {"tenant": {"S": [{"prefixx": "a"}]}}}},
     'dynamodb.NewImage.tenant.S: unknown operator "prefixx" (known: anything-but, '
     "equals-ignore-case, exists, numeric, prefix, suffix)"),
    ({"a": [{"wildcard": "*x"}]}, 'a: unknown operator "wildcard"'),
    ({"a": [{"prefix": "x", "suffix": "y"}]},
     'a: an operator object has exactly one key, got {"prefix": "x", "suffix": "y"}'),
    ({"a": [{}]}, "a: an operator object has exactly one key, got {}"),
    ({"a": [["x"]]}, 'a: a matcher is a string, number, boolean, null or an object, got ["x"]'),
    ({"a": [float("nan")]}, "a: a number literal must be finite, got NaN"),
    ({"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">"]}]}}}},
     'dynamodb.NewImage.n.N: numeric needs [op, number] or [op, number, op, number], got [">"]'),
    ({"n": [{"numeric": ">5"}]}, 'n: numeric needs [op, number] or [op, number, op, number]'),
    ({"n": [{"numeric": [">", 1, "<"]}]}, "n: numeric needs [op, number] or"),
    ({"n": [{"numeric": ["=>", 5]}]}, '"=>" is not one of =, <, <=, >, >='),
    ({"n": [{"numeric": [5, ">"]}]}, "5 is not one of =, <, <=, >, >="),
    ({"n": [{"numeric": [">", "5"]}]}, '"5" is not a finite number'),
    ({"n": [{"numeric": [">", True]}]}, "true is not a finite number"),
    ({"n": [{"numeric": [">", float("inf")]}]}, "Infinity is not a finite number"),
    ({"n": [{"numeric": ["<", 5, ">", 1]}]}, "a range is > or >= a number, then < or <= a number"),
    ({"n": [{"numeric": ["=", 1, "<", 5]}]}, "a range is > or >= a number, then < or <= a number"),
    ({"n": [{"numeric": [">", 5, "<", 5]}]}, "the lower bound is not below the upper bound"),
    ({"a": [{"exists": "true"}]}, 'a: exists takes true or false, got "true"'),
    ({"a": [{"exists": 1}]}, "a: exists takes true or false, got 1"),
    ({"a": [{"prefix": 5}]}, "a: prefix takes a string, got 5"),
    ({"a": [{"suffix": ["x"]}]}, 'a: suffix takes a string, got ["x"]'),
    ({"a": [{"equals-ignore-case": None}]}, "a: equals-ignore-case takes a string, got null"),
    ({"a": [{"anything-but": []}]}, "a: anything-but takes a literal, a non-empty list of "
                                    "literals, or one of"),
    ({"a": [{"anything-but": [{"prefix": "x"}]}]}, "a: anything-but takes a literal"),
    ({"a": [{"anything-but": {"prefix": "x", "suffix": "y"}}]}, "a: anything-but takes"),
    ({"a": [{"anything-but": {"numeric": [">", 1]}}]},
     'a: anything-but: unknown operator "numeric" (known: equals-ignore-case, prefix, suffix)'),
    ({"a": [{"anything-but": {"prefix": 1}}]}, "a: anything-but prefix takes a string, got 1"),
    ({"$or": {"a": ["x"]}}, '$or: needs a list of at least 2 patterns, got {"a": ["x"]}'),
    ({"$or": [{"a": ["x"]}]}, "$or: needs a list of at least 2 patterns"),
    ({"dynamodb": {"$or": [{"a": ["x"]}, "b"]}},
     'dynamodb.$or[1]: a pattern is a JSON object, got "b"'),
    ({"$or": [{"a": ["x"]}, {"b": {"c": [{"exists": 0}]}}]},
     "$or[1].b.c: exists takes true or false, got 0"),
    ({"$or": [{"a": ["x"]}, {}]}, "$or[1]: an object needs at least one field"),
]


@pytest.mark.parametrize(("pattern", "message"), ERRORS)
def test_an_invalid_pattern_is_refused_with_where_and_what(pattern: Any, message: str) -> None:
    with pytest.raises(PatternError, match=re.escape(message)) as raised:
        FilterPattern.parse(pattern)
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_the_pattern_itself_must_be_an_object() -> None:
    with pytest.raises(PatternError, match=re.escape("a pattern is a JSON object, got [1]")):
        FilterPattern([1])  # type: ignore[arg-type]
    with pytest.raises(PatternError, match=re.escape('a pattern is a JSON object, got "x"')):
        FilterPattern.parse('"x"')
