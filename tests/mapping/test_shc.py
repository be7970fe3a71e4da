"""SMART Health Cards adapter: round trips through a rendered QR code, chunk handling, and a
table of every way a scanned card can be wrong, each with the reason the contract names."""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import itertools
import json
import zlib
from datetime import datetime, timedelta, timezone

import pytest
import qrcode
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthcode.errors import CODE_REASONS, CodeError
from healthcode.record import Record, Subject, TestResult, Vaccination
from healthcode.trust import TrustStore, b64url, jwk_thumbprint
from mapping.base import Signer
from mapping.shc import MAX_INFLATED, SHCAdapter, jws_from_qr_text, jws_to_qr_text
from tests.support import decode_qr

ISS = "https://issuer.example/shc"
OTHER_ISS = "https://other.example/shc"
AT = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
CVX = "http://hl7.org/fhir/sid/cvx"


# -- helpers -----------------------------------------------------------------------------------

def public_jwk(key, **extra) -> dict:
    numbers = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    jwk = {"kty": "EC", "crv": {256: "P-256", 384: "P-384"}[key.curve.key_size],
           "x": b64url(numbers.x.to_bytes(size, "big")),
           "y": b64url(numbers.y.to_bytes(size, "big"))}
    jwk["kid"] = jwk_thumbprint(jwk)
    jwk.update(extra)
    return jwk


def deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def make_jws(payload, key, *, header: dict | None = None, raw: bool = False) -> str:
    """A compact JWS with any header: the adapter must judge what pyjwt would refuse to make."""
    if header is None:
        header = {"zip": "DEF", "alg": "ES256", "kid": public_jwk(key)["kid"]}
    body = payload if raw else deflate(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(body)}"
    alg = header.get("alg")
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(signing_input.encode(),
                                             ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "HS256":
        signature = hmac.new(b"secret", signing_input.encode(), hashlib.sha256).digest()
    else:
        signature = b""
    return f"{signing_input}.{b64url(signature)}"


def claims(*, iss=ISS, nbf=None, exp=None, rid=None, bundle=None, types=None) -> dict:
    vc = {"type": types or ["https://smarthealth.cards#health-card"],
          "credentialSubject": {"fhirVersion": "4.0.1", "fhirBundle": bundle or BUNDLE}}
    if rid:
        vc["rid"] = rid
    out = {"iss": iss, "nbf": (AT - timedelta(days=1)).timestamp() if nbf is None else nbf,
           "vc": vc}
    if exp is not None:
        out["exp"] = exp
    return out


def chunked(jws: str, n: int, order=None) -> str:
    """The card split into ``n`` chunks (``shc:/i/n/...``), joined in ``order``."""
    size = -(-len(jws) // n)
    parts = [jws[i * size:(i + 1) * size] for i in range(n)]
    lines = [f"shc:/{i + 1}/{n}/" + jws_to_qr_text(p)[len("shc:/"):] for i, p in enumerate(parts)]
    return "\n".join(lines[i] for i in (order or range(n)))


def render_png(text: str) -> bytes:
    """Render as the SHC spec says: "shc:/" in byte mode, the digits in numeric mode."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_L, border=4, box_size=4)
    qr.add_data(qrcode.util.QRData(text[:5].encode(), mode=qrcode.util.MODE_8BIT_BYTE))
    qr.add_data(qrcode.util.QRData(text[5:], mode=qrcode.util.MODE_NUMBER))
    qr.make(fit=True)
    out = io.BytesIO()
    qr.make_image().save(out, format="PNG")
    return out.getvalue()


def reason_of(text, trust, at=AT) -> str:
    with pytest.raises(CodeError) as caught:
        SHCAdapter().decode(text, trust=trust, at=at)
    return caught.value.reason


BUNDLE = {"resourceType": "Bundle", "type": "collection", "entry": [
    {"fullUrl": "resource:0", "resource": {"resourceType": "Patient",
                                           "name": [{"family": "Chan", "given": ["Tai", "Man"]}],
                                           "birthDate": "1980-01-02"}},
    {"fullUrl": "resource:1", "resource": {
        "resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": CVX, "code": "208"}]},
        "patient": {"reference": "resource:0"}, "occurrenceDateTime": "2021-05-01"}}]}


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def other_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def trust(key):
    store = TrustStore()
    store.add_jwks({"keys": [public_jwk(key)]}, issuer=ISS, scheme="shc")
    return store


@pytest.fixture
def signer(key):
    return Signer(private_key=key, kid="whatever-our-key-ring-calls-it", issuer=ISS)


@pytest.fixture
def record():
    return Record(
        subject=Subject(family_name="Chan", given_name="Tai Man", birth_date="1980-01-02"),
        evidence={
            "vaccinations": [
                Vaccination(product=f"{CVX}#208", dose_number=1, series_doses=2,
                            administered_on="2021-05-01", lot="EW0182",
                            manufacturer="ORG-100030215"),
                Vaccination(product=f"{CVX}#208", dose_number=2, series_doses=2,
                            administered_on="2021-05-22", lot="EW0199")],
            "tests": [TestResult(type="pcr", result="negative",
                                 sampled_at="2026-11-27T08:00:00Z", centre="Macau Lab",
                                 code="http://loinc.org#94309-2")]})


@pytest.fixture
def card(key):
    """A valid single-QR card signed by the trusted key."""
    return jws_to_qr_text(make_jws(claims(), key))


# -- round trips -------------------------------------------------------------------------------

def test_round_trip_through_a_rendered_qr_code(record, signer, trust, key):
    text = SHCAdapter().encode(record, signer=signer, at=AT)
    scanned = decode_qr(render_png(text))
    assert scanned == text
    decoded = SHCAdapter().decode(scanned, trust=trust, at=AT + timedelta(minutes=5))
    assert decoded.record.subject == record.subject
    assert decoded.record.evidence == record.evidence
    assert decoded.record.status is None
    assert decoded.issuer == ISS and decoded.scheme == "shc"
    assert decoded.kid == public_jwk(key)["kid"]
    assert decoded.record.provenance.issued_at == AT
    assert decoded.record.provenance.valid_until is None
    assert decoded.details["chunks"] == 1
    assert "https://smarthealth.cards#covid19" in decoded.details["types"]


def test_issued_header_is_the_spec_header_with_the_thumbprint_kid(record, signer, key):
    """The signer's own kid is replaced by the thumbprint: SHC verifiers look keys up by it."""
    jws, _ = jws_from_qr_text(SHCAdapter().encode(record, signer=signer, at=AT))
    header = json.loads(base64.urlsafe_b64decode(jws.split(".")[0] + "=="))
    assert header == {"alg": "ES256", "kid": public_jwk(key)["kid"], "zip": "DEF"}


def test_chinese_names_and_default_test_codes_survive(signer, trust):
    record = Record(subject=Subject(family_name="陳", given_name="大文"),
                    evidence={"tests": [TestResult(type="rat", result="positive",
                                                   sampled_at="2026-11-27T08:00:00Z")]})
    decoded = SHCAdapter().decode(SHCAdapter().encode(record, signer=signer, at=AT),
                                  trust=trust, at=AT)
    assert decoded.record.subject == record.subject
    (test,) = decoded.record.evidence.tests
    assert (test.type, test.result, test.code) == ("rat", "positive", "http://loinc.org#94558-4")


def test_eu_product_ids_are_issued_as_cvx(signer, trust):
    record = Record(subject=Subject(name="Ana Lima"), evidence={"vaccinations": [
        Vaccination(product="EU/1/20/1507", dose_number=1, administered_on="2021-06-01")]})
    decoded = SHCAdapter().decode(SHCAdapter().encode(record, signer=signer, at=AT),
                                  trust=trust, at=AT)
    assert decoded.record.evidence.vaccinations[0].product == f"{CVX}#207"
    assert decoded.record.subject.name == "Ana Lima"


def test_validity_end_of_the_source_record_becomes_exp(record, signer, trust):
    until = AT + timedelta(days=30)
    record = record.replace(provenance={"scheme": "eu-dcc", "valid_until": until})
    text = SHCAdapter().encode(record, signer=signer, at=AT)
    assert SHCAdapter().decode(text, trust=trust, at=AT).record.provenance.valid_until == until
    assert reason_of(text, trust, at=until) == "expired"


def test_dose_number_falls_back_to_position_among_completed_doses(key, trust):
    def immunization(day, status="completed"):
        return {"resource": {"resourceType": "Immunization", "status": status,
                             "vaccineCode": {"coding": [{"system": CVX, "code": "207"}]},
                             "occurrenceDateTime": f"2021-0{day}-01T10:00:00Z"}}
    bundle = {"resourceType": "Bundle", "entry": [
        immunization(1), immunization(2, "entered-in-error"), immunization(3)]}
    decoded = SHCAdapter().decode(jws_to_qr_text(make_jws(claims(bundle=bundle), key)),
                                  trust=trust, at=AT)
    doses = decoded.record.evidence.vaccinations
    assert [(d.dose_number, d.administered_on) for d in doses] == [(1, "2021-01-01"),
                                                                   (2, "2021-03-01")]
    assert decoded.details["unmapped"] == {"Immunization": 1}
    assert decoded.record.subject.name is None


def test_only_known_covid_tests_are_evidence(key, trust):
    def observation(loinc, result="260385009"):
        return {"resource": {"resourceType": "Observation", "status": "final",
                             "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
                             "effectiveDateTime": "2026-11-27T08:00:00Z",
                             "valueCodeableConcept": {"coding": [
                                 {"system": "http://snomed.info/sct", "code": result}]}}}
    bundle = {"resourceType": "Bundle", "entry": [
        observation("94500-6"), observation("97097-0", "260373001"), observation("94762-2"),
        observation("2887-8"), observation("94500-6", "123456")]}
    decoded = SHCAdapter().decode(jws_to_qr_text(make_jws(claims(bundle=bundle), key)),
                                  trust=trust, at=AT)
    assert [(t.type, t.result) for t in decoded.record.evidence.tests] == [
        ("pcr", "negative"), ("rat", "positive"), ("antibody", "negative")]
    assert decoded.details["unmapped"] == {"Observation": 2}


def test_within_clock_skew_is_accepted(key, trust):
    text = jws_to_qr_text(make_jws(claims(nbf=(AT + timedelta(seconds=30)).timestamp()), key))
    assert SHCAdapter().decode(text, trust=trust, at=AT).record.subject.family_name == "Chan"


def test_revocation_list_entry_with_a_later_cutoff_only(key, trust):
    nbf = (AT - timedelta(days=1)).timestamp()
    text = jws_to_qr_text(make_jws(claims(rid="abc123", nbf=nbf), key))
    kid = public_jwk(key)["kid"]
    trust.add_revocation_list({"kid": kid, "method": "rid", "rids": [f"abc123.{int(nbf) - 10}"]},
                              issuer=ISS, kid=kid)
    assert SHCAdapter().decode(text, trust=trust, at=AT).record.provenance.source_id == "abc123"
    trust.add_revocation_list({"kid": kid, "method": "rid", "rids": [f"abc123.{int(nbf) + 10}"]},
                              issuer=ISS, kid=kid)
    assert reason_of(text, trust) == "revoked"


def test_detect():
    adapter = SHCAdapter()
    assert adapter.detect("shc:/5676")
    assert adapter.detect("shc:/2/2/56\nshc:/1/2/56")
    assert adapter.detect(b"shc:/56")
    assert not adapter.detect("HC1:NCF")
    assert not adapter.detect(None)


# -- chunks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_chunks_in_any_order(key, trust, order):
    jws = make_jws(claims(), key)
    decoded = SHCAdapter().decode(chunked(jws, 3, order), trust=trust, at=AT)
    assert decoded.details["chunks"] == 3
    assert decoded.record.subject.family_name == "Chan"
    assert jws_from_qr_text(chunked(jws, 3, order)) == (jws, 3)


def test_chunks_tolerate_blank_lines_and_crlf(key, trust):
    text = chunked(make_jws(claims(), key), 2).replace("\n", "\r\n\r\n") + "\n"
    assert SHCAdapter().decode(text, trust=trust, at=AT).details["chunks"] == 2


def _chunk_lines(key) -> list[str]:
    return chunked(make_jws(claims(), key), 3).splitlines()


@pytest.mark.parametrize("build", [
    pytest.param(lambda c: "\n".join(c[:2]), id="missing-last"),
    pytest.param(lambda c: "\n".join([c[0], c[2]]), id="missing-middle"),
    pytest.param(lambda c: "\n".join(c[:2] + [c[2][:-2] + "00"] + [c[2]]),
                 id="two-texts-for-one-index"),
    pytest.param(lambda c: "\n".join([c[0], c[0], c[2]]), id="duplicate-instead-of-one"),
    pytest.param(lambda c: "\n".join(c[:2] + [c[2].replace("/3/3/", "/3/4/")]),
                 id="totals-disagree"),
    pytest.param(lambda c: "\n".join(c[:2] + [c[2].replace("/3/3/", "/4/3/")]),
                 id="index-beyond-total"),
    pytest.param(lambda c: "\n".join(c[:2] + [c[2].replace("/3/3/", "/0/3/")]),
                 id="index-zero"),
    pytest.param(lambda c: "\n".join(c + ["shc:/5656"]), id="mixed-with-single"),
    pytest.param(lambda c: "shc:/5656\nshc:/5656", id="two-singles"),
])
def test_bad_chunk_sets_are_malformed(key, trust, build):
    assert reason_of(build(_chunk_lines(key)), trust) == "malformed"


# -- rejection table ---------------------------------------------------------------------------

def _flip(jws: str, part: int) -> str:
    """Change one character in the middle of a JWS part (never the last, whose low bits may
    be padding)."""
    parts = jws.split(".")
    middle = len(parts[part]) // 2
    text = parts[part]
    parts[part] = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1:]
    return ".".join(parts)


def _non_canonical(jws: str) -> str:
    """Set the unused low bits of the signature's last character: same bytes, other text."""
    head, sig = jws.rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 64 bytes -> 86 characters; the last one carries 4 bits of data and 2 of padding
    last = alphabet[alphabet.index(sig[-1]) | 1]
    if last == sig[-1]:
        last = alphabet[alphabet.index(sig[-1]) & ~1]
    return f"{head}.{sig[:-1]}{last}"


def _short_signature(jws: str) -> str:
    """A well-encoded signature of the wrong length (48 of 64 bytes)."""
    head, sig = jws.rsplit(".", 1)
    return f"{head}.{b64url(base64.urlsafe_b64decode(sig + '==')[:48])}"


def _bomb(key, signed: bool) -> str:
    header = {"zip": "DEF", "alg": "ES256", "kid": public_jwk(key)["kid"] if signed else "nobody"}
    return jws_to_qr_text(make_jws(deflate(b" " * (MAX_INFLATED * 4)), key, header=header,
                                   raw=True))


def _header(key, **changes) -> dict:
    header = {"zip": "DEF", "alg": "ES256", "kid": public_jwk(key)["kid"]}
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


CASES = [
    # (id, build(key, other_key) -> text, reason)
    ("not-shc", lambda k, o: "HC1:6BFOXN", "malformed"),
    ("empty", lambda k, o: "", "malformed"),
    ("prefix-only", lambda k, o: "shc:/", "malformed"),
    ("upper-case-prefix", lambda k, o: "SHC:/5676", "malformed"),
    ("odd-digits", lambda k, o: "shc:/567", "malformed"),
    ("pair-above-77", lambda k, o: "shc:/5678", "malformed"),
    ("non-digits", lambda k, o: "shc:/56a6", "malformed"),
    ("unicode-digits", lambda k, o: "shc:/56\u0663\u0663", "malformed"),
    ("two-parts", lambda k, o: jws_to_qr_text("abc.def"), "malformed"),
    ("header-not-json", lambda k, o: jws_to_qr_text(b64url(b"{nope") + ".AA.AA"), "malformed"),
    ("alg-HS256", lambda k, o: jws_to_qr_text(make_jws(claims(), k, header=_header(
        k, alg="HS256"))), "bad_signature"),
    ("alg-none", lambda k, o: jws_to_qr_text(make_jws(claims(), k, header=_header(
        k, alg="none"))), "bad_signature"),
    ("no-zip", lambda k, o: jws_to_qr_text(make_jws(claims(), k, header=_header(k, zip=None))),
     "malformed"),
    ("no-kid", lambda k, o: jws_to_qr_text(make_jws(claims(), k, header=_header(k, kid=None))),
     "malformed"),
    ("crit-header", lambda k, o: jws_to_qr_text(make_jws(claims(), k, header=_header(
        k, crit=["exp"]))), "malformed"),
    ("wrong-kid", lambda k, o: jws_to_qr_text(make_jws(claims(), k, header=_header(
        k, kid=public_jwk(o)["kid"]))), "unknown_key"),
    ("untrusted-issuer", lambda k, o: jws_to_qr_text(make_jws(claims(iss=OTHER_ISS), o)),
     "untrusted_issuer"),
    ("trusted-issuer-unknown-key", lambda k, o: jws_to_qr_text(make_jws(claims(), o)),
     "unknown_key"),
    ("tampered-payload", lambda k, o: jws_to_qr_text(_flip(make_jws(claims(), k), 1)),
     "bad_signature"),
    ("tampered-signature", lambda k, o: jws_to_qr_text(_flip(make_jws(claims(), k), 2)),
     "bad_signature"),
    ("signed-by-another-key", lambda k, o: jws_to_qr_text(make_jws(claims(), o, header=_header(
        k))), "bad_signature"),
    ("short-signature", lambda k, o: jws_to_qr_text(_short_signature(make_jws(claims(), k))),
     "bad_signature"),
    ("non-canonical-base64", lambda k, o: jws_to_qr_text(_non_canonical(make_jws(claims(), k))),
     "malformed"),
    ("expired", lambda k, o: jws_to_qr_text(make_jws(claims(exp=AT.timestamp() - 1), k)),
     "expired"),
    ("expires-exactly-now", lambda k, o: jws_to_qr_text(make_jws(claims(exp=AT.timestamp()),
                                                                 k)), "expired"),
    ("not-yet-valid", lambda k, o: jws_to_qr_text(make_jws(claims(
        nbf=AT.timestamp() + 3600), k)), "not_yet_valid"),
    ("no-nbf", lambda k, o: jws_to_qr_text(make_jws({"iss": ISS, "vc": claims()["vc"]}, k)),
     "malformed"),
    ("nbf-string", lambda k, o: jws_to_qr_text(make_jws(claims(nbf="yesterday"), k)),
     "malformed"),
    ("nbf-bool", lambda k, o: jws_to_qr_text(make_jws(claims(nbf=True), k)), "malformed"),
    ("nbf-huge", lambda k, o: jws_to_qr_text(make_jws(claims(nbf=1e300), k)), "malformed"),
    ("no-vc", lambda k, o: jws_to_qr_text(make_jws({"iss": ISS, "nbf": 1}, k)), "malformed"),
    ("not-a-health-card", lambda k, o: jws_to_qr_text(make_jws(claims(
        types=["https://example.org#x"]), k)), "malformed"),
    ("bundle-not-bundle", lambda k, o: jws_to_qr_text(make_jws(claims(
        bundle={"resourceType": "Patient"}), k)), "malformed"),
    ("two-patients", lambda k, o: jws_to_qr_text(make_jws(claims(bundle={
        "resourceType": "Bundle", "entry": BUNDLE["entry"][:1] * 2}), k)), "malformed"),
    ("bad-birth-date", lambda k, o: jws_to_qr_text(make_jws(claims(bundle={
        "resourceType": "Bundle", "entry": [{"resource": {
            "resourceType": "Patient", "birthDate": "1980-13-45"}}]}), k)), "malformed"),
    ("payload-not-json", lambda k, o: jws_to_qr_text(make_jws(deflate(b"\xff{"), k, raw=True)),
     "malformed"),
    ("payload-json-array", lambda k, o: jws_to_qr_text(make_jws(deflate(b"[1]"), k, raw=True)),
     "malformed"),
    ("payload-not-deflate", lambda k, o: jws_to_qr_text(make_jws(b"{\"iss\":1}", k, raw=True)),
     "malformed"),
    ("deflate-truncated", lambda k, o: jws_to_qr_text(make_jws(
        deflate(json.dumps(claims()).encode())[:-4], k, raw=True)), "malformed"),
    ("deflate-bomb-signed", lambda k, o: _bomb(k, signed=True), "too_large"),
    ("deflate-bomb-unknown-kid", lambda k, o: _bomb(k, signed=False), "too_large"),
    ("deeply-nested-json", lambda k, o: jws_to_qr_text(make_jws(
        deflate(b"[" * 100000 + b"]" * 100000), k, raw=True)), "malformed"),
    ("oversized-text", lambda k, o: "shc:/" + "56" * 40000, "too_large"),
]


@pytest.mark.parametrize("build,reason", [pytest.param(b, r, id=i) for i, b, r in CASES])
def test_rejections(key, other_key, trust, build, reason):
    assert reason_of(build(key, other_key), trust) == reason


def test_revoked(key, trust):
    kid = public_jwk(key)["kid"]
    trust.add_revocation_list({"kid": kid, "method": "rid", "rids": ["gone"]}, issuer=ISS,
                              kid=kid)
    assert reason_of(jws_to_qr_text(make_jws(claims(rid="gone"), key)), trust) == "revoked"


def test_key_filed_under_a_kid_that_is_not_its_thumbprint(key, other_key, card):
    """An operator error (or an attack on the trust files) must not make a key usable."""
    store = TrustStore()
    store.add_jwks({"keys": [public_jwk(other_key, kid=public_jwk(key)["kid"])]}, issuer=ISS)
    assert reason_of(card, store) == "unknown_key"


def test_issuer_trusted_for_another_scheme_only(key, card):
    store = TrustStore()
    store.add_jwks({"keys": [public_jwk(key)]}, issuer=ISS, scheme="partner-jwt")
    assert reason_of(card, store) == "untrusted_issuer"


def test_card_naming_another_trusted_issuer(key, other_key, trust):
    """Issuer B's key cannot vouch for a card that says issuer A issued it."""
    trust.add_jwks({"keys": [public_jwk(other_key)]}, issuer=OTHER_ISS)
    text = jws_to_qr_text(make_jws(claims(iss=ISS), other_key))
    assert reason_of(text, trust) == "unknown_key"


@pytest.mark.parametrize("value", [None, 42, ["shc:/56"], b"\xff\xfe", object()])
def test_non_text_input_is_malformed(trust, value):
    assert reason_of(value, trust) == "malformed"


# -- x5c ---------------------------------------------------------------------------------------

def _cert(subject_key, subject, issuer_key, issuer, *, san=None, days=(-1, 365)):
    now = datetime.now(timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + timedelta(days=days[0]))
               .not_valid_after(now + timedelta(days=days[1])))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(san)]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA384())
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


