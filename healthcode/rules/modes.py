"""Checkpoint modes: what one checkpoint enforces, as a file ``<data dir>/modes/<name>.toml``.

.. code-block:: toml

    description = "Entry into Austria"          # shown on the scanner page
    [descriptions]                               # optional, by page language
    zh-Hant = "入境奧地利"
    pt = "Entrada na Áustria"

    country = "AT"                  # the country of arrival: its rules apply (rules add ...),
                                    # and rules read it as external.countryCode
    rule_types = ["Acceptance", "Invalidation"]   # which of the EU's rule types (default both)
    extra_rules = ["ours/VR-XX-0001.json"]        # our own rule files in the EU format,
                                    # relative to the modes folder; applied whatever their Country
    pass_status = "green"           # the colour a code that passes every rule gets when its
                                    # scheme carries none (EU DCC, SHC, ICAO); default green

Selection is the EU's (:mod:`.ruleset`): Acceptance rules of ``country``, Invalidation rules of
the country that issued the certificate (known for EU DCCs, whose CWT issuer is a country),
of the certificate's type or General, valid at the validation clock, newest version of each.
A code is judged on each DCC-shaped candidate of its record (:mod:`.projection`); the first
candidate that passes every rule is the answer, else the first with no failed rule, else the
first. Rules are judged on ``{"payload", "external": {"validationClock", "valueSets",
"countryCode", "issuerCountryCode", "iat", "exp"}}`` (times as ISO 8601 strings).

A failed rule makes the answer ``valid: false``, reason ``policy_refused``; an open rule (not
applicable, or not decidable) leaves the code genuine but grants no colour, and is never
counted as passed; with no rule applicable at all, nothing is granted either.
"""
from __future__ import annotations

import operator
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .. import jsontext
from ..errors import ConfigurationError
from ..jsontext import EncodedList
from ..record import STATUSES, Record, format_time
from .projection import project
from .ruleset import (RULE_TYPES, Plan, RuleError, RuleResult, RuleSet, inline_rule, judge_all,
                      read_rule_file)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_KEYS = {"description", "descriptions", "country", "rule_types", "extra_rules", "pass_status"}


@dataclass(frozen=True)
class Mode:
    name: str
    country: str | None
    rule_types: tuple[str, ...] = RULE_TYPES
    extra: RuleSet = field(default_factory=RuleSet, compare=False)
    pass_status: str = "green"
    description: str = ""
    descriptions: tuple[tuple[str, str], ...] = ()
    source: str = ""
    #: (certificate type, issuer country) -> the rule set, selection parts and Plan last made
    #: for them (:func:`plan_rules`)
    plans: dict = field(default_factory=dict, compare=False, repr=False)

    def describe(self, lang: str | None = None) -> str:
        texts = dict(self.descriptions)
        return texts.get(lang or "", self.description or self.name)

    def to_dict(self, lang: str | None = None) -> dict:
        return {"name": self.name, "description": self.describe(lang), "country": self.country,
                "rule_types": list(self.rule_types), "pass_status": self.pass_status}


def valid_mode_name(name: str) -> bool:
    return isinstance(name, str) and bool(_NAME.match(name))


