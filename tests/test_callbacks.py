"""Callbacks: keyword submissions, inbox replies, receipts and inbound messages.

The real functions/callbacks/app.py behind a local API Gateway (REST proxy events, the
template's routes), DynamoDB in moto built from template.yaml, and the simulators calling
back over real HTTP as each provider would.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from conftest import CALLBACK_TOKEN, LambdaContext, load_function
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsgate.store import Transition
from smsgate_local.stack import load_template, resources_of_type

ROUTES_SPEC = {
    ("GET", "/hooks/{token}/clubtexting/keyword"),
    ("GET", "/hooks/{token}/clubtexting/inbox"),
    ("GET", "/hooks/{token}/grouptexting/keyword"),
    ("GET", "/hooks/{token}/grouptexting/inbox"),
    ("POST", "/hooks/{token}/textinghouse/dlr"),
    ("POST", "/hooks/{token}/textinghouse/mo"),
}


def template_routes() -> list[tuple[str, str]]:
    template = load_template()
    function = template["Resources"]["CallbacksFunction"]
    events = function["Properties"]["Events"].values()
    return [(e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in events]


def test_template_routes_are_the_contract() -> None:
    assert set(template_routes()) == ROUTES_SPEC
    assert "AWS::Serverless::Api" in {r["Type"] for r in load_template()["Resources"].values()}
    assert resources_of_type(load_template(), "AWS::Serverless::Api")


@pytest.fixture
def callbacks(stack: Any) -> Any:
    return load_function("callbacks").lambda_handler


@pytest.fixture
def api(stack: Any, callbacks: Any, sims: Any) -> Iterator[str]:
    from smsgate_local.apigw import LocalRestApi

    local = LocalRestApi(callbacks, template_routes())
    base = local.start()
    hooks = f"{base}/hooks/{CALLBACK_TOKEN}"
    sims.textinghouse.dlr_url = f"{hooks}/textinghouse/dlr"
    sims.textinghouse.mo_url = f"{hooks}/textinghouse/mo"
    for name in ("clubtexting", "grouptexting"):
        sims.by_name[name].keyword_url = f"{hooks}/{name}/keyword"
        sims.by_name[name].inbox_url = f"{hooks}/{name}/inbox"
    yield hooks
    local.stop()


def policy_api(stack: Any, callbacks: Any, **parameters: str) -> Any:
    """The local API Gateway with the template's resource policy, its parameters resolved as
    the stack sets them (plus `parameters`)."""
    from smsgate_local.apigw import LocalRestApi
    from smsgate_local.resource_policy import callbacks_policy
    from smsgate_local.stack import _Resolver

    template = load_template()
    resolver = _Resolver(template, {**stack.refs, **parameters}, stack.attrs)
    local = LocalRestApi(
        callbacks, template_routes(), policy=callbacks_policy(template, resolver.resolve)
    )
    return local


def test_club_texting_routes_accept_only_its_documented_addresses(
    stack: Any, callbacks: Any, sims: Any
) -> None:
    """Club Texting calls from 66.148.74.128-130 only: from here (127.0.0.1) its routes are
    refused before the function runs and nothing changes, while the other providers' routes,
    with no list of their own, still take the same caller's callbacks."""
    local = policy_api(stack, callbacks)
    hooks = f"{local.start()}/hooks/{CALLBACK_TOKEN}"
    try:
        before = state(stack)
        for path in ("clubtexting/keyword", "clubtexting/inbox"):
            answer = requests.get(
                f"{hooks}/{path}", params={"PhoneNumber": "5554443333", "from": "5554443333",
                                           "Message": "STOP", "message": "STOP"}, timeout=5
            )  # fmt: skip
            assert answer.status_code == 403, path
        assert state(stack) == before
        answer = requests.get(
            f"{hooks}/grouptexting/keyword",
            params={"PhoneNumber": "5554443333", "Message": "HELLO"},
            timeout=5,
        )
        assert answer.status_code == 200
        sims.textinghouse.mo_url = f"{hooks}/textinghouse/mo"
        status, _ = sims.textinghouse.inject_mo(from_="33612345678", txt="hi")
        assert status == 200
        assert len(inbound(stack)) == 2
    finally:
        local.stop()


