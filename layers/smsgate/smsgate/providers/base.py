"""The contract every provider client keeps: validate, send, classify the answer into one Outcome.

A provider module supplies its rules and its request (`check`, which returns the request fields as
`Prepared`) and its codes (`parse_send`, over a small table of `Answer`s); this module owns the
HTTP connection and the outcome classes, so the never-twice / never-lost logic upstream can treat
every provider alike.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from ..status import Status

CONNECT_TIMEOUT = 3.05  # seconds to open the TCP (and TLS) connection
READ_TIMEOUT = 10.0  # seconds to wait for an answer once the request is out


class OutcomeKind(StrEnum):
    SENT = "sent"  # the provider accepted the message
    REJECTED = "rejected"  # definite refusal: never retried
    RETRYABLE = "retryable"  # nothing was sent, or the provider asked us to come back: retry later
    UNKNOWN = "unknown"  # the request went out and no usable answer came back: never resend blindly


class Category(StrEnum):
    ACCEPTED = "accepted"
    INVALID = "invalid"  # message, number or parameters the provider refused
    OPT_OUT = "opt_out"  # the recipient opted out (record it)
    AUTH = "auth"  # credentials refused: retried and alarmed
    CREDIT = "credit"  # account out of credit: retried and alarmed
    RATE_LIMIT = "rate_limit"
    FLOOD = "flood"
    PROVIDER_ERROR = "provider_error"  # the provider's own "unknown error"
    NETWORK = "network"  # the connection failed before the request was sent
    NO_ANSWER = "no_answer"  # request sent, answer missing, cut or unreadable


@dataclass(frozen=True)
class Answer:
    """One row of a provider's code table: what a documented answer means to smsgate."""

    kind: OutcomeKind
    category: Category
    reason: str
    retry_after: int = 0  # minimum seconds before a retry may succeed
    # A definite "not sent" that may pass on a later try: retried, and once the retries are
    # spent the message ends `failed` with this code (not left in a dead-letter queue).
    fail_when_spent: bool = False


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    category: Category
    code: str  # the provider's code as text ("1", "-5", "350", "http_503"), or smsgate's own
    reason: str
    provider_message_id: str | None = None
    retry_after: int = 0
    fail_when_spent: bool = False

    @property
    def opt_out(self) -> bool:
        return self.category is Category.OPT_OUT

    @classmethod
    def from_answer(
        cls, code: str, answer: Answer, provider_message_id: str | None = None
    ) -> Outcome:
        return cls(
            answer.kind,
            answer.category,
            code,
            answer.reason,
            provider_message_id,
            answer.retry_after,
            answer.fail_when_spent,
        )


@dataclass(frozen=True)
class OutboundSms:
    """One message as the provider layer sees it (already parsed from the queue body)."""

    id: str
    to: str = field(repr=False)  # E.164, or the provider's own free test number
    text: str = field(repr=False)
    subject: str = field(default="", repr=False)
    express: bool = False
    commercial: bool = False
    sender: str | None = None


@dataclass(frozen=True)
class Prepared:
    """A message that passed the provider's rules: its request fields and billed parts."""

    fields: dict[str, str] = field(repr=False)
    segments: int = 1


class RuleViolation(ValueError):
    """A message breaks one of the provider's documented rules; it is never sent.

    The text names the rule and the measured figure, never the message text or the number.
    """

    def __init__(self, provider: str, rule: str, detail: str) -> None:
        super().__init__(f"{provider}: {rule}: {detail}")
        self.provider, self.rule, self.detail = provider, rule, detail


class ProviderError(Exception):
    """An account operation (credit, keyword, purchase) the provider refused or did not answer."""

    def __init__(self, provider: str, code: str, reason: str, kind: OutcomeKind) -> None:
        super().__init__(f"{provider}: {reason} (code {code})")
        self.provider, self.code, self.reason, self.kind = provider, code, reason, kind


class ConnectFailed(Exception):
    """No connection could be opened: the request was never sent, so a retry is safe."""


