"""The providers' own example requests, byte for byte, against the simulators.

Each row is one example from a provider's API document (Club Texting API, Group Texting HTTP
SMS API, TextingHouse API SMS PRO), sent as the example's client would send it over a raw
socket (the body exactly as printed, line breaks included, and the client's content type),
with the example's account set up. It expects the answer the provider's PHP server would give.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from smsgate_sim.pytest_plugin import sims, simulator_options, simulators  # noqa: F401

FORM = "application/x-www-form-urlencoded"  # curl's for a string CURLOPT_POSTFIELDS; the C#'s


@dataclass(frozen=True)
class Example:
    label: str
    provider: str
    user: str
    password: str
    method: str
    target: str  # the request target, as sent (not re-encoded)
    body: bytes = b""
    content_type: str | None = None
    expect_continue: bool = False  # .NET's WebRequest: "Expect: 100-continue", then the body
    status: int = 200
    answer: str | re.Pattern[str] = ""
    check: Callable[[Any, str], None] | None = None  # more assertions on the simulator


def exchange(port: int, ex: Example) -> tuple[int, str]:
    """Send ``ex`` over a fresh connection, byte for byte; (HTTP status, body)."""
    head = [f"{ex.method} {ex.target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if ex.content_type:
        head.append(f"Content-Type: {ex.content_type}")
    if ex.method == "POST":
        head.append(f"Content-Length: {len(ex.body)}")
    if ex.expect_continue:
        head.append("Expect: 100-continue")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("ascii"))
        if ex.expect_continue:  # wait for the go-ahead, as .NET does
            interim = b""
            while not interim.endswith(b"\r\n\r\n"):
                interim += sock.recv(1)
            assert interim.startswith(b"HTTP/1.1 100 "), interim
        sock.sendall(ex.body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read().decode("utf-8", "replace")


# ----------------------------------------------------------------------------- what was done


def ct_sent(express: bool) -> Callable[[Any, str], None]:
    def check(sim: Any, body: str) -> None:
        [msg] = sim.messages
        assert (msg.phonenumber, msg.subject, msg.message) == ("2127846500", "test", "test message")
        assert msg.express is express
        assert sim.account("username").credit == 999

    return check


def ct_not_sent(sim: Any, body: str) -> None:
    # PHP drops leading spaces from a name, nothing else: "\nphonenumber" is another name, so
    # the number is missing (and the printed C# literal, spanning lines, would not compile).
    assert sim.requests[-1].fields["\nphonenumber"] == "2127846500"
    assert sim.messages == [] and sim.account("username").credit == 1000


def gt_sent(subject: str) -> Callable[[Any, str], None]:
    def check(sim: Any, body: str) -> None:
        [msg] = sim.messages
        assert (msg.phonenumber, msg.subject) == ("2125551234", subject)
        assert msg.message == "test message"
        assert sim.account("username").credit == 999

    return check


def gt_nothing_done(sim: Any, body: str) -> None:
    assert sim.messages == [] and sim.account("USERNAME").credit == 1000


def gt_unreadable_request(sim: Any, body: str) -> None:
    assert sim.requests == []  # refused by the HTTP layer, before the application
    assert "PASSWORD" not in body  # the request line is not echoed back
    gt_nothing_done(sim, body)


def gt_no_keyword(sim: Any, body: str) -> None:
    assert sim.requests[-1].fields["url"] == "http://test.com/test"


def th_test_sms(sim: Any, body: str) -> None:
    """§4.8: an ID, not charged, a status query answered, delivered at the end of the test."""
    msg = sim.message(body[3:])
    assert (msg.to, msg.txt, msg.iscom, msg.cost) == ("999", "My test SMS", False, 0)
    assert sim.account("XXXX").credit == 1000
    deadline = time.monotonic() + 3
    while msg.status != 3:
        assert time.monotonic() < deadline, "the test SMS never reached 'delivered'"
        time.sleep(0.01)
    status = Example("", "", "", "", "GET", f"/http/v1/do?user=XXXX&pass=XXXX&cmd=getstatus"
                     f"&api_id={msg.api_id}")  # fmt: skip
    assert exchange(sim.port, status) == (200, "3")


ID = re.compile(r"ID:[0-9a-f]{24}")
AXIOS_JSON = {
    "user": "XXXX",
    "pass": "XXXX",
    "cmd": "sendsms",
    "to": "999",
    "txt": "My test SMS",
    "iscom": "N",
}

EXAMPLES = [
    # Club Texting API, "API Text Message Sending Language Examples"
    Example(
        "clubtexting PHP", "clubtexting", "username", "userpassword", "POST",
        "/apisendmessage.php",
        b"user=username&pass=userpassword&phonenumber= 2127846500&subject=test"
        b"&message=test message&express=0",
        FORM, answer="1", check=ct_sent(express=False),
    ),
    Example(
        "clubtexting C# (line breaks as printed)", "clubtexting", "username", "userpassword",
        "POST", "/apisendmessage.php",
        b"user=username&pass=userpassword&\nphonenumber=2127846500&subject=test\n"
        b"&message=test message&express=1",
        FORM, expect_continue=True, answer="-10", check=ct_not_sent,
    ),
    # Group Texting HTTP SMS API, "Sending SMS Messages" and its language examples
    Example(
        "grouptexting PHP", "grouptexting", "username", "userpassword", "POST",
        "/api/sending",
        b"user=username&pass=userpassword&phonenumber= 2125551234&subject=test"
        b"&message=test message",
        FORM, answer="1", check=gt_sent("test"),
    ),
    Example(
        "grouptexting C# (its line breaks printed as spaces)", "grouptexting", "username",
        "userpassword", "POST", "/api/sending",
        b"user=username&pass=userpassword& phonenumber=2125551234&subject=test "
        b"&message=test message",
        FORM, expect_continue=True, answer="1", check=gt_sent("test "),
    ),
    # The example call as printed has a space in the request target: not an HTTP request
    # line (method, target, version), refused before any application sees it.
    Example(
        "grouptexting example call, as printed", "grouptexting", "USERNAME", "PASSWORD", "GET",
        "/api/sending/?user=USERNAME&pass=PASSWORD &phonenumber=PHONENUMBER&subject=SUBJECT"
        "&message=MESSAGE",
        status=400, answer=re.compile(r"(?s).*Bad Request.*"), check=gt_unreadable_request,
    ),
    # A browser sends that space as %20: the password is then "PASSWORD " (values keep their
    # spaces), not the account's.
    Example(
        "grouptexting example call, as a browser sends it", "grouptexting", "USERNAME",
        "PASSWORD", "GET",
        "/api/sending/?user=USERNAME&pass=PASSWORD%20&phonenumber=PHONENUMBER&subject=SUBJECT"
        "&message=MESSAGE",
        answer="-1", check=gt_nothing_done,
    ),
    # "API Rent A Keyword Language Examples" (it calls setup): no keyword given, -2
    Example(
        "grouptexting keyword setup PHP", "grouptexting", "username", "userpassword", "POST",
        "/api/keyword/setup/",
        b"user=username&pass=userpassword&group=test&url=http://test.com/test",
        FORM, answer="-2", check=gt_no_keyword,
    ),
    # TextingHouse API §3 "Examples": http_build_query (spaces as "+") and axios (JSON)
    Example(
        "textinghouse PHP cURL", "textinghouse", "XXXX", "XXXX", "POST", "/http/v1/do",
        b"user=XXXX&pass=XXXX&cmd=sendsms&to=999&txt=My+test+SMS&iscom=N",
        FORM, answer=ID, check=th_test_sms,
    ),
    Example(
        "textinghouse axios", "textinghouse", "XXXX", "XXXX", "POST", "/http/v1/do",
        json.dumps(AXIOS_JSON, separators=(",", ":")).encode(),  # JSON.stringify's bytes
        "application/json", answer=ID, check=th_test_sms,
    ),
]  # fmt: skip


@pytest.mark.parametrize("ex", EXAMPLES, ids=[e.label for e in EXAMPLES])
def test_document_example(sims, ex: Example) -> None:  # noqa: F811
    sim = sims.by_name[ex.provider]
    sim.add_account(ex.user, ex.password)
    status, body = exchange(sim.port, ex)
    assert status == ex.status, body
    if isinstance(ex.answer, re.Pattern):
        assert ex.answer.fullmatch(body), body
    else:
        assert body == ex.answer
    if ex.check is not None:
        ex.check(sim, body)
