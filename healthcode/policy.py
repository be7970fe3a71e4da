"""Conversion policy: the declarative part of an agreement between us and another scheme.

Colours are not one-to-one between regions, and conversion was in practice only for green
codes, so a policy says explicitly what converts and refuses everything else. One policy per
scheme: in a partner's mapping file (its ``[policy]`` table) or, for schemes without colours
(EU DCC, SHC, ICAO), in ``<data dir>/policies/<scheme>.toml``. The same policy governs both
directions of conversion with that scheme. No policy, no conversion.

.. code-block:: toml

    [policy]
    accept = ["green"]        # source colours that convert (default: green only)
    max_validity_hours = 24   # bound on the converted code's validity

    [[policy.require]]        # every requirement must hold
    evidence = "test"         # test | vaccination | recovery
    result = "negative"       # tests: negative | positive | inconclusive
    types = ["pcr"]           # tests: pcr | rat | antibody | other (default: any)
    within_hours = 48         # sampled at most this long before the conversion

    [[policy.grant]]          # colourless sources: the first matching rule gives the colour
    status = "green"
    evidence = "vaccination"
    complete = true           # the last dose completes its series
    min_days = 14             # at least this long after that dose
    max_days = 270            # and at most this long

    # CertLogic beside the TOML rules: every one must pass (healthcode.rules)
    certlogic_rules = ["rules/VR-AT-0001.json"]   # EU-format rule files, relative to this file
    [[policy.certlogic]]      # or an expression written here, as JSON text or TOML tables
    name = "adult"
    description = "the traveller is 18 or older"
    logic = '{"not-after": [{"dccDateOfBirth": [{"var": "payload.dob"}]}, {"plusTime": [{"var": "external.validationClock"}, -18, "year"]}]}'

Each rule that fires is reported in the conversion's ``trace``; a refusal is a
``policy_refused`` :class:`~healthcode.errors.CodeError` naming the rule that said no.

CertLogic rules judge the record projected into the DCC payload shape
(:mod:`healthcode.rules.projection`), one candidate per kind of evidence, with
``external.validationClock`` the conversion's time and the installed value sets: the policy's
CertLogic passes when one candidate passes every rule that applies to it (a rule file's
CertificateType and validity are honoured). A rule that fails, or stays open because the source
cannot say what it reads, refuses the conversion, naming it.

A test sampled after the moment of the check is no evidence. (There is no tolerance for clock
skew here: CertLogic cannot add minutes, and ``healthcode policies export --certlogic`` must
decide exactly as this module does.)
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from .errors import CodeError, ConfigurationError
from .record import STATUSES, TEST_RESULTS, TEST_TYPES, Record, format_time

EVIDENCE_KINDS = ("test", "vaccination", "recovery")
_RULE_KEYS = {"evidence", "result", "types", "within_hours", "complete", "min_days", "max_days",
              "status"}


@dataclass(frozen=True)
class Rule:
    """One evidence condition (and, in a grant, the colour it gives)."""

    evidence: str
    result: str | None = None
    types: tuple[str, ...] = ()
    within_hours: float | None = None
    complete: bool | None = None
    min_days: int | None = None
    max_days: int | None = None
    status: str | None = None

    def describe(self) -> str:
        parts = [self.evidence]
        if self.result:
            parts.append(self.result)
        if self.types:
            parts.append("/".join(self.types))
        if self.within_hours is not None:
            parts.append(f"within {self.within_hours:g} h")
        if self.complete:
            parts.append("series complete")
        if self.min_days is not None:
            parts.append(f">= {self.min_days} days")
        if self.max_days is not None:
            parts.append(f"<= {self.max_days} days")
        text = " ".join(parts)
        return f"{text} -> {self.status}" if self.status else text

    def match(self, record: Record, at: datetime) -> tuple[bool, datetime | None]:
        """Whether the record's evidence satisfies the rule, and until when it does."""
        if self.evidence == "test":
            return self._match_test(record, at)
        if self.evidence == "vaccination":
            return self._match_vaccination(record, at)
        return self._match_recovery(record, at)

    def _match_test(self, record, at):
        best = None
        for test in record.evidence.tests:
            if self.result and test.result != self.result:
                continue
            if self.types and test.type not in self.types:
                continue
            if test.sampled_at > at:
                continue  # a test from the future is no evidence
            until = None
            if self.within_hours is not None:
                until = test.sampled_at + timedelta(hours=self.within_hours)
                if until < at:
                    continue
            if best is None or (until or datetime.max.replace(tzinfo=timezone.utc)) > best:
                best = until or datetime.max.replace(tzinfo=timezone.utc)
        return _found(best)

    def _match_vaccination(self, record, at):
        best = None
        for dose in record.evidence.vaccinations:
            if self.complete and not dose.completes_series:
                continue
            given = _day(dose.administered_on)
            if given is None:
                continue
            days = (at.date() - given).days
            if self.min_days is not None and days < self.min_days:
                continue
            if self.max_days is not None and days > self.max_days:
                continue
            until = (datetime.combine(given, datetime.min.time(), timezone.utc)
                     + timedelta(days=self.max_days + 1)) if self.max_days is not None else None
            candidate = until or datetime.max.replace(tzinfo=timezone.utc)
            if best is None or candidate > best:
                best = candidate
        return _found(best)

    def _match_recovery(self, record, at):
        for recovery in record.evidence.recoveries:
            start = _day(recovery.valid_from) or _day(recovery.first_positive_on)
            end = _day(recovery.valid_until)
            if start and start > at.date():
                continue
            if end and end < at.date():
                continue
            until = datetime.combine(end, datetime.max.time(), timezone.utc) if end else None
            return True, until
        return False, None


