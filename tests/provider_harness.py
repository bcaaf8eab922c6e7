"""The provider table tests' one harness: a row runs through the real client, over real HTTP,
against the provider's simulator, and every check is made here, alike for every provider.

A row is (label, input, simulator set-up, expected request, expected result):

- the input is an `OutboundSms` (checked by the provider's rules, then sent as the sender sends
  it) or a `Call` (any other operation of the client: balance, status, keyword, purchase);
- the set-up (`Sim`) picks the password, a closed port, a fault, a forced answer, and a `prep`
  run first with a client that has the right password (it may return `Ctx` values);
- the expected request is (path, fields) without the credentials, or None: no request at all;
- the expected result is `Out` (a send's Outcome), `Rule` (a RuleViolation, and so no request),
  `Returns`, `Fails` (a ProviderError), `Found` or `NotFound` (a status lookup).

After every row: no word of the simulator's error pages reached an outcome or an error, and no
password used reached the client's repr or the text of what the row returned or raised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from smsgate.providers import (
    Category,
    OutboundSms,
    Outcome,
    OutcomeKind,
    Prepared,
    ProviderClient,
    ProviderError,
    RuleViolation,
    StatusLookup,
    Transport,
)
from smsgate.status import Status
from smsgate_sim import unused_url

USER, PASS = "smsgate", "local-secret"
# Words of the simulator's garbage, HTTP 500 and HTTP 503 pages: the clients name the fault in
# their own words and never pass the page on.
GARBAGE_WORDS = (
    "maintenance",
    "right back",
    "html",
    "internal server error",
    "server encountered",
    "service unavailable",
    "try again later",
)
HANG = 3.0  # seconds a `hang` fault holds the answer: past the short read timeout
SHORT = 0.5  # connect and read timeouts of a row that expects a fault


# ----------------------------------------------------------------------------- set-up, inputs


@dataclass(frozen=True)
class Ctx:
    """A value known only once the set-up ran (an id the provider gave): resolved from what
    `prep` returned, in the input's arguments and in the expected request."""

    key: str


def resolve(value: Any, ctx: dict[str, str]) -> Any:
    return ctx[value.key] if isinstance(value, Ctx) else value


Prep = Callable[[Any, ProviderClient], dict[str, str] | None]


@dataclass(frozen=True)
class Sim:
    """A row's simulator set-up (and how the client reaches it)."""

    password: str = PASS
    closed: bool = False  # the client's URL is a port nothing listens on
    fault: str | None = None  # a `set_fault` mode
    force: str | None = None  # `force_answer` body
    force_status: int = 200
    prep: Prep | None = None  # (simulator, a client with the right password) -> Ctx values

    @property
    def short_timeouts(self) -> bool:
        return self.closed or self.fault is not None


