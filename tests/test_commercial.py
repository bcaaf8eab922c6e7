"""Quiet hours: when a commercial message may go out, on every provider — the country's window
(the routing document's `quiet_hours` over the defaults) and, for a provider that
`holds_commercial`, its own window too, in the recipient's local time; public holidays closed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate import commercial
from smsgate.commercial import DEFAULT_QUIET_HOURS, opens_at, quiet_window
from smsgate.config import DEFAULT_WINDOWS
from smsgate.providers import PROVIDERS
from smsgate.routing import RoutingConfig, RoutingError

NYC, FR, JP = "+12125551234", "+33612345678", "+819012345678"
IDAHO = "+12085551234"  # area code 208: Boise (Mountain time) and the north (Pacific time)
HOLDING = next(cls for cls in PROVIDERS.values() if cls.holds_commercial)
PLAIN = next(cls for cls in PROVIDERS.values() if not cls.holds_commercial)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def quiet_only(moment: datetime, number: str, quiet: dict[str, str] | None = None) -> Any:
    """A provider without a window of its own: the country's quiet hours alone."""
    return opens_at(moment, number, quiet, None, PLAIN.home_zone)


def with_provider(moment: datetime, number: str, window: str = DEFAULT_WINDOWS) -> Any:
    """A provider that `holds_commercial`: quiet hours and its window, both open."""
    return opens_at(moment, number, None, window, HOLDING.home_zone)


# --------------------------------------------------------------------------- the defaults


def test_defaults_per_country() -> None:
    assert DEFAULT_WINDOWS == commercial.WORKING_HOURS  # the provider window's default too
    for country in ("FR", "DE", "IE", "NO", "IS", "GB", "CH"):
        assert quiet_window(country) == DEFAULT_WINDOWS, country
    assert quiet_window("US") == quiet_window("CA") == "mon-sun 08:00-21:00"
    assert quiet_window("JP") == quiet_window("BR") == DEFAULT_QUIET_HOURS["*"]
    assert DEFAULT_QUIET_HOURS["*"] == "mon-sat 08:00-20:00"
    for spec in set(DEFAULT_QUIET_HOURS.values()):
        commercial.parse_windows(spec)


def test_the_document_overrides_country_by_country() -> None:
    quiet = {"US": "mon-fri 09:00-17:00", "*": "mon-sun 10:00-11:00"}
    assert quiet_window("US", quiet) == "mon-fri 09:00-17:00"
    assert quiet_window("CA", quiet) == "mon-sun 08:00-21:00"  # its default: not "the rest"
    assert quiet_window("FR", quiet) == DEFAULT_WINDOWS
    assert quiet_window("JP", quiet) == "mon-sun 10:00-11:00"  # the document's `*`


# --------------------------------------------------------------------------- opens_at

