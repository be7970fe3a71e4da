"""The EU DCC adapter: round trips through our own DSC, each way a scanned code can be wrong,
and properties over hostile input (only CodeError ever escapes, with a contract reason)."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import zlib
from datetime import datetime, timedelta, timezone

import base45
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from healthcode.errors import CODE_REASONS
from healthcode.record import (Evidence, Provenance, Record, Recovery, Subject, TestResult,
                               Vaccination)
from healthcode.trust import TrustStore
from mapping.base import MAX_CODE_LENGTH, CodeError, Signer
from mapping.eu_dcc import (MAX_INFLATED, EUDCCAdapter, decompress, icao_transliterate,
                            luhn_mod_n, unprefix, uvci)
from tests.support import conformance_dir, decode_qr_result

UTC = timezone.utc
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
DSC_FROM = datetime(2024, 1, 1, tzinfo=UTC)
DSC_UNTIL = datetime(2026, 1, 1, tzinfo=UTC)
EKU = {"test": "1.3.6.1.4.1.1847.2021.1.1", "vaccination": "1.3.6.1.4.1.1847.2021.1.2",
       "recovery": "1.3.6.1.4.1.1847.2021.1.3"}
SERVER_AUTH = "1.3.6.1.5.5.7.3.1"

ADAPTER = EUDCCAdapter()


# -- fixtures: our own DSCs and records -----------------------------------------------------


def make_dsc(key, *, eku=None, not_before=DSC_FROM, not_after=DSC_UNTIL) -> bytes:
    """A self-signed Document Signer Certificate (DER), optionally with an EKU extension."""
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "AT"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "healthcode test DSC")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    if eku is not None:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in eku]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def dsc(ec_key) -> bytes:
    return make_dsc(ec_key)


@pytest.fixture(scope="module")
def signer(ec_key, dsc) -> Signer:
    return Signer(private_key=ec_key, kid="dsc-1", issuer="Ministry of Health, Austria",
                  certificate=dsc, country="AT")


@pytest.fixture(scope="module")
def trust(dsc) -> TrustStore:
    store = TrustStore()
    store.add_x509(dsc)
    return store


SUBJECT = Subject(family_name="Musterfrau-Gößinger", given_name="Gabriele",
                  birth_date="1998-02-26")
VACCINATION = Vaccination(product="EU/1/20/1528", dose_number=2, series_doses=2,
                          administered_on="2024-02-01", vaccine_type="1119349007",
                          manufacturer="ORG-100030215", country="AT")
TEST = TestResult(type="pcr", result="negative", sampled_at="2024-02-29T08:00:00Z",
                  name="Roche LightCycler qPCR", centre="Testing centre Vienna 1", country="AT")
RECOVERY = Recovery(first_positive_on="2024-01-10", valid_from="2024-01-21",
                    valid_until="2024-07-10", country="AT")


def record_with(**evidence) -> Record:
    return Record(subject=SUBJECT, evidence=Evidence(**evidence))


@pytest.fixture(scope="module")
def code(signer) -> str:
    return ADAPTER.encode(record_with(vaccinations=(VACCINATION,)), signer=signer, at=T0)


# -- building codes by hand, to reach each failure independently of encode() ---------------


def sign_es256(key, signed: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def seal(claims, key, der, *, protected=None, unprotected=None, tags=(18,), alg=-7,
         signature=None) -> str:
    """An HC1 code built from parts with cbor2, so tests control every field."""
    kid = hashlib.sha256(der).digest()[:8]
    protected = cbor2.dumps({1: alg, 4: kid} if protected is None else protected) \
        if protected != b"" else b""
    payload = cbor2.dumps(claims)
    signed = cbor2.dumps(["Signature1", protected, b"", payload])
    if signature is None:
        signature = (sign_es256(key, signed) if alg == -7 else
                     key.sign(signed, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                              hashes.SHA256()))
    message = [protected, unprotected or {}, payload, signature]
    for tag in reversed(tags):
        message = cbor2.CBORTag(tag, message)
    return "HC1:" + base45.b45encode(zlib.compress(cbor2.dumps(message), 9)).decode()


def claims_for(dcc, *, iat=T0, exp=T0 + timedelta(days=1), iss="AT") -> dict:
    return {1: iss, 6: int(iat.timestamp()), 4: int(exp.timestamp()), -260: {1: dcc}}


def dcc_payload(group="v") -> dict:
    entries = {
        "v": {"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215",
              "dn": 1, "sd": 2, "dt": "2024-02-01", "co": "AT", "is": "BMSGPK",
              "ci": "URN:UVCI:01:AT:10807843F94AEE0EE5093FBC254BD813#B"},
        "t": {"tg": "840539006", "tt": "LP217198-3", "ma": "1232", "sc": "2024-02-29T08:00:00Z",
              "tr": "260415000", "tc": "Centre", "co": "AT", "is": "BMSGPK",
              "ci": "URN:UVCI:01:AT:71EE2559DE38C6BF7304FB65A1A451EC#3"},
        "r": {"tg": "840539006", "fr": "2024-01-10", "co": "AT", "is": "BMSGPK",
              "df": "2024-01-21", "du": "2024-07-10",
              "ci": "URN:UVCI:01:AT:858CC18CFCF5965EF82F60E493349AA5#K"},
    }
    return {"ver": "1.3.0", "nam": {"fn": "Musterfrau", "fnt": "MUSTERFRAU", "gn": "Gabriele",
                                    "gnt": "GABRIELE"},
            "dob": "1998-02-26", group: [entries[group]]}


def reason_of(text, trust, at=T0 + timedelta(hours=1), adapter=ADAPTER) -> str:
    with pytest.raises(CodeError) as caught:
        adapter.decode(text, trust=trust, at=at)
    assert caught.value.reason in CODE_REASONS
    return caught.value.reason


def b45_of(code: str) -> bytes:
    return base45.b45decode(code[4:])


def rewrap(compressed: bytes) -> str:
    return "HC1:" + base45.b45encode(compressed).decode()


# -- detect -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("HC1:NCF", True), ("  \nHC1:NCF", True), ("HC2:NCF", False), ("shc:/5676", False),
    ("", False), (None, False), (b"HC1:", False)])
def test_detect(text, expected):
    assert ADAPTER.detect(text) is expected


def test_registered_under_its_scheme_name():
    """Only this scheme's entry point is loaded: other adapters are not this module's business."""
    from importlib.metadata import entry_points

    targets = {ep.load() for ep in entry_points(group="healthcode.mappings")
               if ep.name == "eu-dcc"}
    assert targets == {EUDCCAdapter}
    assert EUDCCAdapter.scheme == "eu-dcc"
    assert EUDCCAdapter.can_encode and EUDCCAdapter.qr_error_correction == "Q"


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("evidence, kind", [
    ({"vaccinations": (VACCINATION,)}, "vaccination"),
    ({"tests": (TEST,)}, "test"),
    ({"recoveries": (RECOVERY,)}, "recovery"),
])
def test_round_trip(signer, trust, dsc, evidence, kind):
    text = ADAPTER.encode(record_with(**evidence), signer=signer, at=T0)
    assert text.startswith("HC1:") and ADAPTER.detect(text)
    decoded = ADAPTER.decode(text, trust=trust, at=T0 + timedelta(hours=2))
    record = decoded.record
    assert record.subject.family_name == SUBJECT.family_name
    assert record.subject.given_name == SUBJECT.given_name
    assert record.subject.family_name_latin == "MUSTERFRAU<GOESSINGER"
    assert record.subject.given_name_latin == "GABRIELE"
    assert record.subject.birth_date == "1998-02-26"
    assert record.status is None
    field_name, original = next(iter(evidence.items()))
    (got,) = getattr(record.evidence, field_name)
    if hasattr(got, "code"):  # a fresh UVCI is issued with every code
        assert got.code.startswith("URN:UVCI:01:AT:")
        got = dataclasses.replace(got, code=None)
    assert got == original[0]
    kid = hashlib.sha256(dsc).digest()[:8]
    assert decoded.kid == base64.b64encode(kid).decode()
    assert decoded.issuer == "AT"
    assert decoded.details == {"certificate_type": kind, "schema_version": "1.3.0"}
    provenance = record.provenance
    assert provenance.scheme == "eu-dcc" and provenance.issuer == "AT"
    assert provenance.issued_at == T0 and provenance.valid_until == T0 + timedelta(days=1)
    assert provenance.key_id == decoded.kid


def test_encoded_payload_follows_the_dcc_schema(signer, trust):
    from jsonschema import Draft202012Validator

    schema_file = conformance_dir("eudcc-schema") / "schema" / "DCC.combined-schema.json"
    validator = Draft202012Validator(json.loads(schema_file.read_text()),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    for evidence in ({"vaccinations": (VACCINATION,)}, {"tests": (TEST,)},
                     {"recoveries": (RECOVERY,)}):
        text = ADAPTER.encode(record_with(**evidence), signer=signer, at=T0)
        dcc = ADAPTER.open(text, trust=trust).claims.dcc
        assert list(validator.iter_errors(dcc)) == []
        (entry,) = next(v for k, v in dcc.items() if k in "vtr")
        body, check = entry["ci"].rsplit("#", 1)
        assert luhn_mod_n(body) == check


def test_provenance_validity_sets_exp_within_the_dsc(signer, trust):
    until = T0 + timedelta(days=30)
    record = record_with(vaccinations=(VACCINATION,)).replace(
        provenance=Provenance(scheme="shc", valid_until=until))
    decoded = ADAPTER.decode(ADAPTER.encode(record, signer=signer, at=T0), trust=trust, at=T0)
    assert decoded.record.provenance.valid_until == until
    far = record.replace(provenance=Provenance(scheme="shc", valid_until=DSC_UNTIL
                                               + timedelta(days=400)))
    decoded = ADAPTER.decode(ADAPTER.encode(far, signer=signer, at=T0), trust=trust, at=T0)
    assert decoded.record.provenance.valid_until == DSC_UNTIL


def test_a_dcc_carries_one_entry_preferring_the_test(signer, trust):
    record = record_with(tests=(TEST,), vaccinations=(VACCINATION,), recoveries=(RECOVERY,))
    decoded = ADAPTER.decode(ADAPTER.encode(record, signer=signer, at=T0), trust=trust, at=T0)
    assert decoded.details["certificate_type"] == "test"
    assert not decoded.record.evidence.vaccinations
    two_doses = record_with(vaccinations=(dataclasses.replace(VACCINATION, dose_number=1,
                                                              administered_on="2023-12-01"),
                                          VACCINATION))
    decoded = ADAPTER.decode(ADAPTER.encode(two_doses, signer=signer, at=T0), trust=trust, at=T0)
    assert decoded.record.evidence.vaccinations[0].dose_number == 2


def test_ps256_signer_round_trip():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = make_dsc(key)
    store = TrustStore()
    store.add_x509(der)
    rsa_signer = Signer(private_key=key, kid="rsa", issuer="BMSGPK", certificate=der,
                        country="AT")
    text = ADAPTER.encode(record_with(tests=(TEST,)), signer=rsa_signer, at=T0)
    assert ADAPTER.decode(text, trust=store, at=T0).details["certificate_type"] == "test"


def test_rendered_qr_decodes(code, trust):
    """As a scanner meets it: alphanumeric QR at error correction Q, read back with zxing."""
    import qrcode

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_Q, box_size=4)
    qr.add_data(code)
    qr.make(fit=True)
    buffer = io.BytesIO()
    qr.make_image().save(buffer, format="PNG")
    result = decode_qr_result(buffer.getvalue())
    assert result.text == code
    assert result.ec_level == "Q"
    assert ADAPTER.decode(result.text, trust=trust, at=T0).record.subject.given_name == "Gabriele"


# -- decoding variants real issuers produce ----------------------------------------------------


@pytest.mark.parametrize("variant", ["kid_unprotected", "empty_protected", "cwt_tag",
                                     "untagged", "protected_kid_wins"])
def test_header_and_tag_variants(ec_key, dsc, trust, variant):
    kid = hashlib.sha256(dsc).digest()[:8]
    options = {
        "kid_unprotected": dict(protected={1: -7}, unprotected={4: kid}),
        "empty_protected": dict(protected=b"", unprotected={1: -7, 4: kid}),
        "cwt_tag": dict(tags=(61, 18)),
        "untagged": dict(tags=()),
        "protected_kid_wins": dict(protected={1: -7, 4: kid}, unprotected={4: b"wrong"}),
    }[variant]
    text = seal(claims_for(dcc_payload("t")), ec_key, dsc, **options)
    assert ADAPTER.decode(text, trust=trust, at=T0).details["certificate_type"] == "test"


@pytest.mark.parametrize("dob, expected", [("1964", "1964"), ("1964-08", "1964-08"),
                                           ("", None), ("1978-01-26T00:00:00", "1978-01-26"),
                                           ("1964-XX-XX", "1964")])
def test_birth_date_forms(ec_key, dsc, trust, dob, expected):
    dcc = dict(dcc_payload("r"), dob=dob)
    decoded = ADAPTER.decode(seal(claims_for(dcc), ec_key, dsc), trust=trust, at=T0)
    assert decoded.record.subject.birth_date == expected


def test_payload_codes_map_to_canonical_terms(ec_key, dsc, trust):
    decoded = ADAPTER.decode(seal(claims_for(dcc_payload("t")), ec_key, dsc), trust=trust,
                             at=T0)
    (test,) = decoded.record.evidence.tests
    assert (test.type, test.result, test.disease) == ("rat", "negative", "COVID-19")
    assert test.manufacturer == "1232" and test.centre == "Centre"
    assert test.sampled_at == datetime(2024, 2, 29, 8, tzinfo=UTC)
    assert decoded.record.provenance.source_id == test.code


# -- every way a scanned code can fail ----------------------------------------------------------


def test_negative_table(code, trust, ec_key, dsc):
    compressed = b45_of(code)
    cose = zlib.decompress(compressed)
    later = T0 + timedelta(days=2)
    cases = {
        "wrong context prefix": ("HC2:" + code[4:], "malformed"),
        "other scheme prefix": ("HL0:" + code[4:], "malformed"),
        "no prefix": (code[4:], "malformed"),
        "bad base45": ("HC1:" + code[4:-1] + "a", "malformed"),
        "base45 of the wrong length": ("HC1:" + code[4:] + "0", "malformed"),
        "not zlib": (rewrap(cose), "malformed"),
        "broken zlib": (rewrap(compressed[:2] + b"\xff" + compressed[3:]), "malformed"),
        "truncated zlib": (rewrap(compressed[:-10]), "malformed"),
        "trailing data after zlib": (rewrap(compressed + b"\x00"), "malformed"),
        "zlib bomb": (rewrap(zlib.compress(b"\0" * (MAX_INFLATED * 40), 9)), "too_large"),
        "not COSE": (rewrap(zlib.compress(cbor2.dumps({"a": 1}))), "malformed"),
        "wrong CBOR tag": (rewrap(zlib.compress(cbor2.dumps(cbor2.CBORTag(98, [b"", {}, b"",
                                                                             b""])))),
                           "malformed"),
        "unknown kid": (seal(claims_for(dcc_payload()), ec_key, dsc,
                             protected={1: -7, 4: b"12345678"}), "unknown_key"),
        "no kid": (seal(claims_for(dcc_payload()), ec_key, dsc, protected={1: -7}),
                   "malformed"),
        "3-byte signature": (seal(claims_for(dcc_payload()), ec_key, dsc, signature=b"abc"),
                             "bad_signature"),
        "unsupported algorithm": (seal(claims_for(dcc_payload()), ec_key, dsc, alg=-35,
                                       signature=b"\0" * 96), "bad_signature"),
        "no health certificate claim": (seal({1: "AT", 6: 1, 4: 2 ** 33}, ec_key, dsc),
                                        "malformed"),
        "two certificate groups": (seal(claims_for(dict(dcc_payload(), t=dcc_payload("t")["t"])),
                                        ec_key, dsc), "malformed"),
        "no exp claim": (seal({1: "AT", 6: int(T0.timestamp()), -260: {1: dcc_payload()}},
                              ec_key, dsc), "malformed"),
        "expired": (code, "expired", later),
        "not yet valid": (code, "not_yet_valid", T0 - timedelta(seconds=1)),
        # a code whose own window strays outside its DSC's is accepted only inside both
        "checked before the DSC's validity": (
            seal(claims_for(dcc_payload(), iat=DSC_FROM - timedelta(days=1)), ec_key, dsc),
            "not_yet_valid", DSC_FROM - timedelta(hours=1)),
        "checked after the DSC's validity": (
            seal(claims_for(dcc_payload(), exp=DSC_UNTIL + timedelta(days=1)), ec_key, dsc),
            "expired", DSC_UNTIL + timedelta(hours=1)),
    }
    for name, (text, reason, *at) in cases.items():
        at = at[0] if at else T0 + timedelta(hours=1)
        assert reason_of(text, trust, at) == reason, name


def test_unsigned_bytes_after_the_cose_message_are_ignored(code, trust):
    """They are outside the signature and never read, so they cannot change the record."""
    text = rewrap(zlib.compress(zlib.decompress(b45_of(code)) + b"\x00junk"))
    assert ADAPTER.decode(text, trust=trust, at=T0).record == \
        ADAPTER.decode(code, trust=trust, at=T0).record


def test_bad_signature(code, trust):
    cose = cbor2.loads(zlib.decompress(b45_of(code)))
    protected, unprotected, payload, signature = cose.value
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    text = rewrap(zlib.compress(cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, payload,
                                                               tampered]))))
    assert reason_of(text, trust) == "bad_signature"
    changed = payload.replace(b"Gabriele", b"Gabriela")
    text = rewrap(zlib.compress(cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, changed,
                                                               signature]))))
    assert reason_of(text, trust) == "bad_signature"


def test_unknown_signer(code):
    assert reason_of(code, TrustStore()) == "unknown_key"


def test_signer_added_after_a_miss_is_found(code, dsc):
    """The adapter's kid index must notice certificates added to a store it has seen."""
    store = TrustStore()
    assert reason_of(code, store) == "unknown_key"
    store.add_x509(dsc)
    assert ADAPTER.decode(code, trust=store, at=T0).record.subject.given_name == "Gabriele"


