"""Schemathesis over the callbacks API, from the OpenAPI document the app generates.

The real functions/callbacks/app.py behind the local API Gateway (the template's six routes),
DynamoDB in moto built from template.yaml. Every case schemathesis generates is sent twice:

* with the real token: never a 5xx, only 2xx or 4xx; schema-invalid data (negative mode) gets
  a 4xx; and a 4xx changes no table (messages, status history, opt-outs);
* then with the token schemathesis generated (a forged one): 403, and no table changes.

Half the positive cases get a plausible sender and text (the generated document has no
patterns, so random strings are nearly always refused): that reaches the storing, STOP and
START paths, so the 4xx cases run against a store that holds something. Generation is
deterministic (the same cases every run), so the file passes or fails the same way each time.
The requests the run found that crash the function are pinned at the end.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from conftest import CALLBACK_TOKEN, load_function
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from test_callbacks import ROUTES_SPEC, optouts, state, template_routes

MAX_EXAMPLES = 30  # per operation in the fuzzing phase; the coverage phase adds its own cases


def openapi_document() -> dict[str, Any]:
    app = load_function("callbacks").app
    document = app.get_openapi_json_schema(title="smsgate callbacks", version="test")
    return json.loads(document) if isinstance(document, str) else document


CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


@pytest.fixture
def served(stack: Any) -> Iterator[str]:
    """The callbacks function behind the local API Gateway; its base URL (`.../v1`)."""
    from smsgate_local.apigw import LocalRestApi

    local = LocalRestApi(load_function("callbacks").lambda_handler, template_routes())
    base = local.start()
    yield base
    local.stop()


def test_document_has_the_template_routes() -> None:
    paths = openapi_document()["paths"]
    documented = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert documented == ROUTES_SPEC == set(template_routes())


# --- every route accepts what its provider sends ---------------------------------------------

ACCEPTED = [
    ("GET", "/hooks/{token}/clubtexting/keyword", {"PhoneNumber": "2125551234", "Message": "HI"}),
    ("GET", "/hooks/{token}/clubtexting/inbox", {"from": "2125551234", "message": "hello"}),
    ("GET", "/hooks/{token}/grouptexting/keyword", {"PhoneNumber": "2125551234", "Message": "X"}),
    ("GET", "/hooks/{token}/grouptexting/inbox", {"from": "2125551234", "message": "hi"}),
    ("POST", "/hooks/{token}/textinghouse/dlr", {"apimsgid": "a", "climsgid": "m", "status": "3"}),
    ("POST", "/hooks/{token}/textinghouse/mo", {"from": "33612345678", "txt": "hello"}),
]


def test_each_operation_accepts_a_provider_request(stack: Any, served: str) -> None:
    """One request per route, built from the schema's own operation: 200, a conforming answer,
    and something stored (an inbound message, or a receipt kept for later)."""
    assert {(m, p) for m, p, _ in ACCEPTED} == ROUTES_SPEC
    for method, path, data in ACCEPTED:
        given = {"query": data} if method == "GET" else {"body": data}
        case = schema[path][method].Case(path_parameters={"token": CALLBACK_TOKEN}, **given)
        before = state(stack)
        answer = case.call(base_url=served, timeout=10)
        assert answer.status_code == 200, (path, answer.text)
        checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
        case.validate_response(answer, checks=checks)
        assert state(stack) != before, path


# --- fuzzing ---------------------------------------------------------------------------------

US_NUMBERS = st.sampled_from(["2125551234", "+12125551234", "1-212-555-9876", "(646) 555-0100"])
INTL_NUMBERS = st.sampled_from(["33612345678", "+447700900123", "4915112345678", "0612345678"])
TEXTS = st.sampled_from(["STOP", "start", "HELP", "PIZZA large", "PIZZA stop", "hello", ""])
STATUS_CODES = st.sampled_from(["0", "1", "3", "4", "5", "6", "7", "20", "99", "03", " 3"])
IDS = st.sampled_from(["", " ", "m1", "m2", "api-1", "in-0"])


def make_plausible(case: Any, data: st.DataObject) -> None:
    """Give half the positive cases values the app accepts, or nearly. Negative cases are
    left as generated, so what they negate is still what is sent."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    if not data.draw(st.booleans(), label="plausible"):
        return
    if case.path.endswith(("/keyword", "/inbox")):
        keyword = case.path.endswith("/keyword")
        case.query = {
            **(case.query or {}),
            "PhoneNumber" if keyword else "from": data.draw(US_NUMBERS, label="sender"),
            "Message" if keyword else "message": data.draw(TEXTS, label="text"),
        }
    elif case.path.endswith("/dlr"):
        case.body = {
            "apimsgid": data.draw(IDS, label="apimsgid"),
            "climsgid": data.draw(IDS, label="climsgid"),
            "status": data.draw(STATUS_CODES, label="status"),
        }
    else:
        case.body = {
            "from": data.draw(INTL_NUMBERS, label="from"),
            "txt": data.draw(TEXTS, label="txt"),
            "apimsgid": data.draw(IDS, label="apimsgid"),
        }


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Counter[str]]:
    """Answers by class across one operation's cases. When every case passed, the run must
    have reached both sides: some accepted (2xx), some refused (4xx)."""
    seen: Counter[str] = Counter()
    yield seen
    answers = {k: v for k, v in sorted(seen.items()) if k.endswith("xx")}
    print(f"{request.node.name}: {seen['cases']} cases, {answers}")
    if seen["cases"] and seen["cases"] == seen["passed"]:
        assert seen["2xx"] and seen["4xx"], seen


