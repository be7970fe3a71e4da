"""The canonical health record: the scheme-neutral form every adapter maps to and from.

Modelled on WHO's DDCC:VS/TR core data set (subject, vaccination, test and recovery events,
certificate metadata) plus the colour status a health code carries. Records are immutable and
validated on construction, so an adapter cannot hand the core a half-built record; ``to_dict`` /
``from_dict`` give a stable JSON form (keys sorted, absent values omitted, times in UTC ``Z``).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable

from .errors import InvalidField

STATUSES = ("green", "yellow", "red")

#: Reasons an authority may give for a status; yellow and red need at least one.
STATUS_REASONS = {
    "close_contact": "close contact of a confirmed case",
    "secondary_contact": "contact of a close contact",
    "positive_test": "positive test result",
    "symptoms": "reported symptoms",
    "travel_from_risk_area": "arrived from a risk area",
    "visited_risk_area": "visited a risk area",
    "quarantine": "in quarantine or self-monitoring",
    "test_overdue": "a required test is overdue",
    "isolation_ended": "isolation or quarantine ended",
    "negative_test": "negative test result",
    "correction": "correction of an earlier error",
    "partner_conversion": "converted from a partner region's code",
}

TEST_TYPES = ("pcr", "rat", "antibody", "other")
#: ``unknown``: the code carries a result outside the vocabularies its adapter knows (kept as
#: ``result_code``); no acceptance rule that asks for a result is met by it.
TEST_RESULTS = ("negative", "positive", "inconclusive", "unknown")

_PARTIAL_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
#: ASCII digits only (``\d`` would take any script's), for the fast path of parse_partial_date
_ASCII_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _fail(field_name: str, message: str):
    raise InvalidField(field_name, message)


def parse_time(value: Any, field_name: str) -> datetime:
    """Accept an aware datetime, an ISO 8601 string or a POSIX number; return aware UTC."""
    if value.__class__ is datetime and value.tzinfo is timezone.utc:
        return value  # what adapters pass for every scanned code; astimezone would return it
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            dt = datetime.fromtimestamp(value, timezone.utc)
        except (OverflowError, OSError, ValueError):
            _fail(field_name, "a time out of range")
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            _fail(field_name, f"not an ISO 8601 date-time: {value!r}")
    else:
        _fail(field_name, "expected an ISO 8601 date-time")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def format_time(dt: datetime) -> str:
    """UTC, second precision unless there is a fraction, with a ``Z``."""
    if dt.tzinfo is not timezone.utc:  # (astimezone returns a UTC time unchanged)
        dt = dt.astimezone(timezone.utc)
    text = dt.isoformat(timespec="microseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_partial_date(value: Any, field_name: str) -> str:
    """A birth date as ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` (schemes allow partial dates)."""
    if value.__class__ is str and _ASCII_FULL_DATE.fullmatch(value) and value[:4] != "0000" \
            and "01" <= value[5:7] <= "12" and "01" <= value[8:] <= "28":
        return value  # the common case: a day every month of every year 1-9999 has
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if not isinstance(value, str) or not _PARTIAL_DATE.match(value.strip()):
        _fail(field_name, "expected YYYY, YYYY-MM or YYYY-MM-DD")
    text = value.strip()
    parts = text.split("-")
    try:
        if len(parts) == 3:
            date.fromisoformat(text)
        elif len(parts) == 2 and not 1 <= int(parts[1]) <= 12:
            raise ValueError
    except ValueError:
        _fail(field_name, f"not a calendar date: {value!r}")
    return text


#: Scripts whose names are written without spaces between family and given name: Hangul
#: Jamo, CJK radicals and symbols, kana, bopomofo, CJK ideographs (and extensions), Hangul.
_CJK = re.compile("[\\s\u1100-\u11FF\u2E80-\u2FDF\u3040-\u30FF\u3100-\u318F\u31A0-\u31FF"
                  "\u3400-\u4DBF\u4E00-\u9FFF\uA960-\uA97F\uAC00-\uD7AF\uF900-\uFAFF"
                  "\U00020000-\U0003134F]+")


def is_cjk(text: str | None) -> bool:
    """Whether ``text`` is written in Chinese, Japanese or Korean script (spaces aside)."""
    return bool(text) and not text.isascii() and _CJK.fullmatch(text) is not None \
        and not text.isspace()


def _spaced(part: str) -> str:
    """``part`` with ICAO ``<`` fillers and runs of spaces as single spaces (parts arrive
    stripped, see :func:`_clean_strings`)."""
    if "<" in part or "  " in part:
        return " ".join(part.replace("<", " ").split())
    return part


def full_name(family: str | None, given: str | None) -> str | None:
    """One display name from its parts, in the order the name's script writes it.

    Chinese, Japanese and Korean names are family name first with no space ("陳" + "大文" ->
    "陳大文"); others given name first ("Gabriele Musterfrau"). ICAO 9303 transliterations use
    ``<`` between words (``MUSTERFRAU<GOESSINGER``): the display form spaces them.
    """
    family = _spaced(family) if family else None
    given = _spaced(given) if given else None
    if family and given:
        if is_cjk(family) and is_cjk(given):
            return family + given
        return f"{given} {family}"
    return family or given or None


def mask_name(name: str | None) -> str | None:
    """Keep the first and last character of each word, star the rest, so staff can compare a
    name with an identity document without the checkpoint showing it whole.

    Chinese names have no spaces: "陳大文" -> "陳*文"; "Chan Tai Man" -> "C**n T*i M*n".
    Two-character names keep the first: "李明" -> "李*". Hyphens and apostrophes separate words
    like spaces do ("Musterfrau-Gößinger" -> "M********u-G******r"), and ICAO ``<`` fillers
    read as spaces.
    """
    if not name:
        return name
    words = " ".join(name.replace("<", " ").split())
    if "-" in words or "'" in words or "’" in words:
        parts = _WORD_BREAKS.split(words)
    elif "\0" in words:  # a NUL splits a word too (as it always has)
        parts = words.replace(" ", "\0 \0").split("\0")
    else:  # the common case: words between single spaces
        return " ".join([_mask_word(word) for word in words.split(" ")]) or None
    return "".join([_mask_word(part) if part not in _BREAKS else part for part in parts]) or None


def _mask_word(word: str) -> str:
    size = len(word)
    if size <= 2:
        return word[0] + "*" if size == 2 else word
    return word[0] + "*" * (size - 2) + word[-1]


_BREAKS = frozenset(("", " ", "-", "'", "’"))


_WORD_BREAKS = re.compile(r"([ \-'’])")


def _str_or_none(value: Any, field_name: str, max_len: int = 200,
                 prefix: str | None = None) -> str | None:
    # Records are built for every scanned foreign code, so the field name is only assembled
    # when there is an error to report.
    if value is None or value == "":
        return None
    if value.__class__ is not str:
        if not isinstance(value, str):
            _fail(f"{prefix}.{field_name}" if prefix else field_name, "expected a string")
    value = value.strip()
    if len(value) > max_len:
        _fail(f"{prefix}.{field_name}" if prefix else field_name,
              f"longer than {max_len} characters")
    return value or None


def _int_or_none(value: Any, field_name: str) -> int | None:
    """A count. ``2.0`` is the integer 2, as JSON Schema (and so our OpenAPI document) has it:
    a client's JSON library may well write it so."""
    if value.__class__ is int and value >= 0:  # the common case (bool is another class)
        return value
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer() and 0 <= value <= 2**53:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(field_name, "expected a non-negative integer")
    return value


def record_class(cls):
    """``@dataclass(frozen=True)``, with an ``__init__`` that stores the fields straight into
    the instance's ``__dict__``.

    The generated frozen ``__init__`` goes through ``object.__setattr__`` once per field, a
    third of the cost of building a record, which happens for every scanned foreign code. For
    these classes (no slots, no descriptors on fields) the two are the same: same parameters
    in the same order, same defaults and default factories, then ``__post_init__`` (where the
    class has one), which validates as before. Instances stay frozen: assigning an attribute
    raises ``FrozenInstanceError``.
    """
    cls = dataclass(frozen=True)(cls)
    namespace = {"_NO_VALUE": dataclasses.MISSING}
    params, body = [], ["    fields = self.__dict__"]
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
            body.append(f"    fields[{f.name!r}] = {f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_NO_VALUE")
            body.append(f"    fields[{f.name!r}] = _factory_{f.name}() if {f.name} is _NO_VALUE "
                        f"else {f.name}")
        else:
            params.append(f.name)
            body.append(f"    fields[{f.name!r}] = {f.name}")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body), namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init
    return cls


_NUMBER_NOISE = re.compile(r"[\s\-()]")
_DOCUMENT_FIELDS = frozenset(("type", "number", "region"))


@record_class
class Document:
    """An identity document: its type, number and the region that issued it."""

    type: str
    number: str
    region: str

    def __post_init__(self):
        fields = self.__dict__
        for name in ("type", "number", "region"):
            value = fields[name]
            if not isinstance(value, str) or not value.strip():
                _fail(f"document.{name}", "required")
            if len(value) > 64:
                _fail(f"document.{name}", "longer than 64 characters")
        object.__setattr__(self, "type", self.type.strip().lower())
        object.__setattr__(self, "region", self.region.strip().upper())
        object.__setattr__(self, "number", self.number.strip())

    @classmethod
    def from_request(cls, value: Any) -> "Document":
        """From a request body: an object with exactly ``type``, ``number`` and ``region``."""
        if not isinstance(value, dict):
            _fail("document", "expected an object with type, number and region")
        if not _DOCUMENT_FIELDS.issuperset(value):
            _fail(f"document.{sorted(set(value) - _DOCUMENT_FIELDS)[0]}", "unknown field")
        return cls(type=value.get("type"), number=value.get("number"),
                   region=value.get("region"))

    def normalised(self) -> str:
        """The form the subject id is computed over: case, spaces, dashes and the brackets
        around a check digit do not matter ("1234567(8)" is "12345678", as Hong Kong and
        Macau identity cards print the check digit in brackets and people type it without)."""
        number = _NUMBER_NOISE.sub("", self.number).upper()
        return f"{self.type}|{self.region}|{number}"


@record_class
class Subject:
    """Who the record is about. ``name`` may be absent where a code only carries a masked name."""

    name: str | None = None
    family_name: str | None = None
    given_name: str | None = None
    name_latin: str | None = None
    family_name_latin: str | None = None
    given_name_latin: str | None = None
    birth_date: str | None = None
    document: Document | None = None
    subject_id: str | None = None
    masked_name: str | None = None

    def __post_init__(self):
        _clean_strings(self, "subject", ("name", "family_name", "given_name", "name_latin",
                                         "family_name_latin", "given_name_latin", "subject_id",
                                         "masked_name"))
        if self.name is None and (self.family_name or self.given_name):
            object.__setattr__(self, "name", full_name(self.family_name, self.given_name))
        if self.name_latin is None and (self.family_name_latin or self.given_name_latin):
            object.__setattr__(self, "name_latin", full_name(self.family_name_latin,
                                                             self.given_name_latin))
        if self.birth_date is not None:
            birth_date = parse_partial_date(self.birth_date, "subject.birth_date")
            if birth_date is not self.birth_date:
                object.__setattr__(self, "birth_date", birth_date)
        if isinstance(self.document, dict):
            object.__setattr__(self, "document", Document(**_only(self.document, Document,
                                                                      "subject.document")))
        # A subject may carry no name at all: an SHC lab-result card has no Patient resource.
        # Policies and the native scheme decide whether such a record is acceptable.
        # The masked name comes from what the code carries: the name in its own script, else
        # its Latin transliteration (a DCC may carry only fnt/gnt).
        if self.masked_name is None and (self.name or self.name_latin):
            object.__setattr__(self, "masked_name", mask_name(self.name or self.name_latin))


@record_class
class TestResult:
    """A diagnostic test: what kind, its outcome and when the sample was taken."""

    __test__ = False  # not a pytest test class

    type: str
    result: str
    sampled_at: datetime
    disease: str = "COVID-19"
    name: str | None = None
    manufacturer: str | None = None
    centre: str | None = None
    country: str | None = None
    code: str | None = None
    #: the scheme's own codes for the type and result, as issued (e.g. DCC ``tt``/``tr``)
    type_code: str | None = None
    result_code: str | None = None

    def __post_init__(self):
        if self.type not in TEST_TYPES:
            _fail("evidence.tests.type", f"one of {', '.join(TEST_TYPES)}")
        if self.result not in TEST_RESULTS:
            _fail("evidence.tests.result", f"one of {', '.join(TEST_RESULTS)}")
        sampled_at = parse_time(self.sampled_at, "evidence.tests.sampled_at")
        if sampled_at is not self.sampled_at:
            object.__setattr__(self, "sampled_at", sampled_at)
        _clean_strings(self, "evidence.tests", ("disease", "name", "manufacturer", "centre",
                                                "country", "code", "type_code",
                                                "result_code"))


@record_class
class Vaccination:
    """One dose: product, where it stands in the series, when and where it was given."""

    product: str
    dose_number: int
    administered_on: str
    series_doses: int | None = None
    disease: str = "COVID-19"
    vaccine_type: str | None = None
    manufacturer: str | None = None
    lot: str | None = None
    country: str | None = None
    code: str | None = None

    def __post_init__(self):
        _clean_strings(self, "evidence.vaccinations", ("product", "disease", "vaccine_type",
                                                       "manufacturer", "lot", "country", "code"))
        if not self.product:
            _fail("evidence.vaccinations.product", "required")
        # (each field is set only when checking changed it: a frozen field costs a setattr)
        fields = self.__dict__
        dose = _int_or_none(fields["dose_number"], "evidence.vaccinations.dose_number")
        if dose is None:
            _fail("evidence.vaccinations.dose_number", "required")
        if dose is not fields["dose_number"]:
            object.__setattr__(self, "dose_number", dose)
        series = _int_or_none(fields["series_doses"], "evidence.vaccinations.series_doses")
        if series is not fields["series_doses"]:
            object.__setattr__(self, "series_doses", series)
        day = parse_partial_date(fields["administered_on"],
                                 "evidence.vaccinations.administered_on")
        if day is not fields["administered_on"]:
            object.__setattr__(self, "administered_on", day)

    @property
    def completes_series(self) -> bool:
        """True when this dose is the last of its primary series (or a booster beyond it)."""
        return self.series_doses is not None and self.dose_number >= self.series_doses


@record_class
class Recovery:
    """A recovery: the first positive test and the window the recovery counts for."""

    first_positive_on: str
    valid_from: str | None = None
    valid_until: str | None = None
    disease: str = "COVID-19"
    country: str | None = None

    def __post_init__(self):
        for name in ("first_positive_on", "valid_from", "valid_until"):
            value = getattr(self, name)
            if value is not None or name == "first_positive_on":
                object.__setattr__(self, name, parse_partial_date(
                    value, f"evidence.recoveries.{name}"))
        _clean_strings(self, "evidence.recoveries", ("disease", "country"))


@record_class
class Evidence:
    """The facts behind a status."""

    tests: tuple[TestResult, ...] = ()
    vaccinations: tuple[Vaccination, ...] = ()
    recoveries: tuple[Recovery, ...] = ()

    def __post_init__(self):
        fields = self.__dict__
        for name, cls in _EVIDENCE_KINDS:
            items = fields[name]
            if items.__class__ is tuple and len(items) <= 50:
                # what adapters pass: a tuple of built entries, which there is nothing to do to
                for item in items:
                    if item.__class__ is not cls:
                        break
                else:
                    continue
            if items is None:
                items = ()
            if not isinstance(items, (list, tuple)):
                _fail(f"evidence.{name}", "expected a list")
            if len(items) > 50:
                _fail(f"evidence.{name}", "more than 50 entries")
            built = tuple(i if isinstance(i, cls) else cls(**_only(i, cls, f"evidence.{name}"))
                          for i in items)
            object.__setattr__(self, name, built)

    def __bool__(self) -> bool:
        return bool(self.tests or self.vaccinations or self.recoveries)


_EVIDENCE_KINDS = (("tests", TestResult), ("vaccinations", Vaccination),
                   ("recoveries", Recovery))


@record_class
class Provenance:
    """Where the record came from: the scheme, who signed it, and its validity window."""

    scheme: str
    issuer: str | None = None
    source_id: str | None = None
    issued_at: datetime | None = None
    valid_until: datetime | None = None
    key_id: str | None = None
    status_version: int | None = None

    def __post_init__(self):
        _clean_strings(self, "provenance", ("scheme", "issuer", "source_id", "key_id"))
        if not self.scheme:
            _fail("provenance.scheme", "required")
        fields = self.__dict__
        for name in ("issued_at", "valid_until"):
            value = fields[name]
            if value is not None:
                instant = parse_time(value, f"provenance.{name}")
                if instant is not value:
                    object.__setattr__(self, name, instant)
        version = fields["status_version"]
        if version is not None:
            object.__setattr__(self, "status_version", _int_or_none(
                version, "provenance.status_version"))


@record_class
class Record:
    """A subject, their colour status (absent where a scheme has none) and the evidence."""

    subject: Subject
    status: str | None = None
    reasons: tuple[str, ...] = ()
    evidence: Evidence = field(default_factory=Evidence)
    provenance: Provenance | None = None

    def __post_init__(self):
        if isinstance(self.subject, dict):
            object.__setattr__(self, "subject", Subject(**_only(self.subject, Subject, "subject")))
        if not isinstance(self.subject, Subject):
            _fail("subject", "required")
        if self.status is not None and self.status not in STATUSES:
            _fail("status", f"one of {', '.join(STATUSES)}")
        reasons = tuple(self.reasons or ())
        for reason in reasons:
            if not isinstance(reason, str) or not reason:
                _fail("reasons", "expected a list of reason codes")
        object.__setattr__(self, "reasons", reasons)
        if self.evidence is None:
            object.__setattr__(self, "evidence", Evidence())
        elif isinstance(self.evidence, dict):
            object.__setattr__(self, "evidence", Evidence(**_only(self.evidence, Evidence,
                                                                  "evidence")))
        if isinstance(self.provenance, dict):
            object.__setattr__(self, "provenance", Provenance(**_only(
                self.provenance, Provenance, "provenance")))

    def replace(self, **changes) -> "Record":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return _to_json(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Record":
        if not isinstance(data, dict):
            _fail("record", "expected an object")
        return cls(**_only(data, cls, "record"))

    def masked(self) -> dict:
        """The JSON form with only what a checkpoint or partner display needs."""
        data = self.to_dict()
        subject = data.get("subject", {})
        data["subject"] = {k: v for k, v in subject.items()
                           if k in ("masked_name", "subject_id")}
        return data


def validate_reasons(reasons: Iterable[str], field_name: str = "reasons") -> tuple[str, ...]:
    """Reasons an authority gives must come from the documented list."""
    reasons = tuple(reasons)
    for reason in reasons:
        if reason not in STATUS_REASONS:
            _fail(field_name, f"unknown reason {reason!r}; see GET /api/v1/reasons")
    return reasons


def _clean_strings(obj, prefix: str, names: Iterable[str]) -> None:
    fields = obj.__dict__
    for name in names:
        value = fields[name]
        if value is None:
            continue
        # Fast path for what adapters almost always pass: a non-empty string with nothing to
        # strip, within the length cap. Every scanned foreign code builds a record. (CPython's
        # strip returns the string itself when there is nothing to strip; were it to return a
        # copy, the slow path below gives the same answer.)
        if value.__class__ is str and 0 < len(value) <= 200 and value.strip() is value:
            continue
        object.__setattr__(obj, name, _str_or_none(value, name, prefix=prefix))


#: per dataclass: (every field name, the names without a default)
_FIELD_SETS: dict[type, tuple[frozenset, tuple[str, ...]]] = {}


def _field_sets(cls) -> tuple[frozenset, tuple[str, ...]]:
    sets = _FIELD_SETS.get(cls)
    if sets is None:
        fields = dataclasses.fields(cls)
        sets = _FIELD_SETS[cls] = (frozenset(f.name for f in fields), tuple(
            f.name for f in fields if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING))
    return sets


def _only(data: Any, cls, field_name: str) -> dict:
    """Reject unknown keys so a typo in a field name is an error, not silently dropped data."""
    if not isinstance(data, dict):
        _fail(field_name, "expected an object")
    known, required = _field_sets(cls)
    if not known.issuperset(data):
        _fail(f"{field_name}.{sorted(set(data) - known)[0]}", "unknown field")
    for name in required:
        if name not in data:
            _fail(f"{field_name}.{name}", "required")
    return data


#: per dataclass, its field names in sorted order (``dataclasses.fields`` is slow, and every
#: enrollment and scanned foreign code turns a record into JSON); None for other classes
_SORTED_FIELDS: dict[type, tuple[str, ...] | None] = {}
_PLAIN = (str, int, float, bool)


def _sorted_fields(cls: type) -> tuple[str, ...] | None:
    if cls not in _SORTED_FIELDS:
        _SORTED_FIELDS[cls] = (tuple(sorted(f.name for f in dataclasses.fields(cls)))
                               if dataclasses.is_dataclass(cls) else None)
    return _SORTED_FIELDS[cls]


def _to_json(value: Any) -> Any:
    cls = value.__class__
    if cls in _PLAIN:
        return value
    names = _SORTED_FIELDS.get(cls, False)
    if names is False:
        names = _sorted_fields(cls)
    if names is not None:
        out = {}
        fields = value.__dict__
        for name in names:  # sorted, so the keys come out sorted
            item = fields[name]
            if item is None:
                continue
            if item.__class__ is not str and item.__class__ not in _PLAIN:
                item = _to_json(item)
                if not item and (item == () or item == [] or item == {}):
                    continue
            out[name] = item
        return out
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value
