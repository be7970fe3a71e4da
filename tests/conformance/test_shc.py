"""SMART Health Cards conformance: the four examples the specification publishes.

Data: ``../shared/conformance/shc`` (spec.smarthealth.cards/examples, CC-BY 4.0, SMART Health
Cards Framework, Computational Health Informatics Program, Boston Children's Hospital).

Known upstream data errors, by name (checked as they are, not worked around):

- ``example-01``: the ``x5c`` leaf certificate ("SMART Health Card Example Issuer") expired on
  2022-06-01, a year before the card was signed (nbf 2023-06-22). The adapter verifies the chain's
  structure, signatures and SAN binding and reports the dates (``x5c_valid_at_issue`` is False)
  rather than refusing the spec's own example; see ``mapping/shc.py``.
"""
from __future__ import annotations

import base64
import itertools
import json
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from healthcode.errors import CodeError
from healthcode.trust import TrustStore, b64url
from mapping.shc import (SHCAdapter, _check_chain, _inflate, _split_jws, jws_from_qr_text,
                         jws_to_qr_text)
from tests.support import conformance_dir

pytestmark = pytest.mark.conformance

SUITE = "shc"
ISS = "https://spec.smarthealth.cards/examples/issuer"
PLAIN_KID = "3Kfdg-XwP-7gXyywtUfUADwBumDOPKMQx-iELL11W9s"
X5C_KID = "EBKOr72QQDcTBUuVzAzkfBTGew0ZA16GuWty64nS-sw"
#: A day after every example's nbf (2023-06-22) and before example 03's exp (2024-06-21).
AT_ISSUED = datetime(2023, 6, 23, tzinfo=timezone.utc)
#: After example 03's exp; the others carry no exp and stay valid.
AT_LATER = datetime(2024, 7, 1, tzinfo=timezone.utc)
EXAMPLES = ("00", "01", "02", "03")
KNOWN_ERRORS = {"example-01": "x5c leaf expired 2022-06-01, before the card's nbf 2023-06-22"}


@pytest.fixture(scope="module")
def data():
    return conformance_dir("shc")


@pytest.fixture(scope="module")
def jwks(data):
    return json.loads((data / "issuer/.well-known/jwks.json").read_text())


def _trust(data, jwks, *, issuer=ISS, with_crl=True) -> TrustStore:
    store = TrustStore()
    store.add_jwks(jwks, issuer=issuer, scheme="shc")
    if with_crl:
        for path in sorted((data / "issuer/.well-known/crl").glob("*.json")):
            crl = json.loads(path.read_text())
            store.add_revocation_list(crl, issuer=issuer, kid=crl["kid"])
    return store


@pytest.fixture(scope="module")
def trust(data, jwks):
    return _trust(data, jwks)


def qr_chunks(data, example: str) -> list[str]:
    return [p.read_text().strip()
            for p in sorted(data.glob(f"example-{example}-f-qr-code-numeric-value-*.txt"))]


def qr_text(data, example: str) -> str:
    return "\n".join(qr_chunks(data, example))


def jws_of(data, example: str) -> str:
    return (data / f"example-{example}-d-jws.txt").read_text().strip()


def b64decode_url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def check(tally, flag: str, agreed: bool) -> None:
    """Count the case, then assert it, so a failure still shows in the tally."""
    tally.record(flag, agreed)
    assert agreed, flag


def reason(text, trust, at) -> str | None:
    try:
        SHCAdapter().decode(text, trust=trust, at=at)
    except CodeError as exc:
        return exc.reason
    return None


# -- the examples as published ----------------------------------------------------------------

@pytest.mark.parametrize("example", EXAMPLES)
def test_numeric_qr_text_is_the_jws(data, tally, example):
    jws, chunks = jws_from_qr_text(qr_text(data, example))
    check(tally, "qr_to_jws", jws == jws_of(data, example))
    check(tally, "chunk_count", chunks == len(qr_chunks(data, example)))
    if chunks == 1:
        check(tally, "jws_to_qr", jws_to_qr_text(jws) == qr_text(data, example))


@pytest.mark.parametrize("example", EXAMPLES)
def test_payload_is_the_minified_claims(data, tally, example):
    inflated = _inflate(_split_jws(jws_of(data, example)).payload)
    minified = (data / f"example-{example}-c-jws-payload-minified.json").read_bytes().strip()
    expanded = json.loads((data / f"example-{example}-b-jws-payload-expanded.json").read_text())
    bundle = json.loads((data / f"example-{example}-a-fhirBundle.json").read_text())
    check(tally, "claims", inflated == minified)
    check(tally, "claims", json.loads(inflated) == expanded)
    check(tally, "claims", expanded["vc"]["credentialSubject"]["fhirBundle"] == bundle)
    card_file = json.loads((data / f"example-{example}-e-file.smart-health-card").read_text())
    check(tally, "file_format", card_file["verifiableCredential"] == [jws_of(data, example)])


