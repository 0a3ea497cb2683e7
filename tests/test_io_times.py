"""TM/DA/DT parsing and midnight rollover (dicom-rules.md §1.6, §2 case 19)."""

from __future__ import annotations

import datetime as dt

import pytest

from breastai.io.times import (
    DURATION_SPACING,
    INJECTION_TAG,
    combine_date_time,
    parse_da,
    parse_dt,
    parse_tm,
    phase_timing,
    seconds_between,
    since_injection,
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


# -------------------------------------------------------------------------------------------
# phase durations, mid-phase times, times since injection (§1.6)


def test_phase_timing_takes_the_first_plausible_duration_source() -> None:
    times = [0.0, 90.0, 150.0, 210.0]  # pre-contrast, then 60 s phases
    stated = [
        [("AcquisitionDuration (0018,9073)", 240.0), ("TemporalResolution (0020,0110)", 55.0)],
    ] * 4  # 240 s is the whole series, longer than any phase interval: rejected
    out, notes = phase_timing(
        times, stated, injection_s=[-70.0, 20.0, 80.0, 140.0], injection_reference=INJECTION_TAG
    )
    assert [o["duration_source"] for o in out] == ["TemporalResolution (0020,0110)"] * 4
    assert [o["duration_s"] for o in out] == [55.0] * 4
    assert [o["mid_time_s"] for o in out] == [27.5, 117.5, 177.5, 237.5]
    assert [o["time_since_injection_s"] for o in out] == [-70.0, 20.0, 80.0, 140.0]
    assert [o["mid_time_since_injection_s"] for o in out] == [-42.5, 47.5, 107.5, 167.5]
    assert [o["time_since_first_post_s"] for o in out] == [-90.0, 0.0, 60.0, 120.0]
    assert len(notes) == 1 and "0018,9073" in notes[0] and "rejected" in notes[0]


def test_phase_timing_falls_back_to_phase_spacing() -> None:
    out, _ = phase_timing([0.0, 100.0, 160.0, 230.0], [[], [], [], []])
    assert [o["duration_s"] for o in out] == [100.0, 60.0, 70.0, 70.0]  # last: previous interval
    assert {o["duration_source"] for o in out} == {DURATION_SPACING}
    assert [o["mid_time_s"] for o in out] == [50.0, 130.0, 195.0, 265.0]
    assert {o["time_since_injection_s"] for o in out} == {None}


def test_phase_timing_without_times() -> None:
    out, _ = phase_timing([None, None], [[("TemporalResolution (0020,0110)", 30.0)], []])
    assert out[0]["duration_s"] == 30.0 and out[0]["mid_time_s"] is None
    assert out[1]["duration_s"] is None and out[1]["duration_source"] is None
    assert out[0]["time_since_first_post_s"] is None


def test_phase_timing_k_space_centre_clock() -> None:
    out, _ = phase_timing(
        [0.0, 60.0], [[("x", 40.0)], [("x", 40.0)]], injection_s=[-30.0, 30.0], times_are_mid=True
    )
    assert [o["mid_time_s"] for o in out] == [0.0, 60.0]
    assert [o["mid_time_since_injection_s"] for o in out] == [-30.0, 30.0]
    assert [o["time_since_injection_s"] for o in out] == [-50.0, 10.0]


def test_since_injection_wraps_days_and_rejects_far_clocks() -> None:
    day = 86400.0
    inj = combine_date_time("20240301", "235900")
    starts = [combine_date_time("20240301", "235830"), combine_date_time("20240302", "000100")]
    assert inj is not None and all(s is not None for s in starts)
    values, ref = since_injection([s.timestamp() for s in starts if s], inj.timestamp())
    assert values == pytest.approx([-30.0, 120.0]) and ref == INJECTION_TAG
    # injection time without a date (placeholder day): the time of day still matches
    values, _ = since_injection(
        [starts[1].timestamp() + 0.0 if starts[1] else 0.0], inj.timestamp() - 3 * day
    )
    assert values == pytest.approx([120.0])
    values, ref = since_injection([inj.timestamp() + 5 * 3600.0], inj.timestamp())
    assert values == [None] and "more than 4 hours" in ref
    values, ref = since_injection([0.0], None)
    assert values == [None] and "absent" in ref
    values, ref = since_injection([1.0, 2.0], 0.0, reason="the phase clock is relative")
    assert values == [None, None] and "relative" in ref