def test_a_widened_club_texting_list_lets_a_proxy_through(
    stack: Any, callbacks: Any, sims: Any
) -> None:
    local = policy_api(stack, callbacks, ClubTextingCallbackCidrs="127.0.0.1/32")
    sims.clubtexting.keyword_url = f"{local.start()}/hooks/{CALLBACK_TOKEN}/clubtexting/keyword"
    try:
        status, _ = sims.clubtexting.inject_keyword(phone="5554443333", message="HELLO")
        assert status == 200
        assert len(inbound(stack)) == 1
    finally:
        local.stop()


def test_group_texting_and_textinghouse_lists_apply_to_their_routes_only(
    stack: Any, callbacks: Any
) -> None:
    local = policy_api(
        stack,
        callbacks,
        ClubTextingCallbackCidrs="0.0.0.0/0",
        GroupTextingCallbackCidrs="10.0.0.0/8",
        TextingHouseCallbackCidrs="10.0.0.0/8",
    )
    assert local.policy is not None
    assert local.policy.allows("GET", "/hooks/t/clubtexting/keyword", "127.0.0.1")
    assert not local.policy.allows("GET", "/hooks/t/grouptexting/inbox", "127.0.0.1")
    assert local.policy.allows("GET", "/hooks/t/grouptexting/inbox", "10.1.2.3")
    assert not local.policy.allows("POST", "/hooks/t/textinghouse/dlr", "192.168.0.1")
    assert local.policy.allows("POST", "/hooks/t/textinghouse/dlr", "10.200.0.9")


def set_replies(stack: Any, replies: dict[str, str]) -> None:
    from aws_lambda_powertools.utilities import parameters

    name = stack.env["KEYWORD_REPLIES_PARAMETER"]
    boto3.client("ssm").put_parameter(Name=name, Value=json.dumps(replies), Overwrite=True)
    parameters.clear_caches()


def scan(table: str) -> list[dict[str, Any]]:
    from smsgate.store import from_item

    return [from_item(i) for i in boto3.client("dynamodb").scan(TableName=table)["Items"]]


def inbound(stack: Any) -> list[dict[str, Any]]:
    return [m for m in scan(stack.tables["MessagesTable"]) if m.get("direction") == "in"]


def optouts(stack: Any) -> set[str]:
    return {o["phone"] for o in scan(stack.tables["OptOutsTable"])}


def state(stack: Any) -> list[list[dict[str, Any]]]:
    return [scan(t) for t in sorted(stack.tables.values())]


# --- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["wrong", "", CALLBACK_TOKEN[:-1], CALLBACK_TOKEN + "x"])
def test_forged_token_is_refused_and_changes_nothing(stack: Any, api: str, token: str) -> None:
    base = api.rsplit("/", 1)[0]
    before = state(stack)
    answers = [
        requests.get(
            f"{base}/{token}/clubtexting/keyword",
            params={"PhoneNumber": "2125551234", "Message": "STOP"},
            timeout=5,
        ),
        requests.post(
            f"{base}/{token}/textinghouse/dlr",
            json={"apimsgid": "x", "climsgid": "m1", "status": "3"},
            timeout=5,
        ),
    ]
    assert [a.status_code for a in answers] in ([403, 403],)
    assert state(stack) == before


# --- keyword submissions and inbox replies -------------------------------------------------


def test_clubtexting_keyword_with_configured_reply(stack: Any, sims: Any, api: str) -> None:
    set_replies(stack, {"pizza": "Thanks for ordering! Your code is PIZZA10."})
    status, body = sims.clubtexting.inject_keyword(
        phone="5554443333", message="PIZZA large pepperoni"
    )
    assert (status, body) == (200, "Thanks for ordering! Your code is PIZZA10.")
    [message] = inbound(stack)
    assert message["from"] == "+15554443333"
    assert (message["provider"], message["kind"], message["keyword"]) == (
        "clubtexting",
        "keyword",
        "PIZZA",
    )
    assert (message["status"], message["text"]) == ("received", "PIZZA large pepperoni")


