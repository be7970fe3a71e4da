"""The canonical record in the shape of an EU DCC payload, so EU rules judge every scheme.

A DCC holds one certificate: one vaccination (its latest dose), one test or one recovery. A
record may hold several kinds of evidence (an SHC with doses and a test), so :func:`project`
gives one candidate payload per kind, each with its certificate type; a checkpoint mode accepts
the code when one candidate passes. Field by field (DCC schema 1.3):

===========  =====================================================================================
``ver``      ``"1.3.0"``
``nam.fn``   family name; a record with only a full name puts it here (``gn`` then unknown)
``nam.gn``   given name
``nam.fnt``  the Latin family name, else the family name transliterated as ICAO 9303 does
``nam.gnt``  likewise for the given name
``dob``      the birth date as the record has it (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``)
``v[0]``     the latest dose: ``tg`` 840539006 for COVID-19; ``vp`` the vaccine type (SNOMED/ATC)
             or, for a CVX product, its EU equivalent; ``mp`` an EU product id as it is, or the
             EU id of a CVX code (:data:`CVX_TO_EU`: 208 -> EU/1/20/1528, ...); ``ma`` the
             holder's ORG- id, or the CVX product's; ``dn``/``sd`` dose and series doses;
             ``dt`` the date; ``co`` the country; ``is`` the issuer; ``ci`` the certificate id
``t[0]``     the latest test: ``tg``; ``tt`` LP6464-4 for NAAT (pcr), LP217198-3 for RAT; ``nm``;
             ``ma`` (the RAT device id); ``sc`` the sampling time; ``tr`` 260415000 not detected,
             260373001 detected; ``tc`` the centre; ``co``; ``is``; ``ci``
``r[0]``     the latest recovery: ``tg``; ``fr`` first positive; ``df``/``du`` validity; ``co``;
             ``is``; ``ci``
===========  =====================================================================================

Event dates (``dt``, ``fr``, ``df``, ``du``) are full dates in a DCC: a partial one is left out
(unknown). :func:`project_all` gives one payload holding *every* event of the record (``v``,
``t`` and ``r`` arrays), the shape our exported agreements (:mod:`.export`) reduce over.

What the source does not say is left out of the payload *and* named in the candidate's
``unknown`` set (``v.0.mp``, ``dob``, ...): a rule that does not pass and reads such a field is
reported ``open`` ("the scheme does not say"), never ``failed`` on a guess. An SHC's LOINC code
gives the test type; an antibody or other test has no EU test type, so ``tt`` is unknown.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from mapping.eu_dcc import icao_transliterate

from ..record import Record, format_time

DCC_VERSION = "1.3.0"
DISEASE_COVID = "840539006"
TEST_TYPES = {"pcr": "LP6464-4", "rat": "LP217198-3"}
TEST_RESULTS = {"negative": "260415000", "positive": "260373001"}
CVX = "http://hl7.org/fhir/sid/cvx"
MRNA = "1119349007"
PROTEIN = "1119305005"
COVID_VACCINE_ATC = "J07BX03"

#: CVX vaccine code -> (EU ``mp``, ``ma``, ``vp``), for the products the EU authorised.
CVX_TO_EU = {
    "207": ("EU/1/20/1507", "ORG-100031184", MRNA),           # Moderna / Spikevax
    "221": ("EU/1/20/1507", "ORG-100031184", MRNA),
    "229": ("EU/1/20/1507", "ORG-100031184", MRNA),           # Spikevax bivalent
    "230": ("EU/1/20/1507", "ORG-100031184", MRNA),
    "208": ("EU/1/20/1528", "ORG-100030215", MRNA),           # Pfizer-BioNTech / Comirnaty
    "217": ("EU/1/20/1528", "ORG-100030215", MRNA),
    "218": ("EU/1/20/1528", "ORG-100030215", MRNA),
    "219": ("EU/1/20/1528", "ORG-100030215", MRNA),
    "210": ("EU/1/21/1529", "ORG-100001699", COVID_VACCINE_ATC),  # AstraZeneca / Vaxzevria
    "212": ("EU/1/20/1525", "ORG-100001417", COVID_VACCINE_ATC),  # Janssen
    "211": ("EU/1/21/1618", "ORG-100032020", PROTEIN),        # Novavax / Nuvaxovid
}


@dataclass(frozen=True)
class Candidate:
    """One DCC-shaped payload of a record, its certificate type, and what it cannot say."""

    payload: dict
    certificate_type: str | None  # Vaccination | Test | Recovery; None: no evidence at all
    unknown: frozenset[str]


def project(record: Record) -> list[Candidate]:
    """One candidate per kind of evidence the record holds (at least one)."""
    base, unknown = _subject(record)
    issuer = record.provenance.issuer if record.provenance else None
    candidates = []
    evidence = record.evidence
    if evidence.vaccinations:
        dose = max(evidence.vaccinations, key=lambda d: (d.administered_on, d.dose_number))
        entry, missing = _vaccination(dose, issuer)
        candidates.append(_candidate(base, "v", entry, unknown | missing, "Vaccination"))
    if evidence.tests:
        test = max(evidence.tests, key=lambda t: t.sampled_at)
        entry, missing = _test(test, issuer)
        candidates.append(_candidate(base, "t", entry, unknown | missing, "Test"))
    if evidence.recoveries:
        recovery = max(evidence.recoveries, key=lambda r: r.first_positive_on)
        entry, missing = _recovery(recovery, issuer)
        candidates.append(_candidate(base, "r", entry, unknown | missing, "Recovery"))
    if not candidates:
        candidates.append(Candidate(base, None, frozenset(unknown | {"v", "t", "r"})))
    return candidates


def project_all(record: Record) -> dict:
    """One payload with every vaccination, test and recovery, each as a DCC entry."""
    payload, _ = _subject(record)
    issuer = record.provenance.issuer if record.provenance else None
    evidence = record.evidence
    for key, items, build in (("v", evidence.vaccinations, _vaccination),
                              ("t", evidence.tests, _test),
                              ("r", evidence.recoveries, _recovery)):
        if items:
            payload[key] = [build(item, issuer)[0] for item in items]
    return payload


def _candidate(base, key, entry, unknown, certificate_type) -> Candidate:
    payload = dict(base)
    payload[key] = [entry]
    return Candidate(payload, certificate_type,
                     frozenset(f"{key}.0.{f}" if "." not in f and f not in ("dob",)
                               and not f.startswith("nam") else f for f in unknown))


def _subject(record: Record) -> tuple[dict, set[str]]:
    subject = record.subject
    unknown: set[str] = set()
    name = {}
    family, given = subject.family_name, subject.given_name
    if not family and not given and subject.name:
        family = subject.name
        unknown.add("nam.gn")
    if family:
        name["fn"] = family
    if given:
        name["gn"] = given
    fnt = _mrz(subject.family_name_latin) or icao_transliterate(family)
    gnt = _mrz(subject.given_name_latin) or icao_transliterate(given)
    if fnt:
        name["fnt"] = fnt
    else:
        unknown.add("nam.fnt")
    if gnt:
        name["gnt"] = gnt
    if not name:
        unknown.update({"nam.fn", "nam.gn"})
    payload = {"ver": DCC_VERSION, "nam": name}
    if subject.birth_date:
        payload["dob"] = subject.birth_date
    else:
        unknown.add("dob")
    return payload, unknown


def _mrz(latin: str | None) -> str | None:
    """The Latin name in ICAO 9303 form. An EU DCC's ``fnt``/``gnt`` already is (``A-Z`` words
    joined by single ``<``, at most 80): transliterating it again would give it back as it is,
    so such a name is taken without the per-character pass."""
    if not latin:
        return None
    if len(latin) <= 80 and _ICAO_FORM.fullmatch(latin):
        return latin
    return icao_transliterate(latin)


_ICAO_FORM = re.compile(r"[A-Z]+(?:<[A-Z]+)*")


def _common(item, issuer, entry: dict, missing: set[str]) -> None:
    if item.disease == "COVID-19":
        entry["tg"] = DISEASE_COVID
    else:
        missing.add("tg")
    for key, value in (("co", item.country), ("is", issuer)):
        if value:
            entry[key] = value
        else:
            missing.add(key)


def _vaccination(dose, issuer) -> tuple[dict, set[str]]:
    entry: dict = {}
    missing: set[str] = set()
    _common(dose, issuer, entry, missing)
    product = dose.product
    system, _, code = product.rpartition("#") if "#" in product else ("", "", product)
    eu = CVX_TO_EU.get(code) if system == CVX else None
    mp = eu[0] if eu else (product if not system else None)
    ma = dose.manufacturer if dose.manufacturer and dose.manufacturer.startswith("ORG-") \
        else (eu[1] if eu else dose.manufacturer if not system else None)
    vp = dose.vaccine_type or (eu[2] if eu else None)
    for key, value in (("vp", vp), ("mp", mp), ("ma", ma)):
        if value:
            entry[key] = value
        else:
            missing.add(key)
    entry["dn"] = dose.dose_number
    if dose.series_doses is not None:
        entry["sd"] = dose.series_doses
    else:
        missing.add("sd")
    _full_date(entry, missing, "dt", dose.administered_on)
    _certificate_id(dose.code, entry, missing)
    return entry, missing


def _test(test, issuer) -> tuple[dict, set[str]]:
    entry: dict = {}
    missing: set[str] = set()
    _common(test, issuer, entry, missing)
    for key, value in (("tt", TEST_TYPES.get(test.type)), ("tr", TEST_RESULTS.get(test.result))):
        if value:
            entry[key] = value
        else:
            missing.add(key)
    if test.name:
        entry["nm"] = test.name
    if test.manufacturer:
        entry["ma"] = test.manufacturer
    elif test.type == "rat":
        missing.add("ma")  # a RAT's device is what EU rules check
    entry["sc"] = format_time(test.sampled_at)
    if test.centre:
        entry["tc"] = test.centre
    _certificate_id(test.code if test.code and "#" not in test.code else None, entry, missing)
    return entry, missing


def _recovery(recovery, issuer) -> tuple[dict, set[str]]:
    entry: dict = {}
    missing: set[str] = set()
    _common(recovery, issuer, entry, missing)
    for key, value in (("fr", recovery.first_positive_on), ("df", recovery.valid_from),
                       ("du", recovery.valid_until)):
        _full_date(entry, missing, key, value)
    missing.add("ci")
    return entry, missing


def _full_date(entry: dict, missing: set[str], key: str, value: str | None) -> None:
    """DCC event dates are full dates: a partial one (``2021-05``) cannot say the day."""
    if value and len(value) == 10:
        entry[key] = value
    else:
        missing.add(key)


def _certificate_id(code, entry, missing) -> None:
    if code and "#" not in code:
        entry["ci"] = code
    else:
        missing.add("ci")
