"""The provider simulators against the seeds, over real HTTP (requests / http.client)."""

from __future__ import annotations

import datetime as dt
import http.client
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from smsgate_sim import KeywordConfig, Simulators, gsm, unused_url
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
    ("number with the seed's leading space", ct_fields(phonenumber=" 2127846500"), None, "1"),
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
    ("setup: no keyword (seed example)", SETUP, "POST",
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
    ("sent, seed pattern ·", th_fields(txt="a·b"), None, "ID"),
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
    ("plus in number", th_fields(to="+33612345678"), None, E300),
    ("letters in number", th_fields(to="336abc"), None, E300),
    ("climsgid 33 chars", th_fields(climsgid="c" * 33), None, E300),
    ("from 12 chars", th_fields(from_="a" * 12), None, E300),
    ("from with dash", th_fields(from_="my-shop"), None, E300),
    ("iscom yes", th_fields(iscom="yes"), None, E300),
    ("ç not GSM", th_fields(txt="reçu"), None, E300),
    ("emoji", th_fields(txt="hi 😀"), None, E300),
    ("unknown cmd", th_fields(cmd="sendmms"), None, E300),
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
    if expected == "ID":
        assert re.fullmatch(r"ID:[0-9a-f]{24}", resp.text), resp.text
        msg = th.messages[-1]
        assert msg.api_id == resp.text[3:]
        assert msg.climsgid == fields.get("climsgid", "")
        assert th.account().credit == 999
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
    th.dlr_url = "http://127.0.0.1:9/"
    th.set_number_outcome("33612345678", 4)
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
    assert th.dlr_url is None and th.messages == []
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