@pytest.mark.parametrize("example", EXAMPLES)
def test_decoded_card_carries_the_claims(data, jwks, tally, example):
    """What the adapter reports (issuer, kid, times, rid, types) is what the payload says."""
    claims = json.loads((data / f"example-{example}-c-jws-payload-minified.json").read_text())
    decoded = SHCAdapter().decode(qr_text(data, example), trust=_trust(data, jwks,
                                                                       with_crl=False),
                                  at=AT_ISSUED)
    provenance = decoded.record.provenance
    check(tally, "claims", decoded.issuer == provenance.issuer == claims["iss"])
    check(tally, "claims", decoded.kid == provenance.key_id ==
          json.loads(b64decode_url(jws_of(data, example).split(".")[0]))["kid"])
    check(tally, "claims", provenance.issued_at.timestamp() == pytest.approx(claims["nbf"],
                                                                            abs=1e-5))
    check(tally, "claims", (provenance.valid_until.timestamp() if provenance.valid_until
                            else None) == pytest.approx(claims.get("exp"), abs=1e-5))
    check(tally, "claims", provenance.source_id == claims["vc"].get("rid"))
    check(tally, "claims", decoded.details["types"] == claims["vc"]["type"])


@pytest.mark.parametrize("example,kid", [("00", PLAIN_KID), ("01", X5C_KID)])
def test_immunization_cards_are_valid(data, trust, tally, example, kid):
    for at in (AT_ISSUED, AT_LATER):
        decoded = SHCAdapter().decode(qr_text(data, example), trust=trust, at=at)
        record = decoded.record
        check(tally, "valid", decoded.issuer == ISS and decoded.kid == kid)
        check(tally, "valid", (record.subject.family_name, record.subject.given_name,
                               record.subject.birth_date) == ("Anyperson", "John B.",
                                                              "1951-01-20"))
        doses = [(v.product, v.administered_on, v.dose_number, v.lot, v.disease)
                 for v in record.evidence.vaccinations]
        check(tally, "valid", doses == [
            ("http://hl7.org/fhir/sid/cvx#207", "2021-01-01", 1, "0000001", "COVID-19"),
            ("http://hl7.org/fhir/sid/cvx#207", "2021-01-29", 2, "0000007", "COVID-19"),
            ("http://hl7.org/fhir/sid/cvx#229", "2022-09-05", 3, "0000001", "COVID-19")])
        check(tally, "valid", record.status is None and record.provenance.scheme == "shc")
        check(tally, "valid", record.provenance.issued_at.timestamp() == pytest.approx(
            1687450764.656, abs=0.002))
        check(tally, "valid", record.provenance.source_id == (
            "MKyCxh7p6uQ" if example == "00" else None))
        check(tally, "no_warnings", decoded.warnings == ())  # the spec's own examples


def test_x5c_chain_binds_the_key_to_the_issuer(data, trust, tally):
    """Example 01: chain signatures and SAN binding verified; expired leaf reported (known)."""
    details = SHCAdapter().decode(qr_text(data, "01"), trust=trust, at=AT_ISSUED).details
    check(tally, "x5c", details["x5c_verified"] is True)
    check(tally, "x5c", details["x5c_subjects"] == [
        "CN=SMART Health Card Example Issuer", "CN=SMART Health Card Example CA",
        "CN=SMART Health Card Example Root CA"])
    check(tally, "x5c_known_error", details["x5c_valid_at_issue"] is False)
    check(tally, "x5c", "x5c_verified" not in SHCAdapter().decode(
        qr_text(data, "00"), trust=trust, at=AT_ISSUED).details)


def _x5c_jwk(jwks) -> dict:
    return next(k for k in jwks["keys"] if k["kid"] == X5C_KID)


def test_x5c_san_must_name_the_issuer(jwks, tally):
    jwk = _x5c_jwk(jwks)
    args = (tuple(jwk["x5c"]), jwk["crv"], jwk["x"], jwk["y"])
    check(tally, "x5c", _check_chain(ISS, *args).reason is None)
    check(tally, "x5c", _check_chain("https://spec.smarthealth.cards/other", *args).reason
          == "untrusted_issuer")