# New York is UTC-5 in November, Paris UTC+1, Tokyo UTC+9; Boise UTC-7, Pacific UTC-8.
CASES = [
    # (label, moment, number, opens (None: may go now))
    ("New York 23:30 -> 08:00", utc(2026, 11, 24, 4, 30), NYC, utc(2026, 11, 24, 13, 0)),
    ("New York 07:59 -> 08:00", utc(2026, 11, 24, 12, 59), NYC, utc(2026, 11, 24, 13, 0)),
    ("New York 08:00 goes", utc(2026, 11, 24, 13, 0), NYC, None),
    ("New York Sunday 20:59 goes", utc(2026, 11, 30, 1, 59), NYC, None),
    ("New York 21:00 -> 08:00", utc(2026, 11, 25, 2, 0), NYC, utc(2026, 11, 25, 13, 0)),
    ("Thanksgiving -> Friday 08:00", utc(2026, 11, 26, 15, 0), NYC, utc(2026, 11, 27, 13, 0)),
    ("Christmas in Paris -> Saturday 10:00", utc(2026, 12, 25, 9, 0), FR, utc(2026, 12, 26, 9, 0)),
    ("Paris Sunday -> Monday 08:00", utc(2026, 11, 22, 11, 0), FR, utc(2026, 11, 23, 7, 0)),
    ("Paris Monday 11:00 goes", utc(2026, 11, 23, 10, 0), FR, None),
    # area code 208: 08:00 in Boise is 07:00 on the Pacific side, both must be open
    ("Idaho 08:30 Boise, 07:30 Pacific", utc(2026, 11, 24, 15, 30), IDAHO, utc(2026, 11, 24, 16)),
    ("Idaho 20:30 Boise, 19:30 Pacific goes", utc(2026, 11, 25, 3, 30), IDAHO, None),
    ("Idaho 21:00 Boise, 20:00 Pacific", utc(2026, 11, 25, 4, 0), IDAHO, utc(2026, 11, 25, 16)),
    # Japan has no window of its own: the rest's (mon-sat 08:00-20:00)
    ("Tokyo Saturday 21:00 -> Monday", utc(2026, 11, 28, 12, 0), JP, utc(2026, 11, 29, 23, 0)),
    ("Tokyo Saturday 10:00 goes", utc(2026, 11, 28, 1, 0), JP, None),
    # and its public holidays: Labour Thanksgiving Day, Monday 23 November 2026
    ("Tokyo holiday -> Tuesday 08:00", utc(2026, 11, 23, 3, 0), JP, utc(2026, 11, 23, 23, 0)),
]


@pytest.mark.parametrize(("label", "moment", "number", "opens"), CASES, ids=[c[0] for c in CASES])
def test_quiet_hours(label: str, moment: datetime, number: str, opens: datetime | None) -> None:
    assert quiet_only(moment, number) == opens


def test_the_document_windows_apply() -> None:
    quiet = {"US": "mon-fri 09:00-17:00", "*": "mon-sun 10:00-11:00"}
    tuesday_8_nyc = utc(2026, 11, 24, 13, 0)
    assert quiet_only(tuesday_8_nyc, NYC, quiet) == utc(2026, 11, 24, 14, 0)  # 09:00
    assert quiet_only(tuesday_8_nyc, NYC) is None  # the default: open from 08:00
    sunday_10_tokyo = utc(2026, 11, 29, 1, 0)
    assert quiet_only(sunday_10_tokyo, JP, quiet) is None
    assert quiet_only(sunday_10_tokyo, JP) == utc(2026, 11, 29, 23, 0)  # Monday 08:00


def test_a_provider_window_and_quiet_hours_must_both_be_open() -> None:
    saturday_16_nyc = utc(2026, 11, 28, 21, 0)
    assert quiet_only(saturday_16_nyc, NYC) is None  # quiet hours: open until 21:00
    # the provider's window closed at 15:00 on Saturday: Monday 08:00 New York
    assert with_provider(saturday_16_nyc, NYC) == utc(2026, 11, 30, 13, 0)
    tuesday_2030_nyc = utc(2026, 11, 25, 1, 30)
    assert with_provider(tuesday_2030_nyc, NYC) == utc(2026, 11, 25, 13, 0)
    # a narrower provider window inside quiet hours: its own opening
    assert with_provider(utc(2026, 11, 24, 13, 0), NYC, "tue 12:00-13:00") == utc(2026, 11, 24, 17)
    # a provider window wider than quiet hours: quiet hours decide
    assert with_provider(utc(2026, 11, 29, 4, 0), NYC, "mon-sun 00:00-23:59") == utc(
        2026, 11, 29, 13, 0
    )


def test_a_number_without_a_zone_takes_the_providers_home() -> None:
    test_number = HOLDING.test_number or "999"
    zone, region = HOLDING.home_zone
    local_sunday_noon = datetime(2026, 11, 22, 12, 0).replace(tzinfo=ZoneInfo(zone))
    opens = opens_at(local_sunday_noon.astimezone(UTC), test_number, None, None, (zone, region))
    assert opens is not None and opens.astimezone(ZoneInfo(zone)).weekday() == 0


