"""Recipient velocity and spend caps on the send path (the rules: `protection`; the story:
docs/protection.md).

A batch reads its recipients' and providers' counters with its opt-outs (`Guard`). Each message
then takes its place in them before its provider request, under the guard's lock, and gives it
back when nothing was sent. A number's first message in the batch, when the batch read none for
it in the window, is counted in its own `sent` (or `unknown`) transaction; any other takes its
place in the recipient's item with a conditional write first, so concurrent senders cannot pass
a limit with it. The spend and the per-country counts of a batch are added once, after it
(`flush_protection`)."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..observability import count, gauge, logger
from ..protection import (
    BUDGET_EXHAUSTED,
    TOTAL,
    VELOCITY_EXCEEDED,
    WARN_AT,
    BudgetView,
    Counts,
    Exceeded,
    velocity_exceeded,
)
from ..providers import PROVIDERS, is_test_number
from ..routing import region_of
from ..sending import Option, Result, Sending
from ..store.counters import CounterItems, Counters
from .base import MAX_QUEUE_DELAY
from .holds import Holds

# Without a budget the month's spend is only a figure (`smsgate spend`): written at most this
# often. With one it is written after every batch, so every sender decides on it.
SPEND_WRITE_EVERY_SECONDS = 10


@dataclass
class Guard:
    """One batch's view of the counters, and what its messages have taken since."""

    items: CounterItems
    read_spend: bool = False  # the batch read the providers' month (a lane batch with a budget)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    recipients: Counter[str] = field(default_factory=Counter)
    # the batch's messages per recipient number
    planned: Counter[str] = field(default_factory=Counter)
    countries: Counter[str] = field(default_factory=Counter)
    spend: defaultdict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    messages: Counter[str] = field(default_factory=Counter)

    def counts(self, phone: str, region: str | None) -> Counts:
        hour, day = self.items.recipient(phone)
        taken = self.recipients[phone]
        country = self.items.country(region) + self.countries[region or ""]
        return Counts(hour + taken, day + taken, country)

    def budget(self, caps: Mapping[str, float]) -> BudgetView:
        return BudgetView(caps, with_added(self.items.spend, self.spend))


def with_added(read: Mapping[str, float], added: Mapping[str, Decimal]) -> dict[str, float]:
    """Each provider's month as read, plus what this process added since."""
    spent = dict(read)
    for provider, amount in added.items():
        spent[provider] = spent.get(provider, 0.0) + float(amount)
    return spent