@pytest.mark.parametrize("reorder,expected", [
    pytest.param(lambda c: [c[0], c[2], c[1]], "untrusted_issuer", id="ca-and-root-swapped"),
    pytest.param(lambda c: [c[0], c[2]], "untrusted_issuer", id="ca-missing"),
    pytest.param(lambda c: c[1:], "unknown_key", id="leaf-missing"),
])
def test_x5c_broken_chains(data, jwks, tally, reorder, expected):
    jwk = dict(_x5c_jwk(jwks), x5c=reorder(_x5c_jwk(jwks)["x5c"]))
    store = TrustStore()
    store.add_jwks({"keys": [jwk]}, issuer=ISS, scheme="shc")
    check(tally, expected, reason(qr_text(data, "01"), store, AT_ISSUED) == expected)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_three_chunks_in_every_order(data, trust, tally, order):
    chunks = qr_chunks(data, "02")
    decoded = SHCAdapter().decode("\n".join(chunks[i] for i in order), trust=trust,
                                  at=AT_ISSUED)
    check(tally, "chunks", decoded.details["chunks"] == 3)
    check(tally, "chunks", decoded.record.subject.name is None
          and decoded.record.subject.birth_date is None)
    # the lab panel is urinalysis and blood counts: none of it is COVID-19 evidence
    check(tally, "chunks", not decoded.record.evidence)
    check(tally, "chunks", decoded.details["unmapped"] == {
        "DiagnosticReport": 1, "Specimen": 3, "Observation": 51})


@pytest.mark.parametrize("pick", [
    pytest.param(lambda c: c[:2], id="missing"),
    pytest.param(lambda c: [c[0], c[1], c[1]], id="duplicate-instead-of-one"),
])
def test_incomplete_chunk_sets(data, trust, tally, pick):
    text = "\n".join(pick(qr_chunks(data, "02")))
    check(tally, "malformed", reason(text, trust, AT_ISSUED) == "malformed")


def test_revoked_card(data, trust, jwks, tally):
    """Example 03: revoked while within its validity, expired afterwards, valid without CRL."""
    text = qr_text(data, "03")
    check(tally, "revoked", reason(text, trust, AT_ISSUED) == "revoked")
    check(tally, "expired", reason(text, trust, AT_LATER) == "expired")
    check(tally, "expired", reason(text, trust, datetime(2024, 6, 21, 16, 19, 25,
                                                         tzinfo=timezone.utc)) == "expired")
    no_crl = _trust(data, jwks, with_crl=False)
    decoded = SHCAdapter().decode(text, trust=no_crl, at=AT_ISSUED)
    check(tally, "valid", decoded.record.provenance.source_id == "vwAjHdarZuc")
    check(tally, "valid", decoded.record.provenance.valid_until.timestamp() == pytest.approx(
        1718986764.657, abs=0.002))


def test_not_yet_valid_before_nbf(data, trust, tally):
    early = datetime(2023, 6, 22, 16, 0, tzinfo=timezone.utc)
    for example in ("00", "01", "02"):
        check(tally, "not_yet_valid", reason(qr_text(data, example), trust, early)
              == "not_yet_valid")


# -- tampered and wrong-key variants ------------------------------------------------------------

def _flip(jws: str, part: int, at: float) -> str:
    """Replace one character at a fraction ``at`` through a JWS part (never its last)."""
    parts = jws.split(".")
    text = parts[part]
    i = min(int(len(text) * at), len(text) - 2)
    parts[part] = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:]
    return ".".join(parts)


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("part,where", [(1, 0.1), (1, 0.5), (1, 0.9), (2, 0.0), (2, 0.5)])
def test_tampered_examples(data, trust, tally, example, part, where):
    text = jws_to_qr_text(_flip(jws_of(data, example), part, where))
    check(tally, "bad_signature", reason(text, trust, AT_ISSUED) == "bad_signature")


@pytest.mark.parametrize("example", EXAMPLES)
def test_different_key_under_the_same_kid(data, tally, example):
    """A trust file that files another key under the example's kid must not verify it."""
    kid = json.loads(b64decode_url(jws_of(data, example).split(".")[0]))["kid"]
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    impostor = {"kty": "EC", "crv": "P-256", "kid": kid,
                "x": b64url(numbers.x.to_bytes(32, "big")),
                "y": b64url(numbers.y.to_bytes(32, "big"))}
    store = TrustStore()
    store.add_jwks({"keys": [impostor]}, issuer=ISS, scheme="shc")
    check(tally, "unknown_key", reason(qr_text(data, example), store, AT_ISSUED)
          == "unknown_key")


@pytest.mark.parametrize("example", EXAMPLES)
def test_keys_trusted_for_a_different_issuer(data, jwks, tally, example):
    store = _trust(data, jwks, issuer="https://issuer.example/not-the-spec")
    check(tally, "untrusted_issuer", reason(qr_text(data, example), store, AT_ISSUED)
          == "untrusted_issuer")


@pytest.mark.parametrize("example", EXAMPLES)
def test_issuer_trusted_without_the_signing_key(data, jwks, tally, example):
    kid = PLAIN_KID if example != "01" else X5C_KID
    store = TrustStore()
    store.add_jwks({"keys": [k for k in jwks["keys"] if k["kid"] != kid]}, issuer=ISS,
                   scheme="shc")
    check(tally, "unknown_key", reason(qr_text(data, example), store, AT_ISSUED)
          == "unknown_key")



def test_known_errors_are_named(data):
    """Every listed upstream error names an example that exists."""
    for name in KNOWN_ERRORS:
        assert list(data.glob(f"{name}-*")), name
