"""ICAO VDS-NC adapter: verification, trust paths, failure reasons and mapping, against a test
PKI made here (a CSCA and DSCs built with cryptography) so every failure case can be produced
on purpose. The public sample seals are exercised in tests/conformance/test_icao.py."""
from __future__ import annotations

import base64
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
import qrcode
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthcode.errors import CODE_REASONS, CodeError
from healthcode.record import Record
from healthcode.trust import TrustStore
from mapping.base import MAX_CODE_LENGTH, Signer
from mapping.icao_vds import ICAOVDSAdapter, VDS_NC_SIGNER_EKU, canonical_json, \
    verify_issued_by_raw
from tests.support import decode_qr

#: The validation clock for the test PKI: its certificates are built around this instant.
NOW = datetime(2030, 6, 1, tzinfo=timezone.utc)

DOCUMENT_TYPE_OID = x509.ObjectIdentifier("2.23.136.1.1.6.2")


# -- a test PKI -------------------------------------------------------------------------------


def _name(country: str, cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _document_types(*types: str) -> bytes:
    """DER of the ICAO DocumentTypeList: SEQUENCE { INTEGER 0, SET OF PrintableString }."""
    items = b"".join(b"\x13" + bytes([len(t)]) + t.encode() for t in sorted(types))
    body = b"\x02\x01\x00" + b"\x31" + bytes([len(items)]) + items
    return b"\x30" + bytes([len(body)]) + body


def make_csca(cn: str = "Test CSCA", key=None, *, ca: bool = True, pss: bool = False):
    """A self-signed country signing CA (P-384 like JPN's, or RSA with PSS)."""
    key = key or ec.generate_private_key(ec.SECP384R1())
    name = _name("UT", cn)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - timedelta(days=3650))
               .not_valid_after(NOW + timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True))
    kwargs = {"rsa_padding": padding.PSS(padding.MGF1(hashes.SHA256()), 32)} if pss else {}
    cert = builder.sign(key, hashes.SHA256() if pss else hashes.SHA384(), **kwargs)
    return key, cert


def make_dsc(csca_key, csca_cert, *, cn: str = "DSC 1", curve=ec.SECP256R1,
             not_before: datetime | None = None, not_after: datetime | None = None,
             eku: tuple[str, ...] | None = (VDS_NC_SIGNER_EKU,),
             document_types: tuple[str, ...] | None = ("NV", "NT"),
             digital_signature: bool = True):
    """A document signer certificate with the ICAO extensions a real one carries."""
    key = ec.generate_private_key(curve())
    builder = (x509.CertificateBuilder().subject_name(_name("UT", cn))
               .issuer_name(csca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - timedelta(days=365))
               .not_valid_after(not_after or NOW + timedelta(days=365)))
    if eku is not None:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in eku]), critical=True)
    if document_types is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(DOCUMENT_TYPE_OID, _document_types(*document_types)),
            critical=False)
    builder = builder.add_extension(x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=not digital_signature, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
    algorithm = None if isinstance(csca_key, rsa.RSAPrivateKey) else hashes.SHA384()
    cert = builder.sign(csca_key, algorithm or hashes.SHA256())
    return key, cert


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def pki():
    """One CSCA, one good DSC, and the adapter under test."""
    csca_key, csca = make_csca()
    dsc_key, dsc = make_dsc(csca_key, csca)
    return {"csca_key": csca_key, "csca": csca, "dsc_key": dsc_key, "dsc": dsc}


@pytest.fixture
def adapter():
    return ICAOVDSAdapter()


def direct_trust(*certs) -> TrustStore:
    trust = TrustStore()
    for cert in certs:
        trust.add_x509(der(cert))
    return trust


# -- seals ------------------------------------------------------------------------------------


def pov_data(**pid) -> dict:
    """A proof of vaccination in the key order issuers print (not sorted)."""
    return {"hdr": {"t": "icao.vacc", "v": 1, "is": "UTO"},
            "msg": {"uvci": "U32870",
                    "pid": {"n": "CITIZEN  JANE SUE", "dob": "1961-05-15", "sex": "F",
                            "i": "PA0941262", **pid},
                    "ve": [{"des": "XM68M6", "nam": "Comirnaty", "dis": "RA01.0",
                            "vd": [{"dvc": "2021-03-03", "seq": 1, "ctr": "UTO", "adm": "RIVM",
                                    "lot": "VC35679"},
                                   {"dvc": "2021-03-24", "seq": "2", "ctr": "UTO",
                                    "adm": "RIVM", "lot": "VC87540", "dvn": "2021-06-01"}]}]}}


def pot_data(tc: str = "molecular(PCR)", r: str = "negative") -> dict:
    return {"hdr": {"t": "icao.test", "v": 1, "is": "UTO"},
            "msg": {"utci": "U01932",
                    "pid": {"n": "Cook Gerald", "dob": "1990-01-29", "dt": "P",
                            "dn": "E1234567P"},
                    "sp": {"spn": "General Hospital", "ctr": "UTO",
                           "cd": {"p": "+00068765432", "e": "genhosp@mail.com"}},
                    "dat": {"sc": "2020-12-12T12:00:00+08:00", "ri": "2021-02-11T14:00:00+08:00"},
                    "tr": {"tc": tc, "r": r, "m": "nasopharyngeal"}}}


def sign(data: dict, key, cert, *, alg: str = "ES256", canonical: bool = True,
         wrap: bool = False) -> str:
    """A seal as an issuer would ship it: compact JSON in the issuer's own key order.

    ``canonical=False`` signs the as-transmitted bytes instead of JCS(data), which is the
    mistake a verifier must not accept.
    """
    transmitted = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    message = rfc8785.dumps(data) if canonical else transmitted
    hash_cls = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}[key.curve.key_size]
    size = (key.curve.key_size + 7) // 8
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hash_cls())))
    seal = {"data": data, "sig": {"alg": alg, "cer": b64url(der(cert)),
                                  "sigvl": b64url(r.to_bytes(size, "big") +
                                                  s.to_bytes(size, "big"))}}
    if wrap:
        seal = [seal]
    return json.dumps(seal, separators=(",", ":"), ensure_ascii=False)