def load_mode(path: Path) -> Mode:
    """One mode file; errors name the file and the key (and an extra rule file's own error)."""
    name = path.stem
    if not valid_mode_name(name):
        raise ConfigurationError(f"{path}: a mode name is lower-case letters, digits, '-', '_'")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from None

    def fail(key, message):
        raise ConfigurationError(f"{path}: {key}: {message}")

    unknown = set(data) - _KEYS
    if unknown:
        fail(sorted(unknown)[0], "unknown key")
    country = data.get("country")
    if country is not None and (not isinstance(country, str)
                                or not re.fullmatch(r"[A-Z]{2}", country)):
        fail("country", "an ISO 3166 two-letter code such as AT")
    types = data.get("rule_types", list(RULE_TYPES))
    if not isinstance(types, list) or not types or any(t not in RULE_TYPES for t in types):
        fail("rule_types", f"a list of {', '.join(RULE_TYPES)}")
    status = data.get("pass_status", "green")
    if status not in STATUSES:
        fail("pass_status", f"one of {', '.join(STATUSES)}")
    description = data.get("description", "")
    if not isinstance(description, str):
        fail("description", "a string")
    descriptions = data.get("descriptions", {})
    if not isinstance(descriptions, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in descriptions.items()):
        fail("descriptions", "a table of language = text")
    extra_files = data.get("extra_rules", [])
    if not isinstance(extra_files, list) or not all(isinstance(f, str) for f in extra_files):
        fail("extra_rules", "a list of rule file paths")
    extra = RuleSet()
    for entry in extra_files:
        rule_path = (path.parent / entry).resolve()
        if not rule_path.is_file():
            fail("extra_rules", f"no rule file {entry}")
        try:
            extra.add(read_rule_file(rule_path))
        except RuleError as exc:
            raise ConfigurationError(f"{path}: extra_rules: {exc.message}") from None
    if country is None and not extra_files:
        fail("country", "a mode needs a country, extra rules, or both")
    return Mode(name=name, country=country, rule_types=tuple(types), extra=extra,
                pass_status=status, description=description,
                descriptions=tuple(descriptions.items()), source=str(path))


def load_modes(folder: Path) -> dict[str, Mode]:
    if not folder.is_dir():
        return {}
    return {mode.name: mode for mode in (load_mode(p) for p in sorted(folder.glob("*.toml")))}


# -- judging a verified code ---------------------------------------------------------------------


@dataclass
class Verdict:
    """The rules one code met under one mode (``results`` complete when it is made: it is
    partitioned once, here). ``plan``: the :class:`Plan` that judged them, if one did (whose
    every-rule-passed answer needs no partitioning, and whose entries are kept)."""

    results: list[RuleResult]
    certificate_type: str | None
    plan: Plan | None = field(default=None, repr=False, compare=False)
    failed: list[RuleResult] = field(init=False, repr=False)
    open: list[RuleResult] = field(init=False, repr=False)
    planned_pass: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.planned_pass = self.plan is not None and self.plan.all_passed(self.results)
        if self.planned_pass:
            self.failed, self.open = [], []
            return
        self.failed = [r for r in self.results if r.result == "failed"]
        self.open = [r for r in self.results if r.result == "open"]

    @property
    def passed(self) -> bool:
        """Every rule passed, and there was at least one."""
        return bool(self.results) and not self.failed and not self.open


def select_rules(mode: Mode, rules: RuleSet, certificate_type: str | None, at: datetime,
                 issuer_country: str | None) -> list:
    return [rule for part in _selection(mode, rules, certificate_type, at, issuer_country)
            for rule in part]


def _selection(mode: Mode, rules: RuleSet, certificate_type: str | None, at: datetime,
               issuer_country: str | None) -> tuple[list, ...]:
    """The selection's parts, each a list :meth:`RuleSet.select` keeps for its window."""
    parts = []
    if "Acceptance" in mode.rule_types and mode.country:
        parts.append(rules.select(country=mode.country, rule_type="Acceptance",
                                  certificate_type=certificate_type, at=at))
    if "Invalidation" in mode.rule_types and issuer_country:
        parts.append(rules.select(country=issuer_country, rule_type="Invalidation",
                                  certificate_type=certificate_type, at=at))
    for rule_type in mode.rule_types:
        parts.append(mode.extra.select(country=None, rule_type=rule_type,
                                       certificate_type=certificate_type, at=at))
    return tuple(parts)


def plan_rules(mode: Mode, rules: RuleSet, certificate_type: str | None, at: datetime,
               issuer_country: str | None) -> Plan:
    """:func:`select_rules` as a :class:`Plan`, kept in the mode per (certificate type,
    issuer country) with the parts it was made of: while the clock stays in their windows,
    :meth:`RuleSet.select` gives the same lists, and the plan stands."""
    parts = _selection(mode, rules, certificate_type, at, issuer_country)
    key = (certificate_type, issuer_country)
    kept = mode.plans.get(key)
    if kept is not None and kept[0] is rules and len(kept[1]) == len(parts) and all(
            map(operator.is_, kept[1], parts)):
        return kept[2]
    plan = Plan.of([rule for part in parts for rule in part])
    if len(mode.plans) >= _MAX_PLANS:
        mode.plans.clear()  # cheap and thread-safe; plans in use are back after one call
    mode.plans[key] = (rules, parts, plan)
    return plan


