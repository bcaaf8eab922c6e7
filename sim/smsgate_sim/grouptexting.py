"""Group Texting per its HTTP SMS API: sending, credit check, keyword check / rent / setup,
buying credits.

Field names in any case, as PHP reads them (``php_form``: a leading space dropped, as in the
document's C# example). Paths with or without the trailing slash. Answers are bare codes in a
text/plain body; HTTP 503 when the client breaks the connection limit ("no more than 2
simultaneous HTTP connections per second"), the request then not processed, and the client's
address blocked for ``block_seconds`` ("To avoid having your IP blocked"): every request from it
gets 503, unprocessed, until the block ends. ``blocks`` records each block.

Send checks, in order: auth (-1), missing field (-10), number not 10 digits (-106), subject or
message (-7), global opt-out (-104), local opt-out (-5), credit (-2).

Keyword and inbox callbacks: the app's answer is checked against the documented reply rules
(200 OK within 60 s; at most 160 characters, some counting 2; only the listed characters) and a
breach recorded on the ``CallbackRecord``'s ``violations``.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass

from .server import (
    Account,
    Answer,
    InboundSim,
    Request,
    SentMessage,
    format_number,
    not_found,
)

SEND = "/api/sending"
CREDITS_CHECK = "/api/credits/check"
CREDITS_BUY = "/api/credits/buy"
KEYWORD_CHECK = "/api/keyword/check"
KEYWORD_RENT = "/api/keyword/rent"
KEYWORD_SETUP = "/api/keyword/setup"

MAX_SUBJECT = 13
MAX_LENGTH = 160
MAX_GROUP = 30
DEFAULT_AUTOREPLY = "Thank you for joining our list."
PRELOADED_TAKEN = frozenset({"PIZZA", "STOP", "HELP", "INFO"})
CARD_TYPES = frozenset({"MC", "Visa", "AX", "DS", "JCB"})
DECLINED_CARDS = frozenset({"4000000000000002"})
CARD_FIELDS = (
    "firstname",
    "lastname",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "type",
    "ccnumber",
    "cccode",
    "expm",
    "expy",
)

ALLOWED_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?()~=+-_\\/@$#&%"
)
DOUBLE_CHARS = frozenset("~@#%+=/\\")
_TEN_DIGITS = re.compile(r"[0-9]{10}")
_GROUP = re.compile(r"[A-Za-z0-9 _-]{1,30}")
_KEYWORD = re.compile(r"[A-Za-z0-9]{1,20}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")

SERVICE_UNAVAILABLE = "Service Unavailable"
# How long an address stays blocked once it broke the connection limit: the document warns of
# the block ("To avoid having your IP blocked") without saying for how long.
BLOCK_SECONDS = 60.0


def weighted_length(text: str) -> int:
    """Group Texting's count: ``~ @ # % + = / \\`` and a line break (CRLF, CR or LF) are 2."""
    n = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\r" and text[i + 1 : i + 2] == "\n":
            n += 2
            i += 2
            continue
        n += 2 if ch in DOUBLE_CHARS or ch in "\r\n" else 1
        i += 1
    return n


def invalid_chars(text: str) -> list[str]:
    return sorted({ch for ch in text if ch not in ALLOWED_CHARS and ch not in "\r\n"})


def message_problem(subject: str, message: str) -> str | None:
    """Why Group Texting answers -7 to a send, or None."""
    if len(subject) > MAX_SUBJECT:
        return f"subject exceeds {MAX_SUBJECT} characters"
    if not message.strip():
        return "empty message"
    if invalid_chars(subject) or invalid_chars(message):
        return "invalid characters"
    if weighted_length(subject) + weighted_length(message) > MAX_LENGTH:
        return f"subject and message exceed {MAX_LENGTH} characters"
    return None


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_declined(f: dict[str, str], today: dt.date | None = None) -> str | None:
    """Why the card is declined, or None. ``f``: lower-cased fields, all present."""
    today = today or dt.date.today()
    number = f["ccnumber"].replace(" ", "").replace("-", "")
    if f["type"] not in CARD_TYPES:
        return "card type"
    if not luhn_ok(number) or number in DECLINED_CARDS:
        return "card number"
    if not re.fullmatch(r"[0-9]{3,4}", f["cccode"]):
        return "security code"
    expm, expy = f["expm"], f["expy"]
    if not (re.fullmatch(r"[0-9]{2}", expm) and re.fullmatch(r"[0-9]{2}", expy)):
        return "expiry format"
    month, year = int(expm), 2000 + int(expy)
    if not 1 <= month <= 12:
        return "expiry month"
    if (year, month) < (today.year, today.month):
        return "card expired"
    return None


@dataclass(frozen=True)
class Block:
    """Group Texting blocked ``address`` (it broke the connection limit) at ``at`` (epoch
    seconds) for ``seconds``."""

    address: str
    at: float
    seconds: float


