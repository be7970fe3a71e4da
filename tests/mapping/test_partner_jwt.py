"""Partner JWT family: the three example partners round-trip generated records, refuse what their
tables do not list, and fail every verification step with the reason the contract names; mapping
files are checked field by field; and a fourth partner works from a file alone."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import string
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthcode.errors import ConfigurationError, CodeError
from healthcode.record import (TEST_TYPES, Document, Evidence, Provenance, Record, Subject,
                               TestResult, Vaccination)
from healthcode.trust import TrustStore, b64url
from mapping.base import Signer
from mapping.partner_jwt import (EXAMPLES, MAX_PARTNER_CODE, UNSPECIFIED_PRODUCT,
                                 MappingFileError, PartnerJWTAdapter, load_mapping,
                                 load_partners)
from mapping.registry import Registry

AT = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
PARTNERS = {adapter.scheme: adapter for adapter in load_partners(EXAMPLES)}
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


# -- helpers -----------------------------------------------------------------------------------

def public_jwk(key) -> dict:
    """The public JWK of a P-256, P-384, RSA or Ed25519 private key (kid: its thumbprint)."""
    public = key.public_key()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    if isinstance(key, rsa.RSAPrivateKey):
        return jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    return jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)


def trusted(adapter, key=KEY, *, scheme: str | None = None, **jwk_extra):
    """A trust store holding ``key`` for every issuer of ``adapter``, and the key's kid."""
    trust = TrustStore()
    kid = None
    for issuer in adapter.mapping.issuers:
        kid, = trust.add_jwks({"keys": [{**public_jwk(key), **jwk_extra}]}, issuer=issuer,
                              scheme=scheme or adapter.scheme)
    return trust, kid


def signer_for(adapter, key=KEY) -> Signer:
    _, kid = trusted(adapter, key)
    return Signer(private_key=key, kid=kid, issuer=adapter.mapping.issuers[0])


def make_jws(claims, *, key=KEY, header: dict | None = None, alg: str = "ES256",
             kid: str | None = None) -> str:
    """A compact JWS with any header: the adapter must judge what pyjwt would refuse to make."""
    if header is None:
        header = {"alg": alg, "kid": kid or trusted(PARTNERS["mo"], key)[1]}
    body = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(body)}".encode()
    alg = header.get("alg")
    if alg == "HS256":
        signature = hmac.new(b"shared secret", signing_input, hashlib.sha256).digest()
    elif alg in ("ES256", "ES384", "PS256", "EdDSA"):
        signature = jwt.PyJWS().get_algorithm_by_name(alg).sign(signing_input, key)
    else:
        signature = b""
    return f"{signing_input.decode()}.{b64url(signature)}"


def record_for(adapter, **changes) -> Record:
    """A full record the adapter can issue: its first document type, its first colour."""
    document = Document(type=next(iter(adapter.mapping.documents_encode)), number="H1234567",
                        region="MO")
    record = Record(
        subject=Subject(name="陳大文", name_latin="Chan Tai Man", birth_date="1980-01-02",
                        document=document, subject_id="sid-1"),
        status="green",
        evidence=Evidence(tests=[TestResult(type="pcr", result="negative",
                                            sampled_at=AT - timedelta(hours=20))]))
    return record.replace(**changes)


def claims_of(code: str, adapter) -> dict:
    token = code[len(adapter.mapping.prefix or ""):]
    return json.loads(jwt.utils.base64url_decode(token.split(".")[1]))


def good_claims(adapter) -> dict:
    """The claims of a valid code issued at AT, to be bent by a test and signed again."""
    return claims_of(adapter.encode(record_for(adapter), signer=signer_for(adapter), at=AT),
                     adapter)


def lookup(claims: dict, path: str):
    """The claim at a dotted path."""
    for part in path.split("."):
        claims = claims[part]
    return claims


def put(claims: dict, path: str, value) -> dict:
    """Set (or, with ``...``, delete) the claim at a dotted path."""
    *parents, leaf = path.split(".")
    node = claims
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return claims


def bent(adapter, changes: dict, **sign) -> str:
    """A code of ``adapter`` whose facts (by canonical name) are changed, signed again."""
    claims = good_claims(adapter)
    for fact, value in changes.items():
        # a canonical fact goes where the partner keeps it; anything else ("iss") is a claim
        path = getattr(adapter.mapping.claims, fact, None) or fact
        put(claims, path, value)
    return (adapter.mapping.prefix or "") + make_jws(claims, **sign)


def reason_of(call) -> str:
    with pytest.raises(CodeError) as caught:
        call()
    return caught.value.reason


# -- the examples ------------------------------------------------------------------------------

def test_examples_load_as_three_distinct_partners():
    assert sorted(PARTNERS) == ["cn", "hk", "mo"]
    layouts = {s: a.mapping.claims.paths() for s, a in PARTNERS.items()}
    # Distinct layouts: the name and the colour sit in a different claim for each partner.
    assert len({layout["name"] for layout in layouts.values()}) == 3
    assert len({layout["status"] for layout in layouts.values()}) == 3
    assert PARTNERS["hk"].mapping.prefix == "HKHC:"
    assert PARTNERS["hk"].mapping.claims.time_format("issued_at") == "iso"
    assert PARTNERS["mo"].mapping.claims.time_format("issued_at") == "numeric"
    assert all(a.specificity == 10 and a.can_encode for a in PARTNERS.values())


def test_policy_tables_are_passed_through_raw():
    assert PARTNERS["mo"].policy_table == {"accept": ["green"], "max_validity_hours": 24}
    assert PARTNERS["cn"].policy_table["require"] == [
        {"evidence": "test", "result": "negative", "types": ["pcr"], "within_hours": 48}]
    # A copy: the engine may keep or change it without touching the checked mapping.
    cn = PartnerJWTAdapter(load_mapping(EXAMPLES / "cn.toml"))
    cn.policy_table["accept"].append("yellow")
    assert cn.mapping.policy["accept"] == ["green"]


def test_examples_register_beside_each_other():
    registry = Registry(load_partners(EXAMPLES))
    assert registry.names() == ["cn", "hk", "mo"]
    for scheme, adapter in PARTNERS.items():
        code = adapter.encode(record_for(adapter), signer=signer_for(adapter), at=AT)
        assert registry.detect(code).scheme == scheme