def test_keyword_without_configured_reply_answers_empty(stack: Any, sims: Any, api: str) -> None:
    answer = requests.get(
        f"{api}/grouptexting/keyword",
        params={"PhoneNumber": "5554443333", "Message": "JOIN"},
        timeout=5,
    )
    assert (answer.status_code, answer.text) == (200, "")
    assert answer.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("provider", "reply", "expected"),
    [
        ("clubtexting", "x" * 140, "x" * 130),
        ("clubtexting", 'Say "hi" to Bob\'s team', "Say hi to Bobs team"),
        ("grouptexting", "Café opens at 9. Thanks!", "Caf opens at 9. Thanks!"),
        ("grouptexting", "a" * 159 + "@", "a" * 159),  # @ counts two: 161 > 160
        ("grouptexting", "a" * 158 + "@", "a" * 158 + "@"),
    ],
)
def test_replies_fit_the_provider(
    stack: Any, sims: Any, api: str, provider: str, reply: str, expected: str
) -> None:
    set_replies(stack, {"DEAL": reply})
    answer = requests.get(
        f"{api}/{provider}/keyword",
        params={"PhoneNumber": "5554443333", "Message": "DEAL"},
        timeout=5,
    )
    assert answer.text == expected
    # the provider itself, calling back as it does, finds the answer within its reply rules
    sim = sims.by_name[provider]
    for inject in (sim.inject_keyword, sim.inject_inbox):
        inject("5554443334", "DEAL")
        last = sim.callbacks[-1]
        assert (last.status, last.body, last.violations) == (200, expected, ()), last


@pytest.mark.parametrize("names", [("from", "message"), ("From", "Message"), ("FROM", "MESSAGE")])
def test_inbox_parameter_names_in_any_case(stack: Any, api: str, names: tuple[str, str]) -> None:
    answer = requests.get(
        f"{api}/grouptexting/inbox",
        params={names[0]: "5554443333", names[1]: "see you at 5"},
        timeout=5,
    )
    assert answer.status_code == 200
    [message] = inbound(stack)
    assert (message["kind"], message["text"], message["from"]) == (
        "inbox",
        "see you at 5",
        "+15554443333",
    )


def test_grouptexting_keyword_and_inbox_copy_is_stored_once(
    stack: Any, sims: Any, api: str
) -> None:
    sims.grouptexting.inject_keyword(phone="5554443333", message="PIZZA hello")
    sims.grouptexting.inject_inbox(from_="5554443333", message="PIZZA hello")
    assert len(inbound(stack)) == 1
    sims.grouptexting.inject_inbox(from_="5554443333", message="another message")
    assert len(inbound(stack)) == 2


# --- opt-outs ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["STOP", "stop", "PIZZA STOP", "Unsubscribe", "ARRET", "quit"])
def test_stop_words_opt_out_with_confirmation(stack: Any, api: str, text: str) -> None:
    answer = requests.get(
        f"{api}/clubtexting/keyword",
        params={"PhoneNumber": "5554443333", "Message": text},
        timeout=5,
    )
    assert "unsubscribed" in answer.text and len(answer.text) <= 130
    assert optouts(stack) == {"+15554443333"}


def test_stop_inside_a_sentence_is_not_an_opt_out(stack: Any, api: str) -> None:
    requests.get(
        f"{api}/grouptexting/inbox",
        params={"from": "5554443333", "message": "please do not stop the music"},
        timeout=5,
    )
    assert optouts(stack) == set()


@pytest.mark.parametrize("word", ["START", "UNSTOP", "yes"])
def test_start_words_opt_back_in(stack: Any, api: str, word: str) -> None:
    requests.get(
        f"{api}/grouptexting/inbox", params={"from": "5554443333", "message": "STOP"}, timeout=5
    )
    assert optouts(stack) == {"+15554443333"}
    answer = requests.get(
        f"{api}/grouptexting/inbox", params={"from": "5554443333", "message": word}, timeout=5
    )
    assert "subscribed again" in answer.text
    assert optouts(stack) == set()


@pytest.mark.parametrize("word", ["HELP", "info"])
def test_help_answers_the_configured_text(
    stack: Any, api: str, word: str, monkeypatch: Any
) -> None:
    answer = requests.get(
        f"{api}/grouptexting/keyword",
        params={"PhoneNumber": "5554443333", "Message": word},
        timeout=5,
    )
    assert answer.text == stack.env["HELP_TEXT"]


