"""The provider simulators against the providers' documents, over real HTTP (requests and
http.client)."""

from __future__ import annotations

import datetime as dt
import http.client
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from smsgate_sim import Block, KeywordConfig, Simulators, gsm, hours, php_form, unused_url
from smsgate_sim.grouptexting import card_declined, luhn_ok, weighted_length
from smsgate_sim.pytest_plugin import sims, simulator_options, simulators  # noqa: F401

USER, PASS = "smsgate", "local-secret"
CT_PATH = "/apisendmessage.php"
TH_PATH = "/http/v1/do"
E100 = "ERR: 100 | Missing parameter"
E101 = "ERR: 101 | Authentication failed"
E104 = "ERR: 104 | Insufficient credit"
E300 = "ERR: 300 | Error processing request"
E400 = "ERR: 400 | STOP mention missing"
AUTH = {"user": USER, "pass": PASS}
NEXT_YEAR = f"{(dt.date.today().year + 1) % 100:02d}"
UTC = dt.UTC
SUNDAY_NOON = dt.datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # Sunday 12:00 in Paris
LAST_YEAR = f"{(dt.date.today().year - 1) % 100:02d}"


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


class Receiver:
    """A tiny application stand-in: records every call, answers 200 with ``reply``."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.reply = "OK"
        self.status = 200
        self.delay = 0.0  # seconds before answering
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                split = urllib.parse.urlsplit(self.path)
                receiver.calls.append(
                    {
                        "method": self.command,
                        "path": split.path,
                        "raw_query": split.query,
                        "query": dict(urllib.parse.parse_qsl(split.query)),
                        "headers": dict(self.headers.items()),
                        "body": body,
                    }
                )
                payload = receiver.reply.encode()
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _handle
            do_POST = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def wait_until(predicate: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


def _merge(base: dict[str, str], over: dict[str, str | None]) -> dict[str, str]:
    """``base`` with ``over`` applied (``pass_``/``from_`` name ``pass``/``from``; None drops)."""
    merged: dict[str, str | None] = dict(base)
    for key, value in over.items():
        merged[key.rstrip("_")] = value
    return {k: v for k, v in merged.items() if v is not None}


def ct_fields(**over: str | None) -> dict[str, str]:
    base = {"phonenumber": "2127846500", "subject": "test", "message": "test message"}
    return _merge({**AUTH, **base, "express": "0"}, over)


def gt_fields(**over: str | None) -> dict[str, str]:
    base = {"phonenumber": "2125551234", "subject": "test", "message": "test message"}
    return _merge({**AUTH, **base}, over)


def th_fields(**over: str | None) -> dict[str, str]:
    base = {"cmd": "sendsms", "to": "33612345678", "txt": "My test SMS", "iscom": "N"}
    return _merge({**AUTH, **base}, over)


def card(**over: str | None) -> dict[str, str]:
    base = {
        "firstname": "Ada",
        "lastname": "Lovelace",
        "address": "1 Main St",
        "city": "New York",
        "state": "NY",
        "zip": "10001",
        "country": "US",
        "type": "Visa",
        "ccnumber": "4111111111111111",
        "cccode": "123",
        "expm": "12",
        "expy": NEXT_YEAR,
    }
    return _merge({**AUTH, **base}, over)


# ----------------------------------------------------------------------------- Club Texting

CT_CASES = [
    # (label, fields, setup, expected answer)
    ("sent", ct_fields(), None, "1"),
    ("sent express", ct_fields(express="1"), None, "1"),
    ("sent, capitalised names", None, None, "1"),
    ("sent, no express", ct_fields(express=None), None, "1"),
    ("number with the document's leading space", ct_fields(phonenumber=" 2127846500"), None, "1"),
    ("130 characters", ct_fields(message="x" * 130), None, "1"),
    ("wrong password", ct_fields(pass_="nope"), None, "-1"),
    ("unknown user", ct_fields(user="nobody"), None, "-1"),
    ("no credentials", ct_fields(user=None, pass_=None), None, "-1"),
    ("credit exhausted", ct_fields(), "no_credit", "-2"),
    ("local opt-out", ct_fields(), "opt_out", "-5"),
    ("131 characters", ct_fields(message="x" * 131), None, "-7"),
    ("single quote", ct_fields(message="it's"), None, "-7"),
    ("double quote", ct_fields(message='say "hi"'), None, "-7"),
    ("quote in subject", ct_fields(subject="it's"), None, "-7"),
    ("empty message", ct_fields(message=""), None, "-7"),
    ("9-digit number", ct_fields(phonenumber="212784650"), None, "-10"),
    ("E.164 number", ct_fields(phonenumber="+12127846500"), None, "-10"),
    ("missing message", ct_fields(message=None), None, "-10"),
    ("bad express value", ct_fields(express="yes"), None, "-10"),
]


@pytest.mark.parametrize(
    ("label", "fields", "setup", "expected"), CT_CASES, ids=[c[0] for c in CT_CASES]
)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_clubtexting_send(sims, http_session, label, fields, setup, expected, method):  # noqa: F811
    ct = sims.clubtexting
    if fields is None:
        fields = {k.capitalize(): v for k, v in ct_fields().items()}
        fields["PhoneNumber"] = fields.pop("Phonenumber")
    if setup == "no_credit":
        ct.account().credit = 0
    elif setup == "opt_out":
        ct.opt_out("+12127846500")
    if method == "POST":
        resp = http_session.post(ct.url + CT_PATH, data=fields)
    else:
        resp = http_session.get(ct.url + CT_PATH, params=fields)
    assert (resp.status_code, resp.text) == (200, expected)
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert ct.requests[-1].body == expected
    assert ct.requests[-1].fields == fields  # as received, original key case
    if expected == "1":
        assert ct.account().credit == 999
        assert len(ct.messages) == 1
        assert ct.messages[0].express == (fields.get("express") == "1")
    else:
        assert ct.messages == []
        assert ct.account().credit in (0, 1000)


def test_clubtexting_unknown_path_is_404(sims, http_session):  # noqa: F811
    resp = http_session.get(sims.clubtexting.url + "/api/sending")
    assert resp.status_code == 404


# ----------------------------------------------------------------------------- Group Texting send

GT_SEND_CASES = [
    ("sent", gt_fields(), None, "1"),
    ("sent, 13-char subject", gt_fields(subject="x" * 13), None, "1"),
    ("sent, empty subject", gt_fields(subject=""), None, "1"),
    ("sent, 160 weighted (80 @)", gt_fields(subject="", message="@" * 80), None, "1"),
    ("sent, CRLF counts 2 (158+2)", gt_fields(subject="", message="a" * 158 + "\r\n"), None, "1"),
    ("sent, special chars", gt_fields(message=".,:;!?()~=+-_\\/@$#&% ok"), None, "1"),
    ("sent, leading space number", gt_fields(phonenumber=" 2125551234"), None, "1"),
    ("wrong password", gt_fields(pass_="x"), None, "-1"),
    ("credit exhausted", gt_fields(), "no_credit", "-2"),
    ("local opt-out", gt_fields(), "opt_out", "-5"),
    ("14-char subject", gt_fields(subject="x" * 14), None, "-7"),
    ("161 weighted (80 @ + 1)", gt_fields(subject="", message="@" * 80 + "a"), None, "-7"),
    ("subject + message > 160", gt_fields(subject="x" * 10, message="y" * 151), None, "-7"),
    ("lone LF counts 2 (159+2)", gt_fields(subject="", message="a" * 159 + "\n"), None, "-7"),
    ("invalid char '", gt_fields(message="it's"), None, "-7"),
    ("invalid char é", gt_fields(message="café"), None, "-7"),
    ("invalid char in subject", gt_fields(subject="a*b"), None, "-7"),
    ("globally opted out", gt_fields(), "global_opt_out", "-104"),
    ("9-digit number", gt_fields(phonenumber="212555123"), None, "-106"),
    ("11-digit number", gt_fields(phonenumber="12125551234"), None, "-106"),
    ("missing message", gt_fields(message=None), None, "-10"),
]


@pytest.mark.parametrize(
    ("label", "fields", "setup", "expected"), GT_SEND_CASES, ids=[c[0] for c in GT_SEND_CASES]
)
def test_grouptexting_send(sims, http_session, label, fields, setup, expected):  # noqa: F811
    gt = sims.grouptexting
    if setup == "no_credit":
        gt.account().credit = 0
    elif setup == "opt_out":
        gt.opt_out("2125551234")
    elif setup == "global_opt_out":
        gt.global_opt_out("+12125551234")
    resp = http_session.post(gt.url + "/api/sending", data=fields)
    assert (resp.status_code, resp.text) == (200, expected)
    assert len(gt.messages) == (expected == "1")


@pytest.mark.parametrize("path", ["/api/sending", "/api/sending/"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_grouptexting_send_paths_methods_and_case(sims, http_session, path, method):  # noqa: F811
    gt = sims.grouptexting
    fields = {
        "User": USER,
        "PASS": PASS,
        "PhoneNumber": "2125551234",
        "Subject": "",
        "Message": "hi",
    }
    resp = http_session.request(
        method,
        gt.url + path,
        **({"data": fields} if method == "POST" else {"params": fields}),
    )
    assert resp.text == "1"
    assert gt.account().credit == 999


def test_grouptexting_weighted_length():
    assert weighted_length("abc") == 3
    assert weighted_length("~@#%+=/\\") == 16
    assert weighted_length("a\r\nb") == 4
    assert weighted_length("a\nb") == 4
    assert weighted_length("a\rb") == 4
    assert weighted_length("$&_-") == 4


# ----------------------------------------------------------------------------- Group Texting ops


def _gt_setup(gt: Any, setup: str | None) -> None:
    if setup == "min_purchase":
        gt.account().min_purchase_declined = True
    elif setup == "rented":
        gt.take_keyword("MYKW")
        gt.account().keywords["MYKW"] = KeywordConfig("MYKW")


CHECK, KW_CHECK, BUY = "/api/credits/check/", "/api/keyword/check/", "/api/credits/buy/"
RENT, SETUP = "/api/keyword/rent/", "/api/keyword/setup/"
GT_OP_CASES = [
    # credits check
    ("credits: balance", CHECK, "GET", AUTH, None, "1000"),
    ("credits: POST, caps", CHECK[:-1], "POST", {"User": USER, "Pass": PASS}, None, "1000"),
    ("credits: bad auth", CHECK, "GET", {"user": USER, "pass": "x"}, None, "-1"),
    # keyword check
    ("kw check: available", KW_CHECK, "GET",
     {**AUTH, "keyword": "FRESH"}, None, "1"),
    ("kw check: taken", KW_CHECK, "POST",
     {**AUTH, "keyword": "pizza"}, None, "0"),
    ("kw check: bad auth", KW_CHECK, "GET",
     {"user": "x", "pass": PASS, "keyword": "FRESH"}, None, "-1"),
    ("kw check: min purchase", KW_CHECK, "GET",
     {**AUTH, "keyword": "FRESH"}, "min_purchase", "-2"),
    ("kw check: no keyword", KW_CHECK, "GET", AUTH, None, "-10"),
    # credits buy
    ("buy: ok", BUY, "POST", {**card(), "credits": "50"}, None, "1"),
    ("buy: caps names", BUY[:-1], "POST",
     {k.upper(): v for k, v in {**card(), "credits": "50"}.items()}, None, "1"),
    ("buy: GET refused", BUY, "GET", {**card(), "credits": "50"}, None, "-10"),
    ("buy: bad auth", BUY, "POST", {**card(), "pass": "x", "credits": "5"}, None, "-1"),
    ("buy: missing zip", BUY, "POST", {**card(zip=None), "credits": "5"}, None, "-10"),
    ("buy: bad amount", BUY, "POST", {**card(), "credits": "lots"}, None, "-10"),
    ("buy: Luhn fails", BUY, "POST",
     {**card(ccnumber="4111111111111112"), "credits": "5"}, None, "0"),
    ("buy: card type", BUY, "POST", {**card(type="Amex"), "credits": "5"}, None, "0"),
    ("buy: expired", BUY, "POST", {**card(expy=LAST_YEAR), "credits": "5"}, None, "0"),
    ("buy: declined card", BUY, "POST",
     {**card(ccnumber="4000000000000002"), "credits": "5"}, None, "0"),
    # keyword rent
    ("rent: ok", RENT, "POST", {**card(), "keyword": "FRESH"}, None, "2"),
    ("rent: taken", RENT, "POST", {**card(), "keyword": "Pizza"}, None, "1"),
    ("rent: declined", RENT, "POST",
     {**card(type="AX", ccnumber="378282246310006"), "keyword": "FRESH"}, None, "0"),
    ("rent: GET refused", RENT, "GET", {**card(), "keyword": "FRESH"}, None, "-10"),
    ("rent: bad auth", RENT, "POST", {**card(user="x"), "keyword": "FRESH"}, None, "-1"),
    ("rent: no keyword", RENT, "POST", card(), None, "-10"),
    # keyword setup
    ("setup: ok", SETUP, "POST",
     {**AUTH, "keyword": "mykw", "group": "test", "url": "http://test.com/test",
      "email": "a@b.co", "autoreply": "Thanks! Reply STOP to quit."}, "rented", "1"),
    ("setup: GET", SETUP[:-1], "GET",
     {**AUTH, "keyword": "MYKW"}, "rented", "1"),
    ("setup: bad auth", SETUP, "POST",
     {"user": USER, "pass": "x", "keyword": "MYKW"}, "rented", "-1"),
    ("setup: not rented", SETUP, "POST",
     {**AUTH, "keyword": "PIZZA"}, "rented", "-2"),
    ("setup: no keyword (document's example)", SETUP, "POST",
     {**AUTH, "group": "test", "url": "http://test.com/test"}, "rented", "-2"),
    ("setup: bad group", SETUP, "POST",
     {**AUTH, "keyword": "MYKW", "group": "a*b"}, "rented", "-3"),
    ("setup: long group", SETUP, "POST",
     {**AUTH, "keyword": "MYKW", "group": "g" * 31}, "rented", "-3"),
    ("setup: bad email", SETUP, "POST",
     {**AUTH, "keyword": "MYKW", "email": "nope"}, "rented", "-4"),
    ("setup: bad url", SETUP, "POST",
     {**AUTH, "keyword": "MYKW", "url": "ftp://x.com/"}, "rented", "-5"),
    ("setup: blank autoreply", SETUP, "POST",
     {**AUTH, "keyword": "MYKW", "autoreply": " "}, "rented", "-7"),
    ("setup: long autoreply", SETUP, "POST",
     {**AUTH, "keyword": "MYKW", "autoreply": "#" * 81}, "rented", "-7"),
    ("setup: invalid autoreply", SETUP, "POST",
     {**AUTH, "keyword": "MYKW", "autoreply": "it's"}, "rented", "-7"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "path", "method", "fields", "setup", "expected"),
    GT_OP_CASES,
    ids=[c[0] for c in GT_OP_CASES],
)
def test_grouptexting_operations(sims, http_session, label, path, method, fields, setup, expected):  # noqa: F811
    gt = sims.grouptexting
    _gt_setup(gt, setup)
    kwargs = {"data": fields} if method == "POST" else {"params": fields}
    resp = http_session.request(method, gt.url + path, **kwargs)
    assert (resp.status_code, resp.text) == (200, expected)
    account = gt.account()
    if label.startswith("buy: ok") or label == "buy: caps names":
        assert account.credit == 1050
        assert account.purchases[-1]["ccnumber"].endswith("1111")
        assert "4111111111111111" not in str(account.purchases)
    elif label.startswith("buy"):
        assert account.credit == 1000
    if label == "rent: ok":
        assert gt.keyword_config("fresh").autoreply == "Thank you for joining our list."
        check = http_session.get(
            gt.url + "/api/keyword/check/", params={"user": USER, "pass": PASS, "keyword": "FRESH"}
        )
        assert check.text == "0"
    if label == "setup: ok":
        config = gt.keyword_config("MYKW")
        assert (config.group, config.url, config.email, config.autoreply) == (
            "test",
            "http://test.com/test",
            "a@b.co",
            "Thanks! Reply STOP to quit.",
        )
    if label.startswith("setup: bad") or label.endswith("autoreply"):
        config = gt.keyword_config("MYKW")
        assert (config.group, config.autoreply) == ("", "Thank you for joining our list.")


def test_card_rules():
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    good = {k.lower(): v for k, v in card().items()}
    assert card_declined(good) is None
    assert card_declined({**good, "expm": "13"}) == "expiry month"
    assert card_declined({**good, "expm": "1"}) == "expiry format"
    assert card_declined({**good, "type": "VISA"}) == "card type"
    assert card_declined({**good, "cccode": "12"}) == "security code"
    today = dt.date(2030, 6, 15)
    assert card_declined({**good, "expm": "06", "expy": "30"}, today) is None
    assert card_declined({**good, "expm": "05", "expy": "30"}, today) == "card expired"


# ----------------------------------------------------------------------------- GT rate limit


def _parallel_gt_sends(gt: Any, n: int) -> list[int]:
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    lock = threading.Lock()
    body = urllib.parse.urlencode(gt_fields())

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", gt.port, timeout=5)
        conn.connect()
        barrier.wait()
        conn.request(
            "POST", "/api/sending", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        resp = conn.getresponse()
        resp.read()
        with lock:
            statuses.append(resp.status)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(statuses)


def test_grouptexting_three_parallel_connections_one_is_rate_limited(sims):  # noqa: F811
    gt = sims.grouptexting
    assert _parallel_gt_sends(gt, 3) == [200, 200, 503]
    assert len(gt.requests) == 3  # the refused one is still recorded
    refused = [r for r in gt.requests if r.status == 503]
    assert len(refused) == 1
    assert refused[0].fault == "rate_limited"
    assert refused[0].body == "Service Unavailable"
    assert len(gt.messages) == 2
    assert gt.account().credit == 998


def test_grouptexting_rate_limit_window_and_toggle(sims, http_session):  # noqa: F811
    gt = sims.grouptexting
    gt.rate_limit_window = 0.3
    gt.block_seconds = 0  # the window alone (the block: see the test below)
    assert _parallel_gt_sends(gt, 3) == [200, 200, 503]
    time.sleep(0.35)
    assert _parallel_gt_sends(gt, 2) == [200, 200]  # a new window
    gt.rate_limit_enabled = False
    assert _parallel_gt_sends(gt, 3) == [200, 200, 200]


def test_grouptexting_in_flight_connections_limited(sims):  # noqa: F811
    gt = sims.grouptexting
    gt.rate_limit_window = 0.01  # isolate the concurrency rule
    gt.set_fault("slow", delay=0.5, count=2)
    results: list[int] = []

    def send() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", gt.port, timeout=5)
        conn.request("GET", "/api/credits/check/?user=smsgate&pass=local-secret")
        results.append(conn.getresponse().status)
        conn.close()

    slow = [threading.Thread(target=send) for _ in range(2)]
    for t in slow:
        t.start()
    assert wait_until(lambda: len(gt.requests) == 0 and gt._in_flight and len(gt._in_flight) == 2)
    time.sleep(0.03)
    send()  # a third connection while two requests are in flight
    for t in slow:
        t.join()
    assert results == [503, 200, 200]


def test_grouptexting_one_kept_alive_connection_is_never_limited(sims, http_session):  # noqa: F811
    gt = sims.grouptexting
    for _ in range(20):
        assert http_session.post(gt.url + "/api/sending", data=gt_fields()).text == "1"
    assert gt.connections == 1
    assert gt.account().credit == 980


# ----------------------------------------------------------------------------- keep-alive


def test_keep_alive_50_requests_one_connection_no_nagle_stall(sims, http_session):  # noqa: F811
    ct = sims.clubtexting
    start = time.perf_counter()
    for _ in range(50):
        assert http_session.post(ct.url + CT_PATH, data=ct_fields()).text == "1"
    elapsed = time.perf_counter() - start
    assert ct.connections == 1
    assert len({r.connection_id for r in ct.requests}) == 1
    assert elapsed < 1.5, f"50 kept-alive requests took {elapsed:.2f}s (40 ms stall?)"


def test_connection_close_honoured_and_counted(sims):  # noqa: F811
    th = sims.textinghouse
    for _ in range(3):
        resp = requests.get(
            th.url + TH_PATH,
            params={"user": USER, "pass": PASS, "cmd": "getcredit"},
            headers={"Connection": "close"},
        )
        assert resp.text == "1000"
        assert resp.headers["Connection"] == "close"
    assert th.connections == 3


# ----------------------------------------------------------------------------- TextingHouse

TH_SEND_CASES = [
    ("sent", th_fields(), None, "ID"),
    ("sent with climsgid and from", th_fields(climsgid="FRS78913246", from_="Shop42"), None, "ID"),
    ("sent, GSM accents + extension", th_fields(txt="SMS accentué {ok} [€] ~^|\\ ΔΩ"), None, "ID"),
    ("sent, document's pattern ·", th_fields(txt="a·b"), None, "ID"),
    ("commercial with STOP", th_fields(iscom="Y", txt="Sale! STOP sms-s.top"), None, "ID"),
    ("missing to", th_fields(to=None), None, E100),
    ("missing txt", th_fields(txt=None), None, E100),
    ("empty txt", th_fields(txt=""), None, E100),
    ("missing iscom", th_fields(iscom=None), None, E100),
    ("wrong-case To", {**th_fields(to=None), "To": "33612345678"}, None, E100),
    ("wrong-case User", {**th_fields(user=None), "User": USER}, None, E100),
    ("missing cmd", th_fields(cmd=None), None, E100),
    ("bad password", th_fields(pass_="x"), None, E101),
    ("insufficient credit", th_fields(), "credit_0", E104),
    ("2 parts, 1 credit", th_fields(txt="x" * 161), "credit_1", E104),
    # No code for an invalid value (300 is a processing error): 100, see value_problem.
    ("plus in number", th_fields(to="+33612345678"), None, E100),
    ("letters in number", th_fields(to="336abc"), None, E100),
    ("climsgid 33 chars", th_fields(climsgid="c" * 33), None, E100),
    ("iscom yes", th_fields(iscom="yes"), None, E100),
    ("ç not GSM", th_fields(txt="reçu"), None, E100),
    ("emoji", th_fields(txt="hi 😀"), None, E100),
    ("unknown cmd", th_fields(cmd="sendmms"), None, E100),
    # "TextingHouse reserves the right to replace the sender chosen": sent, sender replaced
    ("from 12 chars", th_fields(from_="a" * 12), None, "ID replaced"),
    ("from with dash", th_fields(from_="my-shop"), None, "ID replaced"),
    ("commercial without STOP", th_fields(iscom="Y"), None, E400),
    ("STOP not at the end", th_fields(iscom="Y", txt="STOP sms-s.top Sale!"), None, E400),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "fields", "setup", "expected"), TH_SEND_CASES, ids=[c[0] for c in TH_SEND_CASES]
)
def test_textinghouse_sendsms(sims, http_session, label, fields, setup, expected):  # noqa: F811
    th = sims.textinghouse
    if setup == "credit_0":
        th.account().credit = 0
    elif setup == "credit_1":
        th.account().credit = 1
    resp = http_session.post(th.url + TH_PATH, data=fields)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    if expected.startswith("ID"):
        assert re.fullmatch(r"ID:[0-9a-f]{24}", resp.text), resp.text
        msg = th.messages[-1]
        assert msg.api_id == resp.text[3:]
        assert msg.climsgid == fields.get("climsgid", "")
        assert th.account().credit == 999
        assert msg.sender_replaced == (expected == "ID replaced")
        assert msg.sender == ("" if msg.sender_replaced else fields.get("from", ""))
    else:
        assert resp.text == expected
        assert th.messages == []


def test_textinghouse_json_body_and_get(sims, http_session):  # noqa: F811
    th = sims.textinghouse
    resp = http_session.post(th.url + TH_PATH, json=th_fields())
    assert resp.text.startswith("ID:")
    resp = http_session.get(th.url + TH_PATH, params=th_fields(txt="other"))
    assert resp.text.startswith("ID:")
    assert th.requests[0].fields["cmd"] == "sendsms"


def test_textinghouse_flood_rule(sims, http_session):  # noqa: F811
    th = sims.textinghouse

    def send(**kw: str) -> str:
        return http_session.post(th.url + TH_PATH, data=th_fields(**kw)).text

    assert send().startswith("ID:")
    assert send() == "ERR: 350 | Flood detected"
    assert send(txt="Another text").startswith("ID:")  # other content
    assert send(to="33699999999").startswith("ID:")  # other number
    assert th.account().credit == 997  # the refused one is not billed
    th.flood_window = 0.05
    time.sleep(0.06)
    assert send().startswith("ID:")


@pytest.mark.parametrize(
    ("txt", "parts"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("a" * 159 + "€", 2),  # the extension char counts 2: 161 units
        ("a" * 158 + "{", 1),  # exactly 160 units
        ("a" * 305 + "]", 3),  # 307 units
        ("é" * 160, 1),  # basic-table accents count 1
    ],
)
def test_textinghouse_billing_parts(sims, http_session, txt, parts):  # noqa: F811
    th = sims.textinghouse
    assert gsm.parts(txt) == parts
    resp = http_session.post(th.url + TH_PATH, data=th_fields(txt=txt))
    assert resp.text.startswith("ID:")
    assert th.messages[-1].parts == parts
    assert th.account().credit == 1000 - parts


def test_gsm_tables():
    assert gsm.septets("[]{}") == 8
    assert gsm.invalid_chars("abc") == []
    assert gsm.invalid_chars("çà😀") == ["ç", "😀"]
    assert "\r" in gsm.ALLOWED and "_" in gsm.ALLOWED and "\f" in gsm.GSM_EXTENSION


def test_textinghouse_999_free_and_delivered(sims, http_session):  # noqa: F811
    th = sims.textinghouse
    th.set_number_outcome("999", 4)  # ignored: 999 always ends delivered
    th.account().credit = 0  # and is never billed
    resp = http_session.post(th.url + TH_PATH, data=th_fields(to="999", txt="x" * 400))
    api_id = resp.text[3:]
    assert resp.text.startswith("ID:")
    assert th.account().credit == 0
    assert wait_until(lambda: th.message(api_id).status == 3)


def test_textinghouse_getstatus_getcredit(sims, http_session):  # noqa: F811
    th = sims.textinghouse
    url = th.url + TH_PATH

    def status(**kw: str) -> str:
        return http_session.post(url, data={**AUTH, "cmd": "getstatus", **kw}).text

    th.dlr_delay = None  # no progression: stays "processing" (0)
    first = http_session.post(url, data=th_fields(climsgid="c-1")).text[3:]
    assert status(api_id=first) == "0"
    th.dlr_delay = 0.02
    second = http_session.post(url, data=th_fields(txt="two", climsgid="c-2")).text[3:]
    assert wait_until(lambda: status(climsgid="c-2") == "3")
    assert status(api_id=second) == "3"
    assert [s for _, s in th.message(second).history] == [0, 1, 3]
    assert status(api_id=first) == "0"
    # api_id wins when both are given
    th.set_status(first, 5)
    assert status(climsgid="c-1") == "5"
    assert status(api_id=second, climsgid="c-1") == "3"
    assert status(api_id="f" * 24) == "ERR: 201 | Unknown api_id"
    assert status(api_id="f" * 24, climsgid="c-1") == "ERR: 201 | Unknown api_id"
    assert status(climsgid="nope") == "ERR: 202 | Unknown climsgid"
    assert status() == E100
    assert http_session.post(url, data={**AUTH, "pass": "x", "cmd": "getstatus"}).text == E101

    def credit(password: str = PASS) -> str:
        return http_session.get(url, params={**AUTH, "pass": password, "cmd": "getcredit"}).text

    assert credit() == "998"
    th.account().credit = 12.5
    assert credit() == "12.5"
    assert credit("x") == E101


@pytest.mark.parametrize("final", [4, 5, 6, 7, 20])
def test_textinghouse_configured_failure_outcome(sims, http_session, final):  # noqa: F811
    th = sims.textinghouse
    th.set_number_outcome("33600000004", final)
    api_id = http_session.post(th.url + TH_PATH, data=th_fields(to="33600000004")).text[3:]
    assert wait_until(lambda: th.message(api_id).status == final)


def test_textinghouse_opted_out_number_ends_prohibited(sims, http_session):  # noqa: F811
    th = sims.textinghouse
    th.opt_out("+33612345678")
    api_id = http_session.post(th.url + TH_PATH, data=th_fields()).text[3:]
    assert wait_until(lambda: th.message(api_id).status == 7)


def test_textinghouse_dlr_callbacks(sims, http_session, receiver):  # noqa: F811
    th = sims.textinghouse
    th.dlr_url = receiver.url + "/hooks/t/textinghouse/dlr"
    th.set_number_outcome("33600000005", 5)
    a = http_session.post(th.url + TH_PATH, data=th_fields(climsgid="FR-1")).text[3:]
    b = http_session.post(th.url + TH_PATH, data=th_fields(to="33600000005")).text[3:]
    assert len(th.wait_for_callbacks(4)) == 4
    bodies = [json.loads(c["body"]) for c in receiver.calls]
    assert all(c["method"] == "POST" for c in receiver.calls)
    assert all(c["headers"]["Content-Type"] == "application/json" for c in receiver.calls)
    assert [x for x in bodies if x["apimsgid"] == a] == [
        {"apimsgid": a, "climsgid": "FR-1", "status": "1"},
        {"apimsgid": a, "climsgid": "FR-1", "status": "3"},
    ]
    assert [x for x in bodies if x["apimsgid"] == b] == [
        {"apimsgid": b, "climsgid": "", "status": "1"},
        {"apimsgid": b, "climsgid": "", "status": "5"},
    ]
    assert [c.status for c in th.callbacks] == [200] * 4
    assert {c.kind for c in th.callbacks} == {"dlr"}
    # replaying a receipt on demand
    assert th.send_dlr(a, 1) == (200, "OK")
    assert json.loads(receiver.calls[-1]["body"])["status"] == "1"


def test_textinghouse_dlr_to_dead_receiver_is_recorded(sims, http_session):  # noqa: F811
    th = sims.textinghouse
    th.dlr_url = "http://127.0.0.1:9/dlr"  # nothing listens on the discard port
    http_session.post(th.url + TH_PATH, data=th_fields())
    records = th.wait_for_callbacks(2)
    assert [r.status for r in records] == [None, None]
    assert all(r.error for r in records)


def test_textinghouse_inject_mo(sims, http_session, receiver):  # noqa: F811
    th = sims.textinghouse
    with pytest.raises(RuntimeError):
        th.inject_mo()
    th.mo_url = receiver.url + "/mo"
    api_id = http_session.post(
        th.url + TH_PATH, data=th_fields(to="33600000000", climsgid="FR-9")
    ).text[3:]
    receiver.reply = "thanks"
    assert th.inject_mo(from_="33600000000", txt="STOP") == (200, "thanks")
    mo = json.loads(receiver.calls[-1]["body"])
    assert mo["apimsgid"] == api_id and mo["climsgid"] == "FR-9"
    assert (mo["from"], mo["txt"]) == ("33600000000", "STOP")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", mo["date"])
    th.inject_mo(from_="33611111111", txt="hello", date="2019-04-01 13:09:16")
    mo = json.loads(receiver.calls[-1]["body"])
    assert (mo["apimsgid"], mo["climsgid"], mo["date"]) == ("", "", "2019-04-01 13:09:16")
    assert [c.kind for c in th.callbacks if c.kind == "mo"] == ["mo", "mo"]


@pytest.mark.parametrize("name", ["clubtexting", "grouptexting"])
def test_keyword_and_inbox_injection(sims, receiver, name):  # noqa: F811
    sim = sims.by_name[name]
    sim.keyword_url = receiver.url + "/kw"
    sim.inbox_url = receiver.url + "/inbox?x=1"
    receiver.reply = "Welcome to PIZZA"
    assert sim.inject_keyword(phone="5554443333", message="Hello my friend") == (
        200,
        "Welcome to PIZZA",
    )
    call = receiver.calls[-1]
    assert call["method"] == "GET"
    assert call["raw_query"] == "PhoneNumber=5554443333&Message=Hello%20my%20friend"
    sim.inject_inbox(from_="5554443333", message="hi there")
    assert receiver.calls[-1]["query"] == {"x": "1", "from": "5554443333", "message": "hi there"}
    sim.inject_inbox(from_="5554443333", message="hi", key_case="title")
    assert receiver.calls[-1]["query"] == {"x": "1", "From": "5554443333", "Message": "hi"}
    assert [c.kind for c in sim.callbacks] == ["keyword", "inbox", "inbox"]
    assert sim.callbacks[0].payload == {"PhoneNumber": "5554443333", "Message": "Hello my friend"}


# ----------------------------------------------------------------------------- faults


def test_fault_slow(sims, http_session):  # noqa: F811
    ct = sims.clubtexting
    ct.set_fault("slow", delay=0.2)
    start = time.perf_counter()
    assert http_session.post(ct.url + CT_PATH, data=ct_fields()).text == "1"
    assert time.perf_counter() - start >= 0.2
    assert ct.requests[-1].fault == "slow"


def test_fault_hang_processes_then_never_answers(sims, http_session):  # noqa: F811
    th = sims.textinghouse
    th.set_fault("hang", delay=0.3)
    with pytest.raises(requests.ReadTimeout):
        http_session.post(th.url + TH_PATH, data=th_fields(), timeout=0.1)
    # the provider got it: the message exists and is billed
    assert len(th.messages) == 1
    assert th.account().credit == 999
    rec = th.requests[-1]
    assert (rec.status, rec.fault) == (0, "hang")
    assert rec.body == f"ID:{th.messages[0].api_id}"


def test_fault_drop_processes_then_closes(sims, http_session):  # noqa: F811
    ct = sims.clubtexting
    ct.set_fault("drop", count=1)
    with pytest.raises(requests.ConnectionError):
        http_session.post(ct.url + CT_PATH, data=ct_fields())
    assert ct.account().credit == 999
    assert len(ct.messages) == 1
    assert (ct.requests[-1].status, ct.requests[-1].fault) == (0, "drop")
    assert http_session.post(ct.url + CT_PATH, data=ct_fields()).text == "1"  # count exhausted


def test_fault_reset_before_any_request(sims):  # noqa: F811
    gt = sims.grouptexting
    gt.set_fault("reset", count=1)
    conn = http.client.HTTPConnection("127.0.0.1", gt.port, timeout=2)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        conn.request("GET", "/api/credits/check/?user=smsgate&pass=local-secret")
        conn.getresponse().read()
    conn.close()
    assert gt.requests == []
    assert gt.connections == 1
    assert gt.account().credit == 1000
    assert requests.get(
        gt.url + "/api/credits/check/", params={"user": USER, "pass": PASS}
    ).text == ("1000")
    assert gt.connections == 2


def test_fault_reset_hits_a_kept_alive_connection_too(sims, http_session):  # noqa: F811
    th = sims.textinghouse
    assert http_session.post(th.url + TH_PATH, data=th_fields()).text.startswith("ID:")
    th.set_fault("reset", count=1)
    with pytest.raises(requests.ConnectionError):
        http_session.post(th.url + TH_PATH, data=th_fields(txt="second"))
    assert len(th.requests) == 1 and len(th.messages) == 1  # nothing read, nothing done
    assert http_session.post(th.url + TH_PATH, data=th_fields(txt="third")).text.startswith("ID:")
    assert th.connections == 2


def test_unused_url_refuses_connections():
    with pytest.raises(requests.ConnectionError) as info:
        requests.get(unused_url() + CT_PATH, timeout=2)
    assert "NewConnectionError" in repr(info.value)


@pytest.mark.parametrize(
    ("mode", "status"), [("http_500", 500), ("http_503", 503), ("garbage", 200)]
)
def test_fault_error_answers_do_not_process(sims, http_session, mode, status):  # noqa: F811
    gt = sims.grouptexting
    gt.set_fault(mode)
    resp = http_session.post(gt.url + "/api/sending", data=gt_fields())
    assert resp.status_code == status
    assert "<html" in resp.text.lower()
    assert not re.fullmatch(r"-?\d+", resp.text.strip())
    assert gt.account().credit == 1000
    assert gt.messages == []
    gt.clear_faults()
    assert http_session.post(gt.url + "/api/sending", data=gt_fields()).text == "1"


def test_fault_rate_is_seeded_and_reproducible(sims, http_session):  # noqa: F811
    ct = sims.clubtexting

    def run() -> list[int]:
        ct.reset()
        ct.set_fault("http_500", rate=0.5)
        return [
            http_session.get(ct.url + CT_PATH, params=ct_fields()).status_code for _ in range(20)
        ]

    first = run()
    assert 0 < first.count(500) < 20
    assert run() == first


def test_force_answer(sims, http_session):  # noqa: F811
    ct, th = sims.clubtexting, sims.textinghouse
    ct.force_answer("-10", times=2)
    assert [http_session.post(ct.url + CT_PATH, data=ct_fields()).text for _ in range(3)] == [
        "-10",
        "-10",
        "1",
    ]
    assert ct.account().credit == 999
    th.force_answer("ERR: 300 | Error processing request")
    th.force_answer("oops", status=502)
    r1 = http_session.post(th.url + TH_PATH, data=th_fields())
    r2 = http_session.post(th.url + TH_PATH, data=th_fields())
    assert (r1.status_code, r1.text) == (200, "ERR: 300 | Error processing request")
    assert (r2.status_code, r2.text) == (502, "oops")
    assert th.messages == []
    assert [r.fault for r in th.requests] == ["forced", "forced"]

    # only requests to the given path take a path-bound answer
    gt = sims.grouptexting
    gt.force_answer("busy", status=503, path="/api/sending")
    credits = http_session.post(gt.url + "/api/credits/check/", data=gt_fields())
    assert credits.status_code == 200
    sent = http_session.post(gt.url + "/api/sending", data=gt_fields())
    assert (sent.status_code, sent.text) == (503, "busy")


def test_unknown_fault_mode_rejected(sims):  # noqa: F811
    with pytest.raises(ValueError):
        sims.clubtexting.set_fault("explode")


# ----------------------------------------------------------------------------- reset, accounts


def test_accounts(sims, http_session):  # noqa: F811
    ct = sims.clubtexting
    ct.add_account("other", "pw", credit=1)

    def send() -> str:
        return http_session.post(ct.url + CT_PATH, data=ct_fields(user="other", pass_="pw")).text

    assert (send(), send()) == ("1", "-2")
    assert ct.account("other").credit == 0
    assert ct.account().credit == 1000


def test_reset_restores_defaults(sims, http_session):  # noqa: F811
    gt, th = sims.grouptexting, sims.textinghouse
    http_session.post(gt.url + "/api/sending", data=gt_fields())
    http_session.post(gt.url + "/api/keyword/rent/", data={**card(), "keyword": "FRESH"})
    gt.opt_out("2125551234")
    gt.global_opt_out("2125551234")
    gt.add_account("x", "y")
    gt.set_fault("http_500")
    gt.force_answer("-10")
    gt.rate_limit_enabled = False
    gt.block_seconds = 5
    _parallel_gt_sends(gt, 3)  # a block
    th.dlr_url = "http://127.0.0.1:9/"
    th.set_number_outcome("33612345678", 4)
    th.set_clock(SUNDAY_NOON)
    th.account().allowed_ips = {"192.0.2.1"}
    th.commercial_slots = ()
    http_session.post(th.url + TH_PATH, data=th_fields())

    sims.reset()

    for sim in sims:
        assert sim.requests == []
        assert sim.connections == 0
        assert sim.account().credit == 1000
        assert sim.callbacks == []
    with pytest.raises(KeyError):
        gt.account("x")
    assert gt.account().opt_outs == set() and gt.global_opt_outs == set()
    assert gt.account().keywords == {} and "FRESH" not in gt.taken_keywords
    assert "PIZZA" in gt.taken_keywords
    assert gt.rate_limit_enabled is True
    assert (gt.block_seconds, list(gt.blocks), gt.blocked()) == (60, [], False)
    assert th.dlr_url is None and th.messages == [] and th.retained() == []
    assert abs(th.now() - time.time()) < 1 and th.account().allowed_ips is None
    assert th.commercial_slots == hours.SLOTS
    resp = http_session.post(gt.url + "/api/sending", data=gt_fields())
    assert (resp.status_code, resp.text) == (200, "1")
    assert http_session.post(th.url + TH_PATH, data=th_fields()).text.startswith("ID:")


def test_requests_to_and_recording(sims, http_session):  # noqa: F811
    gt = sims.grouptexting
    http_session.get(gt.url + "/api/credits/check/", params={"User": USER, "Pass": PASS})
    http_session.post(gt.url + "/api/sending", data=gt_fields())
    [check] = gt.requests_to("/api/credits")
    assert check.method == "GET"
    assert check.fields == {"User": USER, "Pass": PASS}
    assert check.field("user") == USER
    assert check.body == "1000" and check.status == 200
    assert check.connection_id > 0 and check.at <= time.time()
    assert "User-Agent" in check.headers
    assert [r.path for r in gt.requests_to("/api/sending")] == ["/api/sending"]


def test_simulator_logs_nothing(sims, http_session, capfd):  # noqa: F811
    ct = sims.clubtexting
    http_session.post(ct.url + CT_PATH, data=ct_fields())
    http_session.get(ct.url + "/nope", params={"pass": PASS})
    ct.set_fault("drop")
    with pytest.raises(requests.ConnectionError):
        http_session.post(ct.url + CT_PATH, data=ct_fields())
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_independent_of_smsgate_package():
    import smsgate_sim.clubtexting
    import smsgate_sim.grouptexting
    import smsgate_sim.server
    import smsgate_sim.textinghouse

    for module in (
        smsgate_sim.server,
        smsgate_sim.clubtexting,
        smsgate_sim.grouptexting,
        smsgate_sim.textinghouse,
        gsm,
    ):
        with open(module.__file__, encoding="utf-8") as fh:
            source = fh.read()
        assert not re.search(r"^\s*(from|import) smsgate\b(?!_sim)", source, re.M)


def test_command_line(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "smsgate_sim", "--host", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        names = [line.split()[0] for line in lines]
        assert names == ["clubtexting", "grouptexting", "textinghouse"]
        urls = dict(line.split() for line in lines)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", urls["textinghouse"])
        resp = requests.get(
            urls["textinghouse"] + TH_PATH, params={"user": USER, "pass": PASS, "cmd": "getcredit"}
        )
        assert resp.text == "1000"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_simulators_start_with_fixed_ports_and_context_manager():
    with Simulators.start(ports={"clubtexting": 0}, dlr_url="http://x/dlr") as own:
        assert own.textinghouse.dlr_url == "http://x/dlr"
        assert set(own.urls) == {"clubtexting", "grouptexting", "textinghouse"}
        assert own.by_name["textinghouse"] is own.textinghouse
    with pytest.raises(ValueError):
        Simulators.start(ports={"nope": 1})


# ----------------------------------------------------------------------------- PHP form names


def test_php_form_reads_names_as_php_does():
    # php_register_variable_ex: leading spaces dropped, spaces and dots -> "_", values as sent
    assert php_form("a=1& b=2&c.d=3&e f=4&=x& =y&g&h= 5 ") == {
        "a": "1",
        "b": "2",
        "c_d": "3",
        "e_f": "4",
        "g": "",
        "h": " 5 ",
    }
    assert php_form("%20user=x&+pass=y&a=1&a=2") == {"user": "x", "pass": "y", "a": "2"}
    assert php_form("\nphonenumber=1&\tx=2") == {"\nphonenumber": "1", "\tx": "2"}


def _raw_post(sim: Any, path: str, body: bytes, query: str = "") -> str:
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        conn.request(
            "POST",
            path + (f"?{query}" if query else ""),
            body,
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        return conn.getresponse().read().decode()
    finally:
        conn.close()


CREDS = f"user={USER}&pass={PASS}".encode()
PHP_NAME_CASES = [
    # (label, simulator, path, body, query, expected)
    ("ct: leading space in a name", "clubtexting", CT_PATH,
     CREDS + b"& phonenumber=2127846500&message=hi", "", "1"),
    ("ct: line break before a name is kept", "clubtexting", CT_PATH,
     CREDS + b"&\nphonenumber=2127846500&message=hi", "", "-10"),
    ("ct: space inside a name -> _", "clubtexting", CT_PATH,
     CREDS + b"&phone number=2127846500&message=hi", "", "-10"),
    ("ct: capitalised names", "clubtexting", CT_PATH,
     b"User=smsgate&Pass=local-secret&PhoneNumber=2127846500&Message=hi", "", "1"),
    ("gt: leading space in a name", "grouptexting", "/api/sending",
     CREDS + b"& phonenumber=2125551234&subject=test &message=hi", "", "1"),
    ("gt: encoded leading space in the query", "grouptexting", "/api/credits/check/",
     b"", f"%20user={USER}&+pass={PASS}", "1000"),
    ("th: leading space in a name", "textinghouse", TH_PATH,
     b" user=smsgate&  pass=local-secret&cmd=getcredit", "", "1000"),
    ("th: User= is not user=", "textinghouse", TH_PATH,
     b"User=smsgate&pass=local-secret&cmd=getcredit", "", E100),
    ("th: TXT= is not txt=", "textinghouse", TH_PATH,
     CREDS + b"&cmd=sendsms&to=33612345678&TXT=hi&iscom=N", "", E100),
    ("th: Cmd= is not cmd=", "textinghouse", TH_PATH, CREDS + b"&Cmd=getcredit", "", E100),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "name", "path", "body", "query", "expected"),
    PHP_NAME_CASES,
    ids=[c[0] for c in PHP_NAME_CASES],
)
def test_form_names_as_php_reads_them(sims, label, name, path, body, query, expected):  # noqa: F811
    sim = sims.by_name[name]
    assert _raw_post(sim, path, body, query) == expected
    if "space inside" in label:
        assert sim.requests[-1].fields["phone_number"] == "2127846500"
    if "line break" in label:
        assert sim.requests[-1].fields["\nphonenumber"] == "2127846500"
    if name == "grouptexting" and expected == "1":
        assert sim.messages[-1].subject == "test "  # values keep their spaces


# ----------------------------------------------------------------------------- TextingHouse IP lock


@pytest.mark.parametrize(
    ("allowed", "ok"),
    [(None, True), ({"127.0.0.1"}, True), ({"192.0.2.10"}, False), (set(), False)],
    ids=["no lock", "this address", "another address", "empty lock"],
)
def test_textinghouse_ip_lock(sims, http_session, allowed, ok):  # noqa: F811
    th = sims.textinghouse
    th.account().allowed_ips = allowed
    url = th.url + TH_PATH
    answers = [
        http_session.post(url, data=th_fields()).text,
        http_session.post(url, data=th_fields(to="999")).text,  # §4.8: authenticated too
        http_session.get(url, params={**AUTH, "cmd": "getcredit"}).text,
        http_session.post(url, data={**AUTH, "cmd": "getstatus", "api_id": "0" * 24}).text,
    ]
    if ok:
        assert answers[0].startswith("ID:") and answers[1].startswith("ID:")
        assert answers[2:] == ["999", "ERR: 201 | Unknown api_id"]
    else:
        assert answers == [E101] * 4
        assert th.messages == [] and th.account().credit == 1000
    assert th.requests[-1].client == "127.0.0.1"


def test_textinghouse_ip_lock_is_per_account(sims, http_session):  # noqa: F811
    th = sims.textinghouse
    th.add_account("locked", "pw", allowed_ips={"192.0.2.10"})
    other = th_fields(user="locked", pass_="pw")
    assert http_session.post(th.url + TH_PATH, data=other).text == E101
    assert http_session.post(th.url + TH_PATH, data=th_fields()).text.startswith("ID:")


# ----------------------------------------------------------------------------- TextingHouse 300


def test_textinghouse_300_is_only_a_processing_error(sims, http_session):  # noqa: F811
    th = sims.textinghouse
    th.processing_error(times=2)
    answers = [http_session.post(th.url + TH_PATH, data=th_fields()).text for _ in range(3)]
    assert answers[:2] == [E300, E300]
    assert answers[2].startswith("ID:")
    assert [r.fault for r in th.requests] == ["forced", "forced", None]
    assert len(th.messages) == 1 and th.account().credit == 999  # the 300s were not processed
    # no value makes the simulator answer 300 of itself
    for bad in ({"to": "+33"}, {"iscom": "y"}, {"txt": "😀"}, {"cmd": "x"}, {"climsgid": "c" * 40}):
        assert http_session.post(th.url + TH_PATH, data=th_fields(**bad)).text == E100


# ----------------------------------------------------------------------------- TextingHouse 999

TEST_SMS_CASES = [
    # §4.8 "The content of the test SMS is free and not taken into account"
    ("plain", {}),
    ("characters outside GSM 03.38", {"txt": "reçu 😀"}),
    ("long", {"txt": "x" * 400}),
    ("commercial without STOP, on a Sunday", {"iscom": "Y", "txt": "Sale!"}),
]


@pytest.mark.parametrize(("label", "over"), TEST_SMS_CASES, ids=[c[0] for c in TEST_SMS_CASES])
def test_textinghouse_999_content_not_checked(sims, http_session, receiver, label, over):  # noqa: F811
    th = sims.textinghouse
    th.dlr_url = receiver.url + "/dlr"
    th.set_clock(SUNDAY_NOON)
    th.account().credit = 0  # not charged: works without credit
    resp = http_session.post(th.url + TH_PATH, data=th_fields(to="999", climsgid="t-1", **over))
    assert re.fullmatch(r"ID:[0-9a-f]{24}", resp.text), resp.text
    api_id = resp.text[3:]
    assert th.account().credit == 0 and th.message(api_id).cost == 0
    assert th.retained() == []

    def status(**by: str) -> str:
        return http_session.post(th.url + TH_PATH, data={**AUTH, "cmd": "getstatus", **by}).text

    assert wait_until(lambda: status(climsgid="t-1") == "3")
    assert status(api_id=api_id) == "3"
    th.wait_for_callbacks(2)
    receipts = [json.loads(c["body"]) for c in receiver.calls]
    assert receipts[-1] == {"apimsgid": api_id, "climsgid": "t-1", "status": "3"}


def test_textinghouse_999_still_needs_its_parameters(sims, http_session):  # noqa: F811
    th = sims.textinghouse
    send = th.url + TH_PATH
    assert http_session.post(send, data=th_fields(to="999", txt=None)).text == E100
    assert http_session.post(send, data=th_fields(to="999", iscom="maybe")).text == E100
    assert http_session.post(send, data=th_fields(to="999", pass_="x")).text == E101


# ----------------------------------------------------------------------------- TextingHouse slots


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


FR_MOBILE, NY = "33612345678", "12125551234"
RETAIN_CASES = [
    # (label, the provider's clock, recipient, commercial, retained until (UTC) or None)
    ("sunday noon", SUNDAY_NOON, FR_MOBILE, True, utc(2026, 11, 23, 7)),  # Mon 08:00 Paris
    ("christmas (friday)", utc(2026, 12, 25, 9), FR_MOBILE, True, utc(2026, 12, 26, 9)),
    ("saturday 15:00", utc(2026, 11, 28, 14), FR_MOBILE, True, utc(2026, 11, 30, 7)),
    ("saturday 14:59", utc(2026, 11, 28, 13, 59), FR_MOBILE, True, None),
    ("saturday 09:59", utc(2026, 11, 28, 8, 59), FR_MOBILE, True, utc(2026, 11, 28, 9)),
    ("tuesday 20:00", utc(2026, 11, 24, 19), FR_MOBILE, True, utc(2026, 11, 25, 7)),
    ("tuesday 07:30", utc(2026, 11, 24, 6, 30), FR_MOBILE, True, utc(2026, 11, 24, 7)),
    ("tuesday noon", utc(2026, 11, 24, 11), FR_MOBILE, True, None),
    ("summer time", utc(2026, 7, 4, 13, 30), FR_MOBILE, True, utc(2026, 7, 6, 6)),  # Sat 15:30
    # the recipient's local time decides: 13:00 in Paris is 07:00 in New York
    ("new york 07:00", utc(2026, 11, 23, 12), NY, True, utc(2026, 11, 23, 13)),
    ("paris 13:00", utc(2026, 11, 23, 12), FR_MOBILE, True, None),
    ("us holiday", utc(2026, 11, 26, 15), NY, True, utc(2026, 11, 27, 13)),  # Thanksgiving
    ("not commercial", SUNDAY_NOON, FR_MOBILE, False, None),
]


@pytest.mark.parametrize("case", RETAIN_CASES, ids=[c[0] for c in RETAIN_CASES])
def test_textinghouse_commercial_retained_outside_slots(sims, http_session, receiver, case):  # noqa: F811
    _, now, to, commercial, until = case
    th = sims.textinghouse
    th.dlr_url = receiver.url + "/dlr"
    th.dlr_delay = 0.02
    th.set_clock(now)
    txt = "Sale! STOP sms-s.top" if commercial else "Your code is 1234"
    fields = th_fields(to=to, txt=txt, iscom="Y" if commercial else "N", climsgid="c-1")
    resp = http_session.post(th.url + TH_PATH, data=fields)
    assert resp.text.startswith("ID:")  # accepted and billed either way
    api_id = resp.text[3:]
    msg = th.message(api_id)
    assert th.account().credit == 999
    assert msg.retained_until == until
    if until is None:
        assert th.retained() == []
        assert wait_until(lambda: th.message(api_id).status == 3)
        return
    assert th.retained() == [msg] and th.retained(pending=True) == [msg]
    status = {**AUTH, "cmd": "getstatus", "api_id": api_id}
    time.sleep(0.1)  # five times the receipt delay: still processing, no receipt
    assert http_session.post(th.url + TH_PATH, data=status).text == "0"
    assert receiver.calls == [] and th.callbacks == []
    th.set_clock(until - dt.timedelta(minutes=1))
    time.sleep(0.05)
    assert http_session.post(th.url + TH_PATH, data=status).text == "0"
    th.set_clock(until)  # the next working hour: sent, then its receipts
    assert wait_until(lambda: http_session.post(th.url + TH_PATH, data=status).text == "3")
    assert th.retained(pending=True) == [] and th.retained() == [msg]
    assert [s for _, s in msg.history] == [0, 1, 3]
    assert all(at >= until.timestamp() for at, s in msg.history if s != 0)
    assert len(th.wait_for_callbacks(2)) == 2
    assert [json.loads(c["body"])["status"] for c in receiver.calls] == ["1", "3"]


def test_textinghouse_retained_message_released_as_the_clock_runs(sims, http_session):  # noqa: F811
    th = sims.textinghouse
    th.set_clock(SUNDAY_NOON)
    fields = th_fields(iscom="Y", txt="Sale! STOP sms-s.top")
    api_id = http_session.post(th.url + TH_PATH, data=fields).text[3:]
    opens = th.message(api_id).retained_until
    assert opens == utc(2026, 11, 23, 7)
    th.set_clock(opens - dt.timedelta(seconds=0.3))  # not yet: released when the clock gets there
    assert th.message(api_id).status == 0
    assert wait_until(lambda: th.message(api_id).status == 3, timeout=3)
    assert th.message(api_id).history[1][0] >= opens.timestamp()


def test_textinghouse_clock():
    th_now = time.time()
    with Simulators.start() as own:
        th = own.textinghouse
        assert abs(th.now() - th_now) < 5
        th.set_clock(SUNDAY_NOON)
        assert abs(th.now() - SUNDAY_NOON.timestamp()) < 1
        th.advance_clock(3600)
        assert abs((th.now_utc() - SUNDAY_NOON).total_seconds() - 3600) < 1
        with pytest.raises(ValueError):
            th.set_clock(dt.datetime(2026, 11, 22, 12))  # naive: which zone?
        th.reset()
        assert abs(th.now() - time.time()) < 1


def test_commercial_hours_zones():
    zones, region = hours.zones_and_region("33612345678")
    assert ([str(z) for z in zones], region) == (["Europe/Paris"], "FR")
    # numbers the library cannot place fall back to France (TextingHouse's country)
    for unplaced in ("80012345678", "999", "33123"):
        zones, region = hours.zones_and_region(unplaced)
        assert ([str(z) for z in zones], region) == (["Europe/Paris"], "FR"), unplaced
    # several zones: open only when it is open in all of them (an Australian mobile: from the
    # Cocos Islands, UTC+6:30, to Lord Howe, UTC+11)
    au = "61412345678"
    assert {"Indian/Cocos", "Australia/Sydney"} <= {str(z) for z in hours.zones_and_region(au)[0]}
    assert not hours.is_open(utc(2026, 11, 24, 0), au)  # 11:00 in Sydney, 06:30 on Cocos
    assert hours.is_open(utc(2026, 11, 24, 3), au)  # 14:00 in Sydney, 09:30 on Cocos
    assert hours.next_open(utc(2026, 11, 24, 0), au) == utc(2026, 11, 24, 1, 30)  # 08:00 Cocos


# ----------------------------------------------------------------------------- GT IP block


def test_grouptexting_breaking_the_limit_blocks_the_address(sims, http_session):  # noqa: F811
    gt = sims.grouptexting
    assert gt.block_seconds == 60  # the default
    gt.block_seconds = 0.5
    gt.rate_limit_window = 0.2  # over before the block is: the block alone refuses
    assert _parallel_gt_sends(gt, 3) == [200, 200, 503]
    [block] = gt.blocks
    assert (block.address, block.seconds) == ("127.0.0.1", 0.5)
    assert gt.blocked("127.0.0.1") and not gt.blocked("192.0.2.1")
    # during the block every request gets 503 and is not processed, one connection or not
    time.sleep(0.05)
    for _ in range(3):
        resp = http_session.post(gt.url + "/api/sending", data=gt_fields())
        assert (resp.status_code, resp.text) == (503, "Service Unavailable")
    check = http_session.get(gt.url + "/api/credits/check/", params=AUTH)
    assert check.status_code == 503
    assert [r.fault for r in gt.requests[-4:]] == ["blocked"] * 4
    assert len(gt.messages) == 2 and gt.account().credit == 998
    assert len(gt.blocks) == 1  # refused while blocked: not a new block
    time.sleep(0.5)
    assert not gt.blocked()
    assert http_session.post(gt.url + "/api/sending", data=gt_fields()).text == "1"
    assert len(gt.blocks) == 1


def test_grouptexting_unblock_and_no_block(sims, http_session):  # noqa: F811
    gt = sims.grouptexting
    gt.rate_limit_window = 0.2
    assert _parallel_gt_sends(gt, 3) == [200, 200, 503]
    assert gt.blocked()
    time.sleep(0.25)  # the window is over, the block is not
    assert http_session.post(gt.url + "/api/sending", data=gt_fields()).status_code == 503
    gt.unblock()
    assert http_session.post(gt.url + "/api/sending", data=gt_fields()).text == "1"
    assert gt.blocks == type(gt.blocks)([Block("127.0.0.1", gt.blocks[0].at, 60)])
    gt.reset()
    gt.block_seconds = 0  # the 503 alone
    assert _parallel_gt_sends(gt, 3) == [200, 200, 503]
    assert list(gt.blocks) == [] and not gt.blocked()


def test_grouptexting_one_client_is_never_blocked(sims, http_session):  # noqa: F811
    gt = sims.grouptexting
    for _ in range(30):
        assert http_session.post(gt.url + "/api/sending", data=gt_fields()).text == "1"
    assert list(gt.blocks) == []


# ----------------------------------------------------------------------------- reply rules

REPLY_CASES = [
    # (label, simulator, kind, reply, HTTP status, violations (substrings), in order)
    ("gt: ok", "grouptexting", "keyword", "Welcome! Reply STOP to quit.", 200, []),
    ("gt: empty reply", "grouptexting", "keyword", "", 200, []),
    ("gt: 160 weighted", "grouptexting", "keyword", "@" * 80, 200, []),
    ("gt: CRLF counts 2", "grouptexting", "inbox", "a" * 158 + "\r\n", 200, []),
    ("gt: 161 weighted", "grouptexting", "keyword", "@" * 80 + "a", 200, ["counts 161"]),
    ("gt: quote", "grouptexting", "keyword", "it's on", 200, ["outside the allowed"]),
    ("gt: accent", "grouptexting", "inbox", "café", 200, ["outside the allowed"]),
    ("gt: inbox too long", "grouptexting", "inbox", "x" * 161, 200, ["counts 161"]),
    ("gt: HTTP 500", "grouptexting", "keyword", "oops", 500, ["HTTP 500, not 200 OK"]),
    ("gt: HTTP 204", "grouptexting", "inbox", "", 204, ["HTTP 204, not 200 OK"]),
    ("ct: 130", "clubtexting", "keyword", "x" * 130, 200, []),
    ("ct: 131", "clubtexting", "keyword", "x" * 131, 200, ["131 characters, max 130"]),
    ("ct: quotes allowed in a reply", "clubtexting", "keyword", 'it\'s "on"', 200, []),
    ("ct: HTTP 500 not a documented rule", "clubtexting", "keyword", "oops", 500, []),
    ("ct: inbox has no reply rule", "clubtexting", "inbox", "x" * 200, 200, []),
]


@pytest.mark.parametrize(
    ("label", "name", "kind", "reply", "status", "expected"),
    REPLY_CASES,
    ids=[c[0] for c in REPLY_CASES],
)
def test_reply_rules_recorded(sims, receiver, label, name, kind, reply, status, expected):  # noqa: F811
    sim = sims.by_name[name]
    sim.keyword_url, sim.inbox_url = receiver.url + "/kw", receiver.url + "/inbox"
    receiver.reply, receiver.status = reply, status
    sim.inject_keyword() if kind == "keyword" else sim.inject_inbox()
    [record] = sim.callbacks
    assert record.kind == kind and record.status == status
    assert len(record.violations) == len(expected), record.violations
    for violation, part in zip(record.violations, expected, strict=True):
        assert part in violation


@pytest.mark.parametrize("name", ["clubtexting", "grouptexting"])
def test_reply_deadline(sims, receiver, name):  # noqa: F811
    sim = sims.by_name[name]
    sim.keyword_url = receiver.url + "/kw"
    assert sim.reply_deadline == 60  # the documents' limit
    sim.reply_deadline = 0.1
    receiver.delay = 0.15
    sim.inject_keyword()
    assert "not within 0.1 s" in sim.callbacks[-1].violations[0]
    receiver.delay = 0
    sim.inject_keyword()
    assert sim.callbacks[-1].violations == ()
    sim.keyword_url = unused_url()  # no answer at all: abandoned
    sim.inject_keyword()
    assert sim.callbacks[-1].status is None
    assert sim.callbacks[-1].violations[0].startswith("no answer: abandoned")


def test_textinghouse_callbacks_have_no_reply_rules(sims, http_session, receiver):  # noqa: F811
    th = sims.textinghouse
    th.dlr_url = th.mo_url = receiver.url
    receiver.reply, receiver.status = "x" * 500 + "'", 500  # "The response body is not processed"
    http_session.post(th.url + TH_PATH, data=th_fields())
    th.inject_mo()
    assert all(c.violations == () for c in th.wait_for_callbacks(3))


# ----------------------------------------------------------------------------- HTTP layer


@pytest.mark.parametrize("name", ["clubtexting", "grouptexting", "textinghouse"])
def test_unreadable_request_line_is_not_echoed(sims, name):  # noqa: F811
    sim = sims.by_name[name]
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
        sock.sendall(b"GET /x?user=u&pass=PASSWORD y HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = b""
        while chunk := sock.recv(4096):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"PASSWORD" not in raw
    assert sim.requests == []


def test_expect_100_continue_answered_before_the_body(sims):  # noqa: F811
    """.NET's WebRequest (the documents' C# examples) waits for "100 Continue"."""
    ct = sims.clubtexting
    body = urllib.parse.urlencode(ct_fields()).encode()
    with socket.create_connection(("127.0.0.1", ct.port), timeout=2) as sock:
        sock.sendall(
            f"POST {CT_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
            f"\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert (response.status, response.read()) == (200, b"1")