def test_the_kid_index_follows_replaced_and_withdrawn_certificates(code, dsc, monkeypatch):
    """The index re-checks its entries against the store; here on every scan."""
    from mapping import eu_dcc

    monkeypatch.setattr(eu_dcc, "RECHECK_SECONDS", 0)

    class Withdrawing(TrustStore):
        """A store that can withdraw certificates, as a future trust-list refresh might."""

        withdrawn = False

        def certificate(self, der, scheme=None):
            return None if self.withdrawn else super().certificate(der, scheme=scheme)

        def certificates(self, scheme=None):
            return [] if self.withdrawn else super().certificates(scheme=scheme)

    store = Withdrawing()
    store.add_x509(dsc)
    adapter = EUDCCAdapter()
    assert adapter.decode(code, trust=store, at=T0).record.subject.given_name == "Gabriele"
    store.add_x509(dsc)  # the same DER again: a new Certificate object replaces the old one
    assert adapter.decode(code, trust=store, at=T0).record.subject.given_name == "Gabriele"
    store.withdrawn = True
    assert reason_of(code, store, T0, adapter=adapter) == "unknown_key"


def test_a_certificate_trusted_for_another_scheme_does_not_sign_dccs(code, dsc):
    store = TrustStore()
    store.add_x509(dsc, scheme="icao-vds")
    assert reason_of(code, store) == "unknown_key"
    tagged = TrustStore()
    tagged.add_x509(dsc, scheme="eu-dcc")
    assert ADAPTER.decode(code, trust=tagged, at=T0).details["certificate_type"] == "vaccination"