def reason_of(adapter, text, trust, at=NOW) -> str:
    with pytest.raises(CodeError) as info:
        adapter.decode(text, trust=trust, at=at)
    assert info.value.reason in CODE_REASONS
    return info.value.reason


# -- verification and trust paths ---------------------------------------------------------------


def test_verifies_with_the_dsc_trusted_directly(adapter, pki):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"])
    decoded = adapter.decode(text, trust=direct_trust(pki["dsc"]), at=NOW)
    assert decoded.scheme == "icao-vds"
    assert decoded.issuer == "UTO"
    assert decoded.details["chain"] == "direct"
    assert decoded.details["type"] == "icao.vacc" and decoded.details["version"] == 1
    assert decoded.details["signer"] == "CN=DSC 1,C=UT"
    assert decoded.kid == decoded.record.provenance.key_id
    assert len(decoded.kid) == 64  # SHA-256 fingerprint of the DSC, hex


def test_verifies_through_a_trusted_csca(adapter, pki):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"])
    decoded = adapter.decode(text, trust=direct_trust(pki["csca"]), at=NOW)
    assert decoded.details["chain"] == "csca"
    assert decoded.details["csca"] == "CN=Test CSCA,C=UT"


def test_one_element_array_is_accepted(adapter, pki):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"], wrap=True)
    assert text.startswith("[")
    assert adapter.decode(text, trust=direct_trust(pki["dsc"]), at=NOW).record


def test_pretty_printed_unsorted_seal_verifies_because_of_jcs(adapter, pki):
    data = pov_data()
    assert json.dumps(data, separators=(",", ":")).encode() != rfc8785.dumps(data)
    seal = json.loads(sign(data, pki["dsc_key"], pki["dsc"]))
    text = json.dumps(seal, indent=3)  # whitespace and issuer key order, as transmitted
    assert adapter.decode(text, trust=direct_trust(pki["dsc"]), at=NOW).record


def test_signature_over_as_transmitted_bytes_fails(adapter, pki):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"], canonical=False)
    assert reason_of(adapter, text, direct_trust(pki["dsc"])) == "bad_signature"


