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
    # While Redis is down, how long after its last check a credential (or page session) keeps
    # working; also how late a revocation made just before the outage takes effect, seconds.
    "CREDENTIAL_OUTAGE_SECONDS": 5,
    # Failed authentications (bearer tokens, sign-in codes, one-time links) allowed per client
    # address, and per credential id, in each window of AUTH_FAILURE_WINDOW seconds; past them
    # 429 (healthcode.throttle, which explains the lockout trade-off).
    "AUTH_FAILURES_PER_ADDRESS": 30,
    "AUTH_FAILURES_PER_CREDENTIAL": 10,
    "AUTH_FAILURE_WINDOW": 60,
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
    # -- scale: durability, audit retention, records at rest (README "Scale and durability")
    # Replicas that must confirm each enrollment, status change and credential (WAIT).
    # None: 1 when the topology has replicas (detected at the first write), else 0; 0: off.
    "WAIT_REPLICAS": None,
    # Milliseconds a write waits for those replicas before answering 503.
    "WAIT_TIMEOUT": 200,
    # Days audit entries are kept before XTRIM MINID drops them; 0 keeps them for ever.
    "AUDIT_RETENTION_DAYS": 400,
    # Record encryption key ring ("<id>:<base64url key>,..."); unset: <data dir>/record.keys.
    "RECORD_KEY": None,
    # A trust source (list) whose data is older than this many days is reported by /readyz and
    # in every verify answer's warnings, never dropped; 0 turns the report off.
    "TRUST_MAX_AGE_DAYS": 7,
    # Lifetime of the signed trust bundle (GET /api/v1/trust/bundle), seconds.
    "TRUST_BUNDLE_TTL": 86400,
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
    "HEALTHCODE_CREDENTIAL_OUTAGE_SECONDS": ("CREDENTIAL_OUTAGE_SECONDS", float),
    "HEALTHCODE_REDIS_TIMEOUT": ("REDIS_TIMEOUT", float),
    "HEALTHCODE_AUTH_FAILURES_PER_ADDRESS": ("AUTH_FAILURES_PER_ADDRESS", int),
    "HEALTHCODE_AUTH_FAILURES_PER_CREDENTIAL": ("AUTH_FAILURES_PER_CREDENTIAL", int),
    "HEALTHCODE_AUTH_FAILURE_WINDOW": ("AUTH_FAILURE_WINDOW", int),
    "HEALTHCODE_SECRET_KEY": ("SECRET_KEY", str),
    "HEALTHCODE_SECURE_COOKIES": ("SECURE_COOKIES", flag),
    "HEALTHCODE_SESSION_TTL": ("SESSION_TTL", int),
    "HEALTHCODE_LINK_TTL": ("LINK_TTL", int),
    "HEALTHCODE_DEFAULT_LANGUAGE": ("DEFAULT_LANGUAGE", str),
    "HEALTHCODE_WAIT_REPLICAS": ("WAIT_REPLICAS", int),
    "HEALTHCODE_WAIT_TIMEOUT": ("WAIT_TIMEOUT", int),
    "HEALTHCODE_AUDIT_RETENTION_DAYS": ("AUDIT_RETENTION_DAYS", int),
    "HEALTHCODE_RECORD_KEY": ("RECORD_KEY", str),
    "HEALTHCODE_TRUST_MAX_AGE_DAYS": ("TRUST_MAX_AGE_DAYS", float),
    "HEALTHCODE_TRUST_BUNDLE_TTL": ("TRUST_BUNDLE_TTL", int),
    "HEALTHCODE_STATUS_STREAMS": ("STATUS_STREAMS", int),
    "HEALTHCODE_STATUS_STREAM_SECONDS": ("STATUS_STREAM_SECONDS", int),
}