@pytest.fixture(scope="module")
def pki(key):
    root = ec.generate_private_key(ec.SECP384R1())
    ca = ec.generate_private_key(ec.SECP384R1())
    return {"root": root, "ca": ca,
            "root_cert": _cert(root, "Root", root, "Root"),
            "ca_cert": _cert(ca, "CA", root, "Root"),
            "leaf_cert": _cert(key, "Issuer", ca, "CA", san=ISS)}


def _x5c_trust(key, x5c) -> TrustStore:
    store = TrustStore()
    store.add_jwks({"keys": [public_jwk(key, x5c=x5c)]}, issuer=ISS, scheme="shc")
    return store


def test_x5c_chain_is_verified(key, pki, card):
    store = _x5c_trust(key, [pki["leaf_cert"], pki["ca_cert"], pki["root_cert"]])
    details = SHCAdapter().decode(card, trust=store, at=AT).details
    assert details["x5c_verified"] is True
    assert details["x5c_subjects"] == ["CN=Issuer", "CN=CA", "CN=Root"]


def test_expired_leaf_is_reported_not_enforced(key, pki, card):
    """The decision the spec's own example forces: chain dates go into details."""
    leaf = _cert(key, "Issuer", pki["ca"], "CA", san=ISS, days=(-800, -400))
    store = _x5c_trust(key, [leaf, pki["ca_cert"], pki["root_cert"]])
    details = SHCAdapter().decode(card, trust=store, at=AT).details
    assert details["x5c_verified"] is True and details["x5c_valid_at_issue"] is False