#: Plans a mode keeps: certificate types times the issuing countries it has seen.
_MAX_PLANS = 256


def judge_record(mode: Mode, record: Record, *, rules: RuleSet, valuesets: dict,
                 at: datetime, issuer_country: str | None = None) -> Verdict:
    """The mode's rules on every candidate payload of ``record``; the best candidate wins."""
    provenance = record.provenance
    external = {"validationClock": format_time(at), "valueSets": valuesets,
                "countryCode": mode.country, "issuerCountryCode": issuer_country,
                "iat": format_time(provenance.issued_at) if provenance and
                provenance.issued_at else None,
                "exp": format_time(provenance.valid_until) if provenance and
                provenance.valid_until else None}
    return judge_candidates(
        record, lambda kind: plan_rules(mode, rules, kind, at, issuer_country),
        external, no_evidence=lambda: _no_evidence(mode))


def judge_candidates(record: Record, select, external: dict, no_evidence=None) -> Verdict:
    """Judge each DCC-shaped candidate of ``record`` by the rules ``select(certificate type)``
    gives; the first candidate passing every rule, else the first with no failure, else the
    first. ``no_evidence()`` stands for a record without any vaccination, test or recovery."""
    verdicts = []
    for candidate in project(record):
        data = {"payload": candidate.payload, "external": external}
        selected = select(candidate.certificate_type)
        results = judge_all(selected, data, candidate.unknown)
        if candidate.certificate_type is None and no_evidence is not None:
            results.append(no_evidence())
        verdicts.append(Verdict(results, candidate.certificate_type,
                                selected if type(selected) is Plan else None))
    for verdict in verdicts:
        if verdict.passed:
            return verdict
    for verdict in verdicts:
        if not verdict.failed:
            return verdict
    return verdicts[0]


def _no_evidence(mode: Mode) -> RuleResult:
    """A stand-in result: a record without a vaccination, test or recovery is no certificate."""
    rule = inline_rule("evidence", True, "The code holds a vaccination, test or recovery",
                       source=f"mode {mode.name}")
    return RuleResult(rule, "open", "the code holds no vaccination, test or recovery")


def _entries(verdict: Verdict, lang: str | None) -> EncodedList:
    """The answer's ``rules``, each entry with its JSON text: its rule's kept entry (shared,
    read-only), or for an entry with a note, one made and encoded here. Where every rule of
    a plan passed, the plan keeps the whole list's text."""
    if verdict.planned_pass:
        return verdict.plan.passed_entries(lang)
    entries, texts = [], []
    for result in verdict.results:
        if result.note is None:
            entry, text = result.rule.entry(result.result, lang)
            entries.append(entry)
        else:
            body = result.to_dict(lang)
            entries.append(body)
            text = jsontext.encode(body)
        texts.append(text)
    return EncodedList.of(entries, texts)


def apply_verdict(answer: dict, verdict: Verdict, mode: Mode, lang: str | None) -> dict:
    """Fold a verdict into a verify answer (DESIGN.md: rules, policy_refused, open)."""
    answer["mode"] = mode.name
    answer["rules"] = _entries(verdict, lang)
    if verdict.failed:
        first = verdict.failed[0]
        answer.update(valid=False, reason="policy_refused",
                      message=f"{first.rule.identifier}: {first.rule.describe(lang)}")
        return answer
    if not verdict.results:
        answer["message"] = f"no rule of mode {mode.name} applies to this certificate"
    elif verdict.open:
        answer.setdefault("warnings", []).append(
            {"code": "rules_open", "message": f"{len(verdict.open)} rule(s) could not be "
                                               f"decided for this code"})
    elif answer.get("status") is None:
        # every rule passed: a colourless scheme's code gets the mode's colour
        answer["status"] = mode.pass_status
        answer["status_granted_by"] = f"mode:{mode.name}"
    return answer