# -- serving: gunicorn, admission and request logging (healthcode serve; README "Serving") ----
SERVING_DEFAULTS: dict[str, Any] = {
    # Where `healthcode serve` listens.
    "BIND": "127.0.0.1:8000",
    # Worker processes; None: CPUs + 1.
    "WORKERS": None,
    # gunicorn worker class. gevent: a slow client costs a greenlet, never a whole worker.
    "WORKER_CLASS": "gevent",
    # Connections one worker holds at once (gevent); past it, new ones wait in the backlog.
    "WORKER_CONNECTIONS": 1000,
    # A worker silent this long (its loop blocked) is killed and replaced, seconds.
    "WORKER_TIMEOUT": 30,
    # Time to send a request's head, and to keep an idle connection open, seconds.
    "HEADER_TIMEOUT": 5,
    # Time to send a request's body, seconds; past it the answer is 408.
    "BODY_TIMEOUT": 10,
    # Load shedding (503 with Retry-After) past either bound, per worker: its queueing delay
    # (gevent loop lag, milliseconds; 0: off) and the requests it works on at once.
    "MAX_QUEUE_MS": 50,
    "MAX_IN_FLIGHT": 64,
    # Retry-After of a shed request, seconds.
    "SHED_RETRY_AFTER": 1,
    # Proxies in front that set X-Forwarded-For/-Proto/-Host; 0: trust no such header.
    "TRUSTED_PROXIES": 0,
    # Log lines as "text" or "json" (one JSON object per line, one line per request).
    "LOG_FORMAT": "text",
    "LOG_LEVEL": "info",
    # prometheus_client's multiprocess directory; `healthcode serve` sets a fresh one.
    "METRICS_DIR": None,
    # This instance's own scratch space (gunicorn's control socket, the metrics files). None:
    # the data dir when this host has it to itself (REDIS_URL unset), else a private folder
    # under the system's temporary directory: a shared data dir is read-only to the hosts.
    "RUNTIME_DIR": None,
}
DEFAULTS.update(SERVING_DEFAULTS)

ENVIRONMENT.update({
    "HEALTHCODE_BIND": ("BIND", str),
    "HEALTHCODE_WORKERS": ("WORKERS", int),
    "HEALTHCODE_WORKER_CLASS": ("WORKER_CLASS", str),
    "HEALTHCODE_WORKER_CONNECTIONS": ("WORKER_CONNECTIONS", int),
    "HEALTHCODE_WORKER_TIMEOUT": ("WORKER_TIMEOUT", int),
    "HEALTHCODE_HEADER_TIMEOUT": ("HEADER_TIMEOUT", int),
    "HEALTHCODE_BODY_TIMEOUT": ("BODY_TIMEOUT", float),
    "HEALTHCODE_MAX_IN_FLIGHT": ("MAX_IN_FLIGHT", int),
    "HEALTHCODE_MAX_QUEUE_MS": ("MAX_QUEUE_MS", float),
    "HEALTHCODE_SHED_RETRY_AFTER": ("SHED_RETRY_AFTER", int),
    "HEALTHCODE_TRUSTED_PROXIES": ("TRUSTED_PROXIES", int),
    "HEALTHCODE_LOG_FORMAT": ("LOG_FORMAT", str),
    "HEALTHCODE_LOG_LEVEL": ("LOG_LEVEL", str),
    "PROMETHEUS_MULTIPROC_DIR": ("METRICS_DIR", str),
    "HEALTHCODE_RUNTIME_DIR": ("RUNTIME_DIR", str),
})

WORKER_CLASSES = ("gevent", "gthread", "sync")


