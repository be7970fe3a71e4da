"""Our TOML conversion policies written as EU DCC business rules, for a partner's own engine.

``healthcode policies export --certlogic SCHEME`` turns the policy of one scheme into General
Acceptance rules that decide, on a DCC-shaped payload, exactly as :meth:`Policy.apply` decides
for a code without colour (a DCC, an SHC, an ICAO seal: what a DCC engine sees):

- ``GR-<CC>-0001``: the first ``grant`` rule the evidence matches gives a colour the policy
  ``accept``\\ s (a policy without grants: never);
- ``GR-<CC>-0002``...: each ``require`` rule holds.

Each TOML rule becomes a ``reduce`` over the payload's ``v``, ``t`` or ``r`` array ("some event
matches"), so the rules judge a one-event DCC and a payload with every event of a record
(:func:`~healthcode.rules.projection.project_all`) alike. CertLogic's lambda sees only
``accumulator`` and ``current``, so the validation clock rides in the accumulator:
``[found, clock]``, and ``{"in": [true, ...]}`` reads ``found`` at the end.

The mapping, TOML -> CertLogic (``clock`` is the validation clock, dates midnight UTC):

- test ``result``: ``tr`` is 260415000 (negative) / 260373001 (positive); ``types``: ``tt`` in
  LP6464-4 (pcr) / LP217198-3 (rat); a test never counts when sampled after the clock;
  ``within_hours h``: ``clock`` not after ``sc + h hours``;
- vaccination ``complete``: ``dn >= sd`` (an ``sd`` of 0 is complete, no ``sd`` is not);
  ``min_days m``: ``dt + m days`` not after ``clock``; ``max_days M``: ``clock`` before
  ``dt + (M + 1) days``; a dose without a full date never counts;
- recovery: from ``df`` (else ``fr``) not after ``clock``, and ``clock`` before ``du + 1 day``.

What CertLogic cannot say is refused with a clear error rather than exported approximately:
fractional hours or days (``plusTime`` counts whole hours and days), inconclusive results and
antibody/other test types (the EU value sets have no codes for them). A code's colour is not
part of a DCC: ``accept`` of coloured sources stays with us. Date-times compare at CertLogic's
millisecond precision.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ..errors import ConfigurationError
from ..policy import Policy, Rule as PolicyRule
from .projection import TEST_RESULTS, TEST_TYPES
from .ruleset import parse_rule


class NotExportable(ConfigurationError):
    """The policy says something CertLogic cannot express exactly."""

    reason = "not_exportable"


def export_policy(policy: Policy, *, country: str = "XX", valid_from: datetime | None = None,
                  valid_to: datetime | None = None) -> list[dict]:
    """The EU-format rules of one policy, each checked as any installed rule is."""
    valid_from = (valid_from or datetime.now(timezone.utc)).replace(microsecond=0)
    valid_to = (valid_to or valid_from + timedelta(days=365)).replace(microsecond=0)
    rules = [_rule(1, country, grant_logic(policy), _grant_text(policy), valid_from, valid_to,
                   _fields(policy.grant))]
    for index, requirement in enumerate(policy.require):
        rules.append(_rule(index + 2, country, match_logic(requirement),
                           f"Requirement {index + 1} of the {policy.scheme} agreement: "
                           f"{requirement.describe()}", valid_from, valid_to,
                           _fields([requirement])))
    for rule in rules:
        parse_rule(rule, source=f"export of {policy.scheme}")  # valid EU rules, or a bug here
    return rules


def grant_logic(policy: Policy):
    """The first grant that matches gives a colour the policy accepts."""
    logic = {"===": [1, 0]}  # no grant matched: no colour, no conversion
    for rule in reversed(policy.grant):
        logic = {"if": [match_logic(rule), rule.status in policy.accept, logic]}
    return logic


def _grant_text(policy: Policy) -> str:
    if not policy.grant:
        return f"Codes without a colour never convert under the {policy.scheme} agreement"
    return (f"The {policy.scheme} agreement: the first of these that the evidence meets gives "
            f"the colour, which must be one of {', '.join(policy.accept)}: "
            + "; ".join(r.describe() for r in policy.grant))


_GROUPS = {"test": "t", "vaccination": "v", "recovery": "r"}


def match_logic(rule: PolicyRule):
    """Some event of the rule's kind meets it (``{"in": [true, reduce(...)]}``)."""
    condition = {"test": _test, "vaccination": _vaccination,
                 "recovery": _recovery}[rule.evidence](rule)
    step = [{"if": [{"var": "accumulator.0"}, True, condition]}, {"var": "accumulator.1"}]
    initial = [False, {"var": "external.validationClock"}]
    return {"in": [True, {"reduce": [{"var": f"payload.{_GROUPS[rule.evidence]}"}, step,
                                     initial]}]}