def test_textinghouse_mo_stop_opts_out_and_links_the_outbound(
    stack: Any, sims: Any, api: str
) -> None:
    status, _ = sims.textinghouse.inject_mo(
        from_="33612345678",
        txt="STOP",
        apimsgid="5d72aa",
        climsgid="order-1",
        date="2026-11-22 10:00:00",
    )
    assert status == 200
    assert optouts(stack) == {"+33612345678"}
    [message] = inbound(stack)
    assert (message["reply_to"], message["reply_to_provider_id"]) == ("order-1", "5d72aa")
    assert "provider_message_id" not in message  # never collides with the outbound in the index
    # TextingHouse retries the same MO: stored once
    sims.textinghouse.inject_mo(
        from_="33612345678",
        txt="STOP",
        apimsgid="5d72aa",
        climsgid="order-1",
        date="2026-11-22 10:00:00",
    )
    assert len(inbound(stack)) == 1


# --- delivery receipts ---------------------------------------------------------------------


def send_through_textinghouse(stack: Any, message_id: str) -> None:
    from sqs_source import poll_once, send_bodies

    send = load_function("send").lambda_handler
    send_bodies(stack.queues["SendQueue"], [{"id": message_id, "to": "+33612345678", "text": "hi"}])
    poll_once(stack.queues["SendQueue"], stack.queue_arns["SendQueue"], send)


def history(stack: Any, message_id: str) -> list[str]:
    from smsgate import wiring

    return [h.get("status") for h in wiring.store().history(message_id)]


def test_send_then_receipts_deliver_the_message(stack: Any, sims: Any, api: str) -> None:
    send_through_textinghouse(stack, "e2e1")
    sims.textinghouse.wait_for_callbacks(2)
    from smsgate import wiring

    message = wiring.store().get_message("e2e1")
    assert message["status"] == "delivered"
    assert history(stack, "e2e1") == ["queued", "sent", "delivered"]
    assert [c.status for c in sims.textinghouse.callbacks] == [200, 200]


def dlr_event(body: Any, token: str = CALLBACK_TOKEN) -> dict[str, Any]:
    return {
        "resource": "/hooks/{token}/textinghouse/dlr",
        "path": f"/hooks/{token}/textinghouse/dlr",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"token": token},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/hooks/{token}/textinghouse/dlr",
            "stage": "v1",
            "httpMethod": "POST",
            "requestId": "r",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": body if isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
    }


def claim(message_id: str) -> None:
    """A message as the sender leaves it just before its provider request: claimed, queued."""
    from smsgate import wiring

    store = wiring.store()
    store.claim(
        message_id, {"direction": "out", "provider": "textinghouse", "to": "+33612345678"}, 30
    )


def test_receipt_before_the_senders_record_wins(stack: Any, callbacks: Any) -> None:
    from smsgate import wiring
    from smsgate.status import Status

    store = wiring.store()
    claim("early")
    lease = store.get_message("early")["lease"]
    answer = callbacks(
        dlr_event({"apimsgid": "api-early", "climsgid": "early", "status": "3"}), LambdaContext()
    )
    assert answer["statusCode"] == 200
    # the sender's own `sent` write comes after: it must not downgrade the message
    assert not store.advance("early", Transition(Status.SENT, source="send", lease=lease))
    assert store.get_message("early")["status"] == "delivered"


def test_receipt_found_by_provider_id_alone(stack: Any, callbacks: Any) -> None:
    from smsgate import wiring
    from smsgate.status import Status

    claim("byapi")
    store = wiring.store()
    store.advance(
        "byapi", Transition(Status.SENT, source="send", attrs={"provider_message_id": "api-77"})
    )
    callbacks(dlr_event({"apimsgid": "api-77", "climsgid": "", "status": "4"}), LambdaContext())
    assert store.get_message("byapi")["status"] == "undelivered"


def test_receipt_for_an_unknown_message_is_kept_and_answered_2xx(
    stack: Any, callbacks: Any
) -> None:
    answer = callbacks(
        dlr_event({"apimsgid": "api-x", "climsgid": "nobody", "status": "3"}), LambdaContext()
    )
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"result": "unmatched"}
    kept = scan(stack.tables["StatusTable"])
    assert [k["message_id"] for k in kept] == ["unmatched#textinghouse#api-x"]
    assert scan(stack.tables["MessagesTable"]) == []


def test_receipt_never_moves_another_providers_message(stack: Any, callbacks: Any) -> None:
    from smsgate import wiring

    wiring.store().claim("gt1", {"direction": "out", "provider": "grouptexting"}, 30)
    callbacks(dlr_event({"apimsgid": "a", "climsgid": "gt1", "status": "3"}), LambdaContext())
    assert wiring.store().get_message("gt1")["status"] == "queued"


