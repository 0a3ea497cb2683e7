"""DICOM date/time parsing for phase clocks (dicom-rules.md §1.6).

TM values are parsed properly (``HH``, ``HHMM``, ``HHMMSS``, ``HHMMSS.FFFFFF``, and the
legacy ``HH:MM:SS`` form); raw ``HHMMSS`` numbers are never subtracted. A time without a
date is placed on an arbitrary day; :func:`unwrap_midnight` then adds a day where a series
of times steps backwards by more than twelve hours (midnight rollover).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence

__all__ = [
    "combine_date_time",
    "parse_da",
    "parse_dt",
    "parse_tm",
    "seconds_between",
    "unwrap_midnight",
]

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
