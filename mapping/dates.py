"""Dates and date-times in the forms real issuers wrote them, for every scheme that carries text.

EU DCC (schema 1.0.0 to 1.3.x) and ICAO VDS-NC both say ISO 8601; issuers also wrote unknown
parts as ``00`` or ``XX`` (``1979-00-00``, ``1964-XX-XX``), a date-time where a date belongs
(``1978-01-26T00:00:00``), the basic format (``19790414``, which the VDS-NC worked examples in
circulation use), a date-time without a UTC offset, or a bare date where a date-time belongs.
What is known is kept, nothing is guessed, and each deviation is reported in the
:class:`~mapping.base.Warnings` the caller passes (codes ``date_placeholder``,
``date_time_for_date``, ``date_basic_format``, ``date_invalid``, ``time_without_offset``,
``date_for_date_time``). Text that is no date at all is ``malformed``.
"""
from __future__ import annotations

import re
from datetime import date, datetime

from healthcode.errors import CodeError

from .base import Warnings

__all__ = ["read_date", "read_date_time"]

#: ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` where unknown parts may be ``00``/``XX``, and what
#: may follow (a time, which is then dropped).
_DATE_FORM = re.compile(r"(\d{4})(?:-(\d{2}|XX)(?:-(\d{2}|XX))?)?(.*)", re.S)
_BASIC_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_AFTER_DATE = re.compile(r"[T ]\d{2}:\d{2}.*", re.S)
_TIME_WITH_OFFSET = re.compile(r".*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$", re.S)
_UNKNOWN = (None, "00", "XX")


def _malformed(message: str) -> CodeError:
    return CodeError("malformed", message, step="mapping")


def read_date(value, what: str, warnings: Warnings, *, required: bool = False) -> str | None:
    """A (partial) date: ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``, or None when absent or ``""``.

    :param what: the field's name in the code, for messages (never its value)
    :raises CodeError: ``malformed`` when the text is not a date, or ``required`` and absent
    """
    if value.__class__ is str and _FULL_DATE.fullmatch(value) and "01" <= value[5:7] <= "12" \
            and "01" <= value[8:] <= "28":  # the common case: a day every month has
        return value
    if isinstance(value, datetime):
        warnings.add("date_time_for_date", f"{what} is a date-time, not a date")
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if value is None or value == "":
        if required:
            raise _malformed(f"{what} is missing")
        return None
    if not isinstance(value, str):
        raise _malformed(f"{what} is not text")
    text = value.strip()
    basic = _BASIC_DATE.fullmatch(text)
    if basic:
        warnings.add("date_basic_format", f"{what} is in ISO 8601 basic format (YYYYMMDD)")
        year, month, day, rest = (*basic.groups(), "")
    else:
        found = _DATE_FORM.fullmatch(text)
        if not found:
            raise _malformed(f"{what} is not in ISO 8601 form")
        year, month, day, rest = found.groups()
    if rest:
        if day is None or not _TIME_AFTER_DATE.fullmatch(rest):
            raise _malformed(f"{what} is not in ISO 8601 form")
        warnings.add("date_time_for_date", f"{what} is a date-time, not a date")
    if month in ("00", "XX") or (month not in _UNKNOWN and day in ("00", "XX")):
        warnings.add("date_placeholder", f"{what} marks unknown parts with placeholders")
    parts = [year]
    if month not in _UNKNOWN:
        parts.append(month)
        if day not in _UNKNOWN:
            parts.append(day)
    if len(parts) > 1 and not 1 <= int(month) <= 12:
        warnings.add("date_invalid", f"{what} names no calendar month; the year is kept")
        parts = [year]
    elif len(parts) == 3:
        try:
            date(int(year), int(month), int(day))
        except ValueError:
            warnings.add("date_invalid", f"{what} names no calendar day; the month is kept")
            parts = parts[:2]
    return "-".join(parts)


def read_date_time(value, what: str, warnings: Warnings):
    """A date-time as the record parses it (ISO 8601 text or a datetime): RFC 3339 by the
    letter; no offset is read as UTC, a bare date as midnight UTC, each with a warning.

    :raises CodeError: ``malformed`` when absent or not text
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            warnings.add("time_without_offset", f"{what} has no UTC offset; read as UTC")
        return value
    if not isinstance(value, str) or not value.strip():
        raise _malformed(f"{what} is missing")
    text = value.strip()
    if text[-1:] == "Z" or text[-6:-5] in ("+", "-") and text[-3:-2] == ":":
        return text  # RFC 3339 with an offset: the common case
    if _FULL_DATE.fullmatch(text):
        warnings.add("date_for_date_time", f"{what} is a date without a time; read as "
                                           f"midnight UTC")
        return text + "T00:00:00Z"
    if not _TIME_WITH_OFFSET.match(text):
        warnings.add("time_without_offset", f"{what} has no UTC offset; read as UTC")
    return text