@pytest.mark.parametrize("chain,reason", [
    pytest.param(lambda p, k, o: [_cert(k, "Issuer", p["ca"], "CA", san=OTHER_ISS),
                                  p["ca_cert"]], "untrusted_issuer", id="san-is-another-issuer"),
    pytest.param(lambda p, k, o: [_cert(k, "Issuer", p["ca"], "CA"), p["ca_cert"]],
                 "untrusted_issuer", id="no-san"),
    pytest.param(lambda p, k, o: [_cert(o, "Issuer", p["ca"], "CA", san=ISS), p["ca_cert"]],
                 "unknown_key", id="leaf-for-another-key"),
    pytest.param(lambda p, k, o: [p["leaf_cert"], p["root_cert"]], "untrusted_issuer",
                 id="parent-missing"),
    pytest.param(lambda p, k, o: [p["leaf_cert"], p["ca_cert"], p["ca_cert"]],
                 "untrusted_issuer", id="ca-not-self-issued-root"),
    pytest.param(lambda p, k, o: [_cert(k, "Issuer", o, "CA", san=ISS), p["ca_cert"]],
                 "untrusted_issuer", id="leaf-forged-under-ca-name"),
    pytest.param(lambda p, k, o: ["not base64!"], "untrusted_issuer", id="unreadable"),
])
def test_x5c_failures(key, other_key, pki, card, chain, reason):
    store = _x5c_trust(key, chain(pki, key, other_key))
    assert reason_of(card, store) == reason


