"""The HTTP machinery every provider simulator shares.

One ``ThreadingHTTPServer`` per provider: HTTP/1.1 keep-alive, Nagle off and buffered writes (one
flush per response: CONTRIBUTING.md, Running things), accepted connections counted, every request
recorded, accounts, injected faults and forced answers, and a clock a test can move. Urlencoded
fields are read the way the providers' PHP servers read them (``php_form``). A provider subclass
only implements ``_process(request) -> Answer`` (and ``_init_state`` for its own state).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import itertools
import json
import random
import socket
import struct
import threading
import time
import traceback
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import requests
from requests import Session  # annotations: in ProviderSim, "requests" is a property

DEFAULT_USER = "smsgate"
DEFAULT_PASSWORD = "local-secret"
DEFAULT_CREDIT = 1000

# "sub 60 seconds" (Club Texting API, Receiving SMS Messages, Response To The Server) and "within
# 60 seconds" (Group Texting API, Receiving Inbox Message Replies): the app's answer to a callback.
REPLY_DEADLINE = 60.0

FAULT_MODES = ("slow", "hang", "drop", "reset", "http_500", "http_503", "garbage")
_DEFAULT_DELAY = {"slow": 1.0, "hang": 30.0}

_HTML_500 = (
    "<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>"
    "<body><h1>Internal Server Error</h1><p>The server encountered an internal error and was "
    "unable to complete your request.</p></body></html>\n"
)
_HTML_503 = (
    "<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
    "<body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your "
    "request. Please try again later.</p></body></html>\n"
)
_HTML_GARBAGE = (
    "<html><head><title>Scheduled maintenance</title></head>"
    "<body><p>We&#39;ll be right back.</p></body></html>\n"
)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator received it, and what it answered.

    ``fields`` are the names as the provider's PHP reads them (``php_form``), case kept.
    ``status`` 0 means no answer was sent (``hang``/``drop`` faults); ``body`` then holds the
    answer the provider computed but never sent. ``fault`` names the fault or special path
    that produced the answer (``forced``, ``rate_limited``, ``blocked``, a fault mode) or is
    None. ``client`` is the address the request came from.
    """

    method: str
    path: str
    fields: dict[str, str]
    headers: dict[str, str]
    connection_id: int
    at: float
    status: int
    body: str
    fault: str | None = None
    client: str = ""

    def field(self, name: str, default: str | None = None) -> str | None:
        """A field by name, any case (exact-case match preferred)."""
        if name in self.fields:
            return self.fields[name]
        low = name.lower()
        for key, value in self.fields.items():
            if key.lower() == low:
                return value
        return default


@dataclass(frozen=True)
class CallbackRecord:
    """One call the simulator made to the application (DLR, MO, keyword, inbox).

    ``violations``: the provider's documented rules the app's answer broke (Club Texting and
    Group Texting check their keyword / inbox reply rules), empty when it kept them.
    """

    kind: str
    method: str
    url: str
    payload: dict[str, str]
    status: int | None  # None: no HTTP answer (connection error, timeout)
    body: str
    error: str | None
    at: float
    elapsed: float = 0.0  # seconds until the answer (or the error)
    violations: tuple[str, ...] = ()


@dataclass
class Account:
    user: str
    password: str
    credit: float = DEFAULT_CREDIT
    opt_outs: set[str] = field(default_factory=set)
    # Group Texting: keywords this account rents, upper-cased keyword -> KeywordConfig.
    keywords: dict[str, Any] = field(default_factory=dict)
    # Group Texting: keyword check answers -2 (below the $5.00 minimum purchase).
    min_purchase_declined: bool = False
    # Group Texting: accepted credit purchases and keyword rentals (card data masked).
    purchases: list[dict[str, str]] = field(default_factory=list)
    # TextingHouse: the "IP lock" (TextingHouse API §4.1); None: any address may use the account.
    allowed_ips: set[str] | None = None


@dataclass
class Fault:
    mode: str
    rate: float = 1.0
    delay: float = 0.0
    count: int | None = None
    fired: int = 0