@pytest.mark.parametrize("eku, kind, allowed", [
    (None, "vaccination", True),
    ([EKU["vaccination"]], "vaccination", True),
    (["1.3.6.1.4.1.0.1847.2021.1.2"], "vaccination", True),
    ([EKU["test"], EKU["recovery"]], "vaccination", False),
    ([EKU["recovery"]], "test", False),
    # only the DCC OIDs restrict (hcert "Key Usage Policy Identifiers", Corona-Warn-App)
    ([SERVER_AUTH], "recovery", True),
    ([SERVER_AUTH, EKU["recovery"]], "recovery", True),
])
def test_key_usage(ec_key, eku, kind, allowed):
    der = make_dsc(ec_key, eku=eku)
    store = TrustStore()
    store.add_x509(der)
    group = {"vaccination": "v", "test": "t", "recovery": "r"}[kind]
    text = seal(claims_for(dcc_payload(group)), ec_key, der)
    if allowed:
        assert ADAPTER.decode(text, trust=store, at=T0).details["certificate_type"] == kind
    else:
        assert reason_of(text, store, T0) == "wrong_key_usage"


@pytest.mark.parametrize("value, reason", [
    ("HC1:" + "A" * MAX_CODE_LENGTH, "too_large"),
    (b"\xff\xfe", "malformed"),
    (12345, "malformed"),
    ("HC1:", "malformed"),
])
def test_input_that_is_not_a_code(trust, value, reason):
    assert reason_of(value, trust) == reason