@pytest.mark.parametrize("path, value", [
    (("msg", "pid", "n"), "CITIZEN  JOHN"),
    (("msg", "pid", "dob"), "1961-05-16"),
    (("hdr", "is"), "AUS"),
    (("msg", "uvci"), "U32871"),
])
def test_tampered_field_fails(adapter, pki, path, value):
    seal = json.loads(sign(pov_data(), pki["dsc_key"], pki["dsc"]))
    target = seal["data"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert reason_of(adapter, json.dumps(seal), direct_trust(pki["dsc"])) == "bad_signature"


def test_tampered_dose_fails(adapter, pki):
    seal = json.loads(sign(pov_data(), pki["dsc_key"], pki["dsc"]))
    seal["data"]["msg"]["ve"][0]["vd"].pop()
    assert reason_of(adapter, json.dumps(seal), direct_trust(pki["dsc"])) == "bad_signature"


def test_untrusted_dsc_is_unknown_key(adapter, pki):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"])
    assert reason_of(adapter, text, TrustStore()) == "unknown_key"


def test_csca_with_the_right_name_but_another_key_is_unknown_key(adapter, pki):
    _, impostor = make_csca()  # same subject "Test CSCA", different key
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"])
    assert reason_of(adapter, text, direct_trust(impostor)) == "unknown_key"


def test_trusted_end_entity_with_issuer_name_cannot_issue(adapter):
    leaf_key, leaf = make_csca(ca=False)
    dsc_key, dsc = make_dsc(leaf_key, leaf)
    text = sign(pov_data(), dsc_key, dsc)
    assert reason_of(adapter, text, direct_trust(leaf)) == "unknown_key"


def test_trust_added_later_counts_at_once(adapter, pki):
    """Chain results are not cached per trust store, so newly added trust is seen."""
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"])
    trust = TrustStore()
    assert reason_of(adapter, text, trust) == "unknown_key"
    trust.add_x509(der(pki["csca"]))
    assert adapter.decode(text, trust=trust, at=NOW).details["chain"] == "csca"


class _SpelledDifferently(TrustStore):
    """A trust store where the subject text lookup misses, as it does when the CSCA and DSC
    names were rendered by different parsers (cryptography vs the tolerant pyasn1 reader)."""

    def certificates_by_subject(self, subject, scheme=None):
        return []


def test_csca_is_found_by_encoded_name_when_the_text_differs(adapter, pki):
    trust = _SpelledDifferently()
    trust.add_x509(der(pki["csca"]))
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"])
    assert adapter.decode(text, trust=trust, at=NOW).details["chain"] == "csca"


def test_rsa_pss_csca_verifies_through_the_raw_tbs_check():
    csca_key, csca = make_csca(key=rsa.generate_private_key(65537, 2048), pss=True)
    _, dsc = make_dsc(csca_key, csca)
    assert verify_issued_by_raw(der(dsc), csca.public_key())
    assert not verify_issued_by_raw(der(dsc), make_csca(
        key=rsa.generate_private_key(65537, 2048), pss=True)[1].public_key())


def test_raw_tbs_check_agrees_with_cryptography(pki):
    assert verify_issued_by_raw(der(pki["dsc"]), pki["csca"].public_key())
    assert not verify_issued_by_raw(der(pki["dsc"]), make_csca()[1].public_key())


# -- validity and key usage -----------------------------------------------------------------------


def test_expired_dsc(adapter, pki):
    key, dsc = make_dsc(pki["csca_key"], pki["csca"], not_before=NOW - timedelta(days=400),
                        not_after=NOW - timedelta(days=1))
    text = sign(pov_data(), key, dsc)
    assert reason_of(adapter, text, direct_trust(dsc)) == "expired"
    assert reason_of(adapter, text, direct_trust(pki["csca"])) == "expired"


def test_not_yet_valid_dsc(adapter, pki):
    key, dsc = make_dsc(pki["csca_key"], pki["csca"], not_before=NOW + timedelta(days=1))
    assert reason_of(adapter, sign(pov_data(), key, dsc), direct_trust(dsc)) == "not_yet_valid"


def test_validity_defaults_to_now(adapter, pki):
    key, dsc = make_dsc(pki["csca_key"], pki["csca"],
                        not_before=datetime(2000, 1, 1, tzinfo=timezone.utc),
                        not_after=datetime(2001, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(CodeError) as info:
        adapter.decode(sign(pov_data(), key, dsc), trust=direct_trust(dsc))
    assert info.value.reason == "expired"


def test_dsc_for_another_purpose_is_wrong_key_usage(adapter, pki):
    key, dsc = make_dsc(pki["csca_key"], pki["csca"], eku=("1.3.6.1.5.5.7.3.4",))
    assert reason_of(adapter, sign(pov_data(), key, dsc),
                     direct_trust(dsc)) == "wrong_key_usage"


def test_dsc_without_eku_or_document_types_is_accepted(adapter, pki):
    key, dsc = make_dsc(pki["csca_key"], pki["csca"], eku=None, document_types=None)
    assert adapter.decode(sign(pov_data(), key, dsc), trust=direct_trust(dsc), at=NOW).record


def test_test_only_dsc_may_not_sign_a_vaccination(adapter, pki):
    key, dsc = make_dsc(pki["csca_key"], pki["csca"], document_types=("NT",))
    trust = direct_trust(dsc)
    assert reason_of(adapter, sign(pov_data(), key, dsc), trust) == "wrong_key_usage"
    assert adapter.decode(sign(pot_data(), key, dsc), trust=trust, at=NOW).record


def test_key_usage_without_digital_signature_is_wrong_key_usage(adapter, pki):
    key, dsc = make_dsc(pki["csca_key"], pki["csca"], digital_signature=False)
    assert reason_of(adapter, sign(pov_data(), key, dsc),
                     direct_trust(dsc)) == "wrong_key_usage"


# -- algorithms ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES384", "ES512", "RS256", "none", "es256", "HS256"])
def test_wrong_or_unknown_alg_is_bad_signature(adapter, pki, alg):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"], alg=alg)
    assert reason_of(adapter, text, direct_trust(pki["dsc"])) == "bad_signature"


@pytest.mark.parametrize("curve, alg", [(ec.SECP384R1, "ES384"), (ec.SECP521R1, "ES512")])
def test_larger_curves_verify(adapter, pki, curve, alg):
    key, dsc = make_dsc(pki["csca_key"], pki["csca"], curve=curve)
    decoded = adapter.decode(sign(pov_data(), key, dsc, alg=alg), trust=direct_trust(dsc),
                             at=NOW)
    assert decoded.record


def test_signature_of_the_wrong_length_is_bad_signature(adapter, pki):
    seal = json.loads(sign(pov_data(), pki["dsc_key"], pki["dsc"]))
    seal["sig"]["sigvl"] = b64url(b"\x01" * 63)
    assert reason_of(adapter, json.dumps(seal), direct_trust(pki["dsc"])) == "bad_signature"


def test_padded_base64url_is_accepted(adapter, pki):
    seal = json.loads(sign(pov_data(), pki["dsc_key"], pki["dsc"]))
    for name in ("cer", "sigvl"):
        seal["sig"][name] += "=" * (-len(seal["sig"][name]) % 4)
    assert adapter.decode(json.dumps(seal), trust=direct_trust(pki["dsc"]), at=NOW).record


# -- canonical form -----------------------------------------------------------------------------


def test_seal_with_a_float_verifies_through_the_general_jcs_path(adapter, pki):
    data = pov_data()
    data["msg"]["temperature"] = 36.60  # JCS writes 36.6: ECMAScript number formatting
    assert adapter.decode(sign(data, pki["dsc_key"], pki["dsc"]), trust=direct_trust(pki["dsc"]),
                          at=NOW).record


def test_non_ascii_seal_verifies(adapter, pki):
    data = pov_data(n="MÜLLER  JÖRG 😀",
                    **{"\ue000": "private use", "\U0001f600": "sorts before it in UTF-16"})
    record = adapter.decode(sign(data, pki["dsc_key"], pki["dsc"]),
                            trust=direct_trust(pki["dsc"]), at=NOW).record
    assert record.subject.family_name == "MÜLLER"


def test_integer_beyond_double_precision_is_malformed(adapter, pki):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"]).replace('"v":1', '"v":1,"x":%d' % 2**60)
    assert reason_of(adapter, text, direct_trust(pki["dsc"])) == "malformed"


_EXACT_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53 + 1, 2**53 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.text(max_size=4), inner, max_size=4), max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(_EXACT_JSON)
def test_fast_canonical_form_equals_rfc8785(value):
    """The C-encoder shortcut must produce exactly the bytes the reference JCS does."""
    assert canonical_json(value, exact_numbers=True) == rfc8785.dumps(value)


def test_canonical_form_orders_keys_by_utf16_code_units():
    value = {"\ue000": 1, "\U0001f600": 2, "a": 3}
    assert canonical_json(value, exact_numbers=True) == rfc8785.dumps(value)
    assert canonical_json(value, exact_numbers=True).index("😀".encode()) < \
        canonical_json(value, exact_numbers=True).index("\ue000".encode())


# -- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "", "{", "[]", "[1,2]", "null", '"icao.vacc"', "{}", '{"data":{},"sig":{}}',
    '{"data":{"hdr":{"t":"icao.vacc","v":1,"is":"UTO"},"msg":{}},"sig":{"alg":"ES256"}}',
    '{"data":{"hdr":{"t":"icao.vacc","v":1,"is":"UTO"},"msg":{}},'
    '"sig":{"alg":"ES256","cer":"!!!","sigvl":"AA"}}',
    '{"data":{"hdr":{"t":"icao.vacc","v":1,"is":"UTO"},"msg":{}},'
    '"sig":{"alg":"ES256","cer":"AAAA","sigvl":"AA"}}',
    "[" * 5000 + "]" * 5000,
])
def test_malformed(adapter, pki, text):
    assert reason_of(adapter, text, direct_trust(pki["dsc"])) == "malformed"