def test_receipt_with_an_unlisted_status_is_answered_2xx_and_kept(
    stack: Any, callbacks: Any, capsys: Any
) -> None:
    """TextingHouse asks for a 2xx answer; a status code its document does not list changes
    no status: it is kept in the message's history with its raw code, counted and logged."""
    from smsgate import wiring
    from smsgate.status import Status

    store = wiring.store()
    claim("odd")
    store.advance(
        "odd", Transition(Status.SENT, source="send", attrs={"provider_message_id": "api-odd"})
    )
    before = store.get_message("odd")
    for _ in range(2):  # a resend writes nothing new
        answer = callbacks(
            dlr_event({"apimsgid": "api-odd", "climsgid": "odd", "status": "2"}), LambdaContext()
        )
        assert answer["statusCode"] == 200, answer
        assert json.loads(answer["body"]) == {"result": "noted"}
    assert store.get_message("odd") == before
    notes = [h for h in store.history("odd") if h["at"].startswith("receipt#")]
    assert [(n["raw"], n.get("status")) for n in notes] == [("2", None)]
    assert history(stack, "odd") == ["sent", None]  # the note carries no status
    logs = capsys.readouterr().out
    assert '"ReceiptStatusUnlisted"' in logs
    # a later listed receipt still applies
    callbacks(dlr_event({"apimsgid": "", "climsgid": "odd", "status": "3"}), LambdaContext())
    assert store.get_message("odd")["status"] == "delivered"


def test_unlisted_status_for_an_unknown_message_is_kept_unmatched(
    stack: Any, callbacks: Any
) -> None:
    answer = callbacks(
        dlr_event({"apimsgid": "api-y", "climsgid": "", "status": "99"}), LambdaContext()
    )
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"result": "unmatched"}
    assert [k["message_id"] for k in scan(stack.tables["StatusTable"])] == [
        "unmatched#textinghouse#api-y"
    ]


@pytest.mark.parametrize(
    ("code", "status", "meaning"),
    [
        ("4", "undelivered", "expired or out of reach"),
        ("5", "undelivered", "not subscribed"),
        ("6", "undelivered", "not received"),
        ("7", "failed", "prohibited sending"),
        ("20", "failed", "insufficient credit"),
    ],
)
def test_a_receipt_that_ends_a_message_badly_says_why(
    stack: Any, callbacks: Any, code: str, status: str, meaning: str
) -> None:
    from smsgate import wiring

    claim(f"bad{code}")
    callbacks(
        dlr_event({"apimsgid": "", "climsgid": f"bad{code}", "status": code}), LambdaContext()
    )
    record = wiring.store().get_message(f"bad{code}")
    assert (record["status"], record["error_code"], record["error"]) == (status, code, meaning)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("2019-04-01T13:09:16Z", "2019-04-01T13:09:16.000000Z"),  # the document's example
        ("2019-04-01 13:09:16", "2019-04-01T13:09:16.000000Z"),  # the format it names
    ],
)
def test_textinghouse_mo_date_is_stored_as_iso_utc(
    stack: Any, sims: Any, api: str, raw: str, stored: str
) -> None:
    status, _ = sims.textinghouse.inject_mo(from_="33612345678", txt="hello", date=raw)
    assert status == 200
    [message] = inbound(stack)
    assert (message["received_at"], message["received_at_raw"]) == (stored, raw)


# any shuffle and duplication of a receipt sequence ends in the highest status
RECEIPT_IDS = itertools.count()
SEQUENCES = [["0", "1", "3"], ["0", "1", "4"], ["1", "6"], ["1", "7"], ["0", "1", "20"], ["1", "5"]]
FINAL_OF = {
    "3": "delivered",
    "4": "undelivered",
    "5": "undelivered",
    "6": "undelivered",
    "7": "failed",
    "20": "failed",
}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_shuffled_duplicated_receipts_end_in_the_highest_status(
    stack: Any, callbacks: Any, data: Any
) -> None:
    from smsgate import wiring

    sequence = data.draw(st.sampled_from(SEQUENCES))
    stream = data.draw(st.lists(st.sampled_from(sequence), min_size=1, max_size=8))
    stream = data.draw(st.permutations(stream + sequence))  # every receipt at least once
    message_id = f"p{next(RECEIPT_IDS)}"  # a new message per example: moto's state persists
    claim(message_id)
    for code in stream:
        answer = callbacks(
            dlr_event({"apimsgid": "", "climsgid": message_id, "status": code}), LambdaContext()
        )
        assert answer["statusCode"] == 200
    assert wiring.store().get_message(message_id)["status"] == FINAL_OF[sequence[-1]]
    changes = history(stack, message_id)
    assert changes[-1] == FINAL_OF[sequence[-1]]
    assert len(changes) == len(set(changes))  # each accepted change once, none for duplicates


