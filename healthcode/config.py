"""Configuration: every environment variable the service reads is read here, and nowhere else.

Names marked (contract) are fixed by DESIGN.md. Values are checked when the app is created, so a
bad setting stops start-up with a clear message instead of failing the first request.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

from . import redis_topology
from .errors import ConfigurationError

DEFAULTS: dict[str, Any] = {
    # Redis URL (contract). None: `healthcode serve` starts a private redis-server.
    "REDIS_URL": None,
    # Where keys/, trust/, mappings/ and the embedded Redis data live (contract).
    "DATA_DIR": "./var",
    # This deployment's issuer id, carried in every native code (contract). Short on purpose:
    # it is inside every QR code.
    "ISSUER": "HC",
    # Key for subject ids (contract); generated into the data dir on first use when unset.
    "SUBJECT_SECRET": None,
    # Lifetime of a dynamic code in seconds (contract).
    "CODE_TTL": 300,
    # Clock skew tolerated between issuer and scanner, in seconds.
    "CLOCK_SKEW": 60,
    # Largest request body accepted, in bytes.
    "MAX_BODY": 64 * 1024,
    # Largest scanned code accepted, in characters.
    "MAX_CODE_LENGTH": 16 * 1024,
    # Document lookups allowed per checkpoint credential per minute.
    "LOOKUP_RATE": 30,
    # How long a checked credential is trusted in-process before Redis is asked again, seconds.
    "CREDENTIAL_CACHE_SECONDS": 5,
    # Redis socket timeout, seconds: a dead store must not hang a scan.
    "REDIS_TIMEOUT": 0.5,
    # Seconds a client is told to wait (Retry-After) when the store is down.
    "RETRY_AFTER": 5,
    # Key that signs the pages' CSRF tokens; generated into the data dir on first use when unset.
    "SECRET_KEY": None,
    # Whether missing secrets (subject, session) may be generated into the data dir. None: only
    # when REDIS_URL is unset; with a shared Redis every host must read the same secrets, so a
    # missing one stops start-up (see `healthcode init`).
    "GENERATE_SECRETS": None,
    # Page session cookies only over HTTPS. None: on, except when TESTING.
    "SECURE_COOKIES": None,
    # Lifetime of a page sign-in (resident or checkpoint), seconds.
    "SESSION_TTL": 7 * 86400,
    # Lifetime of a one-time sign-in link an authority hands a resident, seconds.
    "LINK_TTL": 900,
    # Page language when neither ?lang=, the cookie nor Accept-Language names one we have.
    "DEFAULT_LANGUAGE": "en",
    # Status streams (/me/events) one worker holds open at most; past it a page renews on its
    # timer only. 0 turns the push off.
    "STATUS_STREAMS": 1000,
    # Longest life of one status stream, seconds; the page's EventSource then reconnects.
    "STATUS_STREAM_SECONDS": 300,
}


def flag(raw: str) -> bool:
    """An on/off environment value: 1/0, true/false, yes/no, on/off."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


# environment variable -> (config key, coercer)
ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "REDIS_URL": ("REDIS_URL", str),
    "HEALTHCODE_DATA_DIR": ("DATA_DIR", str),
    "HEALTHCODE_ISSUER": ("ISSUER", str),
    "HEALTHCODE_SUBJECT_SECRET": ("SUBJECT_SECRET", str),
    "HEALTHCODE_CODE_TTL": ("CODE_TTL", int),
    "HEALTHCODE_CLOCK_SKEW": ("CLOCK_SKEW", int),
    "HEALTHCODE_MAX_BODY": ("MAX_BODY", int),
    "HEALTHCODE_MAX_CODE_LENGTH": ("MAX_CODE_LENGTH", int),
    "HEALTHCODE_LOOKUP_RATE": ("LOOKUP_RATE", int),
    "HEALTHCODE_CREDENTIAL_CACHE_SECONDS": ("CREDENTIAL_CACHE_SECONDS", float),
    "HEALTHCODE_REDIS_TIMEOUT": ("REDIS_TIMEOUT", float),
    "HEALTHCODE_SECRET_KEY": ("SECRET_KEY", str),
    "HEALTHCODE_SECURE_COOKIES": ("SECURE_COOKIES", flag),
    "HEALTHCODE_SESSION_TTL": ("SESSION_TTL", int),
    "HEALTHCODE_LINK_TTL": ("LINK_TTL", int),
    "HEALTHCODE_DEFAULT_LANGUAGE": ("DEFAULT_LANGUAGE", str),
    "HEALTHCODE_STATUS_STREAMS": ("STATUS_STREAMS", int),
    "HEALTHCODE_STATUS_STREAM_SECONDS": ("STATUS_STREAM_SECONDS", int),
}


def load_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Defaults overlaid with whatever the environment sets."""
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    for name, (key, coerce) in ENVIRONMENT.items():
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            config[key] = coerce(raw)
        except ValueError:
            raise ConfigurationError(f"{name}={raw!r} is not a valid {coerce.__name__}") from None
    return config


def validate(config: Mapping[str, Any]) -> None:
    """Reject settings that cannot work, at start-up."""
    if not 10 <= int(config["CODE_TTL"]) <= 86400:
        raise ConfigurationError("HEALTHCODE_CODE_TTL must be between 10 and 86400 seconds")
    if not 0 <= int(config["CLOCK_SKEW"]) <= 600:
        raise ConfigurationError("HEALTHCODE_CLOCK_SKEW must be between 0 and 600 seconds")
    issuer = config["ISSUER"]
    if not isinstance(issuer, str) or not issuer or len(issuer) > 64:
        raise ConfigurationError("HEALTHCODE_ISSUER must be 1 to 64 characters")
    if config["REDIS_URL"]:
        redis_topology.parse(str(config["REDIS_URL"]))  # raises naming REDIS_URL
    if not 0 <= int(config["STATUS_STREAMS"]) <= 100_000:
        raise ConfigurationError("HEALTHCODE_STATUS_STREAMS must be between 0 and 100000")
    if not 10 <= int(config["STATUS_STREAM_SECONDS"]) <= 3600:
        raise ConfigurationError("HEALTHCODE_STATUS_STREAM_SECONDS must be between 10 and 3600")
    if int(config["MAX_BODY"]) < 1024:
        raise ConfigurationError("HEALTHCODE_MAX_BODY must be at least 1024 bytes")


def data_path(config: Mapping[str, Any], *parts: str) -> Path:
    return Path(config["DATA_DIR"]).joinpath(*parts)
