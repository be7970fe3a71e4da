"""Every trust-list format is read whole, detected from its content, and refused whole when an
entry is corrupt; well-formed but unusable entries are kept or skipped, and reported."""
from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import timedelta

import pytest

from healthcode.certs import load_certificate
from healthcode.errors import TrustListError, TrustSignatureError
from healthcode.trust import TrustStore, formats
from tests.support import conformance_dir
from tests.trust import pki


@pytest.fixture(scope="module")
def shared():
    return conformance_dir("trustlists")


def read_shared(shared, name: str):
    return formats.read((shared / name).read_bytes(), name=name)


# -- the real lists of ../shared/conformance/trustlists -------------------------------------

def test_the_german_dsc_list(shared):
    listed = read_shared(shared, "de-dsc-list.json")
    assert listed.format == "dsc-list"
    assert len(listed.certificates) == 832
    countries = Counter(e.country for e in listed.certificates)
    assert len(countries) == 77
    raw = json.loads((shared / "de-dsc-list.json").read_text())["certificates"]
    assert countries == Counter(e["country"] for e in raw)
    # every kid of the list is the certificate's own (first 8 bytes of its DER's SHA-256)
    assert [base64.b64encode(e.certificate.dcc_kid).decode() for e in listed.certificates] \
        == [e["kid"] for e in raw]
    assert all(e.declared_kid == e.certificate.dcc_kid for e in listed.certificates)
    assert all(e.scheme == "eu-dcc" and e.role == "DSC" for e in listed.certificates)
    expired = [n for n in listed.notes if "expired (kept)" in n]
    assert len(expired) == 1 and expired[0].startswith("722 expired")


def test_the_reduced_swedish_dsc_list(shared):
    listed = read_shared(shared, "se-dsc-list.json")
    assert listed.format == "dsc-list" and len(listed.certificates) == 616
    raw = json.loads((shared / "se-dsc-list.json").read_text())["certificates"]
    assert {base64.b64encode(e.certificate.dcc_kid).decode() for e in listed.certificates} \
        == {e["kid"] for e in raw}
    # no country in the reduced shape: the subject's C= files it
    assert all(e.country == e.certificate.country for e in listed.certificates)


def test_the_vci_snapshot(shared):
    listed = read_shared(shared, "vci-snapshot.json")
    assert listed.format == "vci-snapshot"
    raw = json.loads((shared / "vci-snapshot.json").read_text())
    assert len(raw["issuerInfo"]) == 651
    # one issuer published no key: listed in the notes, not trusted
    assert len(listed.issuers) == 650
    assert any("no usable key published" in n for n in listed.notes)
    assert sum(len(i.keys) for i in listed.issuers) == sum(len(i["keys"])
                                                           for i in raw["issuerInfo"])
    assert listed.retrieved_at.isoformat() == "2026-08-22T04:43:50+00:00"
    canonical = {i.iss: i.canonical_iss for i in listed.issuers if i.canonical_iss}
    assert len(canonical) == 6
    assert len(listed.revocations) == sum(len(i.get("crls", [])) for i in raw["issuerInfo"])
    from datetime import datetime
    behind = sum(1 for i in raw["issuerInfo"] if i["keys"] and (
        datetime.fromisoformat(raw["time"].replace("Z", "+00:00"))
        - datetime.fromisoformat(i["lastRetrieved"].replace("Z", "+00:00"))).days >= 7)
    assert any(n.startswith(f"{behind} issuers were last retrieved more than 7 days")
               for n in listed.notes)
    california = next(i for i in listed.issuers if i.name == "State of California")
    assert california.last_retrieved.isoformat() == "2026-08-22T04:43:50+00:00"
    assert {k.kid for k in california.keys} == {k["kid"] for k in raw["issuerInfo"][0]["keys"]}


def test_a_real_jwk_with_short_coordinates_is_read_padded_and_reported(shared):
    """Epic installations drop a leading zero byte of x (RFC 7518 wants the full 32 bytes);
    the key stays as published, so its thumbprint is still the SHC kid."""
    from healthcode.trust import jwk_thumbprint

    listed = read_shared(shared, "vci-snapshot.json")
    bassett = next(i for i in listed.issuers if "bassett" in i.iss)
    key = bassett.keys[0]
    assert jwk_thumbprint(key.jwk) == key.kid
    assert key.key.public_numbers().x < 2 ** 248  # the number the short text encodes
    assert any("bassett" in n and "shorter" in n for n in listed.notes)


