"""EU DCC codes as real issuers signed them: each deviation from the letter of the scheme that
the hcert specification or its reference verifiers accept verifies, with the right warning; and
the same code with a broken signature, a signer we do not trust or an expired window is still
refused. Every code here is signed by this file's own test DSCs."""
from __future__ import annotations

import hashlib
import zlib
from datetime import datetime, timedelta, timezone

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from healthcode.trust import TrustStore
from mapping.eu_dcc import EUDCCAdapter
from tests.mapping.test_eu_dcc import (DSC_FROM, DSC_UNTIL, SERVER_AUTH, T0, dcc_payload,
                                       make_dsc, reason_of)

ADAPTER = EUDCCAdapter()
AT = T0 + timedelta(hours=1)
HASHES = {-7: hashes.SHA256(), -35: hashes.SHA384(), -36: hashes.SHA512()}


class Issuer:
    """A test DSC and its key; :meth:`code` seals a DCC with every envelope detail chosen."""

    def __init__(self, key, eku=None, der=None):
        self.key = key
        self.der = der or make_dsc(key, eku=eku)
        self.kid = hashlib.sha256(self.der).digest()[:8]

    def trust(self) -> TrustStore:
        store = TrustStore()
        store.add_x509(self.der)
        return store

    def signature(self, alg: int, signed: bytes, *, key=None) -> bytes:
        key = key or self.key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(signed, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                            hashes.SHA256())
        r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(HASHES[alg])))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def code(self, dcc=None, *, alg=-7, claims=None, iat=T0, exp=T0 + timedelta(days=1),
             protected="default", unprotected=None, tags=(18,), sign_key=None,
             protected_as_map=False) -> str:
        if claims is None:
            claims = {1: "AT", 6: int(iat.timestamp()), 4: int(exp.timestamp()),
                      -260: {1: dcc or dcc_payload()}}
        header = {1: alg, 4: self.kid} if protected == "default" else protected
        protected_bstr = cbor2.dumps(header) if header else b""
        payload = cbor2.dumps(claims)
        signed = cbor2.dumps(["Signature1", protected_bstr, b"", payload])
        message = [{} if protected_as_map else protected_bstr, unprotected or {}, payload,
                   self.signature(alg, signed, key=sign_key)]
        for tag in reversed(tags):
            message = cbor2.CBORTag(tag, message)
        return "HC1:" + base45.b45encode(zlib.compress(cbor2.dumps(message), 9)).decode()


