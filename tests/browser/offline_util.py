"""Helpers for the offline scanner tests: trust bundles, a test DSC and codes of each scheme.

The bundles here are signed with the live site's own active key, exactly as the service signs
``GET /api/v1/trust/bundle``; tests that need a bundle the service would never serve (expired,
signed by a stranger) build one here and hand it to the page through Playwright's routing.
"""
from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import conformance_dir

BUNDLE_PATH = "/api/v1/trust/bundle"
SHC_ISSUER = "https://spec.smarthealth.cards/examples/issuer"
VACCINATION_EKU = "1.3.6.1.4.1.1847.2021.1.2"


def shc_issuer_entry(with_crl: bool = True) -> dict:
    """The SHC specification's example issuer, as a bundle lists a trusted SHC issuer."""
    data = conformance_dir("shc")
    entry = {"issuer": SHC_ISSUER, "scheme": "shc",
             "jwks": json.loads((data / "issuer/.well-known/jwks.json").read_text())}
    if with_crl:
        entry["crls"] = [json.loads(p.read_text())
                         for p in sorted((data / "issuer/.well-known/crl").glob("*.json"))]
    return entry


def shc_example(number: str = "00") -> str:
    """An SHC example card as its QR codes hold it (chunks joined by newlines)."""
    data = conformance_dir("shc")
    return "\n".join(p.read_text().strip() for p in
                     sorted(data.glob(f"example-{number}-f-qr-code-numeric-value-*.txt")))


class TestSigner:
    """A P-256 Document Signer Certificate valid around now, and DCCs it signs."""

    __test__ = False

    def __init__(self, eku: str | None = VACCINATION_EKU):
        now = datetime.now(timezone.utc)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "AT"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "healthcode browser DSC")])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(days=30))
                   .not_valid_after(now + timedelta(days=365)))
        if eku:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.ObjectIdentifier(eku)]), critical=False)
        self.der = builder.sign(self.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)

    def entry(self) -> dict:
        from healthcode.certs import load_certificate

        kid = load_certificate(self.der).dcc_kid
        return {"kid": base64.b64encode(kid).decode(), "country": "AT",
                "der": base64.b64encode(self.der).decode()}

    def dcc(self, *, hours_valid: float = 24, given="Gabriele", family="Musterfrau") -> str:
        from tests.mapping.test_eu_dcc import claims_for, dcc_payload, seal

        now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
        payload = dcc_payload("v")
        payload["nam"] = dict(payload["nam"], gn=given, fn=family)
        return seal(claims_for(payload, iat=now, exp=now + timedelta(hours=hours_valid)),
                    self.key, self.der)


def trust_on_site(site, *signers: "TestSigner", shc: bool = True) -> None:
    """Let the live site trust the SHC example issuer (keys and revocation list) and these
    DSCs, as an operator's trust directory would: its bundle then carries them."""
    from healthcode import recognition

    with site.app.app_context():
        trust = recognition.get_trust()
        if shc:
            entry = shc_issuer_entry()
            trust.add_jwks(entry["jwks"], issuer=SHC_ISSUER, scheme="shc")
            for crl in entry["crls"]:
                trust.add_revocation_list(crl, issuer=SHC_ISSUER, kid=crl["kid"])
        for signer in signers:
            trust.add_x509(signer.der, scheme="eu-dcc")


def served_bundle(site) -> str:
    """The bundle the site serves now (GET /api/v1/trust/bundle)."""
    response = site.api.get(BUNDLE_PATH)
    assert response.status_code == 200 and response.mimetype == "application/jose"
    return response.get_data(as_text=True)


def payload_for(site, *, issued_at: float | None = None, **extra) -> dict:
    """The payload the site would sign at ``issued_at`` (default now), through the service's
    own builder, for bundles the service would not serve today (expired, forged)."""
    from healthcode import recognition, revocation
    from healthcode.trust.bundle import build_payload

    at = datetime.fromtimestamp(time.time() if issued_at is None else issued_at, timezone.utc)
    with site.app.app_context():
        payload = build_payload(recognition.get_trust(), site.app.extensions["healthcode.keys"],
                                site.app.config, now=at,
                                revocations=revocation.current_hashes())
    payload.update(extra)
    return payload


def sign_bundle(site, payload: dict, key=None, kid: str | None = None) -> str:
    """A compact JWS of the payload, by default with the site's active key (as served)."""
    from healthcode.trust.bundle import TYP

    active = site.app.extensions["healthcode.keys"].active
    return jwt.encode(payload, key or active.private_key, algorithm="ES256",
                      headers={"kid": kid or active.kid, "typ": TYP})


def routed_context(context_for, jws: str | None, **options):
    """A browser context whose page gets ``jws`` (or a 404 for None) as the trust bundle.

    Its service worker is blocked: requests a worker makes itself are not routed, and once it
    controls the page (it claims the page on activation) the service's real bundle would
    reach the page past the route."""
    context = context_for(service_workers="block", **options)
    serve_bundle(context, jws)
    return context


def serve_bundle(context, jws: str | None) -> None:
    """Answer the page's bundle requests with ``jws`` (or 404 for None)."""
    def handle(route):
        if jws is None:
            route.fulfill(status=404, content_type="application/json",
                          body='{"error": "not_found", "message": "no bundle"}')
        else:
            route.fulfill(status=200, content_type="application/jose", body=jws)

    context.route(f"**{BUNDLE_PATH}", handle)
