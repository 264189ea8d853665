"""A destination's rules on stream records and copied items: the filter (items entering
and leaving it), time-to-live deletes, the projection and the transform."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from replicator.aws.values import BotoValues
from replicator.copy.verify import normalize
from replicator.records import EventName, Item, StreamRecord
from replicator.rules.pattern import FilterPattern
from replicator.rules.projection import Projection
from replicator.rules.selection import Rules, Skipped
from replicator.rules.transform import RuleError, Transform

TENANT = FilterPattern.parse({"dynamodb": {"NewImage": {"tenant": {"S": ["acme"]}}}})


def item(pk: str, tenant: str, **extra: dict[str, Any]) -> Item:
    return {"pk": {"S": pk}, "tenant": {"S": tenant}, **extra}


def record(event: str, new: Item | None, old: Item | None = None, *,
           by_ttl: bool = False) -> StreamRecord:
    image = new if new is not None else old
    assert image is not None
    return StreamRecord(shard_id="shard-1", sequence_number="100",
                        event_name=EventName(event), keys={"pk": image["pk"]},
                        new_image=new, size_bytes=10, created_at=1.0, old_image=old,
                        by_ttl=by_ttl)


def put(image: Item) -> dict[str, Any]:
    return {"PutRequest": {"Item": image}}


def delete(pk: str) -> dict[str, Any]:
    return {"DeleteRequest": {"Key": {"pk": {"S": pk}}}}


@pytest.mark.parametrize(("event", "new", "old", "expected"), [
    ("INSERT", item("a", "acme"), None, put(item("a", "acme"))),
    ("INSERT", item("a", "other"), None, Skipped.FILTERED),
    ("MODIFY", item("a", "acme"), item("a", "acme"), put(item("a", "acme"))),
    # starts to match: put
    ("MODIFY", item("a", "acme"), item("a", "other"), put(item("a", "acme"))),
    # leaves the filter: the destination's copy is deleted
    ("MODIFY", item("a", "other"), item("a", "acme"), delete("a")),
    ("MODIFY", item("a", "other"), item("a", "other"), Skipped.FILTERED),
    # a REMOVE is judged by the removed item
    ("REMOVE", None, item("a", "acme"), delete("a")),
    ("REMOVE", None, item("a", "other"), Skipped.FILTERED),
])
def test_a_filter_puts_what_it_selects_and_deletes_what_leaves_it(
        event: str, new: Item | None, old: Item | None, expected: object) -> None:
    assert Rules(filter=TENANT).request_for(record(event, new, old)) == expected


def test_a_filter_on_the_event_name_can_keep_deletes_out() -> None:
    rules = Rules(filter=FilterPattern.parse({"eventName": ["INSERT", "MODIFY"]}))
    assert rules.request_for(record("INSERT", item("a", "x"))) == put(item("a", "x"))
    assert rules.request_for(record("REMOVE", None, item("a", "x"))) is Skipped.FILTERED
    assert rules.keeps_removed


def test_ttl_deletes_are_skipped_and_ordinary_deletes_still_apply() -> None:
    rules = Rules(skip_ttl_deletes=True)
    expired = record("REMOVE", None, item("a", "acme"), by_ttl=True)
    deleted = record("REMOVE", None, item("b", "acme"))
    assert rules.request_for(expired) is Skipped.TTL_DELETE
    assert rules.request_for(deleted) == delete("b")
    # Without the setting a TTL delete is a delete like any other.
    assert Rules().request_for(expired) == delete("a")
    assert rules.keeps_removed


def test_a_record_says_whether_the_time_to_live_made_it() -> None:
    raw = {"eventName": "REMOVE", "dynamodb": {"Keys": {"pk": {"S": "a"}},
                                               "SequenceNumber": "1",
                                               "OldImage": item("a", "acme")}}
    service = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    assert StreamRecord.from_wire("s", {**raw, "userIdentity": service}).by_ttl
    assert not StreamRecord.from_wire("s", raw).by_ttl
    someone = {"Type": "Service", "PrincipalId": "lambda.amazonaws.com"}
    assert not StreamRecord.from_wire("s", {**raw, "userIdentity": someone}).by_ttl
    assert StreamRecord.from_wire("s", raw).old_image == item("a", "acme")


def test_a_projection_keeps_the_keys_drops_what_it_excludes_and_renames() -> None:
    projection = Projection(exclude=frozenset({"secret"}), rename={"nick": "nickname"})
    image = item("a", "acme", secret={"S": "x"}, nick={"S": "al"})
    assert projection.apply(image, ["pk"]) == {"pk": {"S": "a"}, "tenant": {"S": "acme"},
                                              "nickname": {"S": "al"}}
    kept = Projection(include=frozenset({"tenant"}))
    assert kept.apply(image, ["pk"]) == {"pk": {"S": "a"}, "tenant": {"S": "acme"}}


@pytest.mark.parametrize(("projection", "problem"), [
    (Projection(exclude=frozenset({"pk"})), "exclude lists key attribute pk"),
    (Projection(rename={"pk": "id"}), "rename renames key attribute pk"),
    (Projection(rename={"nick": "pk"}), "under the name of key attribute pk"),
])
def test_a_projection_that_touches_a_key_is_refused(projection: Projection,
                                                    problem: str) -> None:
    assert problem in str(projection.key_problem(["pk"]))


def test_projection_lists_that_contradict_each_other_are_refused() -> None:
    assert "both set" in str(Projection.problem(["a"], ["b"], {}))
    assert "two attributes under one name" in str(Projection.problem(None, [], {"a": "c",
                                                                              "b": "c"}))
    assert Projection.problem(None, ["secret"], {"nick": "nickname"}) is None


def mask_email(value: dict[str, Any], event_name: str) -> dict[str, Any] | None:
    if value.get("drop"):
        return None
    if "email" in value:
        value["email"] = "***"
    value["seen"] = {"event": event_name, "n": value.get("n", Decimal(0)) + 1}
    return value


def transform_rules(function: Any = mask_email) -> Rules:
    return Rules(transform=Transform("tests:mask", function, BotoValues()),
                 projection=Projection(exclude=frozenset({"secret"})))


def test_a_transform_sees_python_values_and_its_result_is_projected() -> None:
    image = item("a", "acme", email={"S": "a@b.c"}, n={"N": "41"}, secret={"S": "s"},
                 blob={"B": "AAE="}, tags={"SS": ["x", "y"]})
    request = transform_rules().request_for(record("INSERT", image))
    assert isinstance(request, dict)
    assert normalize(request["PutRequest"]["Item"]) == normalize({
        "pk": {"S": "a"}, "tenant": {"S": "acme"}, "email": {"S": "***"},
        "n": {"N": "41"}, "blob": {"B": "AAE="}, "tags": {"SS": ["x", "y"]},
        "seen": {"M": {"event": {"S": "INSERT"}, "n": {"N": "42"}}},
    })  # a set's order is the set's own


def test_a_transform_that_returns_none_skips_the_record() -> None:
    image = item("a", "acme", drop={"BOOL": True})
    assert transform_rules().request_for(record("INSERT", image)) is Skipped.TRANSFORMED_AWAY


def raises(value: dict[str, Any], event_name: str) -> dict[str, Any]:
    raise KeyError("email")


def changes_the_key(value: dict[str, Any], event_name: str) -> dict[str, Any]:
    return {**value, "pk": "other"}


def returns_a_float(value: dict[str, Any], event_name: str) -> dict[str, Any]:
    return {**value, "ratio": 0.5}


@pytest.mark.parametrize(("function", "message"), [
    (raises, "raised KeyError"),
    (changes_the_key, "changed key attribute pk"),
    (returns_a_float, "a value DynamoDB cannot hold"),
    (lambda value, event: ["not", "an", "item"], "returned a list"),
])
def test_a_transform_that_fails_makes_a_poison_record(function: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        transform_rules(function).request_for(record("INSERT", item("a", "acme")))


def test_copied_items_are_judged_as_inserts_of_their_image() -> None:
    rules = Rules(filter=TENANT, projection=Projection(exclude=frozenset({"secret"})))
    assert rules.copied(item("a", "acme", secret={"S": "s"}), ["pk"]) == item("a", "acme")
    assert rules.copied(item("b", "other"), ["pk"]) is None


def test_no_rules_write_every_record_as_it_is() -> None:
    rules = Rules()
    assert not rules.selective
    image = item("a", "other")
    assert rules.request_for(record("INSERT", image)) == put(image)
    assert rules.request_for(record("REMOVE", None, image)) == delete("a")