@pytest.fixture(scope="module")
def p256():
    return Issuer(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def stranger():
    """A DSC nobody trusts."""
    return Issuer(ec.generate_private_key(ec.SECP256R1()))


def warning_codes(decoded) -> list[str]:
    return [w["code"] for w in decoded.warnings]


def tamper(text: str) -> str:
    """The same code with one bit of its signature flipped, whatever envelope it has."""
    message = cbor2.loads(zlib.decompress(base45.b45decode(text[4:])))
    tags = []
    while isinstance(message, cbor2.CBORTag):
        tags.append(message.tag)
        message = message.value
    message = list(message)
    message[3] = bytes([message[3][0] ^ 1]) + message[3][1:]
    for tag in reversed(tags):
        message = cbor2.CBORTag(tag, message)
    return "HC1:" + base45.b45encode(zlib.compress(cbor2.dumps(message), 9)).decode()


def accepted_and_guarded(issuer: Issuer, make, warning: str | None, *, at=AT,
                         expires_at=T0 + timedelta(days=1)):
    """The genuine code verifies (with ``warning`` when given); a broken signature, a code our
    DSC did not sign and a check after its window are refused. Returns the decoded code."""
    trust = issuer.trust()
    decoded = ADAPTER.decode(make(), trust=trust, at=at)
    if warning is None:
        assert decoded.warnings == (), decoded.warnings
    else:
        assert warning in warning_codes(decoded), decoded.warnings
        assert all(set(w) == {"code", "message"} for w in decoded.warnings)
    assert reason_of(tamper(make()), trust, at) == "bad_signature"
    assert reason_of(make(), TrustStore(), at) == "unknown_key"
    forged = make(sign_key=ec.generate_private_key(issuer.key.curve)
                  if isinstance(issuer.key, ec.EllipticCurvePrivateKey)
                  else rsa.generate_private_key(65537, 2048))
    assert reason_of(forged, trust, at) == "bad_signature"  # our kid, someone else's key
    assert reason_of(make(), trust, expires_at + timedelta(seconds=1)) == "expired"
    return decoded


# -- payloads of every schema version ----------------------------------------------------------

SCHEMA_PAYLOADS = {
    # 1.0.0: dob a full date, tests with the result date dr, fnt required
    "1.0.0": {"ver": "1.0.0", "nam": {"fn": "Musterfrau", "fnt": "MUSTERFRAU"},
              "dob": "1998-02-26",
              "t": [{"tg": "840539006", "tt": "LP6464-4", "nm": "Roche LightCycler qPCR",
                     "sc": "2024-02-29T08:00:00Z", "dr": "2024-02-29T10:00:00Z",
                     "tr": "260415000", "tc": "Testzentrum", "co": "AT", "is": "BMSGPK",
                     "ci": "URN:UVCI:01:AT:71EE2559DE38C6BF7304FB65A1A451EC#3"}]},
    "1.0.1": dict(dcc_payload("v"), ver="1.0.1"),
    "1.1.0": dict(dcc_payload("r"), ver="1.1.0"),
    "1.2.1": dict(dcc_payload("v"), ver="1.2.1", dob="1998-02"),
    "1.3.0": dcc_payload("t"),
    "1.3.2": dict(dcc_payload("v"), ver="1.3.2", dob=""),
}


@pytest.mark.parametrize("version", sorted(SCHEMA_PAYLOADS))
def test_every_schema_version_verifies_without_warning(p256, version):
    payload = SCHEMA_PAYLOADS[version]
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw), None)
    assert decoded.details["schema_version"] == version
    assert decoded.record.subject.family_name == "Musterfrau"


def test_an_unknown_schema_version_is_read_and_reported(p256):
    payload = dict(dcc_payload("v"), ver="2.0.0")
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw),
                                   "dcc_schema_version")
    assert decoded.record.evidence.vaccinations[0].product == "EU/1/20/1528"


# -- date forms real issuers used -------------------------------------------------------------

@pytest.mark.parametrize("dob, kept, warning", [
    ("1979", "1979", None),
    ("1979-04", "1979-04", None),
    ("", None, None),
    ("1979-00-00", "1979", "date_placeholder"),
    ("1979-04-00", "1979-04", "date_placeholder"),
    ("1964-XX-XX", "1964", "date_placeholder"),
    ("1978-01-26T00:00:00", "1978-01-26", "date_time_for_date"),
    ("1978-02-30", "1978-02", "date_invalid"),
])
def test_birth_dates_in_the_forms_issuers_wrote(p256, dob, kept, warning):
    payload = dict(dcc_payload("v"), dob=dob)
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw), warning)
    assert decoded.record.subject.birth_date == kept


@pytest.mark.parametrize("sc, instant, warning", [
    ("2024-02-29T08:00:00Z", "2024-02-29T08:00:00Z", None),
    ("2024-02-29T09:00:00+01:00", "2024-02-29T08:00:00Z", None),
    ("2024-02-29T09:00:00+0100", "2024-02-29T08:00:00Z", None),
    ("2024-02-29T08:00:00.123456789Z", "2024-02-29T08:00:00.123456Z", None),
    ("2024-02-29 08:00:00+00:00", "2024-02-29T08:00:00Z", None),
    ("2024-02-29T08:00:00", "2024-02-29T08:00:00Z", "time_without_offset"),
    ("2024-02-29T08:00:00.5", "2024-02-29T08:00:00.500000Z", "time_without_offset"),
    ("2024-02-29", "2024-02-29T00:00:00Z", "date_for_date_time"),
])
def test_sample_times_with_and_without_offsets_and_fractions(p256, sc, instant, warning):
    payload = dcc_payload("t")
    payload["t"][0]["sc"] = sc
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw), warning)
    assert decoded.record.to_dict()["evidence"]["tests"][0]["sampled_at"] == instant


