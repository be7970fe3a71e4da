"""EU DCC business rules as files: their format, and which of them apply to a code.

A rule is the JSON the EU DCC gateway distributes (``Identifier``, ``Type``, ``Country``,
``Version``, ``CertificateType``, ``Description``, ``ValidFrom``, ``ValidTo``, ``Logic``, ...).
:func:`parse_rule` checks it the way the EU's ``validation-rule.schema.json`` does, in code (the
schema file is upstream data the service does not ship; ``tests/conformance/test_eu_rules.py``
checks that both agree), and its ``Logic`` with :func:`healthcode.certlogic.validate`, so a
broken rule is refused at ``rules add`` and at start-up, the error naming the file and the rule.

One deliberate difference from the schema: the schema's Identifier pattern
``^(GR|VR|TR|RR|IR)-[A-Z]{2}-[1-9]\\d*$`` rejects every rule the EU has ever published
(``VR-AT-0001``: a leading zero). We take the gateway's form ``XR-CC-dddd``, whose prefix names
the certificate type (``IR`` for Invalidation rules) and whose country is the rule's Country.

Selection (:meth:`RuleSet.select`) is the EU's, as ``dcc-business-rules-utils``'s
``applicableRuleVersions`` and the DCC verifier apps do it: rules of one Country and Type,
``ValidFrom <= clock < ValidTo``, of each Identifier only the newest Version (semver); and, as
the verifier apps add, of ``CertificateType`` General or the certificate's own type.
Acceptance rules come from the country of arrival and must all evaluate to ``true``;
Invalidation rules come from the country that issued the certificate, and one evaluating to
``true`` invalidates it.
"""
from __future__ import annotations

import functools
import json
import operator
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from .. import certlogic, jsontext
from ..errors import ConfigurationError
from ..record import parse_time

RULE_TYPES = ("Acceptance", "Invalidation")
CERTIFICATE_TYPES = ("General", "Vaccination", "Test", "Recovery")
PREFIXES = {"General": "GR", "Vaccination": "VR", "Test": "TR", "Recovery": "RR"}
REQUIRED = ("AffectedFields", "Country", "CertificateType", "Description", "Engine",
            "EngineVersion", "Identifier", "Logic", "SchemaVersion", "Type", "ValidFrom",
            "ValidTo", "Version")
#: The largest rule file accepted (the EU's largest is under 5 KB).
MAX_RULE_BYTES = 256 * 1024

_IDENTIFIER = re.compile(r"^(GR|VR|TR|RR|IR)-[A-Z]{2}-\d{4}$")
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?")
_TIMESTAMP = re.compile(r"^\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-5]\d([-+][0-2]\d:[0-5]\d|Z)$")
_LANG = re.compile(r"^([a-z]{2}|[a-z]{2}-[a-z]{2})$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class RuleError(ConfigurationError):
    """A rule file is not a usable EU DCC business rule."""

    reason = "invalid_rule"


@dataclass(frozen=True)
class Rule:
    """One version of one business rule, its Logic compiled."""

    identifier: str
    type: str
    country: str
    version: str
    certificate_type: str
    descriptions: tuple[tuple[str, str], ...]
    valid_from: datetime
    valid_to: datetime
    affected_fields: tuple[str, ...]
    program: certlogic.Program = field(compare=False, repr=False)
    data: dict = field(compare=False, repr=False)
    source: str = ""

    @property
    def logic(self) -> Any:
        return self.data["Logic"]

    @property
    def version_key(self) -> tuple:
        return semver_key(self.version)

    @functools.cached_property
    def _texts(self) -> dict[str, str]:
        return dict(self.descriptions)

    def describe(self, lang: str | None = None) -> str:
        """The description in ``lang`` where the rule has it, else English."""
        texts = self._texts
        if lang:
            wanted = lang.lower()
            for candidate in (wanted, wanted.split("-")[0]):
                if candidate in texts:
                    return texts[candidate]
        return texts.get("en") or next(iter(texts.values()), self.identifier)

    @functools.cached_property
    def outcomes(self) -> dict:
        """The two results without a note, made once (a scan judges every rule it selects)."""
        return {"passed": RuleResult(self, "passed"), "failed": RuleResult(self, "failed")}

    @functools.cached_property
    def _bodies(self) -> dict:
        return {}

    def body(self, result: str, lang: str | None) -> dict:
        """The answer's entry for this rule with ``result`` (a new dict: callers may add to it)."""
        return dict(self.entry(result, lang)[0])

    def entry(self, result: str, lang: str | None) -> tuple[jsontext.SharedDict, str]:
        """The answer's entry with ``result`` and its JSON text (:func:`jsontext.encode`),
        shared by every answer that shows it, so read-only (:meth:`body` gives a copy).

        Kept per (result, language) as asked, up to a few dozen languages per rule (the
        language comes from the request: an unbounded cache would let clients fill memory).
        """
        key = (result, lang)
        kept = self._bodies.get(key)
        if kept is None:
            base = jsontext.SharedDict(
                id=self.identifier, type=self.type, result=result,
                description=self.describe(lang), version=self.version, country=self.country)
            kept = (base, jsontext.encode(base))
            if len(self._bodies) < _MAX_BODIES:
                self._bodies[key] = kept
        return kept

    def applies(self, certificate_type: str | None, at: datetime) -> bool:
        """General or of this certificate type, and valid at ``at``."""
        if self.certificate_type != "General" and self.certificate_type != certificate_type:
            return False
        return self.valid_from <= at < self.valid_to


_MAX_BODIES = 48


def semver_key(version: str) -> tuple:
    """Semver order: numbers numerically, a pre-release before its release."""
    match = _SEMVER.match(version)
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch), pre is None, pre or ""


