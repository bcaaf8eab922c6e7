"""TextingHouse's time slots for commercial messages (TextingHouse API §4.3, "Time restrictions").

The document: commercial messages go out on working days during the day, Saturday between
10 a.m. and 3 p.m., never on Sundays or public holidays, "according to the local time of the
recipient"; one sent outside the slots "will be retained and sent at the next working hour".
Its list of weekday hours is cut off, so the weekday slot is the one smsgate assumes as well
(Monday-Friday 08:00-20:00).

The recipient's time zones and country come from the number (``phonenumbers``). A number
with several zones (some US area codes, Australia) is in a slot only when it is in one in all
of them, as smsgate reads it. A number the library cannot place falls back to France, the
country of TextingHouse and of the document's examples.

The simulator's own copy: it must not share code with the ``smsgate`` package it tests.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone


@dataclass(frozen=True)
class Slot:
    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end: dt.time


SLOTS = (
    Slot(frozenset(range(5)), dt.time(8), dt.time(20)),
    Slot(frozenset({5}), dt.time(10), dt.time(15)),
)
FALLBACK_ZONE, FALLBACK_REGION = "Europe/Paris", "FR"
HORIZON_DAYS = 21  # a slot always opens within three weeks (holidays never last that long)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None  # "Etc/Unknown": the library does not know the number's zone


@lru_cache(maxsize=1024)
def zones_and_region(to: str) -> tuple[tuple[ZoneInfo, ...], str]:
    """The recipient's time zones and country for ``to`` (international digits, no "+")."""
    try:
        number = phonenumbers.parse("+" + to)
    except phonenumbers.NumberParseException:
        return (ZoneInfo(FALLBACK_ZONE),), FALLBACK_REGION
    names = phone_timezone.time_zones_for_number(number)
    zones = tuple(z for z in (_zone(n) for n in names) if z is not None)
    region = phonenumbers.region_code_for_number(number)
    if not region or not region.isalpha():  # "001": a non-geographic number
        region = FALLBACK_REGION
    return zones or (ZoneInfo(FALLBACK_ZONE),), region


@lru_cache(maxsize=64)
def _holidays(region: str, year: int) -> Any:
    import holidays  # slow to import: only once a commercial message arrives

    try:
        return holidays.country_holidays(region, years=year)
    except NotImplementedError:  # a country the library has no calendar for
        return {}


def _in_slot(local: dt.datetime, region: str, slots: tuple[Slot, ...]) -> bool:
    if local.date() in _holidays(region, local.year):
        return False
    clock = local.time().replace(tzinfo=None)
    return any(local.weekday() in s.days and s.start <= clock < s.end for s in slots)


def is_open(moment: dt.datetime, to: str, slots: tuple[Slot, ...] = SLOTS) -> bool:
    """May a commercial message to ``to`` go out at ``moment`` (aware)?"""
    zones, region = zones_and_region(to)
    return all(_in_slot(moment.astimezone(z), region, slots) for z in zones)


def next_open(moment: dt.datetime, to: str, slots: tuple[Slot, ...] = SLOTS) -> dt.datetime:
    """The first instant at or after ``moment`` (aware, UTC) when a slot is open for ``to``.

    Only the slot starts of each zone can open the intersection, so they are the candidates.
    """
    if is_open(moment, to, slots):
        return moment
    zones, _ = zones_and_region(to)
    candidates = sorted(
        start for zone in zones for start in _slot_starts(moment, zone, slots) if start > moment
    )
    for candidate in candidates:
        if is_open(candidate, to, slots):
            return candidate
    raise ValueError(f"no commercial slot opens within {HORIZON_DAYS} days")


def _slot_starts(moment: dt.datetime, zone: ZoneInfo, slots: tuple[Slot, ...]) -> list[dt.datetime]:
    first = moment.astimezone(zone).date()
    days = (first + dt.timedelta(days=n) for n in range(HORIZON_DAYS))
    return [
        dt.datetime.combine(day, s.start, tzinfo=zone).astimezone(dt.UTC)
        for day in days
        for s in slots
        if day.weekday() in s.days
    ]