# --- bad input: 4xx, nothing changes -------------------------------------------------------

BAD = [
    ("dlr not json", "POST", "/textinghouse/dlr", "{not json", 400),
    ("dlr array", "POST", "/textinghouse/dlr", "[1,2]", 422),
    ("dlr no status", "POST", "/textinghouse/dlr", {"apimsgid": "a", "climsgid": "b"}, 422),
    ("dlr status word", "POST", "/textinghouse/dlr", {"climsgid": "b", "status": "done"}, 422),
    ("dlr no ids", "POST", "/textinghouse/dlr", {"status": "3"}, 400),
    ("dlr status object", "POST", "/textinghouse/dlr", {"climsgid": "b", "status": {"a": 1}}, 422),
    ("mo no from", "POST", "/textinghouse/mo", {"txt": "hi"}, 422),
    ("mo bad from", "POST", "/textinghouse/mo", {"from": "abc", "txt": "hi"}, 422),
    ("mo txt number", "POST", "/textinghouse/mo", {"from": "33612345678", "txt": 5}, 422),
    (
        "mo date in no format",
        "POST",
        "/textinghouse/mo",
        {"from": "33612345678", "txt": "hi", "date": "01/04/2019 13:09"},
        400,
    ),
    (
        "mo date not a date",
        "POST",
        "/textinghouse/mo",
        {"from": "33612345678", "txt": "hi", "date": "2019-02-30 10:00:00"},
        400,
    ),
    ("mo oversized", "POST", "/textinghouse/mo", {"from": "33612345678", "txt": "x" * 20000}, 413),
    ("keyword no phone", "GET", "/clubtexting/keyword", {"Message": "hi"}, 400),
    ("keyword no message", "GET", "/grouptexting/keyword", {"PhoneNumber": "5554443333"}, 400),
    (
        "keyword bad phone",
        "GET",
        "/clubtexting/keyword",
        {"PhoneNumber": "12", "Message": "hi"},
        400,
    ),
    (
        "inbox bad phone",
        "GET",
        "/grouptexting/inbox",
        {"from": "abcdefghij", "message": "STOP"},
        400,
    ),
    ("unknown provider", "GET", "/twilio/keyword", {"PhoneNumber": "5554443333"}, 403),
    ("unknown kind", "GET", "/clubtexting/dlr", {"PhoneNumber": "5554443333"}, 403),
    ("wrong method", "POST", "/clubtexting/keyword", {}, 405),
]


@pytest.mark.parametrize(
    ("label", "method", "path", "payload", "status"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_input_gets_4xx_and_changes_nothing(
    stack: Any, api: str, label: str, method: str, path: str, payload: Any, status: int
) -> None:
    before = state(stack)
    if method == "GET":
        answer = requests.get(api + path, params=payload, timeout=5)
    else:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        answer = requests.post(
            api + path, data=data, headers={"Content-Type": "application/json"}, timeout=5
        )
    assert answer.status_code == status, (label, answer.text)
    assert state(stack) == before


# --- sample events -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "callbacks_clubtexting_keyword",
        "callbacks_clubtexting_inbox",
        "callbacks_grouptexting_keyword",
        "callbacks_grouptexting_inbox",
        "callbacks_textinghouse_dlr",
        "callbacks_textinghouse_mo",
    ],
)
def test_sample_events_are_accepted(stack: Any, callbacks: Any, name: str) -> None:
    from pathlib import Path

    event = json.loads((Path(__file__).parent.parent / "events" / f"{name}.json").read_text())
    event["pathParameters"]["token"] = CALLBACK_TOKEN
    event["path"] = event["path"].replace("REPLACE_WITH_CALLBACK_TOKEN", CALLBACK_TOKEN)
    assert (event["httpMethod"], event["resource"]) in ROUTES_SPEC
    answer = callbacks(event, LambdaContext())
    assert answer["statusCode"] == 200, answer