class NoAnswer(Exception):
    """The request was (or may have been) sent, but no answer came back."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)


class Transport:
    """One kept-alive HTTP connection to one provider, reused across calls and warm invocations.

    urllib3 may retry a *connect* failure once (nothing was sent); it never retries once the
    request may have left, because a second send could text the recipient twice.
    """

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        # requests is imported with the first client, not with the package: the callbacks
        # and the event publisher read provider rules but never open a provider connection.
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        retry = Retry(
            total=1, connect=1, read=0, status=0, other=0, redirect=0, raise_on_status=False
        )
        self.session = requests.Session()
        # The environment's proxy and CA settings are read once here, not on every request
        # (requests looks them up per request when `trust_env` is on: a measurable share of
        # a send's CPU).
        self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        self.session.verify = _ca_bundle() or True
        self.session.trust_env = False
        # One connection per provider: a provider may rate-limit parallel connections.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def request(
        self, method: str, path: str, fields: Mapping[str, str], *, json_body: bool = False
    ) -> Reply:
        import requests

        url = self.base_url + path
        kwargs: dict[str, object] = {"timeout": self.timeout, "allow_redirects": False}
        if method == "GET":
            kwargs["params"] = dict(fields)
        else:
            kwargs["json" if json_body else "data"] = dict(fields)
        try:
            response = self.session.request(method, url, **kwargs)  # type: ignore[arg-type]
        except requests.exceptions.ConnectTimeout:
            raise ConnectFailed("timed out opening the connection") from None
        except requests.exceptions.ReadTimeout:
            raise NoAnswer(f"no answer within {self.timeout[1]:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            if _failed_before_sending(exc):
                raise ConnectFailed("connection refused or unreachable") from None
            raise NoAnswer("connection closed before an answer came") from None
        except requests.exceptions.RequestException as exc:
            raise NoAnswer(f"unreadable answer ({type(exc).__name__})") from None
        return Reply(response.status_code, response.text, response.headers)

    def close(self) -> None:
        self.session.close()


def _ca_bundle() -> str | None:
    """The CA bundle the environment names, as requests itself would read it."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def _failed_before_sending(exc: BaseException) -> bool:
    """True when urllib3 never got a connection up (so the request did not leave)."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NewConnectionError | ConnectTimeoutError):
            return True
        current = (
            getattr(current, "reason", None)
            or current.__context__
            or (
                current.args[0]
                if current.args and isinstance(current.args[0], BaseException)
                else None
            )
        )
    return False


# The bare-code providers' documents: "Any negative codes represent unsuccessful attempts to send
# messages" — a code their tables do not list is still a definite refusal, maybe transient.
UNLISTED_NEGATIVE = Answer(
    OutcomeKind.RETRYABLE,
    Category.PROVIDER_ERROR,
    "refused with a code the provider does not document (not sent)",
    30,
    fail_when_spent=True,
)


def negative_code(body: str) -> str | None:
    """The body when it is a bare negative integer (`-3`, `-42`), else None."""
    code = body.strip()
    return code if code[:1] == "-" and code[1:].isdigit() and len(code) <= 8 else None


def bare_code_answer(body: str, codes: Mapping[str, Answer]) -> Outcome:
    """The outcome of an answer that is a bare code (the bare-code providers): its row of
    `codes`; else an unlisted negative code, a refusal; else unreadable (never kept: an
    undocumented body may echo anything)."""
    code = body.strip()
    if code in codes:
        return Outcome.from_answer(code, codes[code])
    unlisted = negative_code(code)
    if unlisted is not None:
        return Outcome.from_answer(unlisted, UNLISTED_NEGATIVE)
    return Outcome.from_answer("unreadable", UNREADABLE)


# Answers every provider can give through HTTP itself, before its own codes apply.
RATE_LIMITED = Answer(
    OutcomeKind.RETRYABLE, Category.RATE_LIMIT, "provider is rate limiting (HTTP 503)", 2
)
HTTP_REFUSED = Answer(
    OutcomeKind.RETRYABLE,
    Category.PROVIDER_ERROR,
    "provider refused the request at the HTTP level (check the provider URL)",
    30,
)
HTTP_ERROR = Answer(
    OutcomeKind.UNKNOWN, Category.NO_ANSWER, "provider answered with an HTTP server error"
)
UNREADABLE = Answer(
    OutcomeKind.UNKNOWN, Category.NO_ANSWER, "provider's answer is not one it documents"
)


def http_answer(reply: Reply) -> tuple[str, Answer] | None:
    """Classify a non-200 reply: 429/503 mean "not processed, come back"; other 4xx mean the
    request was refused before processing; a 5xx may have been processed, so it is unknown."""
    if reply.status == 200:
        return None
    code = f"http_{reply.status}"
    if reply.status in (429, 503):
        return code, RATE_LIMITED
    if 400 <= reply.status < 500:
        return code, HTTP_REFUSED
    return code, HTTP_ERROR


@dataclass(frozen=True)
class CallbackRoute:
    """One URL a provider calls back: what the provider's dashboard calls it, the method, and
    the path under the callback API (`{token}` the callback token)."""

    purpose: str
    method: str
    path: str


@dataclass(frozen=True)
class StatusLookup:
    """A status lookup's answer: `found` False means the provider does not know the id."""

    found: bool
    code: str
    status: Status | None = None
    reason: str = ""