def test_bytes_that_are_not_utf8_are_malformed(adapter, pki):
    assert reason_of(adapter, b"\xff\xfe{", direct_trust(pki["dsc"])) == "malformed"


def test_duplicate_member_names_are_malformed(adapter, pki):
    """Two parsers keeping different duplicates would verify one name and show another."""
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"])
    forged = text.replace('"pid":{', '"pid":{"n":"MALLORY",', 1)
    assert reason_of(adapter, forged, direct_trust(pki["dsc"])) == "malformed"


def test_nan_is_malformed(adapter, pki):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"]).replace('"v":1', '"v":NaN', 1)
    assert reason_of(adapter, text, direct_trust(pki["dsc"])) == "malformed"


def test_unknown_version_or_type_is_unsupported(adapter, pki):
    data = pov_data()
    data["hdr"]["v"] = 2
    assert reason_of(adapter, sign(data, pki["dsc_key"], pki["dsc"]),
                     direct_trust(pki["dsc"])) == "unsupported_scheme"
    data["hdr"].update(v=1, t="icao.visa")
    assert reason_of(adapter, sign(data, pki["dsc_key"], pki["dsc"]),
                     direct_trust(pki["dsc"])) == "unsupported_scheme"


def test_signed_but_unmappable_seal_is_malformed(adapter, pki):
    """A correctly signed seal whose content breaks the record rules is still refused."""
    data = pov_data(dob="15.05.1961")
    assert reason_of(adapter, sign(data, pki["dsc_key"], pki["dsc"]),
                     direct_trust(pki["dsc"])) == "malformed"


