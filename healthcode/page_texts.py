"""The health authority's own words on the resident page: why a code is yellow or red, what to
do next, and how to get a new sign-in link.

A yellow or red code that says nothing of why leaves an elderly resident at a border with no
idea what to do. Every reason code has a default explanation and next step in the four
languages (in the message catalogs); an authority replaces any of them, and sets the help text
and contact for an expired sign-in, in ``<data dir>/page-texts.toml``::

    [reasons.close_contact.en]
    why = "You were in close contact with a person who tested positive."
    next = "Stay at home and call the health hotline 2800 0000 today."

    [reasons.close_contact.zh-Hant]
    why = "你曾與確診者密切接觸。"
    next = "請留在家中，並於今日致電衞生熱線 2800 0000。"

    [signin_help.en]
    text = "Ask the health authority for a new sign-in link."
    contact = "Health hotline 2800 0000, 9:00-18:00"

Languages are the pages' tags (``zh-Hant``, ``zh-Hans``, ``en``, ``pt``); anything missing falls
back to the default words in that language. The file is checked at start-up: an unknown reason,
language or field stops the service with a message naming the file.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass

from flask import current_app
from flask_babel import gettext
from flask_babel import lazy_gettext as _l

from .config import data_path
from .errors import ConfigurationError
from .i18n import LANGUAGES, current_language
from .record import STATUS_REASONS

FILE_NAME = "page-texts.toml"
MAX_TEXT = 500

#: default words per reason: (why, what to do next)
REASON_ADVICE = {
    "close_contact": (
        _l("You were in close contact with a person who tested positive."),
        _l("Stay at home, keep away from others and take a PCR test. Your code turns green "
           "when the health authority clears you.")),
    "secondary_contact": (
        _l("You were in contact with a close contact of a confirmed case."),
        _l("Watch for symptoms and take a test when the health authority asks you to.")),
    "positive_test": (
        _l("You have a positive test result."),
        _l("Isolate where the health authority tells you and follow its instructions.")),
    "symptoms": (
        _l("You reported symptoms."),
        _l("Take a PCR test as soon as possible and keep away from others until the result.")),
    "travel_from_risk_area": (
        _l("You arrived from a risk area."),
        _l("Follow the health authority's rules on tests and quarantine for arrivals.")),
    "visited_risk_area": (
        _l("You visited a risk area."),
        _l("Take a PCR test and watch for symptoms.")),
    "quarantine": (
        _l("You are in quarantine or self-monitoring."),
        _l("Stay where your quarantine order says until it ends.")),
    "test_overdue": (
        _l("A required test is overdue."),
        _l("Take a test at a testing station. Your code changes when the result is in.")),
    "isolation_ended": (
        _l("Your isolation or quarantine has ended."),
        _l("Your code changes when the health authority updates your status.")),
    "negative_test": (
        _l("Your latest test was negative."),
        _l("Your code changes when the health authority updates your status.")),
    "correction": (
        _l("The health authority corrected an earlier record."),
        _l("If you think your status is wrong, contact the health authority.")),
    "partner_conversion": (
        _l("Your code was converted from another region's health code."),
        _l("If you think your status is wrong, contact the authority of that region.")),
}

SIGNIN_HELP = _l("Your sign-in has expired. Open the newest sign-in link the health authority "
                 "sent you, or ask the health authority for a new one.")

_REASON_FIELDS = {"why", "next"}
_HELP_FIELDS = {"text", "contact"}


@dataclass(frozen=True)
class Advice:
    reason: str
    why: str
    next: str

    def to_dict(self) -> dict:
        return {"reason": self.reason, "why": self.why, "next": self.next}


class PageTexts:
    """The authority's overrides, by language tag; empty when there is no file."""

    def __init__(self, reasons: dict | None = None, signin_help: dict | None = None):
        self.reasons = reasons or {}
        self.signin_help = signin_help or {}

    @classmethod
    def load(cls, path) -> "PageTexts":
        if not path.exists():
            return cls()
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{path}: not valid TOML ({exc})") from None
        unknown = set(raw) - {"reasons", "signin_help"}
        if unknown:
            raise ConfigurationError(f"{path}: unknown section {sorted(unknown)[0]!r} "
                                     "(expected reasons, signin_help)")
        reasons = raw.get("reasons", {})
        _check_table(path, "reasons", reasons)
        for reason, by_language in reasons.items():
            if reason not in STATUS_REASONS:
                raise ConfigurationError(f"{path}: unknown reason code {reason!r}")
            _check_languages(path, f"reasons.{reason}", by_language, _REASON_FIELDS)
        help_texts = raw.get("signin_help", {})
        _check_languages(path, "signin_help", help_texts, _HELP_FIELDS)
        return cls(reasons, help_texts)

    def advice(self, reasons, tag: str) -> Advice | None:
        """Why and what next for the first reason of a status, in the page's language."""
        for reason in reasons or ():
            if reason not in REASON_ADVICE:
                continue
            why, next_step = REASON_ADVICE[reason]
            own = self.reasons.get(reason, {}).get(tag, {})
            return Advice(reason, own.get("why") or str(why), own.get("next") or str(next_step))
        return None

    def help(self, tag: str) -> dict:
        own = self.signin_help.get(tag, {})
        return {"text": own.get("text") or str(SIGNIN_HELP), "contact": own.get("contact")}


def _check_table(path, where: str, value) -> None:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{path}: [{where}] must be a table")


def _check_languages(path, where: str, by_language, fields: set[str]) -> None:
    _check_table(path, where, by_language)
    tags = set(LANGUAGES.values())
    for tag, entry in by_language.items():
        if tag not in tags:
            raise ConfigurationError(f"{path}: [{where}.{tag}]: unknown language "
                                     f"(expected one of {', '.join(sorted(tags))})")
        _check_table(path, f"{where}.{tag}", entry)
        for name, text in entry.items():
            if name not in fields:
                raise ConfigurationError(f"{path}: [{where}.{tag}]: unknown field {name!r} "
                                         f"(expected {', '.join(sorted(fields))})")
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
                raise ConfigurationError(f"{path}: [{where}.{tag}].{name} must be a non-empty "
                                         f"string of at most {MAX_TEXT} characters")


def get_texts() -> PageTexts:
    return current_app.extensions["healthcode.page_texts"]


def page_tag() -> str:
    return LANGUAGES.get(current_language(), "en")


def advice_for(status: str, reasons) -> dict | None:
    """What the resident page says under a yellow or red banner (None for green)."""
    if status == "green":
        return None
    found = get_texts().advice(reasons, page_tag())
    if found is None:
        return {"reason": None, "why": "",
                "next": gettext("If you think your status is wrong, contact the health "
                                "authority.")}
    return found.to_dict()


def why_texts() -> dict[str, str]:
    """Why a code is yellow or red, per reason code, in the page's language: the scanner shows
    the same line as the resident's page."""
    texts, tag = get_texts(), page_tag()
    return {reason: texts.advice([reason], tag).why for reason in REASON_ADVICE}


def signin_help() -> dict:
    return get_texts().help(page_tag())


def init_app(app) -> None:
    app.extensions["healthcode.page_texts"] = PageTexts.load(data_path(app.config, FILE_NAME))