# -- issuing refusals --------------------------------------------------------------------------

def test_issue_needs_evidence(signer):
    with pytest.raises(CodeError) as caught:
        SHCAdapter().encode(Record(subject=Subject(name="Chan Tai Man"), status="green"),
                            signer=signer, at=AT)
    assert caught.value.reason == "policy_refused"
    assert "immunization or a lab result" in caught.value.message


@pytest.mark.parametrize("change", [
    pytest.param(lambda r: r.replace(subject=Subject(masked_name="C**n")), id="no-name"),
    pytest.param(lambda r: r.replace(evidence={"vaccinations": [Vaccination(
        product="Sinovac-CoronaVac", dose_number=1, administered_on="2021-01-01")]}),
        id="unknown-product"),
    pytest.param(lambda r: r.replace(evidence={"tests": [TestResult(
        type="other", result="negative", sampled_at=AT)]}), id="test-type-without-code"),
    pytest.param(lambda r: r.replace(evidence={"tests": [TestResult(
        type="pcr", result="negative", sampled_at=AT, code="http://loinc.org#97097-0")]}),
        id="test-code-of-another-type"),
    pytest.param(lambda r: r.replace(evidence={"tests": [TestResult(
        type="pcr", result="negative", sampled_at=AT, disease="influenza")]}),
        id="not-covid"),
    pytest.param(lambda r: r.replace(provenance={"scheme": "native", "valid_until": AT}),
                 id="already-over"),
])
def test_issue_refusals(record, signer, change):
    with pytest.raises(CodeError) as caught:
        SHCAdapter().encode(change(record), signer=signer, at=AT)
    assert caught.value.reason == "policy_refused"


