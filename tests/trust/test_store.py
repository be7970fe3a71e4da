"""The trust store keeps lookups by kid and says how old each source of trust is."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from healthcode.certs import load_certificate
from healthcode.trust import TrustStore
from healthcode.trust.lists import CertificateEntry, TrustList
from tests.trust import pki

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def store_with(*sources, max_days=7) -> TrustStore:
    store = TrustStore(max_age=timedelta(days=max_days) if max_days else None)
    for name, retrieved, imported in sources:
        store.add_list(TrustList(format="dsc-list", retrieved_at=retrieved), source=name,
                       imported_at=imported)
    return store


def test_a_source_ages_from_its_own_date_else_from_its_import():
    store = store_with(("dated", NOW - timedelta(days=3), NOW - timedelta(hours=1)),
                       ("undated", None, NOW - timedelta(days=2)))
    assert store.sources["dated"].age_days(NOW) == 3
    assert store.sources["undated"].age_days(NOW) == 2
    assert store.stale_sources(NOW) == []


def test_an_old_source_is_reported_not_dropped():
    store = store_with(("daily", None, NOW - timedelta(days=1)))
    cert, _ = pki.dsc("AA")
    store.add_list(TrustList(format="dsc-list", retrieved_at=NOW - timedelta(days=30),
                             certificates=[CertificateEntry(
                                 certificate=load_certificate(pki.der(cert)),
                                 scheme="eu-dcc")]), source="old", imported_at=NOW)
    assert [s.name for s in store.stale_sources(NOW)] == ["old"]
    [warning] = store.warnings(NOW)
    assert warning["code"] == "stale_trust_source"
    assert "old (30 days)" in warning["message"] and "daily" not in warning["message"]
    # still trusted: an expired signed list once stopped every verifier in a country
    assert store.certificates_by_dcc_kid(load_certificate(pki.der(cert)).dcc_kid)


def test_no_limit_no_report():
    store = store_with(("old", NOW - timedelta(days=300), NOW), max_days=0)
    assert store.stale_sources(NOW) == [] and store.warnings(NOW) == []


def test_lookups_by_kid_and_issuer_stay_direct():
    store = TrustStore()
    keys = [pki.new_key() for _ in range(3)]
    for n, key in enumerate(keys):
        store.add_jwks({"keys": [pki.jwk(key, f"k{n}")]}, issuer=f"https://i{n}.example",
                       scheme="shc")
    assert store.is_trusted_issuer("https://i1.example", "shc")
    assert not store.is_trusted_issuer("https://i1.example", "mo")
    assert not store.is_trusted_issuer("https://nobody.example")
    assert [k.issuer for k in store.keys_by_kid("k2", scheme="shc")] == ["https://i2.example"]
    # a key of one issuer never answers for another
    assert store.key("https://i1.example", "k2") is None


def test_every_change_moves_the_generation():
    store = TrustStore()
    seen = [store.generation]
    store.add_jwks({"keys": [pki.jwk(pki.new_key(), "a")]}, issuer="https://a.example")
    seen.append(store.generation)
    store.add_x509(pki.der(pki.dsc()[0]))
    seen.append(store.generation)
    assert seen == sorted(set(seen))
