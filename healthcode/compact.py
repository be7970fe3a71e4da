"""The compact stored form of records and history entries: CBOR with field names as numbers.

A province holds a hundred million records, so every byte of a stored record costs about
100 MB of Redis memory. CBOR (RFC 8949, cbor2) already drops JSON's quoting; replacing each
known field name by its position in :data:`FIELDS` (as COSE and CWT do with their labels)
removes most of what is left. Unknown names stay strings, so a record with a field added later
still round-trips.

:data:`FIELDS` is a storage format: append new names at the end, never reorder or remove one,
or every stored record is misread.
"""
from __future__ import annotations

from typing import Any

import cbor2

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


def _shrink(value: Any, number=_NUMBER.get) -> Any:
    # strings, the most common leaf, skip the recursive call: a province's import runs this
    # on every field of a hundred million records
    cls = value.__class__
    if cls is dict:
        return {number(k, k): v if v.__class__ is str else _shrink(v) for k, v in value.items()}
    if cls is list or cls is tuple:
        return [v if v.__class__ is str else _shrink(v) for v in value]
    return value


def _grow(value: Any) -> Any:
    if value.__class__ is dict:
        return {(FIELDS[k] if k.__class__ is int else k): _grow(v) for k, v in value.items()}
    if value.__class__ is list:
        return [_grow(v) for v in value]
    return value


def dumps(data: dict) -> bytes:
    """The compact bytes of a JSON-like dict."""
    return cbor2.dumps(_shrink(data))


def loads(raw: bytes) -> dict:
    """The dict :func:`dumps` was given (lists come back as lists)."""
    return _grow(cbor2.loads(raw))
