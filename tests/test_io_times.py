"""TM/DA/DT parsing and midnight rollover (dicom-rules.md §1.6, §2 case 19)."""

from __future__ import annotations

import datetime as dt

import pytest

from breastai.io.times import (
    combine_date_time,
    parse_da,
    parse_dt,
    parse_tm,
    seconds_between,
    unwrap_midnight,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("095959", 9 * 3600 + 59 * 60 + 59),
        ("100001", 10 * 3600 + 1),
        ("083634.749000", 8 * 3600 + 36 * 60 + 34.749),
        ("0930", 9 * 3600 + 30 * 60),
        ("09", 9 * 3600),
        ("09:30:15.5", 9 * 3600 + 30 * 60 + 15.5),
        (" 235950 ", 23 * 3600 + 59 * 60 + 50),
    ],
)
def test_parse_tm(text: str, seconds: float) -> None:
    assert parse_tm(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", None, "2460", "12x", "256000"])
def test_parse_tm_rejects(text: str | None) -> None:
    assert parse_tm(text) is None


def test_minute_and_hour_boundaries_are_not_raw_subtraction() -> None:
    # raw HHMMSS subtraction would give 100001 - 95959 = 4042
    assert parse_tm("100001") - parse_tm("095959") == pytest.approx(2.0)  # type: ignore[operator]


def test_midnight_with_dates() -> None:
    a = combine_date_time("20240301", "235950")
    b = combine_date_time("20240302", "000010")
    assert a is not None and b is not None and seconds_between(a, b) == pytest.approx(20.0)


def test_midnight_without_dates() -> None:
    values = [parse_tm("235950"), parse_tm("000010"), parse_tm("000030")]
    assert unwrap_midnight([v for v in values if v is not None]) == pytest.approx(
        [86390, 86410, 86430]
    )


def test_parse_dt_and_da() -> None:
    assert parse_dt("20181022083634.135000") == dt.datetime(2018, 10, 22, 8, 36, 34, 135000)
    assert parse_dt("20181022083634+0100") == dt.datetime(2018, 10, 22, 8, 36, 34)
    assert parse_dt("2018") is None
    assert parse_da("2018.10.22") == dt.date(2018, 10, 22)
    assert parse_da("20181399") is None