def parse_rule(data: Any, source: str = "") -> Rule:
    """Check one rule (EU format and CertLogic); :class:`RuleError` names source and rule."""
    where = source or "rule"
    name = data.get("Identifier") if isinstance(data, dict) else None
    label = f"{where}: {name}" if isinstance(name, str) else where

    def fail(message: str):
        raise RuleError(f"{label}: {message}")

    if not isinstance(data, dict):
        fail("a rule is a JSON object")
    for key in REQUIRED:
        if key not in data:
            fail(f"{key}: required")
    for key in ("Identifier", "Type", "Country", "Version", "SchemaVersion", "Engine",
                "EngineVersion", "CertificateType", "ValidFrom", "ValidTo"):
        if not isinstance(data[key], str):
            fail(f"{key}: a string")
    if not _IDENTIFIER.match(data["Identifier"]):
        fail("Identifier: of the form XR-CC-dddd (GR, VR, TR, RR or IR; a country code)")
    if data["Type"] not in RULE_TYPES:
        fail(f"Type: one of {', '.join(RULE_TYPES)}")
    if not _COUNTRY.match(data["Country"]):
        fail("Country: an ISO 3166 two-letter code")
    for key in ("Version", "SchemaVersion", "EngineVersion"):
        if not _SEMVER.match(data[key]):
            fail(f"{key}: a semantic version")
    if data["CertificateType"] not in CERTIFICATE_TYPES:
        fail(f"CertificateType: one of {', '.join(CERTIFICATE_TYPES)}")
    prefix = "IR" if data["Type"] == "Invalidation" else PREFIXES[data["CertificateType"]]
    if data["Identifier"][:2] != prefix or data["Identifier"][3:5] != data["Country"]:
        fail(f"Identifier: a {data['Type']} rule for {data['CertificateType']} certificates of "
             f"{data['Country']} is named {prefix}-{data['Country']}-dddd")
    descriptions = data["Description"]
    if not isinstance(descriptions, list) or not descriptions:
        fail("Description: a non-empty array")
    texts = []
    for index, entry in enumerate(descriptions):
        if (not isinstance(entry, dict) or not isinstance(entry.get("lang"), str)
                or not isinstance(entry.get("desc"), str)):
            fail(f"Description[{index}]: an object with lang and desc")
        if not _LANG.match(entry["lang"]):
            fail(f"Description[{index}].lang: a language code such as en or de")
        if len(entry["desc"]) < 20:
            fail(f"Description[{index}].desc: at least 20 characters")
        texts.append((entry["lang"], entry["desc"]))
    if not any(lang == "en" for lang, _ in texts):
        fail("Description: needs an English (en) entry")
    for key in ("ValidFrom", "ValidTo"):
        if not _TIMESTAMP.match(data[key]):
            fail(f"{key}: an ISO 8601 timestamp without milliseconds, with a timezone")
    valid_from = parse_time(data["ValidFrom"], "ValidFrom")
    valid_to = parse_time(data["ValidTo"], "ValidTo")
    affected = data["AffectedFields"]
    if not isinstance(affected, list) or not all(isinstance(f, str) for f in affected):
        fail("AffectedFields: an array of strings")
    logic = data["Logic"]
    if not isinstance(logic, dict) or not logic:
        fail("Logic: a CertLogic operation (a non-empty object)")
    try:
        # shared by rules with the same Logic (countries copy the EU's templates), so that a
        # code is judged once per distinct Logic (judge's memo)
        program = certlogic.compile_cached(logic)
    except certlogic.InvalidExpression as exc:
        issue = exc.issues[0]
        fail(f"Logic: {issue['message']} (in {_snippet(issue['expr'])})")
    return Rule(identifier=data["Identifier"], type=data["Type"], country=data["Country"],
                version=data["Version"], certificate_type=data["CertificateType"],
                descriptions=tuple(texts), valid_from=valid_from, valid_to=valid_to,
                affected_fields=tuple(affected), program=program, data=data, source=where)


_INLINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ALWAYS_FROM = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ALWAYS_TO = datetime(9999, 12, 31, tzinfo=timezone.utc)


def inline_rule(name: str, logic: Any, description: str, source: str = "") -> Rule:
    """A bare CertLogic expression as a rule of our own: Acceptance, General, always valid.

    For expressions written beside a conversion policy's TOML rules; errors name the source.
    """
    where = f"{source}: {name}" if source else str(name)
    if not isinstance(name, str) or not _INLINE_NAME.match(name):
        raise RuleError(f"{source}: name: letters, digits, '.', '_', '-' (up to 64)")
    if not isinstance(description, str) or not description:
        raise RuleError(f"{where}: description: required")
    try:
        program = certlogic.compile_cached(logic)
    except certlogic.InvalidExpression as exc:
        issue = exc.issues[0]
        raise RuleError(f"{where}: logic: {issue['message']} (in {_snippet(issue['expr'])})"
                        ) from None
    return Rule(identifier=name, type="Acceptance", country="XX", version="1.0.0",
                certificate_type="General", descriptions=(("en", description),),
                valid_from=_ALWAYS_FROM, valid_to=_ALWAYS_TO, affected_fields=(),
                program=program, data={"Logic": logic}, source=source)


def _snippet(expr) -> str:
    """The start of an offending sub-expression, for an error message."""
    try:
        text = json.dumps(expr, ensure_ascii=False)
    except (RecursionError, TypeError, ValueError):
        return "an expression too deep to print"
    return text if len(text) <= 120 else text[:117] + "..."


def read_json_file(path: Path, max_bytes: int, error: type[ConfigurationError]):
    """A configuration JSON file, size-capped before it is read; errors name the file."""
    try:
        if path.stat().st_size > max_bytes:
            raise error(f"{path}: larger than {max_bytes // 1024} KiB")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{path}: not a readable JSON file ({exc})") from None


def read_rule_file(path: Path) -> Rule:
    """One rule file; errors name it."""
    return parse_rule(read_json_file(path, MAX_RULE_BYTES, RuleError), source=str(path))


def is_rule_file(path: Path) -> bool:
    """A JSON file that is neither a rule test (upstream keeps those in ``tests/``) nor a JSON
    schema (upstream ships the rule schemas beside the rules)."""
    return (path.suffix == ".json" and "tests" not in path.parts[:-1]
            and not path.name.startswith(".") and not path.name.endswith(".schema.json"))


def find_rule_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(p for p in source.rglob("*.json") if is_rule_file(p.relative_to(source)))


def file_name(rule: Rule) -> str:
    """How a rule is kept in ``<data dir>/rules``: one file per identifier and version."""
    return f"{rule.identifier}_{rule.version}.json"