def test_all_shared_lists_load_into_one_store(shared):
    store = TrustStore()
    for name in ("de-dsc-list.json", "se-dsc-list.json", "vci-snapshot.json"):
        store.add_list(read_shared(shared, name), source=name)
    summary = store.summary()
    assert summary["schemes"]["eu-dcc"]["certificates"] == 832  # Sweden's 616 are all in DE
    assert summary["schemes"]["shc"]["issuers"] == 650
    assert summary["countries"]["eu-dcc"]["DE"]["certificates"] == Counter(
        e["country"] for e in json.loads((shared / "de-dsc-list.json").read_text())
        ["certificates"])["DE"]
    raw = json.loads((shared / "de-dsc-list.json").read_text())["certificates"][5]
    found = store.certificates_by_dcc_kid(base64.b64decode(raw["kid"]))
    assert [base64.b64encode(c.der).decode() for c in found] == [raw["rawData"]]


# -- generated lists -------------------------------------------------------------------------

def test_a_dsc_list_entry_that_does_not_decode_refuses_the_whole_list():
    good = [pki.dsc("AA")[0], pki.dsc("BB")[0]]
    corrupt = {"kid": "AAAAAAAAAAA=", "rawData": base64.b64encode(b"\x30\x03\x02\x01\x01")
               .decode()}
    raw = pki.dsc_list([(good[0], "AA"), corrupt, (good[1], "BB")])
    with pytest.raises(TrustListError, match=r"certificates\[1\]"):
        formats.read(raw, name="list")


@pytest.mark.parametrize("entry, message", [
    ("not an object", "not an object"),
    ({"kid": "AAAAAAAAAAA="}, "no rawData"),
    ({"kid": "AAAAAAAAAAA=", "rawData": "***"}, "not base64"),
])
def test_corrupt_dsc_list_entries(entry, message):
    with pytest.raises(TrustListError, match=message):
        formats.read(pki.dsc_list([(pki.dsc()[0], "UT"), entry]), name="list")


def test_unusable_dsc_list_entries_are_kept_or_skipped_and_reported():
    expired, _ = pki.dsc("AA", not_before=pki.NOW - timedelta(days=400),
                         not_after=pki.NOW - timedelta(days=10))
    fine, _ = pki.dsc("BB")
    mislabelled, _ = pki.dsc("CC")
    csca = pki.Csca("DD").cert
    entries = [(expired, "AA"), (fine, "BB"), (fine, "BB"),
               {"kid": pki.dcc_kid(fine)[:-4] + "AAA=", "rawData": base64.b64encode(
                   pki.der(mislabelled)).decode(), "country": "CC"},
               {"kid": pki.dcc_kid(csca), "certificateType": "CSCA", "country": "DD",
                "rawData": base64.b64encode(pki.der(csca)).decode()}]
    listed = formats.read(pki.dsc_list(entries), name="list")
    assert [e.country for e in listed.certificates] == ["AA", "BB", "CC"]
    notes = "\n".join(listed.notes)
    assert "1 expired (kept)" in notes and "1 listed twice" in notes
    assert "1 kid does not match the certificate" in notes
    assert "1 not a document signer (CSCA), skipped" in notes

    store = TrustStore()
    store.add_list(listed, source="list")
    declared = base64.b64decode(entries[3]["kid"])
    # a mismatched kid is reported; the certificate is found by its own kid, as the hcert
    # specification derives it
    assert store.certificates_by_dcc_kid(declared) == []
    assert [c.der for c in store.certificates_by_dcc_kid(
        base64.b64decode(pki.dcc_kid(mislabelled)))] == [pki.der(mislabelled)]


def test_an_issuers_list_with_jwk_sets():
    a, b = pki.new_key(), pki.new_key()
    raw = json.dumps({"issuers": [
        {"iss": "https://a.example/shc", "name": "A", "keys": [pki.jwk(a)]},
        {"iss": "https://b.example/shc", "jwks": {"keys": [pki.jwk(b), {"kty": "oct",
                                                                         "k": "c2VjcmV0"}]},
         "canonical_iss": "https://a.example/shc"}]}).encode()
    listed = formats.read(raw, name="issuers")
    assert listed.format == "issuers"
    assert [(i.iss, len(i.keys), i.canonical_iss) for i in listed.issuers] == [
        ("https://a.example/shc", 1, None), ("https://b.example/shc", 1, "https://a.example/shc")]
    assert any("unsupported key type 'oct'" in n for n in listed.notes)
    # the bare list works too
    bare = json.dumps([{"iss": "https://a.example/shc", "keys": [pki.jwk(a)]}]).encode()
    assert formats.read(bare).issuers[0].iss == "https://a.example/shc"


