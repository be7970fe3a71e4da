"""The compact stored form of records and history entries: CBOR with field names as numbers
and common values as small tagged numbers.

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


def dumps(data: dict) -> bytes:
    """The compact bytes of a JSON-like dict."""
    return cbor2.dumps(_shrink(data))


def loads(raw: bytes) -> dict:
    """The dict :func:`dumps` was given (lists come back as lists)."""
    return _grow(cbor2.loads(raw))