class RuleSet:
    """Installed rules (every version), and the EU's selection among them."""

    def __init__(self, rules: Iterable[Rule] = ()):
        self.rules: list[Rule] = []
        self._keys: set[tuple[str, str]] = set()
        self._selected: dict[tuple, tuple] = {}
        for rule in rules:
            self.add(rule)

    def add(self, rule: Rule) -> None:
        key = (rule.identifier, rule.version)
        if key in self._keys:
            raise RuleError(f"{rule.source}: {rule.identifier} version {rule.version} is "
                            f"already loaded")
        self._keys.add(key)
        self.rules.append(rule)
        self._selected.clear()

    def __len__(self) -> int:
        return len(self.rules)

    @classmethod
    def load(cls, folder: Path) -> "RuleSet":
        """Every rule file of a folder (``<data dir>/rules``), each checked."""
        if not folder.is_dir():
            return cls()
        return cls(read_rule_file(path) for path in find_rule_files(folder))

    def select(self, *, country: str | None, rule_type: str, certificate_type: str | None,
               at: datetime) -> list[Rule]:
        """The rule versions that apply, by Identifier (``country`` None: any country).

        The answer only changes when the clock crosses some rule's ValidFrom or ValidTo, so it
        is kept per (country, type, certificate type) together with the window it holds for.
        """
        key = (country, rule_type, certificate_type)
        cached = self._selected.get(key)
        if cached is not None and cached[0] <= at < cached[1]:
            return cached[2]
        newest: dict[str, Rule] = {}
        low, high = datetime.min.replace(tzinfo=at.tzinfo), datetime.max.replace(tzinfo=at.tzinfo)
        for rule in self.rules:
            if rule.type != rule_type or (country is not None and rule.country != country):
                continue
            if rule.certificate_type not in ("General", certificate_type):
                continue
            for edge in (rule.valid_from, rule.valid_to):
                if edge <= at:
                    low = max(low, edge)
                else:
                    high = min(high, edge)
            if not rule.applies(certificate_type, at):
                continue
            best = newest.get(rule.identifier)
            if best is None or rule.version_key > best.version_key:
                newest[rule.identifier] = rule
        selected = [newest[k] for k in sorted(newest)]
        self._selected[key] = (low, high, selected)
        return selected


# -- judging one rule ----------------------------------------------------------------------------


class RuleResult(NamedTuple):
    """``passed``, ``failed`` or ``open`` (not decided: evaluation failed, or the source
    cannot say what the rule reads). A tuple: one is made per rule per scan."""

    rule: Rule
    result: str
    note: str | None = None

    def to_dict(self, lang: str | None = None) -> dict:
        body = self.rule.body(self.result, lang)
        if self.note:
            body["note"] = self.note
        return body


def judge(rule: Rule, data: dict, unknown: frozenset[str] = frozenset(),
          memo: dict | None = None) -> RuleResult:
    """Evaluate one rule on ``{"payload", "external"}``.

    Acceptance passes on ``true``; Invalidation passes on ``false`` (``true`` invalidates).
    A result that is not a boolean, or a failed evaluation, leaves the rule open: the spec
    advises treating a throwing rule as not passed, and "open" says so without claiming more.
    ``unknown`` names payload fields the source could not fill: a rule that did not pass and
    reads one of them is open (the source cannot say), not failed. ``memo`` (one per data
    context) keeps each program's outcome, so rules sharing a Logic are evaluated once (keyed
    by the program object: programs compare by identity).
    """
    program = rule.program
    outcome = memo.get(program) if memo is not None else None
    if outcome is None:
        try:
            outcome = (program(data), None)
        except certlogic.CertLogicError as exc:
            outcome = (None, exc)
        if memo is not None:
            memo[program] = outcome
    return _result(rule, outcome, unknown)