def test_issue_refuses_other_keys_and_issuers(record, key):
    other_curve = ec.generate_private_key(ec.SECP384R1())
    for signer in (Signer(private_key=other_curve, kid="x", issuer=ISS),
                   Signer(private_key=key, kid="x", issuer="http://insecure.example"),
                   Signer(private_key=key, kid="x", issuer=ISS + "/")):
        with pytest.raises(CodeError) as caught:
            SHCAdapter().encode(record, signer=signer, at=AT)
        assert caught.value.reason == "policy_refused"


def test_issue_refuses_what_one_qr_code_cannot_hold(record, signer):
    doses = [Vaccination(product=f"{CVX}#208", dose_number=i + 1,
                         administered_on=f"2021-{1 + i % 12:02d}-{1 + i % 28:02d}",
                         lot=hashlib.sha256(str(i).encode()).hexdigest()[:20])
             for i in range(40)]
    with pytest.raises(CodeError) as caught:
        SHCAdapter().encode(record.replace(evidence={"vaccinations": doses}), signer=signer,
                            at=AT)
    assert caught.value.reason == "too_large"


# -- properties --------------------------------------------------------------------------------

_PROPERTY = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@_PROPERTY
@given(text=st.text(max_size=300))
def test_any_text_fails_with_a_contract_reason(trust, text):
    with pytest.raises(CodeError) as caught:
        SHCAdapter().decode(text, trust=trust, at=AT)
    assert caught.value.reason in CODE_REASONS


