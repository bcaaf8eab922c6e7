"""TextingHouse / API SMS PRO: ``/http/v1/do`` with ``cmd`` sendsms, getstatus,
getcredit; status (DLR) and MO callbacks as JSON POSTs.

Parameter names are case sensitive (a wrong-case name is a missing parameter, ``ERR: 100``).
Parameters come from the query string, an urlencoded body (names as PHP reads them,
``php_form``) or a JSON object body (the document's axios example posts JSON). Answers are plain
text: ``ID:<api_id>``, a bare status code, a bare credit, or ``ERR: <code> | <text>``.

Every command: missing user/pass (100), auth (101: user, password, or the account's IP lock,
``Account.allowed_ips``), missing or unknown ``cmd`` (100).

sendsms checks, in order: missing (100), values (100: ``to`` not 3-15 digits, ``iscom`` not
Y/N, ``climsgid`` > 32, a character outside the document's pattern + GSM 03.38), commercial without
``STOP sms-s.top`` at the end (400), flood (350: same text to the same number accepted less than
10 s ago), credit (104). A ``from`` outside the rules is replaced, the message sent. The test
number 999 is free, its text not checked. ``ERR: 300`` (a processing error) only comes from
``processing_error()``.

A commercial message received outside the time slots (``hours``, in the recipient's local time
on the provider's clock, ``set_clock``) is retained: accepted and billed, status 0 until
``retained_until``, then sent (receipts after that). ``retained()`` lists them.

Sections (§) are those of the TextingHouse API document (API SMS PRO Documentation).
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

from . import gsm, hours
from .server import Account, Answer, ProviderSim, Request, format_number, not_found

SEND_PATH = "/http/v1/do"
# The test number (TextingHouse API §4.8). "Subject to authentication as for sending a standard
# SMS" and handled "in the same way as standard SMS": auth and IP lock, the mandatory
# parameters, iscom Y/N, climsgid, the flood rule, an ID, getstatus and a "delivered" (3)
# receipt. "Not charged": the credit is unchanged (and may be 0). "The content of the test SMS
# is free and not taken into account": no check of its characters or length, no STOP mention
# for iscom=Y. It is "not delivered to an operator", so no recipient's time slot applies
# either: a commercial test SMS is never retained.
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
_RELEASE = -1  # a scheduled item that releases a retained message instead of setting a status
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
    at: float  # the provider's clock (``now()``), as the history's times
    status: int = 0
    history: list[tuple[float, int]] = field(default_factory=list)
    # A commercial message received outside the time slots: when it is sent (TextingHouse
    # API §4.3 "Time restrictions"); None for a message sent at once.
    retained_until: dt.datetime | None = None
    # The requested sender ID broke its rules, so TextingHouse sent with its own (``sender``
    # is then "").
    sender_replaced: bool = False


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
        self._held: set[str] = set()  # api_ids of retained messages not yet released
        self.commercial_slots = hours.SLOTS
        with self._cond:
            self._heap.clear()

    @property
    def messages(self) -> list[THMessage]:
        with self._lock:
            return list(self._messages.values())

    def message(self, api_id: str) -> THMessage:
        with self._lock:
            return self._messages[api_id]

    def retained(self, pending: bool = False) -> list[THMessage]:
        """Commercial messages TextingHouse retained (received outside the time slots), oldest
        first; ``pending``: only those not yet released. [] when the gateway never handed it a
        commercial message outside the window."""
        with self._lock:
            return [
                m
                for m in self._messages.values()
                if m.retained_until is not None and (not pending or m.api_id in self._held)
            ]

    def processing_error(self, times: int = 1) -> None:
        """The next ``times`` requests get ``ERR: 300 | Error processing request``,
        unprocessed: the document's processing error (TextingHouse API §5.2), a fault on
        TextingHouse's side, which no request value causes."""
        self.force_answer(error(300), times=times, path=SEND_PATH)

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
            msg.history.append((self.now(), status))

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
            if status == _RELEASE:
                self._release_retained(api_id)
                return
            msg = self._messages.get(api_id)
            if msg is None or msg.status in FINAL_STATUSES:
                return
            msg.status = status
            msg.history.append((self.now(), status))
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

    # ------------------------------------------------------------------ retention

    def _retain(self, msg: THMessage) -> bool:
        """Retain a commercial message received outside the time slots (TextingHouse API §4.3:
        "retained and sent at the next working hour"); True if it was."""
        now = self.now_utc()
        opens = hours.next_open(now, msg.to, self.commercial_slots)
        if opens <= now:
            return False
        msg.retained_until = opens
        self._held.add(msg.api_id)
        self._schedule(opens.timestamp() - self.now(), self._generation, msg.api_id, _RELEASE)
        return True

    def _release_retained(self, api_id: str) -> None:
        """Send a retained message once the provider's clock reached its ``retained_until``
        (a clock moved back: look again when it gets there)."""
        msg = self._messages.get(api_id)
        if msg is None or api_id not in self._held or msg.retained_until is None:
            return
        wait = msg.retained_until.timestamp() - self.now()
        if wait > 0:
            self._schedule(wait, self._generation, api_id, _RELEASE)
            return
        self._held.discard(api_id)
        self._progress(msg)

    def _clock_changed(self) -> None:
        with self._lock:
            for api_id in list(self._held):
                self._release_retained(api_id)

    def _progress(self, msg: THMessage) -> None:
        """Schedule a sent message's statuses: 1 (sent) after half of ``dlr_delay``, then its
        final status; each one with its receipt."""
        if msg.to == TEST_NUMBER:
            final = DELIVERED
        elif msg.to in self._accounts[msg.user].opt_outs:
            final = PROHIBITED
        else:
            final = self._outcomes.get(msg.to, DELIVERED)
        if self.dlr_delay is not None and final != 0:
            self._schedule(self.dlr_delay / 2, self._generation, msg.api_id, 1)
            if final != 1:
                self._schedule(self.dlr_delay, self._generation, msg.api_id, final)

    # ------------------------------------------------------------------ the API

    def _process(self, req: Request) -> Answer:
        if req.path.rstrip("/") != SEND_PATH:
            return not_found()
        f = req.fields  # exact names only: "The parameters are case sensitive."
        with self._lock:
            return Answer(body=self._command(req.client, f))

    def _command(self, client: str, f: dict[str, str]) -> str:
        user, password = f.get("user"), f.get("pass")
        if not user or password is None:
            return error(100)
        account = self._auth(user, password)
        # "101 | Authentication failure: invalid username, password or IP address" (§4.3).
        if account is None or not _ip_allowed(account, client):
            return error(101)
        cmd = f.get("cmd")
        if cmd == "sendsms":
            return self._sendsms(account, f)
        if cmd == "getstatus":
            return self._getstatus(account.user, f)
        if cmd == "getcredit":
            return format_number(account.credit)
        # §4.2 lists three commands and no code for another: a mandatory parameter without a
        # usable value, answered like the values of sendsms (see `value_problem`).
        return error(100)

    def _sendsms(self, account: Account, f: dict[str, str]) -> str:
        to, txt, iscom = f.get("to"), f.get("txt"), f.get("iscom")
        if not to or not txt or not iscom:
            return error(100)
        test = to == TEST_NUMBER
        if value_problem(f, test) is not None:
            return error(100)
        # §4.8: "The content of the test SMS is free and not taken into account", hence no
        # STOP mention for 999 (nor a time slot below: it never reaches an operator).
        if iscom == "Y" and not test and not txt.rstrip().endswith(STOP_MENTION):
            return error(400)
        now = time.monotonic()
        key = (account.user, to, txt)
        last = self._flood.get(key)
        if last is not None and now - last < self.flood_window:
            return error(350)
        parts = gsm.parts(txt)
        cost = 0 if test else parts * self.price_per_part  # §4.8: "not charged"
        if cost > account.credit:
            return error(104)
        account.credit -= cost
        if len(self._flood) > 10_000:  # forget what can no longer flood
            self._flood = {k: t for k, t in self._flood.items() if now - t < self.flood_window}
        self._flood[key] = now
        msg = self._new_message(account.user, f, parts, cost)
        if not (msg.iscom and not test and self._retain(msg)):
            self._progress(msg)
        return f"ID:{msg.api_id}"

    def _new_message(self, user: str, f: dict[str, str], parts: int, cost: float) -> THMessage:
        api_id = f"{self._rng.getrandbits(96):024x}"
        while api_id in self._messages:
            api_id = f"{self._rng.getrandbits(96):024x}"
        # §4.3 "from": "TextingHouse reserves the right to replace the sender chosen by the
        # customer": a sender outside its rules is replaced, not an error.
        sender = f.get("from", "")
        replaced = bool(sender) and not _FROM.fullmatch(sender)
        msg = THMessage(
            api_id=api_id,
            user=user,
            to=f["to"],
            txt=f["txt"],
            climsgid=f.get("climsgid", ""),
            sender="" if replaced else sender,
            iscom=f["iscom"] == "Y",
            parts=parts,
            cost=cost,
            at=self.now(),
            sender_replaced=replaced,
        )
        msg.history.append((msg.at, 0))
        self._messages[api_id] = msg
        return msg

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


def _ip_allowed(account: Account, client: str) -> bool:
    """The IP lock (§4.1: "allow sending only from a specific IP address"); None: no lock."""
    return account.allowed_ips is None or client in account.allowed_ips


def value_problem(f: dict[str, str], test: bool) -> str | None:
    """The sendsms parameter whose value the document does not allow, or None.

    The document has no code for a present but invalid value: 300 is "Error processing
    request" (§5.2), a processing error, and 100 "Missing parameter" the only code about
    parameters. An unusable value is answered 100: a request that cannot succeed as it is,
    where 300 would invite the same request again. The test number's text is not checked
    (§4.8: "free and not taken into account").
    """
    if not _TO.fullmatch(f["to"]):  # §4.3: digits with the country code, no "+"
        return "to"
    if f["iscom"] not in ("Y", "N"):
        return "iscom"
    if len(f.get("climsgid", "")) > 32:  # §4.3: "Up to 32 characters"
        return "climsgid"
    if not test and gsm.invalid_chars(f["txt"]):  # §5.3
        return "txt"
    return None
