"""The compact stored form of records and history entries: CBOR with field names as numbers
and common values as small tagged numbers.

A province holds a hundred million records, so every byte of a stored record costs about
100 MB of Redis memory. CBOR (RFC 8949, cbor2) already drops JSON's quoting; replacing each
known field name by its position in :data:`FIELDS` (as COSE and CWT do with their labels)
removes most of what is left. Unknown names stay strings, so a record with a field added later
still round-trips.

:data:`FIELDS` is a storage format: append new names at the end, never reorder or remove one,
or every stored record is misread.

:func:`dumps` writes the CBOR itself for what records are made of (dicts, lists, strings,
integers, booleans, None), from tables of the encoded field names and values: cbor2 spends
most of a record's encoding on the tag objects of the common values. Its bytes are
cbor2's of :func:`_shrink`'s form, which stays the definition (and encodes anything else).
"""
from __future__ import annotations

from typing import Any

import cbor2
from cbor2 import CBORTag

FIELDS = (
    # the canonical record (healthcode.record.Record.to_dict)
    "subject", "name", "family_name", "given_name", "name_latin", "family_name_latin",
    "given_name_latin", "birth_date", "document", "type", "number", "region", "subject_id",
    "masked_name", "status", "reasons", "evidence", "tests", "result", "sampled_at", "disease",
    "manufacturer", "centre", "country", "code", "vaccinations", "product", "dose_number",
    "administered_on", "series_doses", "vaccine_type", "lot", "recoveries",
    "first_positive_on", "valid_from", "valid_until", "provenance", "scheme", "issuer",
    "source_id", "issued_at", "key_id", "status_version",
    # what the store keeps beside a record, and history entries
    "record", "created_at", "actor", "at", "to", "note",
)
_NUMBER = {name: i for i, name in enumerate(FIELDS)}

#: Values that recur in millions of records (enumerations, the EU value sets' codes): stored as
#: CBOR tag 6 around their position here, two bytes instead of up to twenty. Same rule as
#: FIELDS: append only.
VALUES = (
    "green", "yellow", "red", "COVID-19", "pcr", "rat", "antibody", "other", "negative",
    "positive", "inconclusive", "travel_permit", "id_card", "passport", "MO", "HK", "CN",
    "GD", "TW", "PT",
    # reason codes
    "close_contact", "secondary_contact", "positive_test", "symptoms",
    "travel_from_risk_area", "visited_risk_area", "quarantine", "test_overdue",
    "isolation_ended", "negative_test", "correction", "partner_conversion",
    # EU DCC value sets: vaccine products, manufacturers, vaccine types, disease, test types
    "EU/1/20/1528", "EU/1/20/1507", "EU/1/21/1529", "EU/1/20/1525", "EU/1/21/1618",
    "BBIBP-CorV", "CoronaVac", "Covishield", "Sputnik-V", "ORG-100030215", "ORG-100031184",
    "ORG-100001699", "ORG-100001417", "ORG-100032020", "ORG-100020693", "Sinovac-Biotech",
    "Bharat-Biotech", "1119349007", "1119305005", "J07BX03", "840539006",
    "LP6464-4", "LP217198-3", "260415000", "260373001", "native", "eu-dcc", "shc", "icao-vds",
)
_VALUE = {value: i for i, value in enumerate(VALUES)}
_TAG = 6  # unassigned in the IANA CBOR tag registry; only ever read back by loads()


def _shrink(value: Any, number=_NUMBER.get, known=_VALUE.get) -> Any:
    # strings, the most common leaf, skip the recursive call: a province's import runs this
    # on every field of a hundred million records
    cls = value.__class__
    if cls is dict:
        out = {}
        for k, v in value.items():
            if v.__class__ is str:
                i = known(v)
                out[number(k, k)] = v if i is None else CBORTag(_TAG, i)
            else:
                out[number(k, k)] = _shrink(v)
        return out
    if cls is list or cls is tuple:
        return [_shrink(v) for v in value]
    if cls is str:
        i = known(value)
        return value if i is None else CBORTag(_TAG, i)
    return value


