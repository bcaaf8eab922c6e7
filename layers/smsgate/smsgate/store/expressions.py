"""One builder for DynamoDB writes: update expressions and their conditions.

`Update` collects SET / REMOVE / ADD clauses and a `Condition` and renders one request's
UpdateExpression, ConditionExpression and placeholder maps, so no module assembles expression
text by hand. Conditions are named parts (`record_absent`, `status_in`, `lease_is`, ...),
combined with `&` and `|`, the way Powertools' idempotency persistence names
`idempotency_key_not_exist`. Only the placeholders a request uses are declared: DynamoDB
refuses unused ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeSerializer

_ser = TypeSerializer()


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values -> DynamoDB's typed form; None values are left out."""
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


class Placeholders:
    """The `#name` and `:value` tokens of one request."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attribute: str) -> str:
        token = f"#{attribute}" if attribute.isidentifier() else f"#n{len(self.names)}"
        self.names[token] = attribute
        return token

    def value(self, value: Any) -> str:
        token = f":v{len(self.values)}"
        self.values[token] = value
        return token


@dataclass(frozen=True)
class Condition:
    """A condition expression, rendered against a request's placeholders."""

    render: Callable[[Placeholders], str]

    def __and__(self, other: Condition) -> Condition:
        return Condition(lambda p: f"({self.render(p)} AND {other.render(p)})")

    def __or__(self, other: Condition) -> Condition:
        return Condition(lambda p: f"({self.render(p)} OR {other.render(p)})")


# --- generic parts ------------------------------------------------------------------------


def exists(attribute: str) -> Condition:
    return Condition(lambda p: f"attribute_exists({p.name(attribute)})")


def absent(attribute: str) -> Condition:
    return Condition(lambda p: f"attribute_not_exists({p.name(attribute)})")


def equals(attribute: str, value: Any) -> Condition:
    return Condition(lambda p: f"{p.name(attribute)} = {p.value(value)}")


def differs(attribute: str, value: Any) -> Condition:
    return Condition(lambda p: f"{p.name(attribute)} <> {p.value(value)}")


def below(attribute: str, value: Any) -> Condition:
    return Condition(lambda p: f"{p.name(attribute)} < {p.value(value)}")


def at_most(attribute: str, value: Any) -> Condition:
    return Condition(lambda p: f"{p.name(attribute)} <= {p.value(value)}")


def one_of(attribute: str, values: Iterable[Any]) -> Condition:
    options = tuple(values)

    def render(p: Placeholders) -> str:
        return f"{p.name(attribute)} IN ({', '.join(p.value(v) for v in options)})"

    return Condition(render)


# --- the messages table's parts -----------------------------------------------------------

record_exists = exists("id")
record_absent = absent("id")


def status_in(statuses: Iterable[str]) -> Condition:
    return one_of("status", statuses)


def lease_is(token: str) -> Condition:
    """The sender holding `token` still holds the message."""
    return equals("lease", token)


lease_free = equals("lease", "")


def provider_is(provider: str) -> Condition:
    """A receipt only ever moves its own provider's message."""
    return equals("provider", provider)


def waiting_in(status: str) -> Condition:
    """Still waiting in `status` and still in the reconciliation index."""
    return equals("status", status) & equals("pending", status)


# --- updates ------------------------------------------------------------------------------


class Update:
    """One UpdateItem (or a transaction's Update): `Update().set(...).remove(...).when(...)`."""

    def __init__(self) -> None:
        self._p = Placeholders()
        self._sets: list[str] = []
        self._removes: list[str] = []
        self._adds: list[str] = []
        self._condition = ""

    def set(self, attribute: str, value: Any) -> Update:
        self._sets.append(f"{self._p.name(attribute)} = {self._p.value(value)}")
        return self

    def set_all(self, attributes: Mapping[str, Any]) -> Update:
        """SET each attribute whose value is not None."""
        for attribute, value in attributes.items():
            if value is not None:
                self.set(attribute, value)
        return self

    def set_if_absent(self, attribute: str, value: Any) -> Update:
        """SET unless the item already has the attribute (its first value is kept)."""
        name = self._p.name(attribute)
        self._sets.append(f"{name} = if_not_exists({name}, {self._p.value(value)})")
        return self

    def remove(self, *attributes: str) -> Update:
        self._removes.extend(self._p.name(a) for a in attributes)
        return self

    def add(self, attribute: str, value: Any) -> Update:
        self._adds.append(f"{self._p.name(attribute)} {self._p.value(value)}")
        return self

    def when(self, condition: Condition) -> Update:
        self._condition = condition.render(self._p)
        return self

    def expression(self) -> str:
        clauses = [
            (keyword, ", ".join(parts))
            for keyword, parts in (
                ("SET", self._sets),
                ("REMOVE", self._removes),
                ("ADD", self._adds),
            )
            if parts
        ]
        return " ".join(f"{keyword} {parts}" for keyword, parts in clauses)

    def request(self, table: str, key: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """The request's parameters; `key` in plain values, `extra` passed as given
        (ReturnValues, ...)."""
        request: dict[str, Any] = {
            "TableName": table,
            "Key": to_item(key),
            "UpdateExpression": self.expression(),
            **extra,
        }
        if self._condition:
            request["ConditionExpression"] = self._condition
        if self._p.names:
            request["ExpressionAttributeNames"] = dict(self._p.names)
        if self._p.values:
            request["ExpressionAttributeValues"] = to_item(self._p.values)
        return request


def put_request(condition: Condition, table: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """A conditional PutItem's parameters (`item` in plain values)."""
    p = Placeholders()
    request: dict[str, Any] = {
        "TableName": table,
        "Item": to_item(item),
        "ConditionExpression": condition.render(p),
    }
    if p.names:
        request["ExpressionAttributeNames"] = dict(p.names)
    if p.values:
        request["ExpressionAttributeValues"] = to_item(p.values)
    return request