@_PROPERTY
@given(digits=st.text(alphabet="0123456789", max_size=600),
       chunk=st.sampled_from(["", "1/1/", "1/2/", "2/2/"]))
def test_any_digits_fail_with_a_contract_reason(trust, digits, chunk):
    with pytest.raises(CodeError) as caught:
        SHCAdapter().decode(f"shc:/{chunk}{digits}", trust=trust, at=AT)
    assert caught.value.reason in CODE_REASONS


@_PROPERTY
@given(data=st.data())
def test_truncations_and_bit_flips_of_a_valid_card_always_fail(trust, card, data):
    """Every truncation, and every single-bit change, must be refused with a contract
    reason: nothing in the text is slack that could be changed unnoticed."""
    if data.draw(st.booleans(), label="truncate"):
        cut = data.draw(st.integers(0, len(card) - 1), label="cut")
        changed = card[:cut]
    else:
        index = data.draw(st.integers(0, len(card) - 1), label="index")
        bit = data.draw(st.integers(0, 15), label="bit")
        changed = card[:index] + chr(ord(card[index]) ^ (1 << bit)) + card[index + 1:]
    with pytest.raises(CodeError) as caught:
        SHCAdapter().decode(changed, trust=trust, at=AT)
    assert caught.value.reason in CODE_REASONS


def test_every_single_digit_change_fails(trust, card):
    """Exhaustively, since it is cheap: each digit replaced by each other digit."""
    reasons = set()
    for index in range(len("shc:/"), len(card)):
        for digit in "0123456789":
            if digit == card[index]:
                continue
            changed = card[:index] + digit + card[index + 1:]
            with pytest.raises(CodeError) as caught:
                SHCAdapter().decode(changed, trust=trust, at=AT)
            reasons.add(caught.value.reason)
    assert reasons <= CODE_REASONS
    assert {"malformed", "bad_signature"} <= reasons