def test_a_sample_time_as_a_cbor_date_tag(p256):
    payload = dcc_payload("t")
    payload["t"][0]["sc"] = datetime(2024, 2, 29, 8, tzinfo=timezone.utc)
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw), None)
    assert decoded.record.evidence.tests[0].sampled_at == datetime(2024, 2, 29, 8,
                                                                   tzinfo=timezone.utc)


def test_recovery_dates_written_as_date_times(p256):
    payload = dcc_payload("r")
    payload["r"][0].update(fr="2024-01-10T00:00:00Z", df="2024-01-21T00:00:00",
                           du="2024-07-10T23:59:59+02:00")
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw),
                                   "date_time_for_date")
    recovery = decoded.record.evidence.recoveries[0]
    assert (recovery.first_positive_on, recovery.valid_from, recovery.valid_until) == \
        ("2024-01-10", "2024-01-21", "2024-07-10")


def test_a_vaccination_date_time_and_numbers_as_floats_or_text(p256):
    payload = dcc_payload("v")
    payload["v"][0].update(dt="2024-02-01T10:00:00Z", dn=2.0, sd="2")
    decoded = ADAPTER.decode(p256.code(payload), trust=p256.trust(), at=AT)
    assert {"date_time_for_date", "dcc_number_type"} <= set(warning_codes(decoded))
    dose = decoded.record.evidence.vaccinations[0]
    assert (dose.administered_on, dose.dose_number, dose.series_doses) == ("2024-02-01", 2, 2)


def test_empty_optional_strings_are_absent_not_malformed(p256):
    payload = dcc_payload("t")
    payload["t"][0].update(ma="", nm="", tc="")
    payload["nam"].update(gn="", fn="")
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw), None)
    test = decoded.record.evidence.tests[0]
    assert (test.manufacturer, test.name, test.centre) == (None, None, None)
    assert decoded.record.subject.family_name is None
    assert decoded.record.subject.masked_name == "G******E M********U"


def test_empty_groups_beside_the_real_one(p256):
    payload = dict(dcc_payload("v"), t=[], r=None)
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw),
                                   "dcc_empty_group")
    assert decoded.details["certificate_type"] == "vaccination"


# -- codes outside today's value sets ---------------------------------------------------------

def test_a_test_result_outside_the_value_set_is_kept_as_issued(p256):
    payload = dcc_payload("t")
    payload["t"][0].update(tr="1234567", tt="LP-NEW-1")
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw),
                                   "value_outside_value_set")
    test = decoded.record.evidence.tests[0]
    assert (test.result, test.result_code) == ("unknown", "1234567")
    assert (test.type, test.type_code) == ("other", "LP-NEW-1")


def test_vaccine_codes_outside_the_value_sets_are_codes_not_errors(p256):
    payload = dcc_payload("v")
    payload["v"][0].update(mp="EU/9/99/9999", ma="ORG-999", vp="J07BX99", tg="123456789")
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw),
                                   "value_outside_value_set")
    dose = decoded.record.evidence.vaccinations[0]
    assert (dose.product, dose.manufacturer, dose.vaccine_type, dose.disease) == \
        ("EU/9/99/9999", "ORG-999", "J07BX99", "123456789")


# -- signatures with the curve of the DSC's own key --------------------------------------------

@pytest.mark.parametrize("curve, alg, warning", [
    (ec.SECP256R1, -7, None),
    (ec.SECP384R1, -35, "cose_alg_not_hcert"),
    (ec.SECP521R1, -36, "cose_alg_not_hcert"),
    (ec.SECP384R1, -7, "cose_alg_curve_mismatch"),   # SHA-256 on the DSC's P-384 key (CWA)
    (ec.SECP256R1, -35, "cose_alg_curve_mismatch"),
])
def test_ecdsa_with_the_curve_of_the_dscs_key(curve, alg, warning):
    issuer = Issuer(ec.generate_private_key(curve()))
    accepted_and_guarded(issuer, lambda **kw: issuer.code(alg=alg, **kw), warning)


def test_rsa_pss_dsc():
    issuer = Issuer(rsa.generate_private_key(65537, 2048))
    accepted_and_guarded(issuer, lambda **kw: issuer.code(alg=-37, **kw), None)