class ProviderClient(ABC):
    """One provider: its rules, its request, its answers. Subclasses hold no other state."""

    name: ClassVar[str]
    display_name: ClassVar[str]  # as people write it (alarms, dashboards, docs)
    send_method: ClassVar[str] = "POST"
    send_path: ClassVar[str]
    has_balance: ClassVar[bool] = False
    has_status: ClassVar[bool] = False
    # Simultaneous connections the provider allows for the whole account (None: no limit
    # documented). A limited provider is reached only through the shared connection budget.
    max_connections: ClassVar[int | None] = None
    # Seconds the provider refuses the same text to the same number again (0: no such rule).
    same_text_interval: ClassVar[int] = 0
    # The provider's production base URL (a stack parameter overrides it).
    default_url: ClassVar[str]
    # The callback URLs the provider is given (served by the package's `routes` module).
    callbacks: ClassVar[tuple[CallbackRoute, ...]] = ()
    # A number the provider takes as a free test (not E.164), or None.
    test_number: ClassVar[str | None] = None
    # The provider's document only lets commercial messages out in its windows (recipient's
    # local time): smsgate holds them until then. `home_zone` places numbers that carry no
    # zone of their own (the test number).
    holds_commercial: ClassVar[bool] = False
    home_zone: ClassVar[tuple[str, str]] = ("UTC", "US")  # (time zone, holiday region)

    def __init__(self, base_url: str, user: str, password: str, transport: Transport | None = None):
        self.transport = transport or Transport(base_url)
        self._credentials = {"user": user, "pass": password}

    def __repr__(self) -> str:  # never the credentials
        return f"{type(self).__name__}({self.transport.base_url!r})"

    @abstractmethod
    def check(self, sms: OutboundSms) -> Prepared:
        """Validate `sms` by this provider's rules; raise RuleViolation naming the rule."""

    @abstractmethod
    def parse_send(self, reply: Reply) -> Outcome:
        """Turn the provider's answer to a send into an Outcome (its code table)."""

    def status(self, *, api_id: str | None = None, climsgid: str | None = None) -> StatusLookup:
        """The provider's status of a message, by its id or ours (`has_status` providers)."""
        raise NotImplementedError(f"{self.name} has no status lookup")

    def send(self, sms: OutboundSms, prepared: Prepared | None = None) -> Outcome:
        """Send once. Never raises for the provider's or the network's faults: every way it can
        end is an Outcome (RuleViolation is raised before any request is made)."""
        prepared = prepared or self.check(sms)
        try:
            reply = self.call(self.send_method, self.send_path, prepared.fields)
        except ConnectFailed as exc:
            return Outcome(
                OutcomeKind.RETRYABLE, Category.NETWORK, "connect_failed", str(exc), retry_after=5
            )
        except NoAnswer as exc:
            return Outcome(OutcomeKind.UNKNOWN, Category.NO_ANSWER, "no_answer", str(exc))
        http = http_answer(reply)
        if http is not None:
            return Outcome.from_answer(*http)
        return self.parse_send(reply)

    def call(self, method: str, path: str, fields: Mapping[str, str]) -> Reply:
        return self.transport.request(method, path, {**self._credentials, **fields})

    def account_call(self, method: str, path: str, fields: Mapping[str, str]) -> Reply:
        """An account operation: transport and HTTP failures become ProviderError."""
        try:
            reply = self.call(method, path, fields)
        except ConnectFailed as exc:
            raise ProviderError(
                self.name, "connect_failed", str(exc), OutcomeKind.RETRYABLE
            ) from None
        except NoAnswer as exc:
            raise ProviderError(self.name, "no_answer", str(exc), OutcomeKind.UNKNOWN) from None
        http = http_answer(reply)
        if http is not None:
            code, answer = http
            raise ProviderError(self.name, code, answer.reason, answer.kind)
        return reply

    def balance(self) -> float:
        raise NotImplementedError(f"{self.name} has no balance API in its document")