def test_unprefix_and_decompress_steps():
    assert unprefix(" HC1:ABC\n") == "ABC"
    with pytest.raises(CodeError) as caught:
        unprefix("HC2:ABC")
    assert "HC2:" in caught.value.message and caught.value.detail["step"] == "prefix"
    assert decompress(zlib.compress(b"x" * MAX_INFLATED)) == b"x" * MAX_INFLATED
    with pytest.raises(CodeError) as caught:
        decompress(zlib.compress(b"x" * (MAX_INFLATED + 1)))
    assert caught.value.reason == "too_large"


# -- encoding rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("Musterfrau-Gößinger", "MUSTERFRAU<GOESSINGER"),
    ("d'Červenková Panklová", "DCERVENKOVA<PANKLOVA"),
    ("Jiřina-Maria Alena", "JIRINA<MARIA<ALENA"),
    ("Øre  Ærø", "OERE<AEROE"),
    ("Łukasz", "LUKASZ"),
    ("陳大文", None),
    ("", None),
])
def test_icao_transliteration(name, expected):
    assert icao_transliterate(name) == expected


def test_uvci_has_a_valid_check_character():
    assert luhn_mod_n("URN:UVCI:01:AT:10807843F94AEE0EE5093FBC254BD813") == "B"
    assert luhn_mod_n("URN:UVCI:01:AT:858CC18CFCF5965EF82F60E493349AA5") == "K"
    issued = uvci("AT")
    body, check = issued.split("#")
    assert body.startswith("URN:UVCI:01:AT:") and luhn_mod_n(body) == check
    assert uvci("AT") != issued


