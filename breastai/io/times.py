"""DICOM date/time parsing for phase clocks (dicom-rules.md §1.6).

TM values are parsed properly (``HH``, ``HHMM``, ``HHMMSS``, ``HHMMSS.FFFFFF``, and the
legacy ``HH:MM:SS`` form); raw ``HHMMSS`` numbers are never subtracted. A time without a
date is placed on an arbitrary day; :func:`unwrap_midnight` then adds a day where a series
of times steps backwards by more than twelve hours (midnight rollover).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "DURATION_SPACING",
    "INJECTION_TAG",
    "combine_date_time",
    "parse_da",
    "parse_dt",
    "parse_tm",
    "phase_timing",
    "seconds_between",
    "since_injection",
    "unwrap_midnight",
]

DURATION_SPACING = "phase spacing (next phase start - this start; last phase: previous spacing)"
INJECTION_TAG = "ContrastBolusStartTime (0018,1042)"
_DAY = 86400.0
_MAX_FROM_INJECTION_S = 4 * 3600.0

_EPOCH = _dt.datetime(2000, 1, 1)
_TM_RE = re.compile(r"^\s*(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?\s*$")


def parse_tm(value: object) -> float | None:
    """Parse a DICOM TM value into seconds after midnight.

    Parameters
    ----------
    value:
        A TM string (``"235950"``, ``"095959.5"``, ``"0930"``, ``"09:30:00"``) or a pydicom TM.

    Returns
    -------
    float or None
        Seconds after midnight, or None when the value is empty or malformed.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if ":" in text:  # legacy ACR-NEMA form HH:MM:SS(.frac)
        text = text.replace(":", "")
    match = _TM_RE.match(text)
    if match is None:
        return None
    hh, mm, ss, frac = match.groups()
    hours = int(hh)
    minutes = int(mm) if mm else 0
    seconds = int(ss) if ss else 0
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    fraction = float("0." + frac) if frac else 0.0
    return hours * 3600.0 + minutes * 60.0 + seconds + fraction