@pytest.mark.parametrize("issuer, message", [
    ({"iss": "http://plain.example", "keys": []}, "https URL"),
    ({"iss": "https://a.example", "keys": [{"kty": "EC", "crv": "P-256", "x": "AA"}]},
     "without 'y'"),
    ({"iss": "https://a.example", "keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA",
                                             "y": "AAAA"}]}, "undecodable"),
    ({"iss": "https://a.example", "keys": "nope"}, "must be a list"),
])
def test_corrupt_issuer_entries_refuse_the_list(issuer, message):
    good = {"iss": "https://good.example", "keys": [pki.jwk(pki.new_key())]}
    with pytest.raises(TrustListError, match=message):
        formats.read(json.dumps({"issuers": [good, issuer, good]}).encode())


def test_jwk_sets_and_shc_revocation_lists_need_their_issuer():
    jwks = json.dumps({"keys": [pki.jwk(pki.new_key(), "k1")]}).encode()
    with pytest.raises(TrustListError, match="issuer"):
        formats.read(jwks)
    listed = formats.read(jwks, issuer="https://p.example")
    assert listed.format == "jwks" and listed.issuers[0].keys[0].kid == "k1"
    crl = json.dumps({"kid": "k1", "method": "rid", "ctr": 2, "rids": ["abc", "def.1700000000"]})
    listed = formats.read(crl.encode(), issuer="https://p.example")
    assert listed.format == "shc-crl" and listed.revocations[0].kid == "k1"


def test_certificates_pem_bundle_and_der():
    one, two = pki.dsc("AA")[0], pki.dsc("BB")[0]
    listed = formats.read(pki.pem(one) + pki.pem(two))
    assert listed.format == "certificate"
    assert [e.certificate.der for e in listed.certificates] == [pki.der(one), pki.der(two)]
    assert formats.read(pki.der(one)).certificates[0].certificate.der == pki.der(one)


def test_what_is_no_trust_list_is_refused_with_a_reason():
    with pytest.raises(TrustListError, match="not a trust list"):
        formats.read(b"hello")
    with pytest.raises(TrustListError, match="holds no keys"):
        formats.read(json.dumps({"participating_issuers": []}).encode())
    with pytest.raises(TrustListError, match="not valid JSON"):
        formats.read(b"{not json")


# -- ICAO master lists and CSCA CRLs -------------------------------------------------------

def test_a_master_list_is_read_after_its_signature_checks_out():
    ut, vv = pki.Csca("UT"), pki.Csca("VV")
    raw = pki.master_list([ut.cert, vv.cert], ut.signer, ut.signer_key)
    listed = formats.read(raw, name="ml")
    assert listed.format == "icao-master-list"
    # a SET OF: DER orders it by encoding, not as the list was written
    assert sorted((e.country, e.role, e.scheme) for e in listed.certificates) == [
        ("UT", "CSCA", "icao-vds"), ("VV", "CSCA", "icao-vds")]
    assert "CSCA in the list itself" in listed.signed_by
    # anchored by a configured CSCA (what an operator should do)
    anchored = formats.read(raw, anchors=(load_certificate(pki.der(ut.cert)),))
    assert "configured CSCA" in anchored.signed_by
    pem = (b"-----BEGIN CMS-----\n" + base64.encodebytes(raw) + b"-----END CMS-----\n")
    assert len(formats.read(pem).certificates) == 2