@pytest.mark.parametrize("record, fragment", [
    (Record(subject=SUBJECT), "vaccination, test or recovery"),
    (Record(subject=Subject(name="陳大文"), evidence=Evidence(vaccinations=(VACCINATION,))),
     "Latin"),
    (record_with(vaccinations=(dataclasses.replace(VACCINATION, vaccine_type=None),)), "vp"),
    (record_with(tests=(dataclasses.replace(TEST, type="antibody"),)), "antibody"),
    (record_with(tests=(dataclasses.replace(TEST, result="inconclusive"),)), "inconclusive"),
    (record_with(recoveries=(dataclasses.replace(RECOVERY, valid_until=None),)), "du"),
    (record_with(vaccinations=(dataclasses.replace(VACCINATION, administered_on="2024-02"),)),
     "full date"),
    (record_with(vaccinations=(dataclasses.replace(VACCINATION, disease="measles"),)),
     "COVID-19"),
    (record_with(vaccinations=(VACCINATION,)).replace(
        provenance=Provenance(scheme="shc", valid_until=T0 - timedelta(days=1))), "ended"),
])
def test_encode_refuses_what_a_dcc_cannot_carry(signer, record, fragment):
    with pytest.raises(CodeError) as caught:
        ADAPTER.encode(record, signer=signer, at=T0)
    assert caught.value.reason == "policy_refused"
    assert fragment in caught.value.message