def test_oversized_is_too_large(adapter, pki):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"])
    padded = text[:-1] + " " * MAX_CODE_LENGTH + "}"
    assert reason_of(adapter, padded, direct_trust(pki["dsc"])) == "too_large"


# -- mapping ------------------------------------------------------------------------------------


def test_vaccination_mapping(adapter, pki):
    record = adapter.decode(sign(pov_data(), pki["dsc_key"], pki["dsc"]),
                            trust=direct_trust(pki["dsc"]), at=NOW).record
    subject = record.subject
    assert (subject.family_name, subject.given_name) == ("CITIZEN", "JANE SUE")
    assert subject.name == "JANE SUE CITIZEN"
    assert subject.birth_date == "1961-05-15"
    assert (subject.document.type, subject.document.number, subject.document.region) == \
        ("passport", "PA0941262", "UTO")
    first, second = record.evidence.vaccinations
    assert (first.product, first.vaccine_type, first.disease) == \
        ("Comirnaty", "XM68M6", "COVID-19")
    assert (first.dose_number, first.administered_on, first.country, first.lot) == \
        (1, "2021-03-03", "UTO", "VC35679")
    assert second.dose_number == 2  # "seq":"2" is a string in this seal, as in a real one
    assert record.status is None
    assert record.provenance.scheme == "icao-vds" and record.provenance.issuer == "UTO"
    assert record.provenance.source_id == "U32870"
    assert record.provenance.issued_at is None
    assert Record.from_dict(record.to_dict()) == record


