"""The payload of a verified DCC (schema 1.0.0 to 1.3.x) as the canonical record."""
from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from datetime import datetime

from healthcode.record import (Evidence, Provenance, Record, Recovery, Subject, TestResult,
                               Vaccination)

from ..base import Warnings
from ..dates import read_date, read_date_time
from .claims import Claims
from .cose import _MAPS, _error

DISEASE_COVID = "840539006"
TEST_TYPE_CODES = {"LP6464-4": "pcr", "LP217198-3": "rat"}
TEST_RESULT_CODES = {"260415000": "negative", "260373001": "positive"}


_SCHEMA_VERSION = re.compile(r"1\.[0-3]\.\d+")
#: versions already matched, so the common case is one set lookup per scan
_SCHEMA_VERSIONS_SEEN: set[str] = set()


def _text(value) -> str | None:
    """Optional text fields: anything but a string is treated as absent."""
    return value if type(value) is str else None  # noqa: E721 - exact type is the fast check


def _count(value, what: str, warnings: Warnings, *, required: bool):
    """A dose count (``dn``, ``sd``): an integer; ``2.0`` or ``"2"`` are read with a warning
    (the hcert specification asks decoders to accept any reasonable type conversion)."""
    if type(value) is int:  # noqa: E721 - the common case
        return value
    if value is None:
        if required:
            raise _error("malformed", "mapping", f"{what} is missing")
        return None
    number = None
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit() and value.isascii():
        number = int(value)
    if number is None or isinstance(value, bool):
        raise _error("malformed", "mapping", f"{what} is not a number")
    warnings.add("dcc_number_type", f"{what} is not written as an integer")
    return number


def _disease(code, warnings: Warnings) -> str:
    if code == DISEASE_COVID or code is None:
        return "COVID-19"
    warnings.add("value_outside_value_set", f"tg {str(code)[:16]!r} is not a code this "
                                            f"service knows; kept as issued")
    return str(code)


def _entry(entry) -> Mapping:
    if not isinstance(entry, _MAPS):
        raise _error("malformed", "mapping", "a DCC entry is not a map")
    return entry


def _vaccination(entry: Mapping, warnings: Warnings) -> Vaccination:
    get = entry.get
    product = _text(get("mp")) or _text(get("vp"))
    if not product:
        warnings.add("dcc_empty_field", "the vaccination names no medicinal product")
        product = "unknown"
    return Vaccination(
        product=product, dose_number=_count(get("dn"), "dn", warnings, required=True),
        series_doses=sd if (sd := get("sd")).__class__ is int else
        _count(sd, "sd", warnings, required=False),
        administered_on=read_date(get("dt"), "dt", warnings, required=True),
        disease=_disease(get("tg"), warnings),
        vaccine_type=_text(get("vp")), manufacturer=_text(get("ma")),
        country=_text(get("co")), code=_text(get("ci")))


def _test(entry: Mapping, warnings: Warnings) -> TestResult:
    get = entry.get
    result_code, type_code = get("tr"), get("tt")
    result = TEST_RESULT_CODES.get(result_code)
    if result is None:
        warnings.add("value_outside_value_set", f"tr {str(result_code)[:16]!r} is not a test "
                                                f"result this service knows; kept as issued")
        result = "unknown"
    test_type = TEST_TYPE_CODES.get(type_code)
    if test_type is None:
        warnings.add("value_outside_value_set", f"tt {str(type_code)[:16]!r} is not a test "
                                                f"type this service knows; kept as issued")
        test_type = "other"
    return TestResult(
        type=test_type, result=result,
        sampled_at=read_date_time(get("sc"), "sc", warnings),
        disease=_disease(get("tg"), warnings), name=_text(get("nm")),
        manufacturer=_text(get("ma")), centre=_text(get("tc")), country=_text(get("co")),
        code=_text(get("ci")),
        # the codes as issued, where the record's vocabulary could not say them
        type_code=None if test_type != "other" else _text(type_code),
        result_code=None if result != "unknown" else str(result_code)[:64])