def _clock(unit: str = "day"):
    return {"plusTime": [{"var": "accumulator.1"}, 0, unit]}


def _date(field: str, days: int = 0, unit: str = "day"):
    return {"plusTime": [{"var": f"current.{field}"}, days, unit]}


def _whole(rule: PolicyRule, name: str) -> int:
    value = getattr(rule, name)
    if isinstance(value, float) and not value.is_integer():
        raise NotExportable(f"{rule.describe()}: {name} = {value:g}: CertLogic counts whole "
                            f"{'hours' if name.endswith('hours') else 'days'}")
    return int(value)


def _all(conditions: list):
    if not conditions:
        return True
    if len(conditions) == 1:
        return conditions[0]
    return {"and": conditions}


def _test(rule: PolicyRule):
    conditions = []
    if rule.result:
        if rule.result not in TEST_RESULTS:
            raise NotExportable(f"{rule.describe()}: the EU value sets have no code for an "
                                f"{rule.result} result")
        conditions.append({"===": [{"var": "current.tr"}, TEST_RESULTS[rule.result]]})
    if rule.types:
        unknown = [t for t in rule.types if t not in TEST_TYPES]
        if unknown:
            raise NotExportable(f"{rule.describe()}: the EU value sets have no test type for "
                                f"{', '.join(unknown)}")
        conditions.append({"in": [{"var": "current.tt"}, [TEST_TYPES[t] for t in rule.types]]})
    # a test from the future is no evidence (Rule._match_test)
    conditions.append({"not-after": [_date("sc", 0, "hour"), _clock("hour")]})
    if rule.within_hours is not None:
        conditions.append({"not-after": [_clock("hour"),
                                         _date("sc", _whole(rule, "within_hours"), "hour")]})
    return _all(conditions)


def _vaccination(rule: PolicyRule):
    conditions = []
    if rule.complete:
        conditions.append({"if": [{"var": "current.sd"},
                                  {">=": [{"var": "current.dn"}, {"var": "current.sd"}]},
                                  {"===": [{"var": "current.sd"}, 0]}]})
    if rule.min_days is not None:
        conditions.append({"not-after": [_date("dt", _whole(rule, "min_days")), _clock()]})
    if rule.max_days is not None:
        conditions.append({"before": [_clock(), _date("dt", _whole(rule, "max_days") + 1)]})
    return {"if": [{"var": "current.dt"}, _all(conditions), False]}


def _recovery(rule: PolicyRule):
    started = {"if": [{"var": "current.df"}, {"not-after": [_date("df"), _clock()]},
                      {"if": [{"var": "current.fr"}, {"not-after": [_date("fr"), _clock()]},
                              True]}]}
    not_ended = {"if": [{"var": "current.du"}, {"before": [_clock(), _date("du", 1)]}, True]}
    return {"and": [started, not_ended]}


def _fields(rules) -> list[str]:
    fields = {"test": ["t", "t.0.tr", "t.0.tt", "t.0.sc"],
              "vaccination": ["v", "v.0.dn", "v.0.sd", "v.0.dt"],
              "recovery": ["r", "r.0.fr", "r.0.df", "r.0.du"]}
    out: list[str] = []
    for rule in rules:
        for name in fields[rule.evidence]:
            if name not in out:
                out.append(name)
    return out


def _rule(number: int, country: str, logic, description: str, valid_from: datetime,
          valid_to: datetime, affected: list[str]) -> dict:
    return {"Identifier": f"GR-{country}-{number:04d}", "Type": "Acceptance",
            "Country": country, "Version": "1.0.0", "SchemaVersion": "1.3.0",
            "Engine": "CERTLOGIC", "EngineVersion": "1.3.3", "CertificateType": "General",
            "Description": [{"lang": "en", "desc": description}],
            "ValidFrom": valid_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ValidTo": valid_to.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "AffectedFields": affected, "Logic": logic}
