"""The one update-expression builder (smsgate.store.expressions): pure rendering, no AWS."""

from __future__ import annotations

from smsgate.store.expressions import (
    Update,
    absent,
    below,
    lease_free,
    put_request,
    record_absent,
    status_in,
    waiting_in,
)


def test_an_update_renders_its_clauses_and_only_the_placeholders_it_uses() -> None:
    request = (
        Update()
        .set("status", "sent")
        .set_if_absent("created_at", "t0")
        .set_all({"error": None, "segments": 2})  # None is left out
        .remove("pending", "pending_at")
        .add("attempts", 1)
        .when(record_absent | (status_in(["queued", "scheduled"]) & lease_free))
        .request("messages", {"id": "m1"}, ReturnValues="ALL_NEW")
    )
    assert request["Key"] == {"id": {"S": "m1"}}
    assert request["UpdateExpression"] == (
        "SET #status = :v0, #created_at = if_not_exists(#created_at, :v1), #segments = :v2 "
        "REMOVE #pending, #pending_at ADD #attempts :v3"
    )
    assert request["ConditionExpression"] == (
        "(attribute_not_exists(#id) OR (#status IN (:v4, :v5) AND #lease = :v6))"
    )
    assert set(request["ExpressionAttributeNames"]) == {
        "#status", "#created_at", "#segments", "#pending", "#pending_at", "#attempts", "#id",
        "#lease",
    }  # fmt: skip
    assert request["ExpressionAttributeValues"][":v6"] == {"S": ""}
    assert request["ReturnValues"] == "ALL_NEW"
    used = request["UpdateExpression"] + request["ConditionExpression"]
    assert all(token in used for token in request["ExpressionAttributeValues"])


def test_reserved_words_are_always_placeholders() -> None:
    request = Update().set("until", 5).remove("holder").when(below("until", 3)).request("t", {})
    assert "until" not in request["UpdateExpression"].replace("#until", "")
    assert request["ExpressionAttributeNames"]["#until"] == "until"


def test_an_update_without_values_or_condition_declares_none() -> None:
    request = Update().remove("reason").request("t", {"provider": "p"})
    assert "ExpressionAttributeValues" not in request
    assert "ConditionExpression" not in request


def test_named_conditions() -> None:
    request = Update().set("x", 1).when(waiting_in("sent")).request("t", {})
    assert request["ConditionExpression"] == "(#status = :v1 AND #pending = :v2)"
    put = put_request(absent("message_id"), "status", {"message_id": "m", "at": "a"})
    assert put["ConditionExpression"] == "attribute_not_exists(#message_id)"
    assert "ExpressionAttributeValues" not in put