def _recovery(entry: Mapping, warnings: Warnings) -> Recovery:
    get = entry.get
    return Recovery(
        first_positive_on=read_date(get("fr"), "fr", warnings, required=True),
        valid_from=read_date(get("df"), "df", warnings),
        valid_until=read_date(get("du"), "du", warnings),
        disease=_disease(get("tg"), warnings), country=_text(get("co")))


def _subject(dcc: Mapping, warnings: Warnings) -> Subject:
    """The name as issued: ``fn``/``gn`` in the issuer's script, ``fnt``/``gnt`` in ICAO 9303
    transliteration (kept with its ``<`` fillers; the record's display forms space them)."""
    name = dcc.get("nam")
    if not isinstance(name, _MAPS):
        raise _error("malformed", "mapping", "the DCC has no name")
    get = name.get
    fn, gn, fnt, gnt = get("fn"), get("gn"), get("fnt"), get("gnt")
    if not (fn.__class__ is str and gn.__class__ is str and fnt.__class__ is str
            and gnt.__class__ is str):  # the common case has all four as text
        fn, gn, fnt, gnt = (_text(fn), _text(gn), _text(fnt), _text(gnt))
    if not (fn or gn or fnt or gnt):
        # Schema 1.3 requires fnt or gnt; a genuine code without them proves no holder, which
        # acceptance decides (as for an SHC lab card without a Patient), not the decoder.
        warnings.add("dcc_no_name", "the DCC carries no name")
    return Subject(family_name=fn, given_name=gn, family_name_latin=fnt, given_name_latin=gnt,
                   birth_date=read_date(dcc.get("dob"), "dob", warnings))


@functools.lru_cache(maxsize=256)
def _kid_text(kid: bytes) -> str:
    """The kid as trust lists print it (standard base64); only verified kids get here."""
    return base64.b64encode(kid).decode("ascii")


#: certificate type -> (DCC group key, entry mapper, Evidence builder)
_GROUPS = {"vaccination": ("v", _vaccination, lambda items: Evidence(vaccinations=items)),
           "test": ("t", _test, lambda items: Evidence(tests=items)),
           "recovery": ("r", _recovery, lambda items: Evidence(recoveries=items))}


def to_record(claims: Claims, cert_type: str, kid: bytes, warnings: Warnings | None = None, *,
              valid_until: datetime | None = None) -> Record:
    """The canonical record of a verified DCC. A DCC carries no colour: ``status`` is None.

    Every schema version 1.0.0 to 1.3.x maps alike: the fields this reads kept their meaning
    (1.0's ``t[].dr`` and later additions are simply not read). Codes (``mp``, ``ma``,
    ``co``, ``tg``, ``tt``, ``tr``...) are kept as issued; the ones the record interprets and
    does not know are reported as ``value_outside_value_set``.
    """
    warnings = Warnings() if warnings is None else warnings
    key, build, evidence = _GROUPS[cert_type]
    dcc = claims.dcc
    version = dcc.get("ver")
    if version not in _SCHEMA_VERSIONS_SEEN:
        if isinstance(version, str) and _SCHEMA_VERSION.fullmatch(version):
            if len(_SCHEMA_VERSIONS_SEEN) < 64:  # a handful exist; never grow without bound
                _SCHEMA_VERSIONS_SEEN.add(version)
        else:
            warnings.add("dcc_schema_version", f"schema version {str(version)[:16]!r} is not "
                                               f"one of 1.0.0 to 1.3.x")
    if ("v" in dcc) + ("t" in dcc) + ("r" in dcc) > 1:
        for other in ("v", "t", "r"):
            if dcc.get(other) == []:
                warnings.add("dcc_empty_group", f"the DCC carries an empty {other} list")
    entries = [_entry(e) for e in dcc[key]]
    provenance = Provenance(
        scheme="eu-dcc", issuer=claims.issuer, source_id=_text(entries[0].get("ci")) or None,
        issued_at=claims.issued_at,
        valid_until=claims.expires if valid_until is None else valid_until,
        key_id=_kid_text(kid))
    return Record(subject=_subject(dcc, warnings),
                  evidence=evidence(tuple([build(e, warnings) for e in entries])),
                  provenance=provenance)