@dataclass
class _Ledger:
    """Spend and per-country counts taken by this process and not yet written."""

    spend: defaultdict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    messages: Counter[str] = field(default_factory=Counter)
    countries: Counter[str] = field(default_factory=Counter)
    written_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Protect(Holds):
    """Velocity and budgets, checked before the request and counted after it."""

    _ledger: _Ledger | None = None

    @property
    def ledger(self) -> _Ledger:
        if self._ledger is None:
            self._ledger = _Ledger()
        return self._ledger

    # --- the batch's read ---------------------------------------------------------------------

    def _wanted(self, numbers: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
        """The recipients, countries and providers whose counters messages to `numbers` are
        decided on (none for what the routing document does not limit)."""
        config = self.router.config()
        velocity = config.velocity
        numbers = [n for n in numbers if not is_test_number(n)]
        phones = numbers if velocity.per_hour or velocity.per_day else []
        countries: list[str] = []
        if velocity.per_country_hour:
            countries = sorted({r for n in numbers if (r := region_of(n))})
        # every provider's month: one removed from the secret mid-month still spent its part
        providers = sorted(PROVIDERS) if config.monthly_budgets else []
        return phones, countries, providers

    def guard_keys(self, numbers: Iterable[str], now: datetime) -> list[dict[str, Any]]:
        """The counters a batch to `numbers` reads (with its opt-outs)."""
        if self.counters is None:
            return []
        return self.counters.keys(*self._wanted(numbers), now)

    def new_guard(
        self, items: Iterable[Mapping[str, Any]], now: datetime, read_spend: bool = False
    ) -> Guard:
        return Guard(Counters.read(items, now), read_spend)

    def guard_for(self, to: str) -> Guard:
        """A guard for one message outside a batch (its counters read on their own)."""
        now = self.clock()
        if self.counters is None:
            return Guard(CounterItems({}, {}, {}))
        phones, countries, providers = self._wanted([to])
        items = self.counters.load(phones, countries, providers, now)
        return Guard(items, bool(providers), planned=Counter([to]))

    # --- before the request -------------------------------------------------------------------

    def _take_velocity(self, s: Sending, guard: Guard) -> Exceeded | None:
        """Take the message's place in its recipient's (and country's) windows; the limit it
        would pass instead.

        The batch's only message to a number it read no traffic for goes on the counts read
        (it is counted in its `sent` transaction: no request of its own). Any other — the
        number already had messages in the window, or the batch has several for it — takes its
        place in the recipient's item with a conditional write first, so that neither the
        batch's workers nor other senders pass the limit with it."""
        velocity = self.router.config().velocity
        limited = velocity.per_hour or velocity.per_day or velocity.per_country_hour
        if self.counters is None or is_test_number(s.job.to) or not limited:
            return None  # nothing to count against
        phone, now = s.job.to, self.clock()
        region = region_of(phone) if velocity.per_country_hour else None
        with guard.lock:
            counts = guard.counts(phone, region)
            exceeded = velocity_exceeded(velocity, counts, region, now)
            if exceeded is not None:
                return exceeded
            guard.recipients[phone] += 1
            if region and velocity.country_limit(region):
                guard.countries[region] += 1
            s.velocity_taken = (phone, region)
        alone = counts.hour == 0 and counts.day == 0 and guard.planned[phone] <= 1
        if alone or not (velocity.per_hour or velocity.per_day):
            return None
        held = self.counters.reserve_recipient(phone, now, velocity.per_hour, velocity.per_day)
        if held is None:
            s.velocity_reserved = True
            return None
        # the item said no: a limit is reached (messages of other senders meanwhile)
        self._give_back_velocity(s, guard)
        recipient_only = velocity.model_copy(update={"per_country_hour": {}})
        seen = Counts(*held)
        return velocity_exceeded(recipient_only, seen, None, now) or velocity_exceeded(
            recipient_only, Counts(10**9, 10**9), None, now
        )

    def _give_back_velocity(self, s: Sending, guard: Guard) -> None:
        if s.velocity_taken is None:
            return
        phone, region = s.velocity_taken
        with guard.lock:
            guard.recipients[phone] -= 1
            if region:
                guard.countries[region] -= 1
        if s.velocity_reserved and self.counters is not None:
            self.counters.release_recipient(phone, self.clock())
        s.velocity_taken, s.velocity_reserved = None, False

    def _refuse_velocity(self, s: Sending, exceeded: Exceeded) -> Result:
        count("VelocityExceeded", s.provider, reason=exceeded.window)
        if self.router.config().velocity.when_exceeded == "hold":
            return self._hold(s, exceeded.frees_at, VELOCITY_EXCEEDED, exceeded.reason)
        return self._fail(s, VELOCITY_EXCEEDED, exceeded.reason)

    def _within_budget(
        self, usable: list[Option], guard: Guard, to: str
    ) -> tuple[list[Option], str]:
        """The options whose budget (and the total) leaves room for the message, and why the
        first one refused was refused. A provider's free test number costs nothing."""
        caps = self.router.config().monthly_budgets
        if not caps or self.counters is None or is_test_number(to):
            return usable, ""
        view = guard.budget(caps)
        kept, why = [], ""
        for option in usable:
            refusal = view.refusal(option.provider, float(self._option_cost(option)))
            if refusal is None:
                kept.append(option)
            elif not why:
                why = refusal
        return kept, why

    def _take_spend(self, s: Sending, option: Option, guard: Guard) -> str | None:
        """Take the message's cost from its provider's budget before the request (None), or
        say which cap it would pass."""
        if is_test_number(s.job.to):  # the provider's free test number costs nothing
            return None
        caps = self.router.config().monthly_budgets
        cost = self._option_cost(option)
        with guard.lock:
            if caps and self.counters is not None:
                refusal = guard.budget(caps).refusal(option.provider, float(cost))
                if refusal is not None:
                    return refusal
            guard.spend[option.provider] += cost
            guard.messages[option.provider] += 1
            s.spend_taken = (option.provider, cost)
        return None

    def _give_back_spend(self, s: Sending, guard: Guard) -> None:
        if s.spend_taken is None:
            return
        provider, cost = s.spend_taken
        with guard.lock:
            guard.spend[provider] -= cost
            guard.messages[provider] -= 1
        s.spend_taken = None

    def _option_cost(self, option: Option) -> Decimal:
        """What the message would cost through `option` (0 for a provider without a price)."""
        return self._cost(option.provider, option.prepared.segments) or Decimal(0)

    def _wait_for_budget(self, s: Sending, why: str) -> Result:
        """Every provider that may carry the message has spent its month: it waits (queued,
        `budget_exhausted`), re-queued like a message waiting for a healthy provider."""
        count("BudgetExhausted", s.provider)
        return self._wait_until(s, time.time() + MAX_QUEUE_DELAY, BUDGET_EXHAUSTED, why, "budget")

    def _counted(self, s: Sending) -> list[dict[str, Any]]:
        """The recipient count written with a sent (or unknown) record, in its transaction
        (none when the message took its place in the item before its request)."""
        counters = self.counters
        if counters is None or s.velocity_taken is None or s.velocity_reserved:
            return []
        return [counters.recipient_write(s.job.to, self.clock())]

    # --- after the batch ----------------------------------------------------------------------

    def flush_protection(self, guard: Guard) -> None:
        """Add the batch's spend and country counts to their items (every batch with a
        budget or country limits, else at most every SPEND_WRITE_EVERY_SECONDS) and publish
        each budget's use. What could not be written stays in this process's ledger for its
        next batch."""
        if self.counters is None:
            return
        config = self.router.config()
        ledger = self.ledger
        with ledger.lock:
            with guard.lock:
                for provider, amount in guard.spend.items():
                    ledger.spend[provider] += amount
                    ledger.messages[provider] += guard.messages[provider]
                ledger.countries.update(guard.countries)
                guard.spend.clear()
                guard.messages.clear()
                guard.countries.clear()
            due = time.monotonic() - ledger.written_at >= SPEND_WRITE_EVERY_SECONDS
            if config.monthly_budgets or config.velocity.per_country_hour or due:
                written = self._write_ledger(ledger)
                if config.monthly_budgets and guard.read_spend:
                    # only a batch that read the month's spend knows the figure (the router's
                    # batches read nothing)
                    self._publish_budget(guard, written)

    def _write_ledger(self, ledger: _Ledger) -> dict[str, Decimal]:
        """Write (and take out of the ledger) each provider's spend and each country's count;
        an item whose write fails stays for the next time. Returns the spend written."""
        assert self.counters is not None
        now = self.clock()
        written: dict[str, Decimal] = {}
        for provider in list(ledger.spend):
            amount, messages = ledger.spend[provider], ledger.messages[provider]
            if messages > 0:
                self.counters.add_spend(provider, amount, messages, now)
                written[provider] = amount
            del ledger.spend[provider], ledger.messages[provider]
        for country in list(ledger.countries):
            if ledger.countries[country] > 0:
                self.counters.add_country(country, ledger.countries[country], now)
            del ledger.countries[country]
        ledger.written_at = time.monotonic()
        return written

    def _publish_budget(self, guard: Guard, written: Mapping[str, Decimal]) -> None:
        caps = self.router.config().monthly_budgets
        shares = BudgetView(caps, with_added(guard.items.spend, written)).used()
        for provider, share in shares.items():
            if provider != TOTAL:
                gauge("SpendBudgetUsed", round(share * 100, 1), provider)
        if shares:
            # the alarm's figure: the most used cap, total included
            gauge("SpendBudgetUsed", round(max(shares.values()) * 100, 1))
            if max(shares.values()) >= WARN_AT:
                logger.warning(
                    "monthly budget above 80 %",
                    extra={"used": {p: round(v * 100, 1) for p, v in shares.items()}},
                )

    def _protection_done(self, s: Sending, guard: Guard) -> None:
        """The end of a message's protection: what it took stays only if it may have gone."""
        if not s.requested:
            self._give_back_velocity(s, guard)
            self._give_back_spend(s, guard)