def test_a_master_list_signed_with_rsa_pss():
    """Many states sign their master lists with RSASSA-PSS."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    ut = pki.Csca("UT")
    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = ut.issue(pki.name("Master List Signer UT"), signer_key,
                      eku=[pki.ID_MASTER_LIST_SIGNING])
    listed = formats.read(pki.master_list([ut.cert], signer, signer_key))
    assert len(listed.certificates) == 1
    with pytest.raises(TrustSignatureError):
        formats.read(pki.master_list([ut.cert], signer, signer_key, tamper_content=True))


def test_a_master_list_whose_signature_fails_imports_nothing():
    ut, vv = pki.Csca("UT"), pki.Csca("VV")
    cases = {
        "content changed after signing": pki.master_list([ut.cert], ut.signer, ut.signer_key,
                                                         tamper_content=True),
        "wrong message digest": pki.master_list([ut.cert], ut.signer, ut.signer_key,
                                                wrong_digest=True),
        "signed by another key": pki.master_list([ut.cert], ut.signer, vv.signer_key),
        "signer not in the CMS": pki.master_list([ut.cert], ut.signer, ut.signer_key,
                                                 embed_signer=False),
        "signer chains to no CSCA": pki.master_list([vv.cert], ut.signer, ut.signer_key),
    }
    for case, raw in cases.items():
        with pytest.raises(TrustSignatureError):
            formats.read(raw, name=case)
    # a configured CSCA that did not issue the signer refuses a list that is otherwise fine
    with pytest.raises(TrustSignatureError, match="configured"):
        formats.read(pki.master_list([ut.cert], ut.signer, ut.signer_key),
                     anchors=(load_certificate(pki.der(vv.cert)),))


def test_only_a_ca_anchors_a_master_list():
    key = pki.new_key()
    leaf = pki.certificate(pki.name("CSCA UT"), key, ca=False)
    signer_key = pki.new_key()
    signer = pki.certificate(pki.name("Master List Signer UT"), signer_key, issuer=leaf.subject,
                             issuer_key=key, eku=[pki.ID_MASTER_LIST_SIGNING])
    with pytest.raises(TrustSignatureError, match="chains to no CSCA"):
        formats.read(pki.master_list([leaf], signer, signer_key))


def test_a_master_list_signer_needs_the_master_list_signing_usage():
    ut = pki.Csca("UT")
    plain_key = pki.new_key()
    plain = ut.issue(pki.name("not a list signer"), plain_key)
    with pytest.raises(TrustSignatureError, match="2.23.136.1.1.3"):
        formats.read(pki.master_list([ut.cert], plain, plain_key))


def test_a_cms_of_another_content_type_is_not_a_master_list():
    from pyasn1.type import univ

    ut = pki.Csca("UT")
    raw = pki.master_list([ut.cert], ut.signer, ut.signer_key,
                          content_type=univ.ObjectIdentifier("1.2.840.113549.1.7.1"))
    with pytest.raises(TrustListError, match="not id-icao-cscaMasterList"):
        formats.read(raw)


def test_a_csca_crl_needs_a_trusted_issuer_and_its_signature():
    ut, vv = pki.Csca("UT"), pki.Csca("VV")
    trusted = (load_certificate(pki.der(ut.cert)),)
    listed = formats.read(ut.crl([7, 9]), trusted=trusted)
    assert listed.format == "csca-crl" and listed.crls[0].serials == {7, 9}
    with pytest.raises(TrustSignatureError, match="no trusted CSCA"):
        formats.read(ut.crl([7]))
    with pytest.raises(TrustSignatureError, match="does not verify"):
        formats.read(ut.crl([7], key=vv.key), trusted=trusted)
    stale = formats.read(ut.crl([1], last_update=pki.NOW - timedelta(days=60),
                                next_update=pki.NOW - timedelta(days=30)), trusted=trusted)
    assert any("nextUpdate" in n for n in stale.notes)


def test_the_icao_pkd_ldif_download():
    ut, vv = pki.Csca("UT"), pki.Csca("VV")
    raw = pki.ldif(
        ("cn=UT,o=ml,c=UT,dc=data", "pkdMasterListContent",
         pki.master_list([ut.cert], ut.signer, ut.signer_key)),
        ("cn=VV,o=ml,c=VV,dc=data", "pkdMasterListContent",
         pki.master_list([vv.cert, ut.cert], vv.signer, vv.signer_key)),
        ("cn=UT,o=crl,c=UT,dc=data", "certificateRevocationList;binary", ut.crl([11, 12])),
        ("cn=x,o=dsc,c=UT,dc=data", "userCertificate;binary", pki.der(pki.dsc()[0])))
    listed = formats.read(raw, name="icaopkd-002.ldif")
    assert listed.format == "icao-pkd-ldif"
    assert sorted(e.country for e in listed.certificates) == ["UT", "VV"]  # UT once
    assert listed.crls[0].serials == {11, 12}
    assert listed.signed_by == "2 master lists and 1 CRLs, each signature checked"
    assert any("1 document signer certificates (eMRTD) skipped" in n for n in listed.notes)


def test_one_bad_master_list_in_an_ldif_refuses_the_file():
    ut, vv = pki.Csca("UT"), pki.Csca("VV")
    raw = pki.ldif(
        ("cn=UT,o=ml", "pkdMasterListContent",
         pki.master_list([ut.cert], ut.signer, ut.signer_key)),
        ("cn=VV,o=ml", "pkdMasterListContent",
         pki.master_list([vv.cert], vv.signer, vv.signer_key, wrong_digest=True)))
    with pytest.raises(TrustSignatureError, match="cn=VV,o=ml"):
        formats.read(raw)
    with pytest.raises(TrustListError, match="without master lists or CRLs"):
        formats.read(pki.ldif(("cn=x", "description", b"nothing")))