class Call:
    """An operation other than a send: `client.<method>(*args, **kwargs)`, `Ctx` resolved."""

    def __init__(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.method, self.args, self.kwargs = method, args, kwargs

    def __call__(self, client: ProviderClient, ctx: dict[str, str]) -> Any:
        args = [resolve(value, ctx) for value in self.args]
        kwargs = {key: resolve(value, ctx) for key, value in self.kwargs.items()}
        return getattr(client, self.method)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Call({self.method!r}, {self.args!r}, {self.kwargs!r})"


def credit_to(value: float) -> Prep:
    def prep(sim: Any, client: ProviderClient) -> None:
        sim.account().credit = value

    return prep


def opted_out(number: str) -> Prep:
    def prep(sim: Any, client: ProviderClient) -> None:
        sim.opt_out(number)

    return prep


# ----------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Out:
    """A send's expected Outcome class and code; `credit`: the account's credit afterwards;
    `segments`: the parts the client counted."""

    kind: OutcomeKind
    category: Category
    code: str
    credit: float | None = None
    fail_when_spent: bool = False
    segments: int | None = None


@dataclass(frozen=True)
class Rule:
    """The expected RuleViolation (and no request)."""

    rule: str


@dataclass(frozen=True)
class Returns:
    """An operation's expected return value; `credit`: the account's credit afterwards."""

    value: Any
    credit: float | None = None


@dataclass(frozen=True)
class Fails:
    """An operation's expected ProviderError."""

    code: str
    kind: OutcomeKind


@dataclass(frozen=True)
class Found:
    """A status lookup's answer: the provider's code and smsgate's Status for it."""

    code: str
    status: Status


@dataclass(frozen=True)
class NotFound:
    """A status lookup of an id the provider does not know."""

    code: str


Request = tuple[str, dict[str, Any]]
Expected = Out | Rule | Returns | Fails | Found | NotFound
Row = tuple[str, OutboundSms | Call, Sim, Request | None, Expected]


@dataclass(frozen=True)
class Provider:
    """What the harness needs of a provider: its contract name (as its simulator, its rule
    violations and its errors name it), its client, and a check of a sent message that only
    this provider's simulator can make."""

    name: str
    client: type[ProviderClient]
    check_sent: Callable[[Any, Prepared, Outcome], None] | None = None


# ----------------------------------------------------------------------------- the runner


def cases(table: list[Row], known_bugs: dict[str, str] | None = None) -> list[Any]:
    """The table as pytest parameters, each with its label as the test id; a row named in
    `known_bugs` must fail (strict xfail) until the bug is fixed."""
    labels = [row[0] for row in table]
    assert len(set(labels)) == len(labels), "labels are the test ids: each once"
    bugs = known_bugs or {}
    return [
        pytest.param(
            row,
            id=row[0],
            marks=[pytest.mark.xfail(strict=True, reason=bugs[row[0]])] if row[0] in bugs else [],
        )
        for row in table
    ]


def run(provider: Provider, sims: Any, row: Row) -> None:
    """One row, end to end: set up, run the input, check the result, the redaction and the
    request the simulator recorded."""
    _label, operation, setup, expected_request, expected = row
    assert provider.client.name == provider.name
    sim = sims.by_name[provider.name]
    url = unused_url() if setup.closed else sim.url
    transport = (
        Transport(url, connect_timeout=SHORT, read_timeout=SHORT) if setup.short_timeouts else None
    )
    client = provider.client(url, USER, setup.password, transport)
    ctx = _prepare(provider, sim, setup)
    if setup.fault:
        sim.set_fault(setup.fault, delay=HANG if setup.fault == "hang" else None)
    if setup.force is not None:
        sim.force_answer(setup.force, status=setup.force_status)
    before = len(sim.requests)
    try:
        result = _result(provider, sim, client, operation, ctx, expected)
    finally:
        client.transport.close()
    _check_redacted(setup, client, result)
    _check_request(sim.requests[before:], setup, expected_request, ctx)


def _prepare(provider: Provider, sim: Any, setup: Sim) -> dict[str, str]:
    """Run the row's `prep`; one that sends does so with the right password."""
    if setup.prep is None:
        return {}
    client = provider.client(sim.url, USER, PASS)
    try:
        return setup.prep(sim, client) or {}
    finally:
        client.transport.close()


def _result(
    provider: Provider,
    sim: Any,
    client: ProviderClient,
    operation: OutboundSms | Call,
    ctx: dict[str, str],
    expected: Expected,
) -> object:
    """Run the input and check what it returned or raised; return that (for the redaction)."""
    if isinstance(expected, Rule):
        return _violation(provider, client, operation, ctx, expected)
    if isinstance(expected, Fails):
        assert isinstance(operation, Call), "a send never raises ProviderError"
        with pytest.raises(ProviderError) as error:
            operation(client, ctx)
        assert (error.value.provider, error.value.code, error.value.kind) == (
            provider.name,
            expected.code,
            expected.kind,
        ), error.value
        assert_no_garbage(str(error.value))
        return error.value
    if isinstance(expected, Out):
        assert isinstance(operation, OutboundSms), "an Outcome is a send's"
        return _sent(provider, sim, client, operation, expected)
    assert isinstance(operation, Call), "a send's result is an Outcome (Out)"
    value = operation(client, ctx)
    if isinstance(expected, Found | NotFound):
        assert isinstance(value, StatusLookup), value
        found = isinstance(expected, Found)
        assert (value.found, value.code) == (found, expected.code), value
        assert value.status == (expected.status if isinstance(expected, Found) else None)
        assert_no_garbage(repr(value))
    else:
        assert value == expected.value
        if expected.credit is not None:
            assert sim.account().credit == expected.credit
    return value


def _violation(
    provider: Provider,
    client: ProviderClient,
    operation: OutboundSms | Call,
    ctx: dict[str, str],
    expected: Rule,
) -> RuleViolation:
    with pytest.raises(RuleViolation) as rule:
        if isinstance(operation, OutboundSms):
            client.send(operation)
        else:
            operation(client, ctx)
    assert (rule.value.provider, rule.value.rule) == (provider.name, expected.rule), rule.value
    if isinstance(operation, OutboundSms):  # the sender checks before it sends: the same rule
        with pytest.raises(RuleViolation) as checked:
            client.check(operation)
        assert (checked.value.provider, checked.value.rule) == (provider.name, expected.rule)
    return rule.value


def _sent(
    provider: Provider, sim: Any, client: ProviderClient, sms: OutboundSms, expected: Out
) -> Outcome:
    """A send as the sender makes it: the rules' check, then the send of what they prepared."""
    prepared = client.check(sms)
    outcome = client.send(sms, prepared)
    assert (outcome.kind, outcome.category, outcome.code) == (
        expected.kind,
        expected.category,
        expected.code,
    ), outcome
    assert outcome.opt_out is (expected.category is Category.OPT_OUT)
    assert outcome.fail_when_spent is expected.fail_when_spent
    assert_no_garbage(repr(outcome))
    if expected.segments is not None:
        assert prepared.segments == expected.segments
    if expected.credit is not None:
        assert sim.account().credit == expected.credit
    if provider.check_sent is not None:
        provider.check_sent(sim, prepared, outcome)
    return outcome


def assert_no_garbage(text: str) -> None:
    found = [word for word in GARBAGE_WORDS if word in text.lower()]
    assert found == [], text


def _check_redacted(setup: Sim, client: ProviderClient, result: object) -> None:
    """No password used (the row's, or the right one the set-up sent with) in the client's
    repr or in the text of what the row returned or raised."""
    texts = [repr(client), repr(result), str(result)]
    for password in {setup.password, PASS}:
        leaked = [text for text in texts if password in text]
        assert leaked == [], "a password reached a repr or a message"


def _check_request(
    new: list[Any], setup: Sim, expected: Request | None, ctx: dict[str, str]
) -> None:
    """Exactly the expected request, or none; its fields exactly these (case-sensitive names,
    nothing else sent), the credentials the client was given first."""
    if expected is None:
        assert new == []
        return
    assert len(new) == 1, f"{len(new)} requests, not one"
    [request] = new
    path, fields = expected
    assert (request.method, request.path) == ("POST", path)
    resolved = {key: resolve(value, ctx) for key, value in fields.items()}
    assert request.fields == {"user": USER, "pass": setup.password, **resolved}