@dataclass
class KeywordConfig:
    keyword: str
    group: str = ""
    autoreply: str = DEFAULT_AUTOREPLY
    email: str = ""
    url: str = ""


class GroupTextingSim(InboundSim):
    name = "grouptexting"

    def _init_state(self) -> None:
        self.taken_keywords: set[str] = set(PRELOADED_TAKEN)
        self.global_opt_outs: set[str] = set()
        # Rate limit: at most `rate_limit_connections` distinct connections may send requests
        # within any `rate_limit_window` seconds, and as many may have one in flight at once.
        self.rate_limit_enabled = True
        self.rate_limit_connections = 2
        self.rate_limit_window = 1.0
        self._recent: dict[int, float] = {}  # connection id -> when it last sent a request
        self._in_flight: dict[int, int] = {}
        # Breaking the limit blocks the address (0: answer 503 only, no block).
        self.block_seconds = BLOCK_SECONDS
        self.blocks: deque[Block] = deque(maxlen=self.record_limit)
        self._blocked_until: dict[str, float] = {}  # address -> time.monotonic() deadline

    # ------------------------------------------------------------------ test controls

    def global_opt_out(self, number: str) -> None:
        """Opt ``number`` out of everything sent from the long code (answer -104)."""
        with self._lock:
            self.global_opt_outs.add(self._normalise_number(number))

    def take_keyword(self, keyword: str) -> None:
        """Mark a keyword as rented by someone else (check answers 0, rent answers 1)."""
        with self._lock:
            self.taken_keywords.add(keyword.upper())

    def keyword_config(self, keyword: str, user: str | None = None) -> KeywordConfig:
        with self._lock:
            config: KeywordConfig = self.account(user).keywords[keyword.upper()]
            return config

    def blocked(self, address: str = "127.0.0.1") -> bool:
        """Is ``address`` blocked now?"""
        with self._lock:
            return time.monotonic() < self._blocked_until.get(address, 0.0)

    def unblock(self) -> None:
        """End every block now (``blocks`` keeps the record)."""
        with self._lock:
            self._blocked_until.clear()

    # ------------------------------------------------------------------ rate limit

    def _admit(self, req: Request) -> tuple[Answer, str] | None:
        conn = req.connection_id
        with self._lock:
            if self.rate_limit_enabled:
                refused = self._limit(req, time.monotonic())
                if refused is not None:
                    return Answer(503, SERVICE_UNAVAILABLE), refused
            self._in_flight[conn] = self._in_flight.get(conn, 0) + 1
        return None

    def _limit(self, req: Request, now: float) -> str | None:
        """Why the request is refused ("blocked", "rate_limited"), or None to admit it."""
        if now < self._blocked_until.get(req.client, 0.0):
            return "blocked"
        conn = req.connection_id
        recent = self._recent
        for other in [c for c, seen in recent.items() if seen <= now - self.rate_limit_window]:
            del recent[other]
        busy = sum(1 for c, n in self._in_flight.items() if n > 0 and c != conn)
        limit = self.rate_limit_connections
        if (conn not in recent and len(recent) >= limit) or busy >= limit:
            if self.block_seconds > 0:
                self._blocked_until[req.client] = now + self.block_seconds
                self.blocks.append(Block(req.client, time.time(), self.block_seconds))
            return "rate_limited"
        recent[conn] = now
        return None

    def _release(self, req: Request) -> None:
        with self._lock:
            n = self._in_flight.get(req.connection_id, 0) - 1
            if n > 0:
                self._in_flight[req.connection_id] = n
            else:
                self._in_flight.pop(req.connection_id, None)

    # ------------------------------------------------------------------ callbacks

    def _reply_violations(
        self, kind: str, status: int | None, body: str, elapsed: float
    ) -> tuple[str, ...]:
        # Group Texting API, Receiving Keyword Submissions / Receiving Inbox Message Replies:
        # "respond with a 200 OK Status within 60 seconds or it will be abandoned"; the reply
        # (max 160 characters) is sent back as an SMS, so the list of allowed characters and the
        # characters that count two apply to it.
        if kind not in ("keyword", "inbox"):
            return ()
        problems = self._deadline_violations(status, body, elapsed)
        if status is not None and status != 200:
            problems.append(f"HTTP {status}, not 200 OK")
        elif status == 200:
            length = weighted_length(body)
            if length > MAX_LENGTH:
                problems.append(f"reply counts {length} characters, max {MAX_LENGTH}")
            bad = invalid_chars(body)
            if bad:
                problems.append(f"reply has characters outside the allowed list: {bad}")
        return tuple(problems)

    # ------------------------------------------------------------------ routing

    def _process(self, req: Request) -> Answer:
        path = req.path.rstrip("/")
        route = {
            SEND: self._send,
            CREDITS_CHECK: self._credits_check,
            CREDITS_BUY: self._credits_buy,
            KEYWORD_CHECK: self._keyword_check,
            KEYWORD_RENT: self._keyword_rent,
            KEYWORD_SETUP: self._keyword_setup,
        }.get(path)
        if route is None:
            return not_found()
        f = req.lower_fields()
        with self._lock:
            return Answer(body=route(req, f))

    def _account(self, f: dict[str, str]) -> Account | None:
        return self._auth(f.get("user"), f.get("pass"))

    # ------------------------------------------------------------------ operations

    def _send(self, req: Request, f: dict[str, str]) -> str:
        account = self._account(f)
        if account is None:
            return "-1"
        phone, message = f.get("phonenumber"), f.get("message")
        if phone is None or message is None:
            return "-10"
        phone = phone.strip()  # the document's example sends "phonenumber= 2125551234"
        if not _TEN_DIGITS.fullmatch(phone):
            return "-106"
        subject = f.get("subject", "")
        if message_problem(subject, message):
            return "-7"
        if phone in self.global_opt_outs:
            return "-104"
        if phone in account.opt_outs:
            return "-5"
        if account.credit < 1:
            return "-2"
        account.credit -= 1
        self._messages.append(
            SentMessage(account.user, phone, subject, message, False, time.time())
        )
        return "1"

    def _credits_check(self, req: Request, f: dict[str, str]) -> str:
        account = self._account(f)
        if account is None:
            return "-1"
        return format_number(max(account.credit, 0))

    def _keyword_check(self, req: Request, f: dict[str, str]) -> str:
        account = self._account(f)
        if account is None:
            return "-1"
        keyword = f.get("keyword", "").strip()
        if not keyword:
            return "-10"
        if account.min_purchase_declined:
            return "-2"
        if not _KEYWORD.fullmatch(keyword) or keyword.upper() in self.taken_keywords:
            return "0"
        return "1"

    def _card_request(self, req: Request, f: dict[str, str], extra: str) -> str | Account:
        """Common part of buy/rent: a code to answer, or the authenticated account."""
        if req.method != "POST":
            return "-10"
        account = self._account(f)
        if account is None:
            return "-1"
        if any(not f.get(name, "").strip() for name in (*CARD_FIELDS, extra)):
            return "-10"
        return account

    def _credits_buy(self, req: Request, f: dict[str, str]) -> str:
        account = self._card_request(req, f, "credits")
        if isinstance(account, str):
            return account
        credits = f["credits"].strip()
        if not credits.isdigit() or int(credits) <= 0:
            return "-10"
        if card_declined(f):
            return "0"
        account.credit += int(credits)
        account.purchases.append({"kind": "credits", "credits": credits, **_masked_card(f)})
        return "1"

    def _keyword_rent(self, req: Request, f: dict[str, str]) -> str:
        account = self._card_request(req, f, "keyword")
        if isinstance(account, str):
            return account
        keyword = f["keyword"].strip()
        if not _KEYWORD.fullmatch(keyword) or keyword.upper() in self.taken_keywords:
            return "1"
        if card_declined(f):
            return "0"
        self.taken_keywords.add(keyword.upper())
        account.keywords[keyword.upper()] = KeywordConfig(keyword.upper())
        account.purchases.append({"kind": "keyword", "keyword": keyword, **_masked_card(f)})
        return "2"

    def _keyword_setup(self, req: Request, f: dict[str, str]) -> str:
        account = self._account(f)
        if account is None:
            return "-1"
        keyword = f.get("keyword", "").strip().upper()
        config = account.keywords.get(keyword)
        if config is None:
            return "-2"
        group, email, url = f.get("group"), f.get("email"), f.get("url")
        autoreply = f.get("autoreply")
        if group is not None and not _GROUP.fullmatch(group):
            return "-3"
        if email is not None and not _EMAIL.fullmatch(email):
            return "-4"
        if url is not None:
            parsed = urllib.parse.urlsplit(url)
            if parsed.scheme.lower() not in ("http", "https") or not parsed.netloc:
                return "-5"
        if autoreply is not None and (
            not autoreply.strip()
            or invalid_chars(autoreply)
            or weighted_length(autoreply) > MAX_LENGTH
        ):
            return "-7"
        if group is not None:
            config.group = group
        if email is not None:
            config.email = email
        if url is not None:
            config.url = url
        if autoreply is not None:
            config.autoreply = autoreply
        return "1"


def _masked_card(f: dict[str, str]) -> dict[str, str]:
    number = f["ccnumber"].replace(" ", "").replace("-", "")
    return {"type": f["type"], "ccnumber": "*" * (len(number) - 4) + number[-4:]}