class Plan:
    """A selection of rules judged together: each distinct Logic once, all of them in one
    :class:`certlogic.Batch` call, and the common answer (every rule passed) recognised in one
    comparison. Made once per selection (:meth:`of`), used on every code it judges."""

    __slots__ = ("rules", "_batch", "_slots", "_passing", "_all_passed", "_entries")

    def __init__(self, rules: Iterable[Rule]):
        self.rules = tuple(rules)
        # one program per distinct Logic (rules copying the EU's templates share theirs)
        programs = list(dict.fromkeys(rule.program for rule in self.rules))
        slot = {program: index for index, program in enumerate(programs)}
        self._batch = certlogic.Batch(programs)
        self._slots = tuple(slot[rule.program] for rule in self.rules)
        # the value each program has when all its rules pass (Acceptance: true, Invalidation:
        # false), compared by identity (1 is not true); none if its rules want both
        passing: dict = {}
        for rule in self.rules:
            value = rule.type == "Acceptance"
            passing[rule.program] = value if passing.get(rule.program, value) is value \
                else _NEITHER
        self._passing = tuple(passing[program] for program in programs)
        self._all_passed = tuple(rule.outcomes["passed"] for rule in self.rules)
        self._entries: dict = {}

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> "Plan":
        """The plan of these rules (in this order), shared: a selection is compiled once.

        Kept by the rules' identities: a kept plan holds its rules, so while it is kept no
        other rule can have one of their ids. Bounded like certlogic's program cache.
        """
        rules = tuple(rules)
        key = tuple(map(id, rules))
        plan = _PLANS.get(key)
        if plan is None:
            plan = cls(rules)
            if len(_PLANS) >= _MAX_PLANS:
                _PLANS.clear()  # cheap and thread-safe; plans in use are back after one call
            _PLANS[key] = plan
        return plan

    def all_passed(self, results: list[RuleResult]) -> bool:
        """Whether ``results`` are this plan's answer when every rule passed."""
        return len(results) == len(self._all_passed) and all(
            map(operator.is_, results, self._all_passed))

    def passed_entries(self, lang: str | None) -> jsontext.EncodedList:
        """The answer's ``rules`` when every rule passed (:meth:`Rule.entry` of each), with
        their JSON text; kept per language as :meth:`Rule.entry` keeps them."""
        kept = self._entries.get(lang)
        if kept is None:
            entries = [rule.entry("passed", lang) for rule in self.rules]
            kept = (tuple(e for e, _ in entries), "[" + ",".join(t for _, t in entries) + "]")
            if len(self._entries) < _MAX_BODIES:
                self._entries[lang] = kept
        return jsontext.EncodedList(kept[0], kept[1])

    def evaluate(self, data: dict) -> list:
        """Each rule's Logic value on ``data``, or the CertLogicError it raised (rule order)."""
        values = self._batch(data)
        return [values[slot] for slot in self._slots]

    def judge(self, data: dict, unknown: frozenset[str] = frozenset()) -> list[RuleResult]:
        """:func:`judge` of each rule on ``data``, as :func:`judge_all` answers."""
        values = self._batch(data)
        if all(map(operator.is_, values, self._passing)):
            return list(self._all_passed)
        results = []
        for rule, slot in zip(self.rules, self._slots):
            value = values[slot]
            outcome = (None, value) if isinstance(value, certlogic.CertLogicError) \
                else (value, None)
            results.append(_result(rule, outcome, unknown))
        return results


_NEITHER = object()
_PLANS: dict[tuple, Plan] = {}
_MAX_PLANS = 256


def judge_all(rules: Iterable[Rule] | Plan, data: dict, unknown: frozenset[str] = frozenset()
              ) -> list[RuleResult]:
    """:func:`judge` for each rule on one data context, each distinct Logic evaluated once.
    The loop a scan runs for every rule of its mode: the common outcome (a boolean that
    passes) takes no more than a lookup. A :class:`Plan` judges its rules in one batch."""
    if type(rules) is Plan:
        return rules.judge(data, unknown)
    memo: dict = {}
    results = []
    for rule in rules:
        program = rule.program
        outcome = memo.get(program)
        if outcome is None:
            try:
                outcome = (program.evaluate(data), None)
            except certlogic.CertLogicError as exc:
                outcome = (None, exc)
            memo[program] = outcome
        value = outcome[0]
        if (value is True and rule.type == "Acceptance") or (
                value is False and rule.type == "Invalidation"):
            results.append(rule.outcomes["passed"])
        else:
            results.append(_result(rule, outcome, unknown))
    return results


def _result(rule: Rule, outcome: tuple, unknown: frozenset[str]) -> RuleResult:
    value, error = outcome
    if error is not None:
        return RuleResult(rule, "open", _unsaid(rule, unknown)
                          or f"evaluation failed: {error.message}")
    if value is not True and value is not False:
        return RuleResult(rule, "open", "the rule did not evaluate to true or false")
    passed = value if rule.type == "Acceptance" else not value
    if passed:
        return rule.outcomes["passed"]
    unsaid = _unsaid(rule, unknown)
    if unsaid:
        return RuleResult(rule, "open", unsaid)
    return rule.outcomes["failed"]


def _unsaid(rule: Rule, unknown: frozenset[str]) -> str | None:
    missing = sorted(f for f in unknown if reads_field(rule, f))
    return "the code's scheme does not say " + ", ".join(missing) if missing else None


def reads_field(rule: Rule, payload_field: str) -> bool:
    """Whether the rule reads ``payload.<field>`` (``v.0.mp``), by AffectedFields or Logic."""
    for affected in rule.affected_fields:
        if affected == payload_field or _generic(affected) == _generic(payload_field):
            return True
    return payload_field in _logic_paths(rule)


def _generic(path: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", ".0", path)


def _logic_paths(rule: Rule) -> set[str]:
    paths = set()
    stack = [rule.logic]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "var" and isinstance(value, str) and value.startswith("payload."):
                    paths.add(_generic(value[len("payload."):]))
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return paths