def test_layouts_on_the_wire():
    mo, hk, cn = (PARTNERS[s] for s in ("mo", "hk", "cn"))
    mo_claims = claims_of(mo.encode(record_for(mo), signer=signer_for(mo), at=AT), mo)
    assert mo_claims["colour"] == "green" and mo_claims["doc_type"] == "BIR"
    assert mo_claims["iat"] == int(AT.timestamp()) and mo_claims["exp"] == mo_claims["iat"] + 3600
    hk_code = hk.encode(record_for(hk), signer=signer_for(hk), at=AT)
    assert hk_code.startswith("HKHC:ey")
    hk_claims = claims_of(hk_code, hk)
    assert hk_claims["p"]["n"] == "陳大文" and hk_claims["p"]["doc"]["t"] == "HKIC"
    assert hk_claims["hc"] == 0 and hk_claims["iat"] == "2026-11-28T09:00:00Z"
    assert jwt.get_unverified_header(hk_code[5:])["typ"] == "JWT"
    cn_claims = claims_of(cn.encode(record_for(cn), signer=signer_for(cn), at=AT), cn)
    assert cn_claims["xm"] == "陳大文" and cn_claims["ys"] == "G" and cn_claims["zjlx"] == "01"
    assert cn_claims["hsjc"] == {"lx": "pcr", "jg": "negative",
                                 "cysj": int((AT - timedelta(hours=20)).timestamp())}
    assert cn_claims["sxsj"] == cn_claims["qfsj"]


# -- round trips -------------------------------------------------------------------------------

_CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
_WORD = st.text(alphabet=st.one_of(_CJK, st.sampled_from(string.ascii_letters)), min_size=1,
                max_size=8)
_NAMES = st.lists(_WORD, min_size=1, max_size=3).map(" ".join)
_BIRTH_DATES = st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 11, 1)).flatmap(
    lambda d: st.sampled_from([d.isoformat(), d.isoformat()[:7], d.isoformat()[:4]]))
_TESTS = st.lists(
    st.builds(TestResult, type=st.sampled_from(TEST_TYPES),
              result=st.sampled_from(["negative", "positive"]),
              sampled_at=st.integers(1, 96 * 3600).map(lambda s: AT - timedelta(seconds=s))),
    max_size=2, unique_by=lambda t: t.sampled_at)
_VACCINATIONS = st.one_of(st.just(()), st.builds(
    lambda doses, complete: (Vaccination(product="EU/1/20/1528", dose_number=doses,
                                         series_doses=doses if complete else doses + 1,
                                         administered_on="2022-01-15"),),
    st.integers(1, 5), st.booleans()))


@st.composite
def records(draw, adapter) -> Record:
    """Records the partner can issue: its colours, its document types, optional evidence."""
    documents = st.builds(Document, type=st.sampled_from(sorted(adapter.mapping.documents_encode)),
                          number=st.from_regex(r"[A-Z][0-9]{6,10}", fullmatch=True),
                          region=st.sampled_from(["MO", "HK", "CN"]))
    until = draw(st.one_of(st.none(), st.integers(60, 48 * 3600)))
    return Record(
        subject=Subject(name=draw(_NAMES), name_latin=draw(st.one_of(st.none(), _NAMES)),
                        birth_date=draw(st.one_of(st.none(), _BIRTH_DATES)),
                        document=draw(st.one_of(st.none(), documents)),
                        subject_id=draw(st.one_of(st.none(), st.just("sid-42")))),
        status=draw(st.sampled_from(sorted(adapter.mapping.status_encode))),
        evidence=Evidence(tests=draw(_TESTS), vaccinations=draw(_VACCINATIONS)),
        provenance=Provenance(scheme="native", valid_until=AT + timedelta(seconds=until))
        if until else None)


def _summary(vaccinations) -> list:
    return [(v.dose_number, v.completes_series) for v in vaccinations]