@dataclass
class Answer:
    status: int = 200
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"


@dataclass
class Request:
    """What a provider's ``_process`` sees."""

    method: str
    path: str  # without the query string
    query_form: dict[str, str]  # query string + urlencoded body, original key case
    json: dict[str, str]  # fields of a JSON object body, original key case
    headers: dict[str, str]
    connection_id: int
    at: float
    client: str = ""  # the client's IP address

    @property
    def fields(self) -> dict[str, str]:
        return {**self.query_form, **self.json}

    def lower_fields(self, *, include_json: bool = False) -> dict[str, str]:
        """Field names folded to lower case (a later duplicate wins, as in PHP)."""
        source = self.fields if include_json else self.query_form
        return {k.lower(): v for k, v in source.items()}


# --------------------------------------------------------------------------- helpers


def format_number(value: float) -> str:
    """998 -> '998', 12.5 -> '12.5' (never exponent notation)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def digits_only(number: str) -> str:
    return "".join(ch for ch in str(number) if ch.isdigit())


def php_name(name: str) -> str:
    """A parameter name as PHP registers it in ``$_GET``/``$_POST``: leading spaces dropped,
    other spaces and dots turned into underscores (" phonenumber" -> "phonenumber", "a.b" ->
    "a_b"). Only a space is dropped, not a line break or a tab. PHP's ``name[]`` arrays are left
    out: no document uses them."""
    return name.lstrip(" ").replace(" ", "_").replace(".", "_")


def php_form(text: str) -> dict[str, str]:
    """An urlencoded query string or body as the providers' PHP reads it: pairs split on "&"
    and the first "=", both sides url-decoded ("+" is a space), names as ``php_name`` (a name
    left empty is dropped), values untouched, spaces kept; a later duplicate wins and a name
    without "=" has the value ""."""
    fields: dict[str, str] = {}
    pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")
    for name, value in pairs:
        key = php_name(name)
        if key:
            fields[key] = value
    return fields


def _parse_fields(
    query: str, body: bytes, content_type: str
) -> tuple[dict[str, str], dict[str, str]]:
    query_form = php_form(query)
    json_fields: dict[str, str] = {}
    ctype = content_type.split(";", 1)[0].strip().lower()
    if body:
        if ctype in ("", "application/x-www-form-urlencoded"):
            query_form.update(php_form(body.decode("utf-8", "replace")))
        elif ctype == "application/json" or ctype.endswith("+json"):
            try:
                data = json.loads(body.decode("utf-8", "replace"))
            except ValueError:
                data = None
            if isinstance(data, dict):
                for key, value in data.items():
                    json_fields[str(key)] = value if isinstance(value, str) else json.dumps(value)
    return query_form, json_fields


# --------------------------------------------------------------------------- HTTP layer


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.sim.idle_timeout  # type: ignore[misc]
        super().setup()
        self.connection_id = self.server.connection_id(self.request)

    def handle(self) -> None:
        """Serve requests on this connection; a ``reset`` fault also hits a kept-alive
        connection, when its next request starts arriving (before reading any of it)."""
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            try:
                if not self.rfile.peek(1):  # type: ignore[attr-defined]
                    return  # the client closed the connection
            except (TimeoutError, OSError):
                return
            if self.server.sim._pick_fault(connect=True) is not None:
                with contextlib.suppress(OSError):
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                # Drop the file objects' references first, so close() really closes (RST).
                self.rfile.close()
                with contextlib.suppress(OSError):
                    self.wfile.close()
                self.connection.close()
                return
            self.handle_one_request()

    def version_string(self) -> str:
        return "Apache"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a test tool logs nothing (no credentials, no phone numbers)."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """An unreadable request (400, 414...): the standard reason phrase and page, as Apache,
        never the request line echoed back (it may hold a query string's credentials)."""
        super().send_error(code, None, explain)

    def handle_expect_100(self) -> bool:
        """Send "100 Continue" at once: the documents' C# examples (.NET WebRequest) send
        ``Expect: 100-continue`` and wait for it before the body; writes are buffered."""
        accepted = super().handle_expect_100()
        self.wfile.flush()
        return accepted

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        n = int(length)
        if n < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(n)

    def _dispatch(self) -> None:
        sim = self.server.sim
        at = time.time()
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._write(Answer(400, "Bad Request"))
            return
        split = urllib.parse.urlsplit(self.path)
        query_form, json_fields = _parse_fields(
            split.query, body, self.headers.get("Content-Type", "")
        )
        req = Request(
            method=self.command,
            path=split.path,
            query_form=query_form,
            json=json_fields,
            headers=dict(self.headers.items()),
            connection_id=self.connection_id,
            at=at,
            client=str(self.client_address[0]),
        )
        answer, linger = sim._serve(req)
        if answer is None:  # hang / drop: no answer, close the connection
            if linger:
                sim._sleep(linger)
            self.close_connection = True
            return
        self._write(answer)

    def _write(self, answer: Answer) -> None:
        payload = answer.body.encode("utf-8")
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


def _reset(sock: socket.socket) -> None:
    """Close at once with an RST (SO_LINGER 0), reading nothing."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def unused_url(host: str = "127.0.0.1") -> str:
    """A URL nothing listens on (connection refused: a failure before any request is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    return f"http://{host}:{port}"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: ProviderSim) -> None:
        self.sim = sim
        self._ids: dict[socket.socket, int] = {}
        self._ids_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        conn_id = self.sim._accept()
        if conn_id is None:  # `reset` fault: close before reading anything, with an RST
            _reset(request)
            return
        with self._ids_lock:
            self._ids[request] = conn_id
        self.sim._opened()
        super().process_request(request, client_address)

    def connection_id(self, request: socket.socket) -> int:
        with self._ids_lock:
            return self._ids.get(request, 0)

    def shutdown_request(self, request: Any) -> None:
        with self._ids_lock:
            known = self._ids.pop(request, None) is not None
        if known:
            self.sim._closed()
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self._ids_lock:
            socks = list(self._ids)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.sim._note_error(traceback.format_exc())


# --------------------------------------------------------------------------- the simulator


class ProviderSim:
    """Base of the three provider simulators."""

    name = "provider"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        user: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        credit: float = DEFAULT_CREDIT,
        seed: int = 0,
        idle_timeout: float = 60.0,
        callback_timeout: float = 60.0,
        record_limit: int | None = None,
    ) -> None:
        self.host = host
        self.record_limit = record_limit
        self.port = port
        self.idle_timeout = idle_timeout
        self.callback_timeout = callback_timeout
        self._default_account = (user, password, credit)
        self._seed = seed
        self._lock = threading.RLock()
        self._conn_seq = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._generation = 0
        self._inject_session = self._new_session()
        self._reset_common()
        self._init_state()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ProviderSim:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sim-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._wake.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._inject_session.close()

    def reset(self) -> None:
        """Back to the defaults: requests, connections, accounts, state, faults."""
        with self._lock:
            self._wake.set()  # wake any hanging handler of the previous test
            self._wake = threading.Event()
            self._generation += 1
            self._reset_common()
            self._init_state()

    def _reset_common(self) -> None:
        # Bounded when record_limit is set (a long-running local stack): oldest dropped first.
        self._requests: deque[RecordedRequest] = deque(maxlen=self.record_limit)
        self._callbacks: deque[CallbackRecord] = deque(maxlen=self.record_limit)
        self._connections = 0
        # Simultaneous TCP connections and requests, now and at their peak since the reset.
        self._open_now = getattr(self, "_open_now", 0)
        self.peak_connections = self._open_now
        self._in_flight_now = 0
        self.peak_in_flight = 0
        self.latency = 0.0  # seconds added to every answer (benchmarks: a provider's latency)
        self._clock_offset = 0.0  # the provider's clock: real time until a test moves it
        self._faults: list[Fault] = []
        self._forced: list[list[Any]] = []
        self._rng = random.Random(self._seed)
        user, password, credit = self._default_account
        self.default_user = user
        self._accounts: dict[str, Account] = {user: Account(user, password, credit)}
        self.errors: list[str] = []

    def _init_state(self) -> None:
        """Provider state (subclasses)."""

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ the provider's clock

    def now(self) -> float:
        """The provider's time, epoch seconds: real time, or from where ``set_clock`` /
        ``advance_clock`` put it (it runs on from there). ``reset()`` puts it back."""
        return time.time() + self._clock_offset

    def now_utc(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now(), dt.UTC)

    def set_clock(self, moment: dt.datetime | float) -> None:
        """Move the provider's clock to ``moment`` (an aware datetime or epoch seconds)."""
        if isinstance(moment, dt.datetime):
            if moment.tzinfo is None:
                raise ValueError("set_clock needs an aware datetime (e.g. tzinfo=UTC)")
            at = moment.timestamp()
        else:
            at = float(moment)
        with self._lock:
            self._clock_offset = at - time.time()
        self._clock_changed()

    def advance_clock(self, seconds: float) -> None:
        with self._lock:
            self._clock_offset += seconds
        self._clock_changed()

    def _clock_changed(self) -> None:
        """Called after a test moved the clock (subclasses: act on what is now due)."""

    # ------------------------------------------------------------------ observation

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if r.path.startswith(path_prefix)]

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def callbacks(self) -> list[CallbackRecord]:
        with self._lock:
            return list(self._callbacks)

    def wait_for_callbacks(self, count: int, timeout: float = 5.0) -> list[CallbackRecord]:
        """Wait until at least ``count`` callbacks were made; returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.callbacks
            if len(records) >= count or time.monotonic() >= deadline:
                return records
            time.sleep(0.005)

    # ------------------------------------------------------------------ accounts

    def add_account(
        self, user: str, password: str, credit: float = DEFAULT_CREDIT, **attrs: Any
    ) -> Account:
        account = Account(user, password, credit, **attrs)
        with self._lock:
            self._accounts[user] = account
        return account

    def account(self, user: str | None = None) -> Account:
        with self._lock:
            return self._accounts[user or self.default_user]

    def opt_out(self, number: str, user: str | None = None) -> None:
        """Put ``number`` on the account's local opt-out list (default account)."""
        with self._lock:
            self.account(user).opt_outs.add(self._normalise_number(number))

    def _normalise_number(self, number: str) -> str:
        return digits_only(number)

    def _auth(self, user: str | None, password: str | None) -> Account | None:
        if user is None or password is None:
            return None
        account = self._accounts.get(user)
        if account is None or account.password != password:
            return None
        return account

    # ------------------------------------------------------------------ faults

    def set_fault(
        self,
        mode: str,
        rate: float = 1.0,
        delay: float | None = None,
        count: int | None = None,
    ) -> Fault:
        """Inject a fault. ``delay`` defaults to 1 s for ``slow`` and 30 s for ``hang``.

        Several faults may be active (one per mode; setting a mode again replaces it); the
        first in insertion order that fires takes the request.
        """
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {FAULT_MODES}")
        if delay is None:
            delay = _DEFAULT_DELAY.get(mode, 0.0)
        fault = Fault(mode, rate, delay, count)
        with self._lock:
            self._faults = [f for f in self._faults if f.mode != mode] + [fault]
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = []
            self._forced = []

    def force_answer(
        self, body: str, status: int = 200, times: int = 1, path: str | None = None
    ) -> None:
        """The next ``times`` requests (to paths starting with ``path``, when given) get exactly
        this answer, unprocessed."""
        with self._lock:
            self._forced.append([body, status, times, path])

    def _pick_fault(self, connect: bool) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if (fault.mode == "reset") != connect:
                    continue
                if fault.count is not None and fault.fired >= fault.count:
                    continue
                if fault.rate >= 1.0 or self._rng.random() < fault.rate:
                    fault.fired += 1
                    return fault
        return None

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)

    # ------------------------------------------------------------------ serving

    def _accept(self) -> int | None:
        with self._lock:
            self._connections += 1
            conn_id = next(self._conn_seq)
        if self._pick_fault(connect=True) is not None:
            return None
        return conn_id

    def _opened(self) -> None:
        with self._lock:
            self._open_now += 1
            self.peak_connections = max(self.peak_connections, self._open_now)

    def _closed(self) -> None:
        with self._lock:
            self._open_now = max(0, self._open_now - 1)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return self._open_now

    def _serve(self, req: Request) -> tuple[Answer | None, float]:
        """Answer one request: (the answer, or None to close unanswered; seconds to hang)."""
        with self._lock:
            self._in_flight_now += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight_now)
            latency = self.latency
        try:
            if latency:
                self._sleep(latency)
            return self._serve_now(req)
        finally:
            with self._lock:
                self._in_flight_now -= 1

    def _serve_now(self, req: Request) -> tuple[Answer | None, float]:
        with self._lock:
            forced = next(
                (f for f in self._forced if f[3] is None or req.path.startswith(f[3])), None
            )
            if forced is not None:
                forced[2] -= 1
                if forced[2] <= 0:
                    self._forced.remove(forced)
        if forced is not None:
            answer = Answer(int(forced[1]), str(forced[0]))
            self._record(req, answer.status, answer.body, "forced")
            return answer, 0.0

        refused = self._admit(req)
        if refused is not None:
            limited, why = refused
            self._record(req, limited.status, limited.body, why)
            return limited, 0.0
        try:
            fault = self._pick_fault(connect=False)
            mode = fault.mode if fault else None
            if mode in ("http_500", "http_503", "garbage"):
                answer = {
                    "http_500": Answer(500, _HTML_500, "text/html; charset=iso-8859-1"),
                    "http_503": Answer(503, _HTML_503, "text/html; charset=iso-8859-1"),
                    "garbage": Answer(200, _HTML_GARBAGE, "text/html; charset=UTF-8"),
                }[mode]
                self._record(req, answer.status, answer.body, mode)
                return answer, 0.0
            if fault is not None and mode == "slow":
                self._sleep(fault.delay)
            answer = self._process_safely(req)
            if fault is not None and mode in ("hang", "drop"):
                self._record(req, 0, answer.body, mode)
                return None, fault.delay if mode == "hang" else 0.0
            self._record(req, answer.status, answer.body, mode)
            return answer, 0.0
        finally:
            self._release(req)

    def _process_safely(self, req: Request) -> Answer:
        try:
            return self._process(req)
        except Exception:
            self._note_error(traceback.format_exc())
            return Answer(500, _HTML_500, "text/html; charset=iso-8859-1")

    def _admit(self, req: Request) -> tuple[Answer, str] | None:
        """Rate limiting hook: (an answer refusing the request unprocessed, the name recorded as
        its ``fault``), or None to admit it."""
        return None

    def _release(self, req: Request) -> None:
        """Called once an admitted request is answered (or failed)."""

    def _process(self, req: Request) -> Answer:
        return Answer(404, "Not Found")

    def _record(self, req: Request, status: int, body: str, fault: str | None) -> None:
        record = RecordedRequest(
            method=req.method,
            path=req.path,
            fields=req.fields,
            headers=req.headers,
            connection_id=req.connection_id,
            at=req.at,
            status=status,
            body=body,
            fault=fault,
            client=req.client,
        )
        with self._lock:
            self._requests.append(record)

    def _note_error(self, text: str) -> None:
        with self._lock:
            if len(self.errors) < 100:
                self.errors.append(text)

    # ------------------------------------------------------------------ calling the app

    @staticmethod
    def _new_session() -> Session:
        session = requests.Session()
        session.trust_env = False  # never route the app's local URLs through a proxy
        return session

    def _call_app(
        self,
        kind: str,
        url: str | None,
        *,
        method: str = "GET",
        params: dict[str, str] | None = None,
        json_body: dict[str, str] | None = None,
        session: Session | None = None,
        generation: int | None = None,
    ) -> tuple[int | None, str]:
        """Make one callback; record and return (HTTP status or None, body or error text)."""
        if not url:
            raise RuntimeError(f"{self.name}: no URL configured for {kind} callbacks")
        session = session or self._inject_session
        payload = dict(params or json_body or {})
        status: int | None = None
        body = ""
        error = None
        started = time.monotonic()
        try:
            if json_body is not None:
                resp = session.request(method, url, json=json_body, timeout=self.callback_timeout)
            else:
                # Spaces as %20, like the providers' documents' example requests.
                query = urllib.parse.urlencode(payload, quote_via=urllib.parse.quote)
                sep = "&" if urllib.parse.urlsplit(url).query else "?"
                resp = session.request(
                    method, f"{url}{sep}{query}" if query else url, timeout=self.callback_timeout
                )
            status, body = resp.status_code, resp.text
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
            body = error
        elapsed = time.monotonic() - started
        violations = self._reply_violations(kind, status, body, elapsed)
        record = CallbackRecord(
            kind, method, url, payload, status, body, error, time.time(), elapsed, violations
        )
        with self._lock:
            if generation is None or generation == self._generation:
                self._callbacks.append(record)
        return status, body

    def _reply_violations(
        self, kind: str, status: int | None, body: str, elapsed: float
    ) -> tuple[str, ...]:
        """The provider's documented rules the app's answer to a callback broke (subclasses)."""
        return ()


