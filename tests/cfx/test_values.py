"""Scalar conventions: Newtonsoft dates, .NET TimeSpans, SEMI states, placeholders."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from pywats_cfx._states import asset_state, state_name
from pywats_cfx._values import (
    is_naive_datetime,
    parse_datetime,
    parse_float,
    parse_resource_state,
    parse_timespan,
)
from pywats_events.payloads import AssetState


@pytest.mark.parametrize("digits", range(8))
def test_dates_with_0_to_7_fraction_digits(digits: int) -> None:
    frac = "." + "1234567"[:digits] if digits else ""
    dt = parse_datetime(f"2018-03-26T16:52:25{frac}-04:00")
    micro = int(("1234567"[:digits] or "0")[:6].ljust(6, "0"))
    assert dt == datetime(2018, 3, 26, 16, 52, 25, micro, tzinfo=timezone(timedelta(hours=-4)))


def test_naive_dates_are_utc_and_detected() -> None:
    assert parse_datetime("2018-03-26T16:52:25.3769532") == datetime(
        2018, 3, 26, 16, 52, 25, 376953, tzinfo=timezone.utc
    )
    assert is_naive_datetime("2018-03-26T16:52:25") and not is_naive_datetime("2018-03-26T16:52:25Z")


@pytest.mark.parametrize("bad", ["string", "", "2018-13-40T00:00:00", None, 5, "2018-03-26T16:52:25+25:00"])
def test_unreadable_dates_are_none(bad: object) -> None:
    assert parse_datetime(bad) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:29:01.0840472", timedelta(minutes=29, seconds=1, microseconds=84047)),
        ("6.00:00:00", timedelta(days=6)),
        ("-00:00:05", timedelta(seconds=-5)),
        ("1.02:03:04.5", timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=500000)),
        ("3", timedelta(days=3)),
        ("string", None),
        ("25:00:00", None),
    ],
)
def test_timespans(text: str, expected: timedelta | None) -> None:
    assert parse_timespan(text) == expected


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (5000, 5000),
        ("1100", 1100),
        ("22A0", 2201),
        ("22b0", 2202),
        ("SBY_NoProduct", 2200),
        (True, None),
        ("x", None),
    ],
)
def test_resource_state_forms(value: object, code: int | None) -> None:
    assert parse_resource_state(value) == code


@pytest.mark.parametrize(
    ("code", "state"),
    [(1100, AssetState.PRODUCTIVE), (2202, AssetState.STANDBY), (3312, AssetState.ENGINEERING),
     (4500, AssetState.SCHEDULED_DOWNTIME), (5300, AssetState.UNSCHEDULED_DOWNTIME),
     (6500, AssetState.NON_SCHEDULED), (None, AssetState.UNKNOWN), (9000, AssetState.UNKNOWN)],
)  # fmt: skip
def test_state_classes(code: int | None, state: AssetState) -> None:
    assert asset_state(code) is state


def test_state_names_keep_semi_detail() -> None:
    assert state_name(5500) == "USD_ChangeOfConsumables" and state_name(3312) is None


@pytest.mark.parametrize(
    ("value", "out"), [(1, 1.0), ("2.5", 2.5), ("string", None), (float("nan"), None), (True, None)]
)
def test_parse_float(value: object, out: float | None) -> None:
    assert parse_float(value) == out


def test_microsoft_json_dates() -> None:
    """Newtonsoft's `MicrosoftDateFormat`: milliseconds since the epoch, and the offset to show it in."""
    utc = datetime(2012, 4, 23, 18, 26, 32, 410000, tzinfo=timezone.utc)
    assert parse_datetime("/Date(1335205592410)/") == utc
    with_offset = parse_datetime("\\/Date(1335205592410+0200)\\/")
    assert with_offset == utc and with_offset is not None and with_offset.utcoffset() == timedelta(hours=2)
    assert not is_naive_datetime("/Date(1335205592410)/")
    assert parse_datetime("/Date(1335205592410+2500)/") is None
    assert parse_datetime("/Date(soon)/") is None


def test_a_message_dated_the_microsoft_way_reads_like_one_dated_in_iso() -> None:
    from pywats_cfx import CFXCodec
    from pywats_cfx.samples import load_sample_dict

    iso = load_sample_dict("units_tested_fct")
    iso["TimeStamp"] = "2012-04-23T20:26:32.41+02:00"
    test = iso["MessageBody"]["TestedUnits"][0]["Tests"][0]
    test["TestStartTime"], test["TestEndTime"] = "2012-04-23T18:26:32.41Z", "2012-04-23T18:26:33Z"
    ms = json.loads(json.dumps(iso))
    ms["TimeStamp"] = "/Date(1335205592410+0200)/"
    ms_test = ms["MessageBody"]["TestedUnits"][0]["Tests"][0]
    ms_test["TestStartTime"], ms_test["TestEndTime"] = "/Date(1335205592410)/", "/Date(1335205593000)/"
    codec = CFXCodec()
    a, b = codec.decode(json.dumps(iso).encode()).events, codec.decode(json.dumps(ms).encode()).events
    assert a and b and a[0].metadata.timestamp == b[0].metadata.timestamp
    times = [(e.payload["tests"][0]["start"], e.payload["tests"][0]["end"]) for e in (a[0], b[0])]
    assert [tuple(parse_datetime(t) for t in pair) for pair in times] == [
        (
            datetime(2012, 4, 23, 18, 26, 32, 410000, tzinfo=timezone.utc),
            datetime(2012, 4, 23, 18, 26, 33, tzinfo=timezone.utc),
        )
    ] * 2
