"""Languages of the pages: Flask-Babel wiring, the choice of language, and the words for codes.

Four languages, as Macau needs them: Traditional Chinese, Simplified Chinese, English and
Portuguese. The choice, strongest first: ``?lang=`` (also remembered in a cookie, so the
switcher's choice sticks), that cookie, the browser's ``Accept-Language``, ``DEFAULT_LANGUAGE``.

Machine codes the pages show (statuses, verification reasons, error reasons) are turned into
words here, from the message catalogs, for the templates and, rendered into the page as JSON,
for the scripts: a page never shows a hard-coded or an untranslated string. How to regenerate
the catalogs: ``healthcode/translations/README.md``.
"""
from __future__ import annotations

from flask import current_app, g, request
from flask_babel import Babel, get_locale, gettext
from flask_babel import lazy_gettext as _l

from .errors import ConfigurationError

#: catalog (Babel) id -> BCP 47 tag used in URLs, ``<html lang>`` and by the scripts' Intl
LANGUAGES = {"zh_Hant": "zh-Hant", "zh_Hans": "zh-Hans", "en": "en", "pt": "pt"}
#: each language named in itself, as a switcher must show it
NATIVE_NAMES = {"zh_Hant": "繁體中文", "zh_Hans": "简体中文", "en": "English", "pt": "Português"}
COOKIE = "hc_lang"
COOKIE_SECONDS = 365 * 86400

# Chinese tags name a script, a region, or neither. Regions that write Traditional characters
# get zh_Hant; a bare "zh" too, because this service is Macau's, whose written Chinese is
# Traditional (CLDR would say Simplified).
_TRADITIONAL_REGIONS = {"tw", "hk", "mo"}
_SIMPLIFIED_REGIONS = {"cn", "sg", "my"}


def parse_tag(tag: str | None) -> str | None:
    """The catalog id for a language tag (``zh-TW``, ``zh_Hant``, ``pt-MO``…), or None."""
    if not tag:
        return None
    parts = tag.strip().replace("_", "-").lower().split("-")
    if parts[0] in ("en", "pt"):
        return parts[0]
    if parts[0] != "zh":
        return None
    rest = set(parts[1:])
    if "hant" in rest or rest & _TRADITIONAL_REGIONS:
        return "zh_Hant"
    if "hans" in rest or rest & _SIMPLIFIED_REGIONS:
        return "zh_Hans"
    return "zh_Hant"


def select_locale() -> str:
    chosen = parse_tag(request.args.get("lang"))
    if chosen:
        g.hc_lang_cookie = chosen  # remembered by the after-request hook below
        return chosen
    chosen = parse_tag(request.cookies.get(COOKIE))
    if chosen:
        return chosen
    for tag, _quality in request.accept_languages:  # already sorted by quality
        chosen = parse_tag(tag)
        if chosen:
            return chosen
    return current_app.config["DEFAULT_LANGUAGE"]


def current_language() -> str:
    """The catalog id of this request's language."""
    locale = get_locale()
    return str(locale) if locale is not None else current_app.config["DEFAULT_LANGUAGE"]


# -- the words for machine codes ------------------------------------------------------------------

STATUS_LABELS = {
    "green": _l("Green code"),
    "yellow": _l("Yellow code"),
    "red": _l("Red code"),
}

#: a verification answer in plain words, per contract reason (DESIGN.md); "valid" for success
REASON_TEXT = {
    "valid": _l("The code is genuine and up to date."),
    "malformed": _l("This is not a readable health code."),
    "unsupported_scheme": _l("This kind of code is not supported here."),
    "bad_signature": _l("The code has been altered or forged."),
    "unknown_key": _l("The code is signed with a key this service does not know."),
    "untrusted_issuer": _l("The code comes from an issuer this service does not trust."),
    "expired": _l("The code has expired. Ask for a fresh code."),
    "not_yet_valid": _l("The code is not valid yet. Check the clock of the phone."),
    "wrong_key_usage": _l("The code is signed by a key that may not sign health codes."),
    "revoked": _l("The code has been revoked."),
    "superseded": _l("The status has changed since this code was issued."),
    "policy_refused": _l("A rule of this service refuses this code."),
    "too_large": _l("The code is too large to be a health code."),
    "unknown": _l("The code could not be checked."),
}

#: schemes named for a guard (partner schemes are named by their mapping files' ids)
SCHEME_NAMES = {
    "native": _l("this service's health codes"),
    "eu-dcc": _l("EU Digital COVID Certificates"),
    "shc": _l("SMART Health Cards"),
    "icao-vds": _l("ICAO health seals"),
}

#: what a person should read for an error reason of the API or the pages
ERROR_TEXT = {
    "unauthorized": _l("You are signed out. Please sign in again."),
    "forbidden": _l("This sign-in may not do this."),
    "csrf_failed": _l("The form has expired. Please reload the page and try again."),
    "rate_limited": _l("Too many look-ups. Please wait %(seconds)s seconds."),
    "too_many_attempts": _l("Too many attempts. Please wait %(seconds)s seconds and try again."),
    "store_unavailable": _l("The service is busy. Please try again shortly."),
    "invalid_field": _l("Please check the form: a field is missing or not valid."),
    "not_json": _l("The request could not be read."),
    "too_large": _l("The request is too large."),
    "not_found": _l("This page does not exist."),
    "bad_credential": _l("This access code is not valid."),
    "wrong_page": _l("This access code is not for this page."),
    "no_page": _l("This access code has no page here."),
    "link_used": _l("This link has expired or has already been used. Please ask for a new one."),
    "network": _l("No connection to the service. Please check the network and try again."),
    "error": _l("Something went wrong. Please try again."),
}