def forged(token: Any) -> str:
    token = str(token)
    return token if token != CALLBACK_TOKEN else token + "x"


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_every_case(case: Any, data: Any, stack: Any, served: str, tally: Counter[str]) -> None:
    tally["cases"] += 1
    make_plausible(case, data)
    generated_token = forged(case.path_parameters.get("token", ""))
    before = state(stack)

    case.path_parameters["token"] = CALLBACK_TOKEN
    answer = case.call(base_url=served, timeout=10)
    tally[f"{answer.status_code // 100}xx"] += 1
    case.validate_response(answer, checks=[not_a_server_error, negative_data_rejection])
    sent = case.as_curl_command(base_url=served)
    assert 200 <= answer.status_code < 500, (sent, answer.status_code, answer.text)
    expected = before if answer.status_code >= 400 else state(stack)

    # the same request with the token schemathesis generated, a forged one: refused before
    # anything is read. For a 4xx, the snapshot after it also shows the 4xx changed nothing.
    case.path_parameters["token"] = generated_token
    refused = case.call(base_url=served, timeout=10)
    forged_sent = case.as_curl_command(base_url=served)
    assert refused.status_code == 403, (forged_sent, refused.status_code, refused.text)
    assert state(stack) == expected, (sent, answer.status_code, answer.text, forged_sent)
    tally["passed"] += 1


# --- found by the run: requests that crash the function ----------------------------------------

# Powertools' body validation turns only json.JSONDecodeError into a 422. Any other exception
# from reading the body escapes app.resolve(), the invocation fails and API Gateway answers
# 502. Nothing is written (the body is read before the handler), but each is a function error
# for a request with the right token. The first is what schemathesis found on its own (a body
# that is not UTF-8 arrives base64-encoded; `decoded_body` raises UnicodeDecodeError); the
# others are the same gap reached another way.
CRASHING_BODIES = [
    ("not utf-8", "application/json", b'{"status": "3", "climsgid": "m\xff"}'),
    ("nested 5000 deep", "application/json", b"[" * 5000 + b"]" * 5000),  # RecursionError
    ("int over 4300 digits", "application/json", b'{"status": 1' + b"0" * 4300 + b"}"),
    ("multipart, no boundary", "multipart/form-data", b"status=3"),  # ValueError
]


@pytest.mark.parametrize(
    ("label", "content_type", "body"), CRASHING_BODIES, ids=[c[0] for c in CRASHING_BODIES]
)
def test_unreadable_body_is_refused_not_a_crash(
    stack: Any, served: str, label: str, content_type: str, body: bytes
) -> None:
    before = state(stack)
    answers = {
        path: requests.post(
            f"{served}/hooks/{CALLBACK_TOKEN}{path}",
            data=body,
            headers={"Content-Type": content_type},
            timeout=10,
        ).status_code
        for path in ("/textinghouse/dlr", "/textinghouse/mo")
    }
    assert all(400 <= status < 500 for status in answers.values()), (label, answers)
    assert state(stack) == before


# --- found by the run: senders that are not E.164 (now refused) ---------------------------


def test_non_ascii_digits_are_not_a_sender(stack: Any, served: str) -> None:
    hooks = f"{served}/hooks/{CALLBACK_TOKEN}"
    requests.get(
        f"{hooks}/clubtexting/keyword",
        params={"PhoneNumber": "\u00b2" * 10, "Message": "STOP"},  # superscript two
        timeout=10,
    )
    requests.post(
        f"{hooks}/textinghouse/mo",
        json={"from": "\u0663\u0663\u0666" + "1" * 9, "txt": "STOP"},  # Arabic-Indic 3 3 6
        timeout=10,
    )
    stored = optouts(stack)
    assert all(phone[1:].isascii() and phone[1:].isdigit() for phone in stored), stored