def _found(best):
    if best is None:
        return False, None
    return True, None if best.year == datetime.max.year else best


def _day(text: str | None) -> date | None:
    if not text or len(text) != 10:
        return None  # a partial date cannot prove a number of days
    return date.fromisoformat(text)


@dataclass(frozen=True)
class Policy:
    scheme: str
    accept: tuple[str, ...] = ("green",)
    max_validity_hours: float | None = None
    require: tuple[Rule, ...] = ()
    grant: tuple[Rule, ...] = ()
    source: str = ""
    certlogic: tuple = ()  # healthcode.rules.ruleset.Rule objects, from files or inline

    @classmethod
    def from_table(cls, scheme: str, table: dict, source: str = "") -> "Policy":
        """Validate a ``[policy]`` table; errors name the file and the field."""
        where = source or f"policy of {scheme}"

        def fail(field_name: str, message: str):
            raise ConfigurationError(f"{where}: policy.{field_name}: {message}")

        if not isinstance(table, dict):
            fail("", "must be a table")
        unknown = set(table) - {"accept", "max_validity_hours", "require", "grant",
                                "certlogic_rules", "certlogic"}
        if unknown:
            fail(sorted(unknown)[0], "unknown key")
        accept = table.get("accept", ["green"])
        if not isinstance(accept, list) or any(a not in STATUSES for a in accept):
            fail("accept", f"a list of {', '.join(STATUSES)}")
        bound = table.get("max_validity_hours")
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                                  or bound <= 0):
            fail("max_validity_hours", "a positive number of hours")
        require = tuple(_rule(r, f"require[{i}]", fail, grant=False)
                        for i, r in enumerate(_list(table.get("require", []), "require", fail)))
        grant = tuple(_rule(r, f"grant[{i}]", fail, grant=True)
                      for i, r in enumerate(_list(table.get("grant", []), "grant", fail)))
        certlogic = _certlogic_rules(table, source, fail)
        return cls(scheme=scheme, accept=tuple(accept), max_validity_hours=bound,
                   require=require, grant=grant, source=source, certlogic=certlogic)

    def apply(self, record: Record, at: datetime, valuesets: dict | None = None
              ) -> tuple[str, datetime | None, list[str]]:
        """The colour the converted code gets, its latest allowed expiry, and the trace.

        ``valuesets`` are passed to the policy's CertLogic rules as ``external.valueSets``.
        """
        trace = []
        until = None
        if record.status is None:
            if not self.grant:
                raise CodeError("policy_refused", f"{self.scheme} codes carry no colour and the "
                                                  f"policy grants none", rule="grant")
            status = None
            for i, rule in enumerate(self.grant):
                ok, rule_until = rule.match(record, at)
                if ok:
                    status, until = rule.status, rule_until
                    trace.append(f"policy: grant[{i}] {rule.describe()}")
                    break
            if status is None:
                raise CodeError("policy_refused", "no grant rule matches the evidence: "
                                + "; ".join(r.describe() for r in self.grant), rule="grant")
        else:
            status = record.status
        if status not in self.accept:
            raise CodeError("policy_refused", f"{status} codes do not convert under this "
                                              f"agreement (accepted: {', '.join(self.accept)})",
                            rule="accept")
        trace.append(f"policy: accept {status}")
        for i, rule in enumerate(self.require):
            ok, rule_until = rule.match(record, at)
            if not ok:
                raise CodeError("policy_refused", f"requirement not met: {rule.describe()}",
                                rule=f"require[{i}]")
            until = earliest(until, rule_until)
            trace.append(f"policy: require[{i}] {rule.describe()}")
        if self.certlogic:
            trace += self._apply_certlogic(record, at, valuesets or {})
        if self.max_validity_hours is not None:
            until = earliest(until, at + timedelta(hours=self.max_validity_hours))
            trace.append(f"policy: max validity {self.max_validity_hours:g} h")
        return status, until, trace


    def _apply_certlogic(self, record: Record, at: datetime, valuesets: dict) -> list[str]:
        from .rules.modes import judge_candidates

        def select(certificate_type):
            return [r for r in self.certlogic if r.applies(certificate_type, at)]

        external = {"validationClock": format_time(at), "valueSets": valuesets}
        verdict = judge_candidates(record, select, external)
        if not verdict.passed and verdict.results:
            bad = (verdict.failed or verdict.open)[0]
            note = f" ({bad.note})" if bad.note else ""
            raise CodeError("policy_refused", f"CertLogic rule {bad.rule.identifier} "
                                              f"{bad.result}: {bad.rule.describe()}{note}",
                            rule=f"certlogic:{bad.rule.identifier}")
        if not verdict.results:
            raise CodeError("policy_refused", "no CertLogic rule of the agreement applies to "
                                              "this evidence", rule="certlogic")
        return [f"policy: certlogic {r.rule.identifier} {r.rule.version} {r.result}: "
                f"{r.rule.describe()}" for r in verdict.results]