def error_text(reason: str, **values) -> str:
    text = ERROR_TEXT.get(reason, ERROR_TEXT["error"])
    return str(text) % values if values else str(text)


def client_text() -> dict:
    """Every string the page scripts may show, in this request's language.

    Rendered into the page as a JSON data block, because the Content-Security-Policy forbids
    inline scripts and the scripts must not carry their own (untranslated) words.
    """
    from .page_texts import why_texts  # page_texts builds on this module

    return {
        "status": {k: str(v) for k, v in STATUS_LABELS.items()},
        "why": why_texts(),
        "reason": {k: str(v) for k, v in REASON_TEXT.items()},
        "error": {k: str(v) for k, v in ERROR_TEXT.items()},
        "not_valid": gettext("Not valid"),
        "stale": gettext("Out of date"),
        "stale_detail": gettext("No connection: this code is out of date. Do not show it."),
        "offline": gettext("No connection. Your code will update when the connection "
                           "returns."),
        "checked_online": gettext("Checked online"),
        # offline checks and the third answer, "could not check" (issue 12)
        "checked_offline_at": gettext("Checked offline · trust data of %(time)s"),
        "status_as_of": gettext("colour as issued at %(time)s"),
        "status_not_asked": gettext("Checked online, but the current status could not be "
                                    "asked: colour as issued at %(time)s"),
        "offline_valid": gettext("The code is genuine. Its colour is the one it was issued "
                                 "with."),
        "could_not_check": gettext("Could not check"),
        "no_trust_detail": gettext("No connection to the service, and no trust data on this "
                                   "device for checking offline. Try again, or check another "
                                   "way."),
        "trust_expired": gettext("Trust data out of date"),
        "trust_expired_detail": gettext("Connect to update. The code was not checked: this "
                                        "is not a verdict on the person."),
        "trust_expired_banner": gettext("Trust data out of date: connect to update"),
        "trust_ready": gettext("Offline checks ready: trust data of %(time)s, valid until "
                               "%(until)s"),
        "trust_warnings": gettext("%(count)s trust sources not updated lately"),
        "trust_none": gettext("No trust data on this device yet: offline checks start after "
                              "one connection."),
        "offline_unsupported": gettext("No connection, and this kind of code can only be "
                                       "checked by the service. Try again when connected."),
        "icao_offline": gettext("No connection, and ICAO health seals can only be checked by "
                                "the service. Try again when connected."),
        "lookup_needs_service": gettext("Look-ups by document need the service, and there is "
                                        "no connection. Try again when connected."),
        "genuine": gettext("Genuine code"),
        "genuine_detail": gettext("No colour rule for %(scheme)s here"),
        "issuer": gettext("issuer %(issuer)s"),
        "schemes": {k: str(v) for k, v in SCHEME_NAMES.items()},
        "current_status": gettext("Current status: %(status)s"),
        "rule_failed": gettext("Rule not met: %(rule)s"),
        "status_now": gettext("Your code is now: %(status)s."),
        "last_known": gettext("Last shown on this device: %(status)s, valid until %(time)s. "
                              "It may have changed since."),
        "checking": gettext("Checking…"),
        "found_none": gettext("Not found"),
        "found_none_detail": gettext("No resident with this document is enrolled."),
        "lookup": gettext("Look-up by document"),
        "scan": gettext("Scan"),
        "camera_refused": gettext("The camera may not be used. Please allow the camera, or "
                                  "type the code below."),
        "camera_missing": gettext("No camera found. Please type the code below."),
        "camera_on": gettext("Camera on: point it at the health code."),
        "large_text_on": gettext("Large text: on"),
        "large_text_off": gettext("Large text: off"),
    }


def init_app(app) -> None:
    default = app.config["DEFAULT_LANGUAGE"]
    if default not in LANGUAGES:
        raise ConfigurationError("HEALTHCODE_DEFAULT_LANGUAGE must be one of "
                                 + ", ".join(LANGUAGES))
    Babel(app, locale_selector=select_locale, default_locale=default)

    @app.after_request
    def remember_language(response):
        chosen = g.get("hc_lang_cookie")
        if chosen:
            # A preference, not a credential: Lax so it also applies when arriving by a link.
            response.set_cookie(COOKIE, chosen, max_age=COOKIE_SECONDS, httponly=True,
                                samesite="Lax", secure=app.config["SECURE_COOKIES"])
        return response

    @app.context_processor
    def language_context():
        if not request:
            return {}
        current = current_language()
        return {"lang_id": current, "lang_tag": LANGUAGES.get(current, "en"),
                "languages": [(LANGUAGES[k], NATIVE_NAMES[k], k == current)
                              for k in LANGUAGES]}
