"""One kept-alive connection per provider client (Group Texting rate-limits parallel ones).

Group Texting's HTTP SMS API: no more than 2 simultaneous connections per second, HTTP 503 beyond;
"Open Connection - Begin Loop - Make Request - Close Loop - Close Connection". The simulator
counts the TCP connections it accepts and enforces that limit.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from typing import Any

from smsgate.providers import (
    ClubTexting,
    GroupTexting,
    OutboundSms,
    OutcomeKind,
    TextingHouse,
)

USER, PASS = "smsgate", "local-secret"
SENDS = 50


def test_fifty_group_texting_sends_use_one_connection(sims: Any) -> None:
    sim = sims.grouptexting
    client = GroupTexting(sim.url, USER, PASS)
    try:
        outcomes = [
            client.send(OutboundSms(f"m{i}", "+12125551234", f"hello {i}")) for i in range(SENDS)
        ]
        assert client.balance() == 1000 - SENDS  # account operations share it too
        assert client.check_keyword("NEWKW") is True
    finally:
        client.transport.close()
    assert [o.code for o in outcomes] == ["1"] * SENDS
    assert sim.connections == 1
    assert {r.connection_id for r in sim.requests} == {sim.requests[0].connection_id}
    assert all(r.status == 200 for r in sim.requests)


def test_fifty_club_texting_sends_use_one_connection(sims: Any) -> None:
    sim = sims.clubtexting
    client = ClubTexting(sim.url, USER, PASS)
    try:
        outcomes = [
            client.send(OutboundSms(f"m{i}", "+12125551234", f"hello {i}")) for i in range(SENDS)
        ]
    finally:
        client.transport.close()
    assert [o.code for o in outcomes] == ["1"] * SENDS
    assert sim.connections == 1
    assert len(sim.requests) == SENDS


def test_fifty_textinghouse_sends_use_one_connection(sims: Any) -> None:
    sim = sims.textinghouse
    client = TextingHouse(sim.url, USER, PASS)
    try:
        # Different texts: the same text to the same number within 10 s is a flood (350).
        outcomes = [
            client.send(OutboundSms(f"m{i}", "+33612345678", f"hello {i}")) for i in range(SENDS)
        ]
        assert client.balance() == 1000 - SENDS
        assert client.status(api_id=outcomes[0].provider_message_id).found
    finally:
        client.transport.close()
    assert all(o.kind is OutcomeKind.SENT for o in outcomes), outcomes
    assert sim.connections == 1


def _raw_post(url: str, path: str, body: str, barrier: threading.Barrier) -> int:
    """One request on its own TCP connection, released together with the others."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.connect()
        barrier.wait(timeout=5)
        conn.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_three_parallel_connections_get_a_503_one_client_never(sims: Any) -> None:
    sim = sims.grouptexting
    body = urllib.parse.urlencode({"user": USER, "pass": PASS})
    barrier = threading.Barrier(3)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        status = _raw_post(sim.url, "/api/credits/check/", body, barrier)
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(statuses) == [200, 200, 503]

    # One client, for longer than the simulator's 1-second window: never limited.
    sims.reset()
    client = GroupTexting(sim.url, USER, PASS)
    codes: list[str] = []
    try:
        deadline = time.monotonic() + 1.3
        i = 0
        while time.monotonic() < deadline:
            codes.append(client.send(OutboundSms(f"m{i}", "+12125551234", f"hi {i}")).code)
            codes.append(str(client.balance()))
            i += 1
            time.sleep(0.02)
    finally:
        client.transport.close()
    assert "http_503" not in codes
    assert sim.connections == 1
    assert all(r.status == 200 for r in sim.requests)