def test_a_signature_not_of_the_curves_size_is_refused():
    issuer = Issuer(ec.generate_private_key(ec.SECP384R1()))
    code = issuer.code(alg=-35)
    message = cbor2.loads(zlib.decompress(base45.b45decode(code[4:])))
    protected, unprotected, payload, signature = message.value
    for wrong in (signature[:64], signature + b"\0", b"\x30" + signature[1:]):
        text = "HC1:" + base45.b45encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(
            18, [protected, unprotected, payload, wrong])))).decode()
        assert reason_of(text, issuer.trust(), AT) == "bad_signature"


# -- key usage (hcert "Key Usage Policy Identifiers", Corona-Warn-App) -------------------------

@pytest.mark.parametrize("group", ["v", "t", "r"])
def test_an_eku_without_dcc_oids_restricts_nothing(group):
    issuer = Issuer(ec.generate_private_key(ec.SECP256R1()), eku=[SERVER_AUTH])
    accepted_and_guarded(issuer, lambda **kw: issuer.code(dcc_payload(group), **kw), None)


def test_a_dcc_oid_still_restricts_the_types():
    issuer = Issuer(ec.generate_private_key(ec.SECP256R1()),
                    eku=[SERVER_AUTH, "1.3.6.1.4.1.0.1847.2021.1.1"])
    assert reason_of(issuer.code(dcc_payload("v")), issuer.trust(), AT) == "wrong_key_usage"
    assert ADAPTER.decode(issuer.code(dcc_payload("t")), trust=issuer.trust(), at=AT)


# -- CWT claims with unusual number types -----------------------------------------------------

def _claims(changes=None):
    claims = {1: "AT", 6: int(T0.timestamp()), 4: int((T0 + timedelta(days=1)).timestamp()),
              -260: {1: dcc_payload()}}
    claims.update(changes or {})
    return {k: v for k, v in claims.items() if v is not None}


def test_float_numeric_dates(p256):
    claims = _claims({6: T0.timestamp() + 0.25, 4: (T0 + timedelta(days=1)).timestamp() - 0.5})
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(claims=claims, **kw), None,
                                   expires_at=T0 + timedelta(days=1))
    assert decoded.record.provenance.issued_at == T0 + timedelta(seconds=0.25)


def test_claim_keys_written_as_text(p256):
    claims = {"1": "AT", "6": int(T0.timestamp()),
              "4": int((T0 + timedelta(days=1)).timestamp()), "-260": {"1": dcc_payload()}}
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(claims=claims, **kw),
                                   "cwt_claim_key_text")
    assert decoded.issuer == "AT"


def test_exp_as_a_cbor_date_tag(p256):
    claims = _claims({4: cbor2.CBORTag(1, int((T0 + timedelta(days=1)).timestamp()))})
    accepted_and_guarded(p256, lambda **kw: p256.code(claims=claims, **kw), "cwt_time_tagged")


def test_a_cwt_without_iat_is_checked_against_exp_and_the_dsc(p256):
    claims = _claims({6: None})
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(claims=claims, **kw),
                                   "cwt_no_iat")
    assert decoded.record.provenance.issued_at is None
    assert reason_of(p256.code(claims=claims), p256.trust(), DSC_FROM - timedelta(hours=1)) \
        == "not_yet_valid"


def test_an_iat_before_1970_is_read_and_reported(p256):
    claims = _claims({6: -86400})
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(claims=claims, **kw),
                                   "cwt_time_out_of_range")
    assert "dcc_iat_before_dsc" in warning_codes(decoded)


def test_a_huge_exp_is_bounded_by_the_dsc(p256):
    claims = _claims({4: 2 ** 40})
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(claims=claims, **kw),
                                   "dcc_exp_beyond_dsc", at=AT, expires_at=DSC_UNTIL)
    assert "cwt_time_out_of_range" in warning_codes(decoded)
    assert decoded.record.provenance.valid_until == DSC_UNTIL


def test_a_code_issued_before_its_dsc_is_valid_only_inside_the_dscs_window(p256):
    claims = _claims({6: int((DSC_FROM - timedelta(days=3)).timestamp())})
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(claims=claims, **kw),
                                   "dcc_iat_before_dsc")
    assert decoded.record.provenance.issued_at == DSC_FROM - timedelta(days=3)
    assert reason_of(p256.code(claims=claims), p256.trust(), DSC_FROM - timedelta(days=1)) \
        == "not_yet_valid"