@pytest.mark.parametrize("scheme", sorted(PARTNERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(scheme, data):
    adapter = PARTNERS[scheme]
    layout = adapter.mapping.claims
    record = data.draw(records(adapter))
    trust, kid = trusted(adapter)
    code = adapter.encode(record, signer=signer_for(adapter), at=AT)

    assert [s for s, a in PARTNERS.items() if a.detect(code)] == [scheme]
    decoded = adapter.decode(code, trust=trust, at=AT + timedelta(seconds=30))
    got = decoded.record
    expected_subject = Subject(
        name=record.subject.name,
        name_latin=record.subject.name_latin if layout.name_latin else None,
        birth_date=record.subject.birth_date if layout.birth_date else None,
        document=record.subject.document if layout.has_document else None)
    assert got.subject == expected_subject
    assert got.status == record.status and got.reasons == ()
    latest = max(record.evidence.tests, key=lambda t: t.sampled_at, default=None)
    assert got.evidence.tests == ((latest,) if latest and layout.has_test else ())
    assert _summary(got.evidence.vaccinations) == (
        _summary(record.evidence.vaccinations) if layout.has_vaccination else [])
    until = min(AT + timedelta(seconds=adapter.mapping.encode.ttl),
                record.provenance.valid_until if record.provenance else datetime.max.replace(
                    tzinfo=timezone.utc))
    provenance = got.provenance
    assert (provenance.scheme, provenance.issuer, provenance.key_id) == (
        scheme, adapter.mapping.issuers[0], kid)
    assert (provenance.issued_at, provenance.valid_until) == (AT, until)
    assert provenance.source_id
    assert decoded.details["partner"] == adapter.mapping.name
    assert decoded.details["source_status"] == adapter.mapping.status_encode[record.status]


def test_vaccination_summary_is_one_unspecified_dose_without_a_day():
    mo = PARTNERS["mo"]
    code = bent(mo, {"vaccination_doses": 3, "vaccination_complete": True})
    vaccination, = mo.decode(code, trust=trusted(mo)[0], at=AT).record.evidence.vaccinations
    assert (vaccination.product, vaccination.dose_number, vaccination.series_doses,
            vaccination.administered_on) == (UNSPECIFIED_PRODUCT, 3, 3, "2026")
    zero = bent(mo, {"vaccination_doses": 0, "vaccination_complete": False})
    assert mo.decode(zero, trust=trusted(mo)[0], at=AT).record.evidence.vaccinations == ()


def test_decoded_record_has_no_subject_id_but_keeps_the_source_id():
    mo = PARTNERS["mo"]
    claims = good_claims(mo)
    decoded = mo.decode(make_jws(claims), trust=trusted(mo)[0], at=AT)
    assert decoded.record.subject.subject_id is None
    assert decoded.record.provenance.source_id == claims["jti"]
    del claims["jti"]
    decoded = mo.decode(make_jws(claims), trust=trusted(mo)[0], at=AT)
    assert decoded.record.provenance.source_id == "sid-1"


# -- colours and documents ---------------------------------------------------------------------

@pytest.mark.parametrize("scheme, value, colour", [
    ("mo", "green", "green"), ("mo", "yellow", "yellow"), ("mo", "red", "red"),
    ("hk", 0, "green"), ("hk", 2, "red"), ("hk", "0", "green"),
    ("cn", "G", "green"), ("cn", "Y", "yellow"), ("cn", "R", "red"),
])
def test_colour_decode_table(scheme, value, colour):
    adapter = PARTNERS[scheme]
    decoded = adapter.decode(bent(adapter, {"status": value}), trust=trusted(adapter)[0], at=AT)
    assert decoded.record.status == colour
    assert decoded.details["source_status"] == value


@pytest.mark.parametrize("scheme, value, message", [
    ("mo", "grey", "unknown status value"),
    ("mo", "Green", "unknown status value"),   # values are exact: no case folding
    ("hk", 1, "status 1 is not recognised under this agreement"),   # amber: refused
    ("hk", "1", "status 1 is not recognised under this agreement"),
    ("hk", 3, "unknown status value"),
    ("hk", 0.5, "unknown status value"),
    ("cn", "g", "unknown status value"),
    ("cn", "H", "unknown status value"),
])
def test_colour_refusals(scheme, value, message):
    adapter = PARTNERS[scheme]
    with pytest.raises(CodeError) as caught:
        adapter.decode(bent(adapter, {"status": value}), trust=trusted(adapter)[0], at=AT)
    assert caught.value.reason == "policy_refused"
    assert message in caught.value.message


@pytest.mark.parametrize("value", [True, ["green"], {"c": "green"}])
def test_a_status_that_is_not_a_value_is_malformed(value):
    mo = PARTNERS["mo"]
    assert reason_of(lambda: mo.decode(bent(mo, {"status": value}), trust=trusted(mo)[0],
                                       at=AT)) == "malformed"


@pytest.mark.parametrize("scheme, ours, theirs", [
    ("mo", "green", "green"), ("mo", "yellow", "yellow"), ("mo", "red", "red"),
    ("hk", "green", 0), ("hk", "red", 2), ("cn", "green", "G"), ("cn", "red", "R"),
])
def test_colour_encode_table(scheme, ours, theirs):
    adapter = PARTNERS[scheme]
    code = adapter.encode(record_for(adapter, status=ours), signer=signer_for(adapter), at=AT)
    assert lookup(claims_of(code, adapter), adapter.mapping.claims.status) == theirs


@pytest.mark.parametrize("scheme", ["hk", "cn"])
def test_our_yellow_cannot_be_issued_where_it_has_no_equivalent(scheme):
    adapter = PARTNERS[scheme]
    assert reason_of(lambda: adapter.encode(record_for(adapter, status="yellow"),
                                            signer=signer_for(adapter), at=AT)) == "policy_refused"


@pytest.mark.parametrize("scheme, partner_type, ours", [
    ("mo", "BIR", "id_card"), ("mo", "MOP", "travel_permit"),
    ("hk", "HKIC", "id_card"), ("hk", "HKP", "passport"), ("hk", "EEP", "travel_permit"),
    ("cn", "01", "id_card"), ("cn", "06", "travel_permit"),
])
def test_document_decode_table(scheme, partner_type, ours):
    adapter = PARTNERS[scheme]
    code = bent(adapter, {"document_type": partner_type})
    assert adapter.decode(code, trust=trusted(adapter)[0], at=AT).record.subject.document.type \
        == ours


@pytest.mark.parametrize("scheme, partner_type", [
    ("mo", "PASS"), ("mo", "bir"), ("hk", "BIR"), ("cn", "03"), ("cn", 1),
])
def test_unknown_document_types_are_refused(scheme, partner_type):
    adapter = PARTNERS[scheme]
    code = bent(adapter, {"document_type": partner_type})
    assert reason_of(lambda: adapter.decode(code, trust=trusted(adapter)[0], at=AT)) == \
        "policy_refused"


@pytest.mark.parametrize("scheme, ours", [("mo", "passport"), ("cn", "passport"),
                                          ("hk", "residence_card")])
def test_document_types_without_an_equivalent_cannot_be_issued(scheme, ours):
    adapter = PARTNERS[scheme]
    record = record_for(adapter)
    record = record.replace(subject=dataclasses.replace(
        record.subject, document=Document(type=ours, number="X1", region="MO")))
    assert reason_of(lambda: adapter.encode(record, signer=signer_for(adapter), at=AT)) == \
        "policy_refused"


@pytest.mark.parametrize("fact, value", [("test_type", "lamp"), ("test_result", "pending")])
def test_test_values_outside_our_vocabulary_are_refused(fact, value):
    cn = PARTNERS["cn"]
    assert reason_of(lambda: cn.decode(bent(cn, {fact: value}), trust=trusted(cn)[0],
                                       at=AT)) == "policy_refused"


# -- verification failures ---------------------------------------------------------------------

def _other_kid() -> str:
    return trusted(PARTNERS["mo"], OTHER_KEY)[1]


MO_FAILURES = {
    # signer and key
    "untrusted key": (lambda: bent(PARTNERS["mo"], {}, key=OTHER_KEY, kid=_other_kid()),
                      "unknown_key"),
    "other key under our kid": (lambda: bent(PARTNERS["mo"], {}, key=OTHER_KEY,
                                             kid=trusted(PARTNERS["mo"])[1]), "bad_signature"),
    "no kid": (lambda: bent(PARTNERS["mo"], {}, header={"alg": "ES256"}), "unknown_key"),
    "kid not text": (lambda: bent(PARTNERS["mo"], {}, header={"alg": "ES256", "kid": 7}),
                     "unknown_key"),
    "alg none": (lambda: bent(PARTNERS["mo"], {}, alg="none"), "bad_signature"),
    "alg HS256": (lambda: bent(PARTNERS["mo"], {}, alg="HS256"), "bad_signature"),
    "alg not allowed for mo": (lambda: bent(PARTNERS["mo"], {}, alg="ES384"), "bad_signature"),
    "no alg": (lambda: bent(PARTNERS["mo"], {}, header={"kid": "k"}), "bad_signature"),
    # issuer
    "issuer not in file": (lambda: bent(PARTNERS["mo"], {"iss": "https://healthcode.gov.hk"}),
                           "untrusted_issuer"),
    "issuer not text": (lambda: bent(PARTNERS["mo"], {"iss": ["x"]}), "untrusted_issuer"),
    "no issuer": (lambda: bent(PARTNERS["mo"], {"iss": ...}), "untrusted_issuer"),
    # validity window (60 s of skew)
    "expired": (lambda: bent(PARTNERS["mo"], {"valid_until": int(AT.timestamp()) - 61}),
                "expired"),
    "issued in the future": (lambda: bent(PARTNERS["mo"], {"issued_at": int(AT.timestamp())
                                                           + 120}), "not_yet_valid"),
    # claims
    "no name": (lambda: bent(PARTNERS["mo"], {"name": ...}), "malformed"),
    "no status": (lambda: bent(PARTNERS["mo"], {"status": ...}), "malformed"),
    "no subject": (lambda: bent(PARTNERS["mo"], {"subject": ...}), "malformed"),
    "no issued at": (lambda: bent(PARTNERS["mo"], {"issued_at": ...}), "malformed"),
    "no expiry": (lambda: bent(PARTNERS["mo"], {"valid_until": ...}), "malformed"),
    "name not text": (lambda: bent(PARTNERS["mo"], {"name": 42}), "malformed"),
    "name null": (lambda: bent(PARTNERS["mo"], {"name": None}), "malformed"),
    "time as text": (lambda: bent(PARTNERS["mo"], {"issued_at": "2026-11-28T09:00:00Z"}),
                     "malformed"),
    "time out of range": (lambda: bent(PARTNERS["mo"], {"valid_until": 10 ** 20}), "malformed"),
    "bad birth date": (lambda: bent(PARTNERS["mo"], {"birth_date": "1980-13"}), "malformed"),
    "half a document": (lambda: bent(PARTNERS["mo"], {"document_number": ...}), "malformed"),
    "half a test": (lambda: bent(PARTNERS["mo"], {"test_result": ...}), "malformed"),
    "dose count not a number": (lambda: bent(PARTNERS["mo"], {"vaccination_doses": "3"}),
                                "malformed"),
    "complete without doses": (lambda: bent(PARTNERS["mo"], {"vaccination_complete": True}),
                               "malformed"),
    "name too long": (lambda: bent(PARTNERS["mo"], {"name": "x" * 300}), "malformed"),
    # shape
    "payload not JSON": (lambda: make_jws(b"not json"), "malformed"),
    "payload not an object": (lambda: make_jws([1, 2]), "malformed"),
    "garbage": (lambda: "hello, scanner", "malformed"),
    "bad base64": (lambda: "ey!.ey.sig", "malformed"),
    "too large": (lambda: "e" * (MAX_PARTNER_CODE + 1), "too_large"),
}


@pytest.mark.parametrize("case", sorted(MO_FAILURES))
def test_mo_refusals(case):
    make, reason = MO_FAILURES[case]
    mo = PARTNERS["mo"]
    assert reason_of(lambda: mo.decode(make(), trust=trusted(mo)[0], at=AT)) == reason


def test_clock_skew_is_tolerated_both_ways():
    mo = PARTNERS["mo"]
    trust = trusted(mo)[0]
    early = bent(mo, {"issued_at": int(AT.timestamp()) + 59})
    assert mo.decode(early, trust=trust, at=AT).record.status == "green"
    late = bent(mo, {"valid_until": int(AT.timestamp()) - 59})
    assert mo.decode(late, trust=trust, at=AT).record.status == "green"


def test_tampered_claims_fail_the_signature():
    mo = PARTNERS["mo"]
    code = mo.encode(record_for(mo), signer=signer_for(mo), at=AT)
    head, body, signature = code.split(".")
    claims = json.loads(jwt.utils.base64url_decode(body))
    claims["colour"] = "green" if claims["colour"] != "green" else "red"
    forged = f"{head}.{b64url(json.dumps(claims).encode())}.{signature}"
    assert reason_of(lambda: mo.decode(forged, trust=trusted(mo)[0], at=AT)) == "bad_signature"


def test_issuer_in_file_but_not_in_trust_store():
    mo = PARTNERS["mo"]
    assert reason_of(lambda: mo.decode(bent(mo, {}), trust=TrustStore(), at=AT)) == \
        "untrusted_issuer"


def test_issuer_trusted_for_another_scheme():
    mo = PARTNERS["mo"]
    trust, _ = trusted(mo, scheme="hk")
    assert reason_of(lambda: mo.decode(bent(mo, {}), trust=trust, at=AT)) == "untrusted_issuer"


def test_a_key_of_one_issuer_does_not_verify_another_issuers_code():
    mo = PARTNERS["mo"]
    trust = TrustStore()
    trust.add_jwks({"keys": [public_jwk(OTHER_KEY)]}, issuer=mo.mapping.issuers[0], scheme="mo")
    trust.add_jwks({"keys": [public_jwk(KEY)]}, issuer="https://elsewhere.example", scheme="mo")
    assert reason_of(lambda: mo.decode(bent(mo, {}), trust=trust, at=AT)) == "unknown_key"


@pytest.mark.parametrize("jwk_extra, reason", [
    ({"use": "enc"}, "wrong_key_usage"),
    ({"alg": "ES384"}, "bad_signature"),
])
def test_key_restrictions_in_the_trusted_jwk(jwk_extra, reason):
    mo = PARTNERS["mo"]
    trust, _ = trusted(mo, **jwk_extra)
    assert reason_of(lambda: mo.decode(bent(mo, {}), trust=trust, at=AT)) == reason


def test_a_key_of_the_wrong_type_is_a_bad_signature():
    hk = PARTNERS["hk"]   # allows PS256 too: an RSA key must not be asked to check ES256
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    trust, kid = trusted(hk, rsa_key)
    code = bent(hk, {}, kid=kid)
    assert reason_of(lambda: hk.decode(code, trust=trust, at=AT)) == "bad_signature"


def test_a_partner_may_sign_with_any_algorithm_on_its_list():
    hk = PARTNERS["hk"]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    trust, kid = trusted(hk, rsa_key)
    code = bent(hk, {}, key=rsa_key, alg="PS256", kid=kid)
    assert hk.decode(code, trust=trust, at=AT).record.subject.name == "陳大文"


HK_FAILURES = {
    "no prefix": (lambda: bent(PARTNERS["hk"], {})[len("HKHC:"):], "malformed"),
    "time as a number": (lambda: bent(PARTNERS["hk"], {"issued_at": int(AT.timestamp())}),
                         "malformed"),
    "time without an offset": (lambda: bent(PARTNERS["hk"], {"issued_at": "2026-11-28T09:00:00"}),
                               "malformed"),
    "time not ISO": (lambda: bent(PARTNERS["hk"], {"valid_until": "tomorrow"}), "malformed"),
    "expired (ISO, +08:00)": (lambda: bent(PARTNERS["hk"], {"valid_until":
                                                            "2026-11-28T16:58:00+08:00"}),
                              "expired"),
    "person not an object": (lambda: bent(PARTNERS["hk"], {"iss": "https://healthcode.gov.hk",
                                                           "p": "陳大文"}), "malformed"),
    "alg none": (lambda: bent(PARTNERS["hk"], {}, alg="none"), "bad_signature"),
}


@pytest.mark.parametrize("case", sorted(HK_FAILURES))
def test_hk_refusals(case):
    make, reason = HK_FAILURES[case]
    hk = PARTNERS["hk"]
    assert reason_of(lambda: hk.decode(make(), trust=trusted(hk)[0], at=AT)) == reason


def test_hk_iso_times_with_offsets_are_read_as_instants():
    hk = PARTNERS["hk"]
    code = bent(hk, {"issued_at": "2026-11-28T17:00:00+08:00",
                     "valid_until": "2026-11-28T17:30:00+08:00"})
    provenance = hk.decode(code, trust=trusted(hk)[0], at=AT).record.provenance
    assert (provenance.issued_at, provenance.valid_until) == (AT, AT + timedelta(minutes=30))


def test_cn_not_before():
    cn = PARTNERS["cn"]
    trust = trusted(cn)[0]
    late_start = bent(cn, {"not_before": int(AT.timestamp()) + 120})
    assert reason_of(lambda: cn.decode(late_start, trust=trust, at=AT)) == "not_yet_valid"
    assert cn.decode(late_start, trust=trust, at=AT + timedelta(minutes=2)).record.status == \
        "green"


@pytest.mark.parametrize("scheme", sorted(PARTNERS))
@settings(max_examples=100, deadline=None)
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_arbitrary_input_only_ever_raises_code_errors(scheme, text):
    adapter = PARTNERS[scheme]
    with pytest.raises(CodeError):
        adapter.decode((adapter.mapping.prefix or "") + text if isinstance(text, str) else text,
                       trust=trusted(adapter)[0], at=AT)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(0, 10_000), char=st.sampled_from("AQgw_-.x"))
def test_any_one_character_change_is_refused(position, char):
    mo = PARTNERS["mo"]
    code = mo.encode(record_for(mo), signer=signer_for(mo), at=AT)
    position %= len(code)
    changed = code[:position] + char + code[position + 1:]
    if changed == code:
        return
    try:
        decoded = mo.decode(changed, trust=trusted(mo)[0], at=AT)
    except CodeError:
        return
    # Base64url has slack in its last character: a change there may decode to the same bytes.
    assert decoded.record == mo.decode(code, trust=trusted(mo)[0], at=AT).record


def test_now_is_the_default_instant():
    mo = PARTNERS["mo"]
    code = mo.encode(record_for(mo), signer=signer_for(mo))
    assert mo.decode(code, trust=trusted(mo)[0]).record.status == "green"


# -- encode refusals ---------------------------------------------------------------------------

@pytest.mark.parametrize("changes, reason", [
    ({"status": None}, "policy_refused"),
    ({"subject": Subject(birth_date="1980")}, "policy_refused"),
    ({"provenance": Provenance(scheme="native", valid_until=AT)}, "expired"),
    ({"provenance": Provenance(scheme="native", valid_until=AT - timedelta(hours=1))},
     "expired"),
])
def test_encode_refusals(changes, reason):
    mo = PARTNERS["mo"]
    record = record_for(mo, **changes)
    assert reason_of(lambda: mo.encode(record, signer=signer_for(mo), at=AT)) == reason


def test_encode_keeps_the_earlier_expiry_and_our_issuer_setting(tmp_path):
    mo = PARTNERS["mo"]
    record = record_for(mo, provenance=Provenance(scheme="native",
                                                  valid_until=AT + timedelta(minutes=5)))
    claims = claims_of(mo.encode(record, signer=signer_for(mo), at=AT), mo)
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iss"] == mo.mapping.issuers[0]   # the signer's issuer when none is set
    assert claims["sub"] == "sid-1" and "H1234567" not in json.dumps(claims["sub"])
    file = tmp_path / "mo.toml"
    file.write_text((EXAMPLES / "mo.toml").read_text(encoding="utf-8").replace(
        '# issuer = "https://healthcode.example.org/mo-partner"',
        'issuer = "https://healthcode.example.org/mo-partner"'), encoding="utf-8")
    ours = PartnerJWTAdapter(load_mapping(file))
    claims = claims_of(ours.encode(record_for(ours), signer=signer_for(ours), at=AT), ours)
    assert claims["iss"] == "https://healthcode.example.org/mo-partner"


def test_a_signer_of_another_algorithm_is_a_configuration_error():
    mo = PARTNERS["mo"]
    signer = dataclasses.replace(signer_for(mo), algorithm="ES384")
    with pytest.raises(ConfigurationError, match="encode.algorithm"):
        mo.encode(record_for(mo), signer=signer, at=AT)


def test_a_file_without_status_encode_cannot_issue(tmp_path):
    file = write(tmp_path, "ro.toml", MINIMAL)
    adapter = PartnerJWTAdapter(load_mapping(file))
    assert not adapter.can_encode
    assert reason_of(lambda: adapter.encode(record_for(PARTNERS["mo"]), signer=signer_for(
        PARTNERS["mo"]), at=AT)) == "unsupported_scheme"


# -- detect ------------------------------------------------------------------------------------

def test_detect():
    mo, hk, cn = (PARTNERS[s] for s in ("mo", "hk", "cn"))
    mo_code = mo.encode(record_for(mo), signer=signer_for(mo), at=AT)
    hk_code = hk.encode(record_for(hk), signer=signer_for(hk), at=AT)
    cn_code = cn.encode(record_for(cn), signer=signer_for(cn), at=AT)
    assert (mo.detect(mo_code), hk.detect(mo_code), cn.detect(mo_code)) == (True, False, False)
    assert (mo.detect(hk_code), hk.detect(hk_code), cn.detect(hk_code)) == (False, True, False)
    assert (mo.detect(cn_code), hk.detect(cn_code), cn.detect(cn_code)) == (False, False, True)
    assert mo.detect(f"  {mo_code}\n")               # scanners add whitespace
    assert hk.detect("HKHC:anything")                # the prefix is enough; decode judges
    assert not hk.detect(hk_code[len("HKHC:"):])     # a prefixed partner needs its prefix
    assert not hk.detect("hkhc:" + hk_code[5:])      # and exactly it
    foreign = make_jws({"iss": "https://elsewhere.example", "sub": "x"})
    assert not any(a.detect(foreign) for a in PARTNERS.values())
    for junk in ("", "hello", "a.b", "ey.ey.ey.ey", None, b"bytes", 42, "e" * 10_000):
        assert not mo.detect(junk) and not cn.detect(junk)
    # Detection is a cheap peek: a prefixless code naming Macau is Macau's to judge.
    assert mo.detect(bent(mo, {}, alg="none"))


# -- mapping files -----------------------------------------------------------------------------

MINIMAL = """\
scheme = "xx"
name = "Example"
region = "XX"
issuers = ["https://issuer.example"]
algorithms = ["ES256"]

[claims]
subject = "sub"
name = "nm"
status = "st"

[status.decode]
ok = "green"
"""


def write(folder: Path, name: str, text: str) -> Path:
    file = folder / name
    file.write_text(text, encoding="utf-8")
    return file


def edit(old: str, new: str, base: str = MINIMAL) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


FILE_ERRORS = {
    "missing scheme": (edit('scheme = "xx"\n', ""), "scheme", "required"),
    "bad scheme name": (edit('"xx"', '"X x"'), "scheme", "a-z"),
    "one-letter scheme": (edit('"xx"', '"x"'), "scheme", "2 to 32"),
    "missing name": (edit('name = "Example"\n', ""), "name", "required"),
    "bad region": (edit('"XX"', '"Macau"'), "region", "region code"),
    "unknown top-level key": (MINIMAL.replace("[claims]", 'sheme = "yy"\n\n[claims]'),
                              "sheme", "did you mean 'scheme'"),
    "no issuers": (edit('["https://issuer.example"]', "[]"), "issuers", "non-empty"),
    "issuer twice": (edit('["https://issuer.example"]', '["https://a", "https://a"]'),
                     "issuers[1]", "twice"),
    "algorithm none": (edit('["ES256"]', '["none"]'), "algorithms[0]", "never accepted"),
    "algorithm HS256": (edit('["ES256"]', '["ES256", "HS256"]'), "algorithms[1]",
                        "never accepted"),
    "algorithm RS256": (edit('["ES256"]', '["RS256"]'), "algorithms[0]", "not one of"),
    "algorithms not a list": (edit('["ES256"]', '"ES256"'), "algorithms", "list"),
    "bad prefix": (MINIMAL.replace("[claims]", 'prefix = "HK HC"\n\n[claims]'), "prefix",
                   "1 to 16"),
    "no claims table": (edit('[claims]\nsubject = "sub"\nname = "nm"\nstatus = "st"\n', ""),
                        "claims", "required"),
    "claims not a table": (MINIMAL.replace('[claims]\nsubject = "sub"\nname = "nm"\n'
                                           'status = "st"\n', 'claims = "sub"\n'),
                           "claims", "table"),
    "unknown claims key": (edit('name = "nm"', 'name = "nm"\nnmae = "x"'), "claims.nmae",
                           "did you mean 'name'"),
    "missing claims.name": (edit('name = "nm"\n', ""), "claims.name", "required"),
    "claim path with a space": (edit('"nm"', '"full name"'), "claims.name", "claim name"),
    "empty path segment": (edit('"nm"', '"p..n"'), "claims.name", "claim name"),
    "claim path iss": (edit('subject = "sub"', 'subject = "iss"'), "claims.subject",
                       "issuer"),
    "two facts, one claim": (edit('name = "nm"', 'name = "sub"'), "claims.name",
                             "same claim as subject"),
    "nested overlap": (edit('name = "nm"', 'name = "p.n"\nname_latin = "p"'),
                       "claims.name_latin", "overlap"),
    "half a document": (edit('status = "st"', 'status = "st"\ndocument_type = "dt"\n'
                                              'document_number = "dn"'),
                        "claims.document_region", "required together"),
    "half a test": (edit('status = "st"', 'status = "st"\ntest_type = "tt"'),
                    "claims.test_result", "required together"),
    "complete without doses": (edit('status = "st"', 'status = "st"\n'
                                                     'vaccination_complete = "vc"'),
                               "claims.vaccination_doses", "required together"),
    "bad time format": (edit('status = "st"\n', 'status = "st"\n\n[claims.formats]\n'
                                               'issued_at = "rfc2822"\n'),
                        "claims.formats.issued_at", '"numeric" or "iso"'),
    "format for an unmapped claim": (edit('status = "st"\n', 'status = "st"\n\n'
                                                             '[claims.formats]\n'
                                                             'not_before = "iso"\n'),
                                     "claims.formats.not_before", "no not_before claim"),
    "unknown format key": (edit('status = "st"\n', 'status = "st"\n\n[claims.formats]\n'
                                                   'issued = "iso"\n'),
                           "claims.formats.issued", "did you mean 'issued_at'"),
    "no status table": (edit('[status.decode]\nok = "green"\n', ""), "status", "required"),
    "status.decode value not a colour": (edit('ok = "green"', 'Y = "amber"'),
                                         'status.decode."Y"',
                                         'must be green, yellow, red or "refuse"'),
    "status.decode value not text": (edit('ok = "green"', 'Y = 1'), 'status.decode."Y"',
                                     "must be green"),
    "empty status.decode": (edit('ok = "green"\n', ""), "status.decode", "at least one"),
    "unknown status key": (MINIMAL + '\n[status.decoder]\nok = "green"\n', "status.decoder",
                           "did you mean 'decode'"),
    "status.encode of no colour": (MINIMAL + '\n[status.encode]\namber = "ok"\n',
                                   'status.encode."amber"', "one of green, yellow, red"),
    "status.encode that reads back otherwise": (
        MINIMAL + '\n[status.encode]\ngreen = "bad"\n', 'status.encode."green"',
        "reads back as 'unknown'"),
    "status.encode to a refused value": (
        edit('ok = "green"', 'ok = "green"\nmeh = "refuse"') + '\n[status.encode]\n'
                                                                'yellow = "meh"\n',
        'status.encode."yellow"', "reads back as 'refuse'"),
    "status.encode value not a value": (MINIMAL + '\n[status.encode]\ngreen = true\n',
                                        'status.encode."green"', "string or a whole number"),
    "document claims without [documents]": (
        edit('status = "st"', 'status = "st"\ndocument_type = "dt"\ndocument_number = "dn"\n'
                              'document_region = "dr"'), "documents", "required"),
    "[documents] without document claims": (MINIMAL + '\n[documents.decode]\nID = "id_card"\n',
                                            "documents", "no document claims"),
    "document type not ours": (
        edit('status = "st"', 'status = "st"\ndocument_type = "dt"\ndocument_number = "dn"\n'
                              'document_region = "dr"') + '\n[documents.decode]\nID = "ID Card"\n',
        'documents.decode."ID"', "our document types"),
    "documents.encode that reads back otherwise": (
        edit('status = "st"', 'status = "st"\ndocument_type = "dt"\ndocument_number = "dn"\n'
                              'document_region = "dr"')
        + '\n[documents.decode]\nID = "id_card"\n[documents.encode]\npassport = "ID"\n',
        'documents.encode."passport"', "does not read back"),
    "ttl zero": (MINIMAL + "\n[encode]\nttl = 0\n", "encode.ttl", "whole number"),
    "ttl of a year": (MINIMAL + "\n[encode]\nttl = 31536000\n", "encode.ttl", "whole number"),
    "unknown encode key": (MINIMAL + "\n[encode]\nttI = 60\n", "encode.ttI",
                           "did you mean 'ttl'"),
    "encode.algorithm not allowed": (
        MINIMAL + '\n[status.encode]\ngreen = "ok"\n[encode]\nalgorithm = "ES384"\n',
        "encode.algorithm", "not in algorithms"),
    "issuing without ES256 allowed": (
        edit('["ES256"]', '["EdDSA"]') + '\n[status.encode]\ngreen = "ok"\n',
        "encode.algorithm", "not in algorithms"),
    "policy not a table": (MINIMAL.replace("[claims]", "policy = 3\n\n[claims]"), "policy",
                           "table"),
}


@pytest.mark.parametrize("case", sorted(FILE_ERRORS))
def test_mapping_file_errors(tmp_path, case):
    text, field, problem = FILE_ERRORS[case]
    file = write(tmp_path, "xx.toml", text)
    with pytest.raises(MappingFileError) as caught:
        load_mapping(file)
    error = caught.value
    assert isinstance(error, ConfigurationError)
    assert error.field == field
    assert str(error).startswith(f"{file}: {field}: ")
    assert problem in str(error)


def test_the_minimal_file_is_valid(tmp_path):
    mapping = load_mapping(write(tmp_path, "xx.toml", MINIMAL))
    assert (mapping.claims.issued_at, mapping.claims.valid_until) == ("iat", "exp")
    assert mapping.policy == {} and PartnerJWTAdapter(mapping).policy_table == {}


def test_policy_is_not_validated(tmp_path):
    text = MINIMAL + '\n[policy]\nwhatever = {nested = ["anything"]}\n[[policy.require]]\nx = 1\n'
    mapping = load_mapping(write(tmp_path, "xx.toml", text))
    assert mapping.policy == {"whatever": {"nested": ["anything"]}, "require": [{"x": 1}]}


def test_toml_syntax_error_names_the_file(tmp_path):
    file = write(tmp_path, "broken.toml", MINIMAL.replace('name = "Example"', 'name = "Example'))
    with pytest.raises(MappingFileError, match=r"broken\.toml: not valid TOML: .*line 2"):
        load_mapping(file)


def test_unreadable_files_name_the_file(tmp_path):
    file = tmp_path / "latin1.toml"
    file.write_bytes(MINIMAL.replace("Example", "Exemplo \xe9").encode("latin-1"))
    with pytest.raises(MappingFileError, match="latin1.toml: not UTF-8"):
        load_mapping(file)
    with pytest.raises(MappingFileError, match="absent.toml: cannot be read"):
        load_mapping(tmp_path / "absent.toml")


def test_duplicate_scheme_across_two_files_names_both(tmp_path):
    first = write(tmp_path, "a.toml", MINIMAL)
    second = write(tmp_path, "b.toml", MINIMAL.replace("https://issuer.example",
                                                       "https://other.example"))
    with pytest.raises(MappingFileError) as caught:
        load_partners(tmp_path)
    assert caught.value.field == "scheme"
    assert str(second) in str(caught.value) and str(first) in str(caught.value)


def test_duplicate_issuer_across_two_files(tmp_path):
    write(tmp_path, "a.toml", MINIMAL)
    write(tmp_path, "b.toml", MINIMAL.replace('"xx"', '"yy"'))
    with pytest.raises(MappingFileError, match=r"b\.toml: issuers\[0\]: .*/a\.toml"):
        load_partners(tmp_path)


def test_load_partners_reads_toml_files_in_name_order(tmp_path):
    write(tmp_path, "b.toml", MINIMAL)
    write(tmp_path, "a.toml", MINIMAL.replace('"xx"', '"zz"').replace("issuer.example",
                                                                        "a.example"))
    write(tmp_path, ".#b.toml", "not toml at all [")   # an editor's lock file
    write(tmp_path, "README.md", "# notes")
    assert [a.scheme for a in load_partners(tmp_path)] == ["zz", "xx"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_partners(empty) == []
    with pytest.raises(MappingFileError, match="not a folder"):
        load_partners(tmp_path / "missing")


# -- a fourth partner, by file only ------------------------------------------------------------

TW = """\
# Taiwan (example): a partner added by writing this file, with no code change.
scheme = "tw"
name = "Taiwan Health Declaration"
region = "TW"
issuers = ["https://hc.cdc.example.tw"]
algorithms = ["EdDSA", "ES256"]
prefix = "TW1:"

[claims]
subject = "hc.id"
code_id = "hc.cid"
name = "hc.holder.zh"
name_latin = "hc.holder.en"
birth_date = "hc.holder.born"
document_type = "hc.holder.idt"
document_number = "hc.holder.idn"
document_region = "hc.holder.idc"
status = "hc.state"
issued_at = "hc.t.issued"
not_before = "hc.t.from"
valid_until = "hc.t.until"

[claims.formats]
issued_at = "iso"
not_before = "iso"
valid_until = "iso"

[status.decode]
pass = "green"
watch = "refuse"
stop = "red"

[status.encode]
green = "pass"
red = "stop"

[documents.decode]
NIC = "id_card"
ARC = "residence_card"

[documents.encode]
id_card = "NIC"
residence_card = "ARC"

[encode]
ttl = 900

[policy]
accept = ["green"]
max_validity_hours = 6
"""


def test_a_fourth_partner_by_file_only(tmp_path):
    mappings, trust_dir = tmp_path / "mappings", tmp_path / "trust"
    mappings.mkdir()
    trust_dir.mkdir()
    write(mappings, "tw.toml", TW)
    for name in ("mo", "hk"):   # the examples, beside it, as an operator would deploy them
        write(mappings, f"{name}.toml", (EXAMPLES / f"{name}.toml").read_text(encoding="utf-8"))
    taiwan_key = ed25519.Ed25519PrivateKey.generate()
    (trust_dir / "tw.jwks.json").write_text(json.dumps({
        "issuer": "https://hc.cdc.example.tw", "scheme": "tw",
        "keys": [public_jwk(taiwan_key), public_jwk(KEY)]}))
    (trust_dir / "mo.jwks.json").write_text(json.dumps({
        "issuer": "https://app.ssm.gov.mo/healthcode", "scheme": "mo",
        "keys": [public_jwk(KEY)]}))
    trust = TrustStore()
    trust.load_path(trust_dir)
    registry = Registry(load_partners(mappings))
    assert registry.names() == ["hk", "mo", "tw"]
    tw, mo = registry.get("tw"), registry.get("mo")
    assert tw.policy_table == {"accept": ["green"], "max_validity_hours": 6}

    # Taiwan -> us: a code Taiwan signed with its Ed25519 key, in Taiwan's layout.
    taiwan_code = "TW1:" + make_jws({
        "iss": "https://hc.cdc.example.tw",
        "hc": {"id": "TW-778", "cid": "c-1", "state": "pass",
               "holder": {"zh": "林美玲", "en": "Lin Mei Ling", "born": "1991-07",
                          "idt": "ARC", "idn": "A800000014", "idc": "TW"},
               "t": {"issued": "2026-11-28T16:55:00+08:00", "from": "2026-11-28T16:55:00+08:00",
                     "until": "2026-11-28T17:25:00+08:00"}}},
        key=taiwan_key, header={"alg": "EdDSA", "kid": trusted(tw, taiwan_key)[1]})
    assert registry.detect(taiwan_code) is tw
    decoded = tw.decode(taiwan_code, trust=trust, at=AT)
    record = decoded.record
    assert record.status == "green" and decoded.details["region"] == "TW"
    assert record.subject.document == Document(type="residence_card", number="A800000014",
                                               region="TW")
    assert record.provenance.source_id == "c-1"
    assert record.provenance.valid_until == AT + timedelta(minutes=25)

    # ... and on to Macau: the same record issued in Macau's format and read back there. The
    # residence card has no Macau equivalent, so Macau's mapping refuses it until it is dropped.
    signer = Signer(private_key=KEY, kid=trusted(mo)[1], issuer="https://app.ssm.gov.mo/healthcode")
    assert reason_of(lambda: mo.encode(record, signer=signer, at=AT)) == "policy_refused"
    without_document = record.replace(subject=dataclasses.replace(record.subject, document=None))
    as_macau = mo.decode(mo.encode(without_document, signer=signer, at=AT), trust=trust, at=AT)
    assert as_macau.record.subject.name == "林美玲" and as_macau.record.status == "green"
    assert as_macau.record.provenance.valid_until == AT + timedelta(minutes=25)

    # Us -> Taiwan: a Macau code converted into Taiwan's format, read back by Taiwan's mapping.
    macau_code = bent(mo, {})
    from_macau = mo.decode(macau_code, trust=trust, at=AT).record
    tw_signer = Signer(private_key=KEY, kid=trusted(tw)[1], issuer="https://hc.cdc.example.tw")
    tw_code = tw.encode(from_macau, signer=tw_signer, at=AT)
    assert tw_code.startswith("TW1:") and registry.detect(tw_code) is tw
    claims = claims_of(tw_code, tw)
    assert claims["hc"]["state"] == "pass" and claims["hc"]["holder"]["idt"] == "NIC"
    assert claims["hc"]["t"] == {"issued": "2026-11-28T09:00:00Z",
                                 "from": "2026-11-28T09:00:00Z",
                                 "until": "2026-11-28T09:15:00Z"}
    back = tw.decode(tw_code, trust=trust, at=AT).record
    assert back.subject == from_macau.subject
    assert back.status == "green"

    # Taiwan's "watch" has no equivalent here: refused, never defaulted.
    watch = taiwan_code.replace("TW1:", "")
    claims = json.loads(jwt.utils.base64url_decode(watch.split(".")[1]))
    claims["hc"]["state"] = "watch"
    watched = "TW1:" + make_jws(claims, key=taiwan_key,
                                header={"alg": "EdDSA", "kid": trusted(tw, taiwan_key)[1]})
    with pytest.raises(CodeError, match="status watch is not recognised under this agreement"):
        tw.decode(watched, trust=trust, at=AT)


# -- hostile headers (issue 11) ----------------------------------------------------------------

@pytest.mark.parametrize("crit", ["abc", [], ["x"], [1], [{}], ["exp"], ["b64"], None, 1],
                         ids=repr)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "forged"])
def test_a_crit_header_we_do_not_understand_makes_a_partner_code_invalid(crit, signed):
    """RFC 7515 §4.1.11, whatever the signature: pyjwt's refusals of ``crit`` lie partly
    outside the exceptions it documents for decode, and none may escape the adapter."""
    adapter = PARTNERS["mo"]
    trust, kid = trusted(adapter)
    header = {"alg": "ES256", "kid": kid, "crit": crit}
    code = make_jws(good_claims(adapter), header=header)
    if not signed:
        head, body, _ = code.split(".")
        code = f"{head}.{body}.{b64url(bytes(64))}"
    reason = reason_of(lambda: adapter.decode(code, trust=trust, at=AT))
    assert reason in ("malformed", "bad_signature")
