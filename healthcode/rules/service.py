"""The running service's rules, value sets and modes, loaded once at start-up.

A broken rule, value set or mode file stops start-up with a message naming the file and the
rule, as a broken trust or mapping file does; ``healthcode rules|valuesets add`` refuse them
before they get there. A running service reads the folders at start-up only.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from flask import current_app, request

from ..config import data_path
from ..errors import Forbidden, InvalidField
from ..record import Record
from .modes import Mode, apply_verdict, judge_record, load_modes
from .ruleset import RuleSet
from .valuesets import load_valuesets


def init_app(app) -> None:
    app.extensions["healthcode.rules"] = RuleSet.load(data_path(app.config, "rules"))
    app.extensions["healthcode.valuesets"] = load_valuesets(data_path(app.config, "valuesets"))
    app.extensions["healthcode.modes"] = load_modes(data_path(app.config, "modes"))


def get_rules() -> RuleSet:
    return current_app.extensions["healthcode.rules"]


def get_valuesets() -> dict:
    return current_app.extensions["healthcode.valuesets"]


def get_modes() -> dict[str, Mode]:
    return current_app.extensions["healthcode.modes"]


def resolve_mode(requested, credential) -> Mode | None:
    """The mode of a verify request: the credential's bound mode, or the one it names.

    A credential bound to a mode applies it to every scan; naming another is refused (403), so
    a checkpoint cannot be talked out of its rules by its own client. Naming the bound mode is
    allowed. Unbound credentials may name any mode, or none.
    """
    bound = getattr(credential, "mode", None)
    if requested is not None and not isinstance(requested, str):
        raise InvalidField("mode", "a mode name")
    if bound and requested and requested != bound:
        raise Forbidden(f"this credential is bound to mode {bound}")
    name = requested or bound
    if not name:
        return None
    mode = get_modes().get(name)
    if mode is None:
        if bound and not requested:
            # the mode file went away after the credential was made: refuse, never skip rules
            raise Forbidden(f"this credential's mode {bound} is not installed")
        raise InvalidField("mode", f"no mode {name!r} is installed")
    return mode


def request_language(body: dict | None = None) -> str | None:
    """The caller's language for rule descriptions: ``?lang=``, a body ``lang``, or the best
    ``Accept-Language`` tag, as given (rules carry EU languages: de, fr, ...)."""
    args = request.args  # (a test first: a missing key's ``get`` raises and catches inside)
    tag = (args["lang"] if "lang" in args else None) or (body or {}).get("lang")
    if not tag:
        best = request.accept_languages.best
        tag = best if best and best != "*" else None
    if not isinstance(tag, str) or not re.fullmatch(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*",
                                                    tag):
        return None
    return tag.replace("_", "-")


def apply_mode(answer: dict, mode: Mode, record: Record, *, at: datetime | None,
               lang: str | None, issuer_country: str | None = None) -> dict:
    """Judge a genuine code's record under ``mode`` and fold the verdict into ``answer``."""
    verdict = judge_record(mode, record, rules=get_rules(), valuesets=get_valuesets(),
                           at=at or datetime.now(timezone.utc), issuer_country=issuer_country)
    return apply_verdict(answer, verdict, mode, lang)