def test_no_window_within_the_horizon_is_an_error() -> None:
    quiet = {"US": "mon 08:00-09:00"}
    with pytest.raises(ValueError, match="no commercial window"):
        opens_at(utc(2026, 11, 24, 13), NYC, quiet, "tue 08:00-09:00", PLAIN.home_zone)


@settings(max_examples=60, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    st.sampled_from([FR, NYC, IDAHO, JP, "+447911123456"]),
    st.sampled_from([None, DEFAULT_WINDOWS]),
)
def test_opens_at_is_open_and_the_first(moment: datetime, number: str, window: str | None) -> None:
    home = HOLDING.home_zone
    opens = opens_at(moment, number, None, window, home)
    if opens is None:
        return
    assert opens > moment and opens - moment < timedelta(days=commercial.HORIZON_DAYS)
    assert opens_at(opens, number, None, window, home) is None
    assert opens_at(opens - timedelta(minutes=1), number, None, window, home) is not None


def test_is_open_and_next_open_keep_working() -> None:
    sunday = utc(2026, 11, 22, 11, 0)
    assert not commercial.is_open(sunday, FR, DEFAULT_WINDOWS, HOLDING.home_zone)
    assert commercial.next_open(sunday, FR, DEFAULT_WINDOWS, HOLDING.home_zone) == utc(
        2026, 11, 23, 7, 0
    )


# --------------------------------------------------------------------------- the document


def test_the_routing_document_carries_quiet_hours() -> None:
    config = RoutingConfig.parse(
        {"quiet_hours": {"us": "mon-fri 09:00-17:00", "*": "sun 10:00-11:00"}}
    )
    assert config.quiet_hours == {"US": "mon-fri 09:00-17:00", "*": "sun 10:00-11:00"}
    assert RoutingConfig().quiet_hours == {}  # nothing said: the defaults


BAD = [
    ("not a window", {"US": "weekdays 9-5"}, "is not like 'mon-fri 08:00-20:00'"),
    ("ends before it starts", {"FR": "mon 20:00-08:00"}, "ends before it starts"),
    ("empty window", {"*": " ; "}, "no commercial window"),
    ("not a country code", {"USA": "mon-sun 08:00-21:00"}, "ISO country code"),
    ("not a string", {"US": 8}, "quiet_hours.US"),
    ("not an object", ["US"], "quiet_hours"),
]


@pytest.mark.parametrize(("label", "quiet", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_quiet_hours_document_is_refused(label: str, quiet: Any, message: str) -> None:
    with pytest.raises(RoutingError, match="invalid routing rules") as caught:
        RoutingConfig.parse({"quiet_hours": quiet})
    assert message in str(caught.value)


def test_a_bad_quiet_hours_document_keeps_the_last_good(aws: None) -> None:
    """The senders' routing source (SSM): a document that fails validation leaves the last
    good one in force."""
    import boto3
    from aws_lambda_powertools.utilities import parameters

    from smsgate.wiring import RoutingSource

    name, ssm = "/smsgate/routing-rules", boto3.client("ssm")

    def put(document: Any) -> None:
        ssm.put_parameter(Name=name, Value=json.dumps(document), Type="String", Overwrite=True)
        parameters.clear_caches()

    good = {"quiet_hours": {"US": "mon-fri 09:00-17:00"}}
    put(good)
    source = RoutingSource(name)
    assert source().quiet_hours == good["quiet_hours"]
    put({"quiet_hours": {"US": "weekdays 9-5"}})
    assert source().quiet_hours == good["quiet_hours"]
    put({"quiet_hours": {"US": "mon-sun 08:00-22:00"}})
    assert source().quiet_hours == {"US": "mon-sun 08:00-22:00"}