def test_only_a_full_name_becomes_the_primary_identifier(signer, trust):
    record = Record(subject=Subject(name="Jane Bloggs"),
                    evidence=Evidence(vaccinations=(VACCINATION,)))
    decoded = ADAPTER.decode(ADAPTER.encode(record, signer=signer, at=T0), trust=trust, at=T0)
    assert decoded.record.subject.family_name_latin == "JANE<BLOGGS"


# -- properties over hostile input --------------------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None)


def assert_code_error(text, trust):
    try:
        ADAPTER.decode(text, trust=trust, at=T0)
    except CodeError as exc:
        assert exc.reason in CODE_REASONS
        return exc.reason
    return None


@PROPERTY
@given(st.text(max_size=300))
def test_random_text_is_a_code_error(trust, text):
    assert assert_code_error(text, trust) is not None


@PROPERTY
@given(st.binary(max_size=400))
def test_random_bytes_behind_each_layer_are_code_errors(trust, dsc, data):
    """Random bytes as base45 content, as inflated content, and as a trusted kid's payload
    and signature (which reaches signature verification)."""
    kid = hashlib.sha256(dsc).digest()[:8]
    for text in ("HC1:" + base45.b45encode(data).decode(),
                 rewrap(zlib.compress(data)),
                 rewrap(zlib.compress(cbor2.dumps(cbor2.CBORTag(18, [b"", {1: -7, 4: kid}, data,
                                                                    data]))))):
        assert assert_code_error(text, trust) is not None


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 64, 2 ** 64) | st.text(max_size=20)
    | st.binary(max_size=20) | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.integers(-300, 10) | st.text(max_size=4), inner, max_size=4),
    max_leaves=20)