def test_single_space_name_is_kept_whole(adapter, pki):
    record = adapter.decode(sign(pov_data(n="Smith Bill"), pki["dsc_key"], pki["dsc"]),
                            trust=direct_trust(pki["dsc"]), at=NOW).record
    assert record.subject.name == "Smith Bill"
    assert record.subject.family_name is None


def test_test_mapping(adapter, pki):
    decoded = adapter.decode(sign(pot_data(), pki["dsc_key"], pki["dsc"]),
                             trust=direct_trust(pki["dsc"]), at=NOW)
    (test,) = decoded.record.evidence.tests
    assert (test.type, test.result, test.centre, test.country, test.name) == \
        ("pcr", "negative", "General Hospital", "UTO", "molecular(PCR)")
    assert test.sampled_at == datetime(2020, 12, 12, 4, tzinfo=timezone.utc)
    provenance = decoded.record.provenance
    assert provenance.issued_at == datetime(2021, 2, 11, 6, tzinfo=timezone.utc)
    assert provenance.source_id == "U01932"
    document = decoded.record.subject.document
    assert (document.type, document.number, document.region) == ("passport", "E1234567P", "UTO")
    assert decoded.details["type"] == "icao.test"


@pytest.mark.parametrize("tc, expected", [("molecular(PCR)", "pcr"), ("antigen", "rat"),
                                          ("antibody", "antibody"),
                                          ("molecular(other)", "other")])
def test_test_types(adapter, pki, tc, expected):
    record = adapter.decode(sign(pot_data(tc=tc), pki["dsc_key"], pki["dsc"]),
                            trust=direct_trust(pki["dsc"]), at=NOW).record
    assert record.evidence.tests[0].type == expected


@pytest.mark.parametrize("r, expected", [("positive", "positive"), ("Negative", "negative")])
def test_test_results(adapter, pki, r, expected):
    record = adapter.decode(sign(pot_data(r=r), pki["dsc_key"], pki["dsc"]),
                            trust=direct_trust(pki["dsc"]), at=NOW).record
    assert record.evidence.tests[0].result == expected


def test_result_that_says_neither_positive_nor_negative_is_kept_as_issued(adapter, pki):
    """Report, don't refuse: the seal is genuine; no acceptance rule takes "unknown" for a
    negative result."""
    text = sign(pot_data(tc="antibody", r="normal"), pki["dsc_key"], pki["dsc"])
    decoded = adapter.decode(text, trust=direct_trust(pki["dsc"]), at=NOW)
    test = decoded.record.evidence.tests[0]
    assert (test.result, test.result_code) == ("unknown", "normal")
    assert [w["code"] for w in decoded.warnings] == ["value_outside_value_set"]


# -- detection, QR, contract --------------------------------------------------------------------


def test_detect(adapter, pki):
    assert adapter.detect(sign(pov_data(), pki["dsc_key"], pki["dsc"]))
    assert adapter.detect(sign(pot_data(), pki["dsc_key"], pki["dsc"], wrap=True))
    for other in ("HC1:NCFOXN%TS3DH", "shc:/5676290952432060346029243740", "eyJhbGciOi.x.y",
                  '{"data":{"hdr":{"t":"icao.visa"}},"sig":{}}', '{"icao.vacc":"sig"}', "",
                  None, b"{}"):
        assert not adapter.detect(other)