_HTML_404 = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head><title>404 Not Found'
    "</title></head><body><h1>Not Found</h1><p>The requested URL was not found on this "
    "server.</p></body></html>\n"
)


def not_found() -> Answer:
    return Answer(404, _HTML_404, "text/html; charset=iso-8859-1")


@dataclass(frozen=True)
class SentMessage:
    """A message a Club Texting / Group Texting simulator accepted (answered 1)."""

    user: str
    phonenumber: str
    subject: str
    message: str
    express: bool
    at: float


class InboundSim(ProviderSim):
    """Club Texting / Group Texting: keyword submissions and inbox replies, pushed by GET."""

    def __init__(
        self,
        *args: Any,
        keyword_url: str | None = None,
        inbox_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._default_urls = (keyword_url, inbox_url)
        super().__init__(*args, **kwargs)

    def _reset_common(self) -> None:
        super()._reset_common()
        self.keyword_url, self.inbox_url = self._default_urls
        self._messages: deque[SentMessage] = deque(maxlen=self.record_limit)
        # The documents' limit for the app's answer; a test may shorten it.
        self.reply_deadline = REPLY_DEADLINE

    def _deadline_violations(self, status: int | None, body: str, elapsed: float) -> list[str]:
        """An answer that never came, or came too late, is abandoned by the provider."""
        if status is None:
            return [f"no answer: abandoned ({body})"]
        if elapsed >= self.reply_deadline:
            return [f"answered after {elapsed:.2f} s, not within {self.reply_deadline:g} s"]
        return []

    @property
    def messages(self) -> list[SentMessage]:
        with self._lock:
            return list(self._messages)

    def _normalise_number(self, number: str) -> str:
        digits = digits_only(number)
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        return digits

    def inject_keyword(
        self, phone: str = "5554443333", message: str = "PIZZA"
    ) -> tuple[int | None, str]:
        """A keyword submission: GET keyword_url?PhoneNumber=..&Message=..; (status, body)."""
        return self._call_app(
            "keyword", self.keyword_url, params={"PhoneNumber": phone, "Message": message}
        )

    def inject_inbox(
        self, from_: str = "5554443333", message: str = "hi", key_case: str = "lower"
    ) -> tuple[int | None, str]:
        """An inbox reply: GET inbox_url?from=..&message=.. (``key_case="title"``: From/Message)."""
        if key_case not in ("lower", "title"):
            raise ValueError("key_case is 'lower' or 'title'")
        keys = ("from", "message") if key_case == "lower" else ("From", "Message")
        return self._call_app("inbox", self.inbox_url, params={keys[0]: from_, keys[1]: message})