def _certlogic_rules(table: dict, source: str, fail) -> tuple:
    """Rule files (relative to the policy's file) and inline expressions, each checked."""
    import json

    from .rules.ruleset import RuleError, inline_rule, read_rule_file

    rules = []
    base = Path(source).parent if source else Path(".")
    files = table.get("certlogic_rules", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        fail("certlogic_rules", "a list of rule file paths")
    for entry in files:
        path = (base / entry)
        if not path.is_file():
            fail("certlogic_rules", f"no rule file {entry}")
        try:
            rules.append(read_rule_file(path))
        except RuleError as exc:
            fail("certlogic_rules", exc.message)
    inline = table.get("certlogic", [])
    if not isinstance(inline, list):
        fail("certlogic", "an array of tables")
    for index, item in enumerate(inline):
        if not isinstance(item, dict) or set(item) - {"name", "description", "logic"}:
            fail(f"certlogic[{index}]", "a table of name, description and logic")
        logic = item.get("logic")
        if isinstance(logic, str):
            try:
                logic = json.loads(logic)
            except ValueError as exc:
                fail(f"certlogic[{index}].logic", f"not JSON: {exc}")
        try:
            rules.append(inline_rule(item.get("name"), logic, item.get("description"),
                                     source=f"{source or 'policy'} certlogic[{index}]"))
        except RuleError as exc:
            fail(f"certlogic[{index}]", exc.message)
    names = [r.identifier for r in rules]
    if len(names) != len(set(names)):
        fail("certlogic", "two rules with the same name or identifier")
    return tuple(rules)


def _list(value, name, fail):
    if not isinstance(value, list):
        fail(name, "an array of tables")
    return value


def _rule(data, name, fail, grant: bool) -> Rule:
    if not isinstance(data, dict):
        fail(name, "a table")
    unknown = set(data) - _RULE_KEYS
    if unknown:
        fail(f"{name}.{sorted(unknown)[0]}", "unknown key")
    if data.get("evidence") not in EVIDENCE_KINDS:
        fail(f"{name}.evidence", f"one of {', '.join(EVIDENCE_KINDS)}")
    if grant and data.get("status") not in STATUSES:
        fail(f"{name}.status", f"one of {', '.join(STATUSES)}")
    if not grant and "status" in data:
        fail(f"{name}.status", "only grant rules give a status")
    if "result" in data and data["result"] not in TEST_RESULTS:
        fail(f"{name}.result", f"one of {', '.join(TEST_RESULTS)}")
    types = data.get("types", [])
    if not isinstance(types, list) or any(t not in TEST_TYPES for t in types):
        fail(f"{name}.types", f"a list of {', '.join(TEST_TYPES)}")
    for key in ("within_hours", "min_days", "max_days"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value < 0):
            fail(f"{name}.{key}", "a non-negative number")
    if "complete" in data and not isinstance(data["complete"], bool):
        fail(f"{name}.complete", "true or false")
    return Rule(evidence=data["evidence"], result=data.get("result"), types=tuple(types),
                within_hours=data.get("within_hours"), complete=data.get("complete"),
                min_days=data.get("min_days"), max_days=data.get("max_days"),
                status=data.get("status"))


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two optional instants (``None`` is no bound)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def load_policy_file(path: Path) -> Policy:
    """``policies/<scheme>.toml``: ``scheme = "..."`` and a ``[policy]`` table."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    unknown = set(data) - {"scheme", "policy", "description"}
    if unknown:
        raise ConfigurationError(f"{path}: {sorted(unknown)[0]}: unknown key")
    scheme = data.get("scheme")
    if not isinstance(scheme, str) or not scheme:
        raise ConfigurationError(f"{path}: scheme: required")
    return Policy.from_table(scheme, data.get("policy", {}), source=str(path))


def load_policies(directory: Path, registry) -> dict[str, Policy]:
    """Policies from partner mapping files and from the policies folder, by scheme."""
    policies: dict[str, Policy] = {}
    for adapter in registry.adapters():
        table = getattr(adapter, "policy_table", None)
        if table:
            policies[adapter.scheme] = Policy.from_table(
                adapter.scheme, table, source=getattr(adapter, "source", adapter.scheme))
    if directory.is_dir():
        for path in sorted(directory.glob("*.toml")):
            policy = load_policy_file(path)
            if policy.scheme in policies:
                raise ConfigurationError(f"{path}: a policy for {policy.scheme} is already "
                                         f"defined in {policies[policy.scheme].source}")
            if policy.scheme not in registry:
                raise ConfigurationError(f"{path}: no installed scheme {policy.scheme!r}")
            policies[policy.scheme] = policy
    return policies
