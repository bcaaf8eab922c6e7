"""TextingHouse / API SMS PRO (seed 002): ``/http/v1/do`` with ``cmd`` sendsms, getstatus,
getcredit; status (DLR) and MO callbacks as JSON POSTs.

Parameter names are case sensitive (a wrong-case name is a missing parameter, ``ERR: 100``).
Parameters come from the query string, an urlencoded body or a JSON object body (the seed's
axios example posts JSON). Answers are plain text: ``ID:<api_id>``, a bare status code, a bare
credit, or ``ERR: <code> | <text>``.

sendsms checks, in order: missing (100), auth (101), values (300: ``to`` not 3-15 digits,
``climsgid`` > 32, ``from`` not 1-11 of [A-Za-z0-9], ``iscom`` not Y/N, a character outside the
seed's pattern + GSM 03.38), commercial without ``STOP sms-s.top`` at the end (400), flood
(350: same text to the same number accepted less than 10 s ago), credit (104).
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import queue
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from . import gsm
from .server import Answer, ProviderSim, Request, format_number, not_found

SEND_PATH = "/http/v1/do"
TEST_NUMBER = "999"
STOP_MENTION = "STOP sms-s.top"
ERRORS = {
    100: "Missing parameter",
    101: "Authentication failed",
    104: "Insufficient credit",
    201: "Unknown api_id",
    202: "Unknown climsgid",
    300: "Error processing request",
    350: "Flood detected",
    400: "STOP mention missing",
}
FINAL_STATUSES = frozenset({3, 4, 5, 6, 7, 20})
# Outcomes a test may configure per number: a final status, or 0 / 1 to stay there for ever.
OUTCOMES = FINAL_STATUSES | {0, 1}
DELIVERED = 3
PROHIBITED = 7
_TO = re.compile(r"[0-9]{3,15}")
_FROM = re.compile(r"[A-Za-z0-9]{1,11}")


def error(code: int) -> str:
    return f"ERR: {code} | {ERRORS[code]}"


@dataclass
class THMessage:
    """A message TextingHouse accepted (answered ``ID:<api_id>``)."""

    api_id: str
    user: str
    to: str
    txt: str
    climsgid: str
    sender: str
    iscom: bool
    parts: int
    cost: float
    at: float
    status: int = 0
    history: list[tuple[float, int]] = field(default_factory=list)


class TextingHouseSim(ProviderSim):
    name = "textinghouse"

    def __init__(
        self,
        *args: Any,
        dlr_url: str | None = None,
        mo_url: str | None = None,
        dlr_delay: float | None = 0.05,
        flood_window: float = 10.0,
        price_per_part: float = 1,
        **kwargs: Any,
    ) -> None:
        self._default_config = (dlr_url, mo_url, dlr_delay, flood_window, price_per_part)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int, str, int]] = []
        self._heap_seq = itertools.count()
        self._outbox: queue.Queue[tuple[int, str, dict[str, str]] | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._stopping = False
        self._dlr_session = self._new_session()
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ state

    def _init_state(self) -> None:
        (
            self.dlr_url,
            self.mo_url,
            self.dlr_delay,
            self.flood_window,
            self.price_per_part,
        ) = self._default_config
        self._messages: dict[str, THMessage] = {}
        self._flood: dict[tuple[str, str, str], float] = {}
        self._outcomes: dict[str, int] = {}
        with self._cond:
            self._heap.clear()

    @property
    def messages(self) -> list[THMessage]:
        with self._lock:
            return list(self._messages.values())

    def message(self, api_id: str) -> THMessage:
        with self._lock:
            return self._messages[api_id]

    def set_number_outcome(self, number: str, status: int) -> None:
        """Messages to ``number`` end in ``status`` (4, 5, 6, 7, 20; 0 or 1: never final)."""
        if status not in OUTCOMES:
            raise ValueError(f"status must be one of {sorted(OUTCOMES)}")
        with self._lock:
            self._outcomes[self._normalise_number(number)] = status

    def set_status(self, api_id: str, status: int) -> None:
        """Set a message's status now (no callback; see ``send_dlr``)."""
        with self._lock:
            msg = self._messages[api_id]
            msg.status = status
            msg.history.append((time.time(), status))

    def send_dlr(self, api_id: str, status: int | None = None) -> tuple[int | None, str]:
        """POST a status callback for a message now (default: its current status); returns
        (HTTP status, body). Does not change the message (lets tests replay or reorder)."""
        with self._lock:
            msg = self._messages[api_id]
            payload = self._dlr_payload(msg, msg.status if status is None else status)
        return self._call_app("dlr", self.dlr_url, method="POST", json_body=payload)

    def inject_mo(
        self,
        from_: str = "33600000000",
        txt: str = "STOP",
        apimsgid: str | None = None,
        climsgid: str | None = None,
        date: str | None = None,
    ) -> tuple[int | None, str]:
        """POST an SMS reply (MO) to ``mo_url``; returns (HTTP status, body).

        ``apimsgid``/``climsgid`` default to the latest message sent to ``from_`` (else "").
        """
        with self._lock:
            last = None
            for msg in self._messages.values():
                if msg.to == from_:
                    last = msg
        if apimsgid is None:
            apimsgid = last.api_id if last else ""
        if climsgid is None:
            climsgid = last.climsgid if last else ""
        if date is None:
            date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        payload = {
            "apimsgid": apimsgid,
            "climsgid": climsgid,
            "from": from_,
            "txt": txt,
            "date": date,
        }
        return self._call_app("mo", self.mo_url, method="POST", json_body=payload)

    @staticmethod
    def _dlr_payload(msg: THMessage, status: int) -> dict[str, str]:
        return {"apimsgid": msg.api_id, "climsgid": msg.climsgid, "status": str(status)}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> TextingHouseSim:
        if self._server is None:
            self._stopping = False
            self._workers = [
                threading.Thread(target=self._schedule_loop, name="sim-th-status", daemon=True),
                threading.Thread(target=self._callback_loop, name="sim-th-dlr", daemon=True),
            ]
            for worker in self._workers:
                worker.start()
        super().start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._outbox.put(None)
        super().stop()
        for worker in self._workers:
            worker.join(timeout=5)
        self._workers = []
        self._dlr_session.close()

    # ------------------------------------------------------------------ status progression

    def _schedule(self, delay: float, generation: int, api_id: str, status: int) -> None:
        with self._cond:
            heapq.heappush(
                self._heap,
                (time.monotonic() + delay, next(self._heap_seq), generation, api_id, status),
            )
            self._cond.notify_all()

    def _schedule_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    timeout = self._heap[0][0] - now if self._heap else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                _, _, generation, api_id, status = heapq.heappop(self._heap)
            self._advance(generation, api_id, status)

    def _advance(self, generation: int, api_id: str, status: int) -> None:
        with self._lock:
            if generation != self._generation:
                return
            msg = self._messages.get(api_id)
            if msg is None or msg.status in FINAL_STATUSES:
                return
            msg.status = status
            msg.history.append((time.time(), status))
            if self.dlr_url:
                self._outbox.put((generation, self.dlr_url, self._dlr_payload(msg, status)))

    def _callback_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            generation, url, payload = item
            if generation != self._generation:
                continue
            try:
                self._call_app(
                    "dlr",
                    url,
                    method="POST",
                    json_body=payload,
                    session=self._dlr_session,
                    generation=generation,
                )
            except Exception:  # never let the worker die
                self._note_error(traceback.format_exc())

    # ------------------------------------------------------------------ the API

    def _process(self, req: Request) -> Answer:
        if req.path.rstrip("/") != SEND_PATH:
            return not_found()
        f = req.fields  # exact names only: "The parameters are case sensitive."
        with self._lock:
            return Answer(body=self._command(f))

    def _command(self, f: dict[str, str]) -> str:
        user, password = f.get("user"), f.get("pass")
        if not user or password is None:
            return error(100)
        account = self._auth(user, password)
        if account is None:
            return error(101)
        cmd = f.get("cmd")
        if not cmd:
            return error(100)
        if cmd == "sendsms":
            return self._sendsms(account.user, f)
        if cmd == "getstatus":
            return self._getstatus(account.user, f)
        if cmd == "getcredit":
            return format_number(account.credit)
        return error(300)

    def _sendsms(self, user: str, f: dict[str, str]) -> str:
        account = self._accounts[user]
        to, txt, iscom = f.get("to"), f.get("txt"), f.get("iscom")
        if not to or not txt or not iscom:
            return error(100)
        climsgid = f.get("climsgid", "")
        sender = f.get("from", "")
        if (
            not _TO.fullmatch(to)
            or len(climsgid) > 32
            or (sender and not _FROM.fullmatch(sender))
            or iscom not in ("Y", "N")
            or gsm.invalid_chars(txt)
        ):
            return error(300)
        if iscom == "Y" and not txt.rstrip().endswith(STOP_MENTION):
            return error(400)
        now = time.monotonic()
        key = (user, to, txt)
        last = self._flood.get(key)
        if last is not None and now - last < self.flood_window:
            return error(350)
        parts = gsm.parts(txt)
        free = to == TEST_NUMBER
        cost = 0 if free else parts * self.price_per_part
        if cost > account.credit:
            return error(104)
        account.credit -= cost
        if len(self._flood) > 10_000:  # forget what can no longer flood
            self._flood = {k: t for k, t in self._flood.items() if now - t < self.flood_window}
        self._flood[key] = now
        api_id = f"{self._rng.getrandbits(96):024x}"
        while api_id in self._messages:
            api_id = f"{self._rng.getrandbits(96):024x}"
        msg = THMessage(
            api_id=api_id,
            user=user,
            to=to,
            txt=txt,
            climsgid=climsgid,
            sender=sender,
            iscom=iscom == "Y",
            parts=parts,
            cost=cost,
            at=time.time(),
        )
        msg.history.append((msg.at, 0))
        self._messages[api_id] = msg
        if free:
            final = DELIVERED
        elif to in account.opt_outs:
            final = PROHIBITED
        else:
            final = self._outcomes.get(to, DELIVERED)
        if self.dlr_delay is not None and final != 0:
            self._schedule(self.dlr_delay / 2, self._generation, api_id, 1)
            if final != 1:
                self._schedule(self.dlr_delay, self._generation, api_id, final)
        return f"ID:{api_id}"

    def _getstatus(self, user: str, f: dict[str, str]) -> str:
        api_id, climsgid = f.get("api_id"), f.get("climsgid")
        if api_id:
            msg = self._messages.get(api_id)
            if msg is None or msg.user != user:
                return error(201)
            return str(msg.status)
        if climsgid:
            found = [m for m in self._messages.values() if m.climsgid == climsgid]
            found = [m for m in found if m.user == user]
            if not found:
                return error(202)
            return str(found[-1].status)
        return error(100)