@PROPERTY
@given(cbor_values)
def test_random_cbor_claims_signed_by_a_trusted_key_are_code_errors(ec_key, dsc, trust, claims):
    """Even a correctly signed payload of arbitrary shape only ever yields a CodeError."""
    text = seal(claims, ec_key, dsc)
    assert assert_code_error(text, trust) is not None


@PROPERTY
@given(st.data())
def test_truncated_codes_are_code_errors(code, trust, data):
    cut = data.draw(st.integers(0, len(code) - 1))
    assert assert_code_error(code[:cut], trust) is not None


@PROPERTY
@given(st.data())
def test_bit_flips_in_the_compressed_code_fail_or_change_nothing(code, trust, data):
    compressed = bytearray(b45_of(code))
    bit = data.draw(st.integers(0, len(compressed) * 8 - 1))
    compressed[bit // 8] ^= 1 << (bit % 8)
    text = rewrap(bytes(compressed))
    try:
        decoded = ADAPTER.decode(text, trust=trust, at=T0)
    except CodeError as exc:
        assert exc.reason in CODE_REASONS
    else:  # a flip in deflate's padding bits is harmless: the same record must come out
        assert decoded.record == ADAPTER.decode(code, trust=trust, at=T0).record


@PROPERTY
@given(st.integers(MAX_CODE_LENGTH + 1, 4 * MAX_CODE_LENGTH), st.sampled_from("A0 %"))
def test_oversized_input_is_too_large(trust, length, char):
    assert assert_code_error("HC1:" + char * length, trust) == "too_large"