def _grow(value: Any) -> Any:
    cls = value.__class__
    if cls is dict:
        return {(FIELDS[k] if k.__class__ is int else k): _grow(v) for k, v in value.items()}
    if cls is list:
        return [_grow(v) for v in value]
    if cls is CBORTag and value.tag == _TAG:
        return VALUES[value.value]
    return value


def _head(major: int, n: int) -> bytes:
    """A CBOR item head: major type (in the top three bits) and argument, shortest form."""
    if n < 24:
        return bytes((major | n,))
    for size, extra in ((1, 24), (2, 25), (4, 26), (8, 27)):
        if n < 1 << (8 * size):
            return bytes((major | extra,)) + n.to_bytes(size, "big")
    raise OverflowError(n)


_TEXT_HEAD = tuple(_head(0x60, n) for n in range(256))
_MAP_HEAD = tuple(_head(0xA0, n) for n in range(256))
_ARRAY_HEAD = tuple(_head(0x80, n) for n in range(256))
_SMALL_INT = tuple(_head(0x00, n) for n in range(256))
#: a known field name as _shrink numbers it, and a known value as _shrink tags it, encoded
_NAME_BYTES = {name: cbor2.dumps(i) for i, name in enumerate(FIELDS)}
_VALUE_BYTES = {value: cbor2.dumps(CBORTag(_TAG, i)) for i, value in enumerate(VALUES)}
_MAX_DEPTH = 64


class _Unhandled(Exception):
    """Something :func:`_encode` leaves to cbor2 (floats, big integers, other classes)."""


def _encode(value: Any, out: bytearray, depth: int) -> None:
    """Append cbor2's encoding of ``_shrink(value)`` (exact built-in classes only, so a
    subclass cbor2 or _shrink would treat apart goes to them)."""
    cls = value.__class__
    if cls is str:
        known = _VALUE_BYTES.get(value)
        if known is None:
            raw = value.encode()
            n = len(raw)
            out += _TEXT_HEAD[n] if n < 256 else _head(0x60, n)
            out += raw
        else:
            out += known
    elif cls is dict:
        if depth > _MAX_DEPTH:
            raise _Unhandled
        n = len(value)
        out += _MAP_HEAD[n] if n < 256 else _head(0xA0, n)
        name_bytes, value_bytes, text_head = _NAME_BYTES, _VALUE_BYTES, _TEXT_HEAD
        for k, v in value.items():
            known = name_bytes.get(k)
            if known is not None:
                out += known
            elif k.__class__ is str:  # a name added later: kept as a string, never tagged
                raw = k.encode()
                n = len(raw)
                out += text_head[n] if n < 256 else _head(0x60, n)
                out += raw
            else:
                raise _Unhandled
            if v.__class__ is str:  # the common leaf, inline
                known = value_bytes.get(v)
                if known is None:
                    raw = v.encode()
                    n = len(raw)
                    out += text_head[n] if n < 256 else _head(0x60, n)
                    out += raw
                else:
                    out += known
            else:
                _encode(v, out, depth + 1)
    elif cls is list or cls is tuple:
        if depth > _MAX_DEPTH:
            raise _Unhandled
        n = len(value)
        out += _ARRAY_HEAD[n] if n < 256 else _head(0x80, n)
        for v in value:
            _encode(v, out, depth + 1)
    elif cls is int:
        if 0 <= value < 256:
            out += _SMALL_INT[value]
        elif 0 <= value < 1 << 64:
            out += _head(0x00, value)
        elif -(1 << 64) <= value < 0:
            out += _head(0x20, -1 - value)
        else:
            raise _Unhandled  # a bignum
    elif value is None:
        out += b"\xf6"
    elif value is True:
        out += b"\xf5"
    elif value is False:
        out += b"\xf4"
    else:
        raise _Unhandled


def dumps(data: dict) -> bytes:
    """The compact bytes of a JSON-like dict: ``cbor2.dumps(_shrink(data))``, faster."""
    out = bytearray()
    try:
        _encode(data, out, 0)
    except (_Unhandled, UnicodeEncodeError):  # cbor2 encodes it, or raises as it would
        return cbor2.dumps(_shrink(data))
    return bytes(out)


def loads(raw: bytes) -> dict:
    """The dict :func:`dumps` was given (lists come back as lists)."""
    return _grow(cbor2.loads(raw))
