"""Mutual recognition wiring: the trust store and the adapter registry of a running service.

Both are built once, at start-up, so a broken adapter, an unreadable trust file or an invalid
partner mapping file stops the service with a message naming it, instead of failing scans.
Our own public keys are trusted under our issuer id for the native scheme, so the native adapter
verifies our codes exactly as a partner's offline scanner would.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import current_app

from mapping import Registry

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


def init_app(app) -> None:
    ring = app.extensions["healthcode.keys"]
    registry = build_registry(app.config)
    app.extensions["healthcode.trust"] = build_trust(app.config, ring)
    app.extensions["healthcode.registry"] = registry
    app.extensions["healthcode.policies"] = load_policies(data_path(app.config, "policies"),
                                                          registry)
    app.extensions["healthcode.signers"] = load_signers(data_path(app.config, "signers"))
    app.extensions["healthcode.bundle"] = BundleCache()


def get_trust() -> TrustStore:
    return current_app.extensions["healthcode.trust"]


def get_registry() -> Registry:
    return current_app.extensions["healthcode.registry"]


def get_policies() -> dict:
    return current_app.extensions["healthcode.policies"]


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
                     rules=app.extensions.get("healthcode.rules") or (),
                     modes=app.extensions.get("healthcode.modes") or None)
