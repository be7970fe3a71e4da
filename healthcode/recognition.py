"""Mutual recognition wiring: the trust store and the adapter registry of a running service.

Both are built once, at start-up, so a broken adapter, an unreadable trust file or an invalid
partner mapping file stops the service with a message naming it, instead of failing scans.
Our own public keys are trusted under our issuer id for the native scheme, so the native adapter
verifies our codes exactly as a partner's offline scanner would.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from flask import current_app

from mapping import Registry

from . import tokens
from .config import data_path
from .errors import StoreUnavailable
from .policy import load_policies
from .residents import get_ring
from .signers import load_signers
from .store import get_store
from .trust import TrustStore
from .trust.bundle import Bundle, BundleCache


def build_trust(config, ring) -> TrustStore:
    max_days = config.get("TRUST_MAX_AGE_DAYS", 0)
    trust = TrustStore(max_age=timedelta(days=max_days) if max_days else None)
    jwks = ring.jwks()
    if jwks["keys"]:
        trust.add_jwks(jwks, issuer=config["ISSUER"], scheme="native")
    folder = data_path(config, "trust")
    if folder.is_dir():
        trust.load_path(folder)
    return trust


def build_registry(config) -> Registry:
    registry = Registry.from_entry_points()

    folder = data_path(config, "mappings")
    if folder.is_dir() and any(folder.glob("*.toml")):
        from mapping.partner_jwt import load_partners

        for adapter in load_partners(folder):
            registry.add(adapter)
    return registry


def native_lifetime(config, policies) -> int:
    """The longest an enrolled subject's native code (status version 1 and up) may live.

    A resident's dynamic code lives ``CODE_TTL``. A code converted from a partner's lives what
    the agreement allows (``max_validity_hours``), at most :data:`tokens.MAX_CONVERTED_TTL`;
    the claims do not tell the two apart, so the longer bound holds for both. Every policy but
    a native one can produce native codes (``<scheme> -> native``).
    """
    longest = int(config["CODE_TTL"])
    for scheme, policy in policies.items():
        if scheme == "native":
            continue
        hours = policy.max_validity_hours
        bound = tokens.MAX_CONVERTED_TTL if hours is None else \
            min(tokens.MAX_CONVERTED_TTL, math.ceil(hours * 3600))
        longest = max(longest, bound)
    return longest


def bound_native_codes(registry, config, policies) -> int:
    """Hold the native adapter to what we issue: :func:`native_lifetime` and our clock skew."""
    lifetime = native_lifetime(config, policies)
    if "native" in registry.names():
        native = registry.get("native")
        if hasattr(native, "dynamic_lifetime"):
            native.dynamic_lifetime = lifetime
            native.skew = int(config["CLOCK_SKEW"])
    return lifetime


def init_app(app) -> None:
    ring = app.extensions["healthcode.keys"]
    registry = build_registry(app.config)
    app.extensions["healthcode.trust"] = build_trust(app.config, ring)
    app.extensions["healthcode.registry"] = registry
    app.extensions["healthcode.policies"] = load_policies(data_path(app.config, "policies"),
                                                          registry)
    app.extensions["healthcode.native_lifetime"] = bound_native_codes(
        registry, app.config, app.extensions["healthcode.policies"])
    app.extensions["healthcode.signers"] = load_signers(data_path(app.config, "signers"))
    app.extensions["healthcode.bundle"] = BundleCache()


def get_trust() -> TrustStore:
    return current_app.extensions["healthcode.trust"]


def get_registry() -> Registry:
    return current_app.extensions["healthcode.registry"]


def get_policies() -> dict:
    return current_app.extensions["healthcode.policies"]


def get_native_lifetime() -> int:
    return current_app.extensions["healthcode.native_lifetime"]


def get_signers() -> dict:
    return current_app.extensions["healthcode.signers"]


def get_bundle() -> Bundle:
    """The signed trust bundle, from the worker's cache unless trust, keys, revocations or the
    time window moved. With Redis down, the last bundle is served while it is valid: its
    revocations are as of its build, and a bundle is never built without them."""
    app = current_app
    cache: BundleCache = app.extensions["healthcode.bundle"]
    store = get_store()
    try:
        version = store.revocations_version()
    except StoreUnavailable:
        last = cache.last
        if last is not None and last.expires_at > datetime.now(timezone.utc):
            app.logger.warning("trust bundle served from cache: the store is unavailable")
            return last
        raise
    return cache.get(get_trust(), get_ring(), app.config, revocations_version=version,
                     revocations=store.revoked_signature_hashes,
                     **_bundle_rules(app))


def _bundle_rules(app) -> dict:
    """The acceptance rules (as published, EU format) and checkpoint modes an offline scanner
    applies, as JSON; built once per worker (rules and modes change only with a restart or a
    HUP), so the bundle cache's key stays the same between requests."""
    cached = app.extensions.get("healthcode.bundle_rules")
    if cached is None:
        ruleset = app.extensions.get("healthcode.rules")
        modes = app.extensions.get("healthcode.modes") or {}
        rules = [rule.data for rule in getattr(ruleset, "rules", ())]
        described = {}
        for name, mode in modes.items():
            extra = getattr(mode.extra, "rules", ())
            rules.extend(rule.data for rule in extra)
            described[name] = {**mode.to_dict(), "descriptions": dict(mode.descriptions),
                               "extra_rules": sorted({r.identifier for r in extra})}
        cached = {"rules": rules, "modes": described}
        app.extensions["healthcode.bundle_rules"] = cached
    return cached