def parse_da(value: object) -> _dt.date | None:
    """Parse a DICOM DA value (``YYYYMMDD`` or legacy ``YYYY.MM.DD``); None when unusable."""
    if value is None:
        return None
    text = str(value).strip().replace(".", "").replace("-", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return _dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def parse_dt(value: object) -> _dt.datetime | None:
    """Parse a DICOM DT value (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``, any trailing part optional).

    A UTC offset suffix is ignored (all clocks of one study share the scanner's time zone).
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    text = re.split(r"[+-]", text, maxsplit=1)[0]
    if len(text) < 8:
        return None
    date = parse_da(text[:8])
    if date is None:
        return None
    rest = text[8:]
    seconds = parse_tm(rest) if rest else 0.0
    if seconds is None:
        return None
    return _dt.datetime.combine(date, _dt.time()) + _dt.timedelta(seconds=seconds)


def combine_date_time(date: object, time: object) -> _dt.datetime | None:
    """Combine a DA and a TM value into a datetime; a missing date gives a placeholder day.

    Returns None when the time is missing or malformed.
    """
    seconds = parse_tm(time)
    if seconds is None:
        return None
    day = parse_da(date)
    base = _dt.datetime.combine(day, _dt.time()) if day is not None else _EPOCH
    return base + _dt.timedelta(seconds=seconds)


def seconds_between(a: _dt.datetime, b: _dt.datetime) -> float:
    """``b - a`` in seconds."""
    return (b - a).total_seconds()


def unwrap_midnight(values: Sequence[float]) -> list[float]:
    """Unwrap seconds-after-midnight values that cross midnight without a date change.

    Every step backwards by more than twelve hours is taken as a midnight rollover and a day
    (86 400 s) is added to that value and all values after it.
    """
    out: list[float] = []
    offset = 0.0
    previous: float | None = None
    for value in values:
        if previous is not None and value + offset < previous - 43200.0:
            offset += 86400.0
        current = value + offset
        out.append(current)
        previous = current
    return out


def since_injection(
    starts_s: Sequence[float | None], injection_s: float | None, *, reason: str = ""
) -> tuple[list[float | None], str]:
    """Seconds from the contrast injection to each phase start, and the reference used.

    ``starts_s`` and ``injection_s`` are seconds on one absolute clock (e.g.
    ``datetime.timestamp()`` of the phase start and of ContrastBolusStartTime on the acquisition
    date). The difference is taken modulo one day into [-12 h, 12 h), so a time without a date
    (placed on a placeholder day) and a midnight crossing both come out right. Values further
    than 4 hours from the injection mean the two clocks do not belong together: all are then
    None.

    Parameters
    ----------
    starts_s:
        Absolute phase start times in seconds (None where a phase has no absolute clock).
    injection_s:
        ContrastBolusStartTime in seconds on the same clock, or None.
    reason:
        Why no absolute phase clock exists (the reference sentence then says so).

    Returns
    -------
    tuple
        ``(seconds per phase or None, reference sentence)``.
    """
    n = len(starts_s)
    if injection_s is None:
        return [None] * n, (
            "none: ContrastBolusStartTime (0018,1042) absent; times are relative to the first "
            "phase (time_s) and to the first post-contrast phase (time_since_first_post_s)"
        )
    values = [t for t in starts_s if t is not None]
    if reason or len(values) != n:
        return [None] * n, (
            "none: ContrastBolusStartTime (0018,1042) present but "
            + (reason or "the phases have no absolute start times")
        )
    out: list[float | None] = [
        (float(t) - float(injection_s) + _DAY / 2) % _DAY - _DAY / 2 for t in values
    ]
    if any(v is not None and abs(v) > _MAX_FROM_INJECTION_S for v in out):
        return [None] * n, (
            "none: ContrastBolusStartTime (0018,1042) is more than 4 hours from the phase "
            "clock (anonymised or wrong)"
        )
    return out, INJECTION_TAG


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def phase_timing(
    times_s: Sequence[float | None],
    durations: Sequence[Sequence[tuple[str, float]]],
    *,
    injection_s: Sequence[float | None] | None = None,
    injection_reference: str = "",
    reference_index: int = 1,
    times_are_mid: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per-phase duration, mid-phase time and times since injection (dicom-rules.md §1.6).

    Parameters
    ----------
    times_s:
        Phase start times in seconds relative to the first phase (``Phase.time_s``).
    durations:
        Per phase, the durations the headers state as ``(source, seconds)``, best source first.
        The first source whose value is positive and no longer than the interval to the next
        phase start (+5 % + 0.5 s; the last phase: the previous interval) is used; otherwise the
        phase spacing.
    injection_s:
        Per phase, seconds from the injection to the phase start (None: unknown).
    injection_reference:
        What ``injection_s`` is relative to (or why it is unknown).
    reference_index:
        The first post-contrast phase (``time_since_first_post_s`` = 0 there).
    times_are_mid:
        ``times_s`` are k-space centres (FrameReferenceDateTime), not starts: ``mid_time_s``
        is then ``time_s`` itself.

    Returns
    -------
    tuple
        ``(records, notes)``: one dict per phase with ``duration_s``, ``duration_source``,
        ``mid_time_s``, ``time_since_injection_s``, ``mid_time_since_injection_s``,
        ``time_since_first_post_s`` and ``injection_reference``; notes on rejected sources.
    """
    n = len(times_s)
    known = all(t is not None for t in times_s) and n > 0
    starts = [float(t) for t in times_s if t is not None] if known else []
    intervals: list[float | None] = [None] * n
    if known and n > 1:
        for k in range(n):
            a, b = (k, k + 1) if k + 1 < n else (k - 1, k)
            intervals[k] = starts[b] - starts[a]
    notes: list[str] = []
    out: list[dict[str, Any]] = []
    ref = reference_index if 0 <= reference_index < n else 0
    for k in range(n):
        duration: float | None = None
        source: str | None = None
        interval = intervals[k]
        for name, value in durations[k] if k < len(durations) else ():
            if not (value > 0 and math.isfinite(value)):
                continue
            if interval is not None and value > 1.05 * interval + 0.5:
                note = (
                    f"duration from {name} ({value:.1f} s) rejected: longer than the "
                    "interval between phase starts"
                )
                if note not in notes:
                    notes.append(note)
                continue
            duration, source = value, name
            break
        if duration is None and interval is not None and interval > 0:
            duration, source = interval, DURATION_SPACING
        t = times_s[k]
        mid: float | None = None
        if t is not None:
            mid = float(t) if times_are_mid else (None if duration is None else t + duration / 2)
        inj = injection_s[k] if injection_s is not None and k < len(injection_s) else None
        if inj is not None and times_are_mid and duration is not None:
            inj_start: float | None = inj - duration / 2
            inj_mid: float | None = inj
        else:
            inj_start = inj
            inj_mid = None if inj is None or duration is None else inj + duration / 2
        out.append(
            {
                "duration_s": _r(duration),
                "duration_source": source,
                "mid_time_s": _r(mid),
                "time_since_injection_s": _r(inj_start),
                "mid_time_since_injection_s": _r(inj_mid),
                "time_since_first_post_s": (
                    _r(float(t) - starts[ref]) if known and t is not None else None
                ),
                "injection_reference": injection_reference or None,
            }
        )
    return out, notes