def test_seal_read_back_from_a_rendered_qr_verifies(adapter, pki):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"])
    image = qrcode.make(text, error_correction=qrcode.constants.ERROR_CORRECT_L)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    scanned = decode_qr(buffer.getvalue())
    assert scanned == text
    decoded = adapter.decode(scanned, trust=direct_trust(pki["dsc"]), at=NOW)
    assert decoded.record.subject.family_name == "CITIZEN"


def test_encode_is_unsupported(adapter, pki):
    record = adapter.decode(sign(pov_data(), pki["dsc_key"], pki["dsc"]),
                            trust=direct_trust(pki["dsc"]), at=NOW).record
    signer = Signer(private_key=pki["dsc_key"], kid="k", issuer="UTO",
                    certificate=der(pki["dsc"]), country="UTO")
    assert adapter.can_encode is False
    with pytest.raises(CodeError) as info:
        adapter.encode(record, signer=signer)
    assert info.value.reason == "unsupported_scheme"


def test_entry_point_names_this_adapter():
    from importlib.metadata import entry_points

    (ep,) = [ep for ep in entry_points(group="healthcode.mappings") if ep.name == "icao-vds"]
    assert ep.load() is ICAOVDSAdapter


def test_signer_is_parsed_once(adapter, pki):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"])
    trust = direct_trust(pki["dsc"])
    for _ in range(3):
        adapter.decode(text, trust=trust, at=NOW)
    assert len(adapter._signers) == 1


# -- properties: hostile input never escapes as another exception -------------------------------


@pytest.fixture(scope="module")
def valid(pki):
    text = sign(pov_data(), pki["dsc_key"], pki["dsc"])
    trust = direct_trust(pki["dsc"])
    adapter = ICAOVDSAdapter()
    return adapter, text, trust, adapter.decode(text, trust=trust, at=NOW).record


PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _fails_cleanly(adapter, text, trust) -> str:
    try:
        adapter.decode(text, trust=trust, at=NOW)
    except CodeError as exc:
        assert exc.reason in CODE_REASONS
        return exc.reason
    return "ok"


@PROPERTY
@given(st.text(max_size=400))
def test_random_text_is_a_code_error(valid, text):
    adapter, _, trust, _ = valid
    assert _fails_cleanly(adapter, text, trust) != "ok"


@PROPERTY
@given(st.data())
def test_truncations_are_code_errors(valid, data):
    adapter, text, trust, _ = valid
    cut = data.draw(st.integers(0, len(text) - 1))
    assert _fails_cleanly(adapter, text[:cut], trust) != "ok"


@PROPERTY
@given(st.data())
def test_bit_flips_fail_or_change_nothing(valid, data):
    """A flipped bit either breaks the seal or lands where it cannot change meaning (the
    unused low bits of a base64 character); it never yields a different verified record."""
    adapter, text, trust, record = valid
    raw = bytearray(text.encode())
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= 1 << data.draw(st.integers(0, 7))
    try:
        decoded = adapter.decode(bytes(raw), trust=trust, at=NOW)
    except CodeError as exc:
        assert exc.reason in CODE_REASONS
    else:
        assert decoded.record == record


@PROPERTY
@given(st.integers(MAX_CODE_LENGTH + 1, 4 * MAX_CODE_LENGTH), st.sampled_from("x{ 1"))
def test_oversized_input_is_too_large(valid, size, char):
    adapter, _, trust, _ = valid
    assert _fails_cleanly(adapter, char * size, trust) == "too_large"


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**53 + 1, 2**53 - 1) |
                     st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=3) |
                     st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12)


@PROPERTY
@given(st.dictionaries(st.sampled_from(["pid", "ve", "uvci", "tr", "dat", "sp", "utci"]), _JSON,
                       max_size=5), st.sampled_from(["icao.vacc", "icao.test"]))
def test_validly_signed_garbage_is_a_code_error_or_a_record(valid, pki, msg, kind):
    """Content the signer really signed can still be nonsense; it must map or be refused."""
    adapter, _, trust, _ = valid
    data = {"hdr": {"t": kind, "v": 1, "is": "UTO"}, "msg": msg}
    _fails_cleanly(adapter, sign(data, pki["dsc_key"], pki["dsc"]), trust)
