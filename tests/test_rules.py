"""Unit tests of the rules the providers share: text (GSM 03.38, segments), phone numbers, the
status model and the commercial window of TextingHouse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate import commercial, phones, text
from smsgate.commercial import is_open, next_open, parse_windows
from smsgate.phones import InvalidNumber
from smsgate.providers import TextingHouse
from smsgate.status import FINAL, Status, can_move, rank, ranks_below

DEFAULT_WINDOW = "mon-fri 08:00-20:00; sat 10:00-15:00"
HOME = TextingHouse.home_zone  # the provider that holds commercial messages
FR, US = "+33612345678", "+12125551234"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ----------------------------------------------------------------------------- text


@pytest.mark.parametrize("ch", list("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,-./:;<=>?¡¿§\n\r"))
def test_gsm_basic_characters(ch: str) -> None:
    assert ch in text.GSM_BASIC
    assert text.is_gsm(ch)
    assert text.gsm_units(ch) == 1


@pytest.mark.parametrize("ch", list("^{}\\[~]|€\f"))
def test_gsm_extension_characters_count_two(ch: str) -> None:
    assert ch in text.GSM_EXTENSION
    assert ch not in text.GSM_BASIC
    assert text.is_gsm(ch)
    assert text.gsm_units(ch) == 2


@pytest.mark.parametrize("ch", ["ж", "😀", "á", "`", "\t", "\x1b", "·", "\u2019"])
def test_not_gsm(ch: str) -> None:
    assert not text.is_gsm(f"abc{ch}")


def test_gsm_tables_sizes() -> None:
    # 128 code points in the basic table minus the escape; 10 extension characters.
    assert len(text.GSM_BASIC) == 127
    assert len(text.GSM_EXTENSION) == 10
    assert not text.GSM_BASIC & text.GSM_EXTENSION


@pytest.mark.parametrize(
    ("message", "encoding", "units", "parts"),
    [
        ("", "gsm7", 0, 1),
        ("a", "gsm7", 1, 1),
        ("a" * 160, "gsm7", 160, 1),
        ("a" * 161, "gsm7", 161, 2),
        ("a" * 306, "gsm7", 306, 2),
        ("a" * 307, "gsm7", 307, 3),
        ("a" * 459, "gsm7", 459, 3),
        ("a" * 460, "gsm7", 460, 4),
        ("€" * 80, "gsm7", 160, 1),
        ("€" * 80 + "a", "gsm7", 161, 2),
        ("€" * 153, "gsm7", 306, 2),
        ("€" * 153 + "a", "gsm7", 307, 3),
        ("ж" * 70, "ucs2", 70, 1),
        ("ж" * 71, "ucs2", 71, 2),
        ("ж" * 134, "ucs2", 134, 2),
        ("ж" * 135, "ucs2", 135, 3),
        ("a" * 69 + "ж", "ucs2", 70, 1),
        ("a" * 159 + "ж", "ucs2", 160, 3),  # one non-GSM character switches the whole text
        ("€" * 70 + "ж", "ucs2", 71, 2),  # in UCS-2 an extension character is one unit
        # Characters beyond the BMP are UTF-16 surrogate pairs: 2 units each.
        ("😀", "ucs2", 2, 1),
        ("😀" * 35, "ucs2", 70, 1),
        ("😀" * 35 + "a", "ucs2", 71, 2),
        ("😀" * 67, "ucs2", 134, 2),
        ("😀" * 67 + "a", "ucs2", 135, 3),
    ],
)
def test_segments(message: str, encoding: str, units: int, parts: int) -> None:
    assert text.segments(message) == text.Segments(encoding, units, parts)


ALPHABET = st.sampled_from([*sorted(text.GSM_BASIC | text.GSM_EXTENSION), "ж", "😀", "é", "á"])
TEXTS = st.text(alphabet=ALPHABET, max_size=700) | st.text(max_size=400)


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_segments_never_below_one_and_monotonic_in_length(message: str) -> None:
    parts = [text.segments(message[:n]).parts for n in range(0, len(message) + 1, 7)]
    parts.append(text.segments(message).parts)
    assert min(parts) >= 1
    assert parts == sorted(parts)


@settings(max_examples=300, deadline=None)
@given(TEXTS, ALPHABET)
def test_one_more_character_never_takes_fewer_parts(message: str, extra: str) -> None:
    assert text.segments(message + extra).parts >= text.segments(message).parts


@settings(max_examples=200, deadline=None)
@given(TEXTS)
def test_segments_match_the_formula(message: str) -> None:
    seg = text.segments(message)
    single, multi = (160, 153) if seg.encoding == "gsm7" else (70, 67)
    if seg.parts == 1:
        assert seg.units <= single
    else:
        assert seg.units > single
        assert multi * (seg.parts - 1) < seg.units <= multi * seg.parts
    if seg.encoding == "ucs2":
        assert seg.units == len(message.encode("utf-16-le")) // 2


# ----------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("2125551234", "US", "+12125551234"),
        ("(212) 555-1234", "US", "+12125551234"),
        ("+12125551234", "US", "+12125551234"),
        ("+33612345678", "US", "+33612345678"),
        ("+33 6 12 34 56 78", "US", "+33612345678"),
        (" +33612345678 ", "US", "+33612345678"),
        ("0612345678", "FR", "+33612345678"),
        ("+447911123456", "US", "+447911123456"),
    ],
)
def test_to_e164(raw: str, region: str, e164: str) -> None:
    assert phones.to_e164(raw, region) == e164


@pytest.mark.parametrize(
    "raw", ["", "   ", "12345", "abc", "+1212555012", "+3361234567890123", "999", None, 2125551234]
)
def test_to_e164_invalid(raw: object) -> None:
    with pytest.raises(InvalidNumber) as info:
        phones.to_e164(raw)  # type: ignore[arg-type]
    if isinstance(raw, str) and raw.strip():
        assert raw.strip() not in str(info.value)  # the reason names no digits


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+33612345678", "+3361****678"),
        ("+12125551234", "+1212****234"),
        ("+447911123456", "+4479*****456"),
        ("+123456789", "+1234**789"),
        ("+1234567", "********"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask(number: str | None, masked: str) -> None:
    assert phones.mask(number) == masked


@settings(max_examples=100)
@given(st.from_regex(r"\+[1-9][0-9]{8,14}", fullmatch=True))
def test_mask_never_shows_the_whole_number(number: str) -> None:
    masked = phones.mask(number)
    assert len(masked) == len(number)
    assert (masked[:5], masked[-3:]) == (number[:5], number[-3:])
    assert set(masked[5:-3]) == {"*"}  # at least one digit hidden, all of the middle


READERS = {"us10": phones.from_us_ten_digits, "intl": phones.from_international_digits}


@pytest.mark.parametrize(
    ("raw", "kind", "e164"),
    [
        ("2125551234", "us10", "+12125551234"),
        ("212-555-1234", "us10", "+12125551234"),
        ("12125551234", "us10", "+12125551234"),
        ("33612345678", "intl", "+33612345678"),
        ("+33 6 12 34 56 78", "intl", "+33612345678"),
        ("12125551234", "intl", "+12125551234"),
    ],
)
def test_from_provider(raw: str, kind: str, e164: str) -> None:
    assert READERS[kind](raw) == e164


@pytest.mark.parametrize(("raw", "kind"), [("12345", "us10"), ("555", "intl"), ("", "intl")])
def test_from_provider_invalid(raw: str, kind: str) -> None:
    with pytest.raises(InvalidNumber):
        READERS[kind](raw)


@pytest.mark.parametrize(
    ("e164", "ten"),
    [
        ("+12125551234", "2125551234"),
        ("+14165551234", "4165551234"),  # Canada is NANP too
        ("+33612345678", None),
        ("+1212555123", None),
        ("+121255512345", None),
        ("2125551234", None),
    ],
)
def test_us_ten_digits(e164: str, ten: str | None) -> None:
    assert phones.us_ten_digits(e164) == ten


def test_international_digits() -> None:
    assert phones.international_digits("+33612345678") == "33612345678"


# ----------------------------------------------------------------------------- status

S = Status
CAN_MOVE = [
    (None, S.QUEUED, True),
    (None, S.DELIVERED, True),
    (S.QUEUED, S.SCHEDULED, True),
    (S.QUEUED, S.SENT, True),
    (S.SCHEDULED, S.SENT, True),
    (S.SENT, S.UNKNOWN, True),
    (S.SENT, S.DELIVERED, True),
    (S.SENT, S.FAILED, True),
    (S.UNKNOWN, S.DELIVERED, True),  # a late receipt settles an unknown outcome
    (S.UNKNOWN, S.UNDELIVERED, True),
    (S.QUEUED, S.FAILED, True),
    (S.QUEUED, S.QUEUED, False),  # no change is no move
    (S.SENT, S.SENT, False),
    (S.SENT, S.QUEUED, False),  # no downgrade
    (S.SENT, S.SCHEDULED, False),
    (S.UNKNOWN, S.SENT, False),
    (S.SCHEDULED, S.QUEUED, False),
    (S.DELIVERED, S.FAILED, False),  # a final status never changes
    (S.DELIVERED, S.UNDELIVERED, False),
    (S.DELIVERED, S.DELIVERED, False),
    (S.UNDELIVERED, S.DELIVERED, False),
    (S.FAILED, S.DELIVERED, False),
    (S.FAILED, S.SENT, False),
    (S.RECEIVED, S.DELIVERED, False),
]


@pytest.mark.parametrize(("old", "new", "allowed"), CAN_MOVE)
def test_can_move(old: Status | None, new: Status, allowed: bool) -> None:
    assert can_move(old, new) is allowed
    assert can_move(old.value if old else None, new.value) is allowed  # plain strings too


def test_order_of_the_vocabulary() -> None:
    order = [S.QUEUED, S.SCHEDULED, S.SENT, S.UNKNOWN]
    assert [rank(s) for s in order] == sorted({rank(s) for s in order})
    assert {rank(s) for s in FINAL} == {rank(S.UNKNOWN) + 1}
    assert {S.DELIVERED, S.UNDELIVERED, S.FAILED} == FINAL


@pytest.mark.parametrize(
    ("new", "below"),
    [
        (S.QUEUED, []),
        (S.SENT, ["queued", "scheduled"]),
        (S.UNKNOWN, ["queued", "scheduled", "sent"]),
        (S.DELIVERED, ["queued", "scheduled", "sent", "unknown"]),
        (S.FAILED, ["queued", "scheduled", "sent", "unknown"]),
    ],
)
def test_ranks_below(new: Status, below: list[str]) -> None:
    assert ranks_below(new) == below


STATUSES = st.sampled_from(list(Status))


@given(st.sampled_from(sorted(FINAL)), STATUSES)
def test_a_final_status_never_changes(old: Status, new: Status) -> None:
    assert not can_move(old, new)


@given(STATUSES, STATUSES)
def test_status_only_moves_forward(old: Status, new: Status) -> None:
    if can_move(old, new):
        assert rank(new) > rank(old)
        assert old not in FINAL
        assert old.value in ranks_below(new)


@given(st.lists(STATUSES, max_size=12))
def test_any_sequence_of_accepted_moves_ends_final_at_most_once(updates: list[Status]) -> None:
    current: Status | None = None
    history = []
    for new in updates:
        if can_move(current, new):
            current = new
            history.append(new)
    assert sum(1 for s in history if s in FINAL) <= 1
    assert [rank(s) for s in history] == sorted({rank(s) for s in history})


# ----------------------------------------------------------------------------- commercial


def test_parse_default_windows() -> None:
    week, saturday = parse_windows(DEFAULT_WINDOW)
    assert week.days == frozenset(range(5))
    assert (week.start.isoformat(), week.end.isoformat()) == ("08:00:00", "20:00:00")
    assert saturday.days == frozenset({5})
    assert (saturday.start.isoformat(), saturday.end.isoformat()) == ("10:00:00", "15:00:00")
    assert parse_windows("MON-FRI 08:00-20:00;") == parse_windows("mon-fri 08:00-20:00")


@pytest.mark.parametrize(
    "spec",
    [
        "",
        " ; ",
        "mon-fri",
        "mon-fri 8:00-20:00",
        "monday 08:00-20:00",
        "xyz 08:00-20:00",
        "mon-xyz 08:00-20:00",
        "fri-mon 08:00-20:00",
        "mon 20:00-08:00",
        "mon 10:00-10:00",
        "mon 25:00-26:00",
        "mon-fri 08:00-20:00, sat 10:00-15:00",
    ],
)
def test_parse_windows_errors(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_windows(spec)


# Paris is UTC+1 in winter, New York UTC-5.
@pytest.mark.parametrize(
    ("label", "moment", "number", "open_"),
    [
        ("Wednesday 07:59 Paris", utc(2026, 2, 4, 6, 59), FR, False),
        ("Wednesday 08:00 Paris", utc(2026, 2, 4, 7, 0), FR, True),
        ("Wednesday 19:59 Paris", utc(2026, 2, 4, 18, 59), FR, True),
        ("Wednesday 20:00 Paris", utc(2026, 2, 4, 19, 0), FR, False),
        ("Saturday 09:59 Paris", utc(2026, 2, 7, 8, 59), FR, False),
        ("Saturday 10:00 Paris", utc(2026, 2, 7, 9, 0), FR, True),
        ("Saturday 14:59 Paris", utc(2026, 2, 7, 13, 59), FR, True),
        ("Saturday 15:00 Paris", utc(2026, 2, 7, 14, 0), FR, False),
        ("Sunday noon Paris", utc(2026, 3, 1, 11, 0), FR, False),
        ("Christmas (a Friday) noon Paris", utc(2026, 12, 25, 11, 0), FR, False),
        ("the Friday before Christmas, noon Paris", utc(2026, 12, 18, 11, 0), FR, True),
        ("Bastille Day (Tuesday) noon Paris", utc(2026, 7, 14, 10, 0), FR, False),
        ("summer Wednesday 08:00 Paris (UTC+2)", utc(2026, 7, 15, 6, 0), FR, True),
        ("summer Wednesday 07:59 Paris (UTC+2)", utc(2026, 7, 15, 5, 59), FR, False),
        ("Wednesday 07:59 New York", utc(2026, 2, 4, 12, 59), US, False),
        ("Wednesday 08:00 New York", utc(2026, 2, 4, 13, 0), US, True),
        ("Wednesday 19:30 New York (Thursday 00:30 UTC)", utc(2026, 2, 5, 0, 30), US, True),
        ("Christmas in New York", utc(2026, 12, 25, 17, 0), US, False),
        ("test number 999 falls back to Paris", utc(2026, 2, 4, 7, 0), "999", True),
        # phonenumbers places no zone ("Etc/Unknown"): the fallback, never a crash
        ("unplaced +800 number falls back to Paris", utc(2026, 2, 4, 7, 0), "+80012345678", True),
        ("unplaced short number falls back to Paris", utc(2026, 2, 4, 6, 59), "+33123", False),
    ],
)
def test_is_open(label: str, moment: datetime, number: str, open_: bool) -> None:
    assert is_open(moment, number, DEFAULT_WINDOW, HOME) is open_


@pytest.mark.parametrize(
    ("label", "moment", "number", "opens"),
    [
        ("open now: now", utc(2026, 2, 4, 12, 0), FR, utc(2026, 2, 4, 12, 0)),
        ("before opening", utc(2026, 2, 4, 5, 0), FR, utc(2026, 2, 4, 7, 0)),
        ("Saturday 09:00 -> 10:00", utc(2026, 2, 7, 8, 0), FR, utc(2026, 2, 7, 9, 0)),
        ("Saturday 15:00 -> Monday 08:00", utc(2026, 2, 7, 14, 0), FR, utc(2026, 2, 9, 7, 0)),
        ("Sunday -> Monday 08:00", utc(2026, 3, 1, 11, 0), FR, utc(2026, 3, 2, 7, 0)),
        ("Christmas -> Saturday 10:00", utc(2026, 12, 25, 11, 0), FR, utc(2026, 12, 26, 9, 0)),
        ("Friday 20:00 -> Saturday 10:00", utc(2026, 2, 6, 19, 0), FR, utc(2026, 2, 7, 9, 0)),
        ("New York 07:30 -> 08:00", utc(2026, 2, 4, 12, 30), US, utc(2026, 2, 4, 13, 0)),
        ("New York Saturday 16:00 -> Monday", utc(2026, 2, 7, 21, 0), US, utc(2026, 2, 9, 13, 0)),
    ],
)
def test_next_open(label: str, moment: datetime, number: str, opens: datetime) -> None:
    assert next_open(moment, number, DEFAULT_WINDOW, HOME) == opens


@settings(max_examples=60, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    st.sampled_from([FR, US, "+447911123456"]),
)
def test_next_open_is_open_and_not_before(moment: datetime, number: str) -> None:
    opens = next_open(moment, number, DEFAULT_WINDOW, HOME)
    assert opens >= moment
    assert is_open(opens, number, DEFAULT_WINDOW, HOME)
    assert opens - moment < timedelta(days=commercial.HORIZON_DAYS)
    if opens > moment:  # nothing in between was open (checked at the minute before)
        assert not is_open(opens - timedelta(minutes=1), number, DEFAULT_WINDOW, HOME)