def validate_serving(config: Mapping[str, Any]) -> None:
    """The serving settings, checked at start-up like the rest."""
    if config["WORKER_CLASS"] not in WORKER_CLASSES:
        raise ConfigurationError(f"HEALTHCODE_WORKER_CLASS must be one of {WORKER_CLASSES}")
    if config["WORKERS"] is not None and not 1 <= int(config["WORKERS"]) <= 256:
        raise ConfigurationError("HEALTHCODE_WORKERS must be between 1 and 256")
    if not 1 <= int(config["HEADER_TIMEOUT"]) <= 120:
        raise ConfigurationError("HEALTHCODE_HEADER_TIMEOUT must be between 1 and 120 seconds")
    if not 0.1 <= float(config["BODY_TIMEOUT"]) <= 600:
        raise ConfigurationError("HEALTHCODE_BODY_TIMEOUT must be between 0.1 and 600 seconds")
    if not 0 <= float(config["MAX_QUEUE_MS"]) <= 60_000:
        raise ConfigurationError("HEALTHCODE_MAX_QUEUE_MS must be between 0 (off) and 60000")
    if not 1 <= int(config["MAX_IN_FLIGHT"]) <= 100_000:
        raise ConfigurationError("HEALTHCODE_MAX_IN_FLIGHT must be between 1 and 100000")
    if not int(config["WORKER_CONNECTIONS"]) >= int(config["MAX_IN_FLIGHT"]):
        raise ConfigurationError("HEALTHCODE_WORKER_CONNECTIONS must be at least "
                                 "HEALTHCODE_MAX_IN_FLIGHT")
    if not 0 <= int(config["TRUSTED_PROXIES"]) <= 10:
        raise ConfigurationError("HEALTHCODE_TRUSTED_PROXIES must be between 0 and 10")
    if config["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigurationError("HEALTHCODE_LOG_FORMAT must be text or json")
    if str(config["LOG_LEVEL"]).lower() not in ("debug", "info", "warning", "error",
                                                "critical"):
        raise ConfigurationError("HEALTHCODE_LOG_LEVEL must be debug, info, warning, error "
                                 "or critical")


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
    validate_serving(config)
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
    if not 0 <= float(config["TRUST_MAX_AGE_DAYS"]) <= 3650:
        raise ConfigurationError("HEALTHCODE_TRUST_MAX_AGE_DAYS must be between 0 (off) and "
                                 "3650 days")
    if not 300 <= int(config["TRUST_BUNDLE_TTL"]) <= 30 * 86400:
        raise ConfigurationError("HEALTHCODE_TRUST_BUNDLE_TTL must be between 300 seconds and "
                                 "30 days")
    for name in ("AUTH_FAILURES_PER_ADDRESS", "AUTH_FAILURES_PER_CREDENTIAL"):
        if int(config[name]) < 1:
            raise ConfigurationError(f"HEALTHCODE_{name} must be at least 1")
    if not 1 <= int(config["AUTH_FAILURE_WINDOW"]) <= 3600:
        raise ConfigurationError("HEALTHCODE_AUTH_FAILURE_WINDOW must be 1 to 3600 seconds")
    for name in ("CREDENTIAL_CACHE_SECONDS", "CREDENTIAL_OUTAGE_SECONDS"):
        if not 0 <= float(config[name]) <= 300:
            raise ConfigurationError(f"HEALTHCODE_{name} must be between 0 and 300 seconds: "
                                     f"it is how late a revocation may take effect")
    validate_scale(config)


def validate_scale(config: Mapping[str, Any]) -> None:
    """WAIT, audit retention: settings that cannot work stop start-up."""
    replicas = config.get("WAIT_REPLICAS")
    if replicas is not None and not 0 <= int(replicas) <= 16:
        raise ConfigurationError("HEALTHCODE_WAIT_REPLICAS must be between 0 and 16")
    timeout_ms = int(config.get("WAIT_TIMEOUT", 200))
    # WAIT blocks the connection: it must give up before the socket timeout does.
    if not 1 <= timeout_ms < float(config["REDIS_TIMEOUT"]) * 1000:
        raise ConfigurationError("HEALTHCODE_WAIT_TIMEOUT must be at least 1 ms and below "
                                 "HEALTHCODE_REDIS_TIMEOUT (in ms)")
    if not 0 <= int(config.get("AUDIT_RETENTION_DAYS", 400)) <= 36500:
        raise ConfigurationError("HEALTHCODE_AUDIT_RETENTION_DAYS must be 0 (keep for ever) "
                                 "to 36500")


def runtime_path(config: Mapping[str, Any], *parts: str) -> Path:
    """Where this instance keeps what is its own (control socket, metrics files): never in a
    data dir other hosts share. Two instances on one host differ by data dir or address."""
    if config.get("RUNTIME_DIR"):
        base = Path(config["RUNTIME_DIR"])
    elif not config.get("REDIS_URL"):
        base = Path(config["DATA_DIR"])
    else:
        import hashlib
        import tempfile

        instance = f"{Path(config['DATA_DIR']).resolve()}|{config.get('BIND')}"
        base = Path(tempfile.gettempdir()) / f"healthcode-{os.getuid()}" / \
            hashlib.sha256(instance.encode()).hexdigest()[:12]
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return base.joinpath(*parts)


def data_path(config: Mapping[str, Any], *parts: str) -> Path:
    return Path(config["DATA_DIR"]).joinpath(*parts)