# -- COSE envelopes --------------------------------------------------------------------------

@pytest.mark.parametrize("tags, warning", [
    ((18,), None), ((), None), ((61, 18), None), ((61,), "cose_untagged_in_cwt")])
def test_cose_sign1_tagged_untagged_and_in_a_cwt_tag(p256, tags, warning):
    accepted_and_guarded(p256, lambda **kw: p256.code(tags=tags, **kw), warning)


def test_a_kid_in_the_unprotected_header_only(p256):
    accepted_and_guarded(p256, lambda **kw: p256.code(protected={1: -7},
                                                      unprotected={4: p256.kid}, **kw), None)


def test_alg_and_kid_both_unprotected_with_an_empty_protected_bstr(p256):
    accepted_and_guarded(p256, lambda **kw: p256.code(protected={},
                                                      unprotected={1: -7, 4: p256.kid}, **kw),
                         "cose_alg_unprotected")


def test_an_empty_protected_map_where_the_bstr_belongs(p256):
    accepted_and_guarded(p256, lambda **kw: p256.code(protected={}, protected_as_map=True,
                                                      unprotected={1: -7, 4: p256.kid}, **kw),
                         "cose_protected_not_bstr")


def test_the_protected_kid_wins_over_the_unprotected_one(p256, stranger):
    accepted_and_guarded(p256, lambda **kw: p256.code(unprotected={4: stranger.kid}, **kw),
                         "cose_kid_conflict")
    # the other way round: a protected kid nobody trusts is not rescued by the unprotected one
    text = stranger.code(unprotected={4: p256.kid}, sign_key=p256.key)
    assert reason_of(text, p256.trust(), AT) == "unknown_key"


def test_an_encoded_empty_map_as_the_protected_header(p256):
    header = cbor2.dumps({})
    payload = cbor2.dumps(_claims())
    signed = cbor2.dumps(["Signature1", header, b"", payload])
    message = cbor2.CBORTag(18, [header, {1: -7, 4: p256.kid}, payload,
                                 p256.signature(-7, signed)])
    text = "HC1:" + base45.b45encode(zlib.compress(cbor2.dumps(message))).decode()
    decoded = ADAPTER.decode(text, trust=p256.trust(), at=AT)
    assert warning_codes(decoded) == ["cose_alg_unprotected"]
    assert reason_of(tamper(text), p256.trust(), AT) == "bad_signature"


# -- names as issued ---------------------------------------------------------------------------

@pytest.mark.parametrize("nam, name, latin, masked", [
    ({"fn": "陳", "gn": "大文", "fnt": "CHAN", "gnt": "TAI<MAN"}, "陳大文", "TAI MAN CHAN", "陳*文"),
    ({"fn": "Παπαδόπουλος", "fnt": "PAPADOPOULOS"}, "Παπαδόπουλος", "PAPADOPOULOS",
     "Π**********ς"),
    ({"fnt": "MUSTERFRAU<GOESSINGER", "gnt": "GABRIELE"}, None,
     "GABRIELE MUSTERFRAU GOESSINGER", "G******E M********U G********R"),
])
def test_names_are_kept_as_issued_and_masked_from_what_the_code_carries(p256, nam, name, latin,
                                                                       masked):
    payload = dict(dcc_payload("v"), nam=nam)
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw), None)
    subject = decoded.record.subject
    assert (subject.name, subject.name_latin, subject.masked_name) == (name, latin, masked)
    assert (subject.family_name_latin, subject.given_name_latin) == (nam.get("fnt"),
                                                                     nam.get("gnt"))
    assert decoded.record.masked()["subject"] == {"masked_name": masked}


def test_a_dcc_with_no_name_at_all_is_reported_and_shows_no_name(p256):
    payload = dict(dcc_payload("v"), nam={"fn": "", "fnt": ""})
    decoded = accepted_and_guarded(p256, lambda **kw: p256.code(payload, **kw), "dcc_no_name")
    assert decoded.record.subject.masked_name is None
