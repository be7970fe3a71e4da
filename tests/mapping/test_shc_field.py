"""SMART Health Cards as real issuers made them: trailing bytes after the DEFLATE stream, JWK
sets with extra members, issuers known under a ``canonical_iss``, chunk variations and names in
other shapes verify, with the right warning; the same card with a broken signature, from an
issuer or key we do not trust, or checked after its ``exp`` is still refused. Signed here."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from healthcode.trust import TrustStore
from mapping.shc import SHCAdapter, jws_to_qr_text
from tests.mapping.test_shc import (AT, BUNDLE, ISS, OTHER_ISS, chunked, claims, deflate,
                                    make_jws, public_jwk, reason_of)

ADAPTER = SHCAdapter()
EXP = (AT + timedelta(days=30)).timestamp()
CANONICAL = "https://canonical.example/shc"


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP256R1())


def trust_for(key, *, iss=ISS, **extra) -> TrustStore:
    store = TrustStore()
    store.add_jwks({"keys": [public_jwk(key, **extra)]}, issuer=iss, scheme="shc")
    return store


def broken(text: str) -> str:
    """The same card with one character of its signature changed, in whichever code (chunk)
    ends the JWS: 20 characters from its end, well inside the 86 of an ES256 signature."""
    codes = text.split()
    last = next(i for i, code in enumerate(codes)
                if not re.match(r"shc:/(\d+)/(\d+)/", code)
                or int(re.match(r"shc:/(\d+)/(\d+)/", code).group(1))
                == int(re.match(r"shc:/(\d+)/(\d+)/", code).group(2)))
    code = codes[last]
    pair = "20" if code[-40:-38] != "20" else "21"  # "A" or "B"
    codes[last] = code[:-40] + pair + code[-38:]
    return "\n".join(codes)


def accepted_and_guarded(make, key, trust, warning: str | None):
    decoded = ADAPTER.decode(make(key), trust=trust, at=AT)
    codes = [w["code"] for w in decoded.warnings]
    assert (warning in codes) if warning else codes == [], decoded.warnings
    assert reason_of(broken(make(key)), trust, AT) == "bad_signature"
    assert reason_of(make(ec.generate_private_key(ec.SECP256R1())), trust, AT) in \
        ("unknown_key", "untrusted_issuer")  # a key nobody trusts
    assert reason_of(make(key), TrustStore(), AT) == "untrusted_issuer"
    assert reason_of(make(key), trust, AT + timedelta(days=31)) == "expired"
    return decoded


def card(payload_bytes=None, **claim_changes):
    def make(key):
        body = payload_bytes(claims(exp=EXP, **claim_changes)) if payload_bytes else \
            deflate(json.dumps(claims(exp=EXP, **claim_changes)).encode())
        return jws_to_qr_text(make_jws(body, key, raw=True))
    return make


def test_a_plain_card_has_no_warning(key):
    accepted_and_guarded(card(), key, trust_for(key), None)


@pytest.mark.parametrize("tail", [b"\0", b"junk", b"\x03\x00" * 8])
def test_bytes_after_the_deflate_stream_are_signed_and_reported(key, tail):
    make = card(lambda c: deflate(json.dumps(c).encode()) + tail)
    decoded = accepted_and_guarded(make, key, trust_for(key), "shc_deflate_trailing_bytes")
    assert decoded.record.subject.family_name == "Chan"


def test_a_truncated_deflate_stream_is_still_malformed(key):
    make = card(lambda c: deflate(json.dumps(c).encode())[:-3])
    assert reason_of(make(key), trust_for(key), AT) == "malformed"


@pytest.mark.parametrize("extra", [
    {"use": "sig", "alg": "ES256"},
    {"crlVersion": 3, "key_ops": ["verify"], "ext": True},
    {"x-issuer-note": {"nested": [1, 2]}, "nbf": 0},
])
def test_jwk_sets_with_extra_members(key, extra):
    accepted_and_guarded(card(), key, trust_for(key, **extra), None)


@dataclass(frozen=True)
class _IssuerInfo:
    """What trust-list imports record per issuer (VCI directory: ``canonical_iss``)."""

    iss: str
    canonical_iss: str | None = None


class DirectoryTrust(TrustStore):
    """A trust store that, like a VCI directory import, knows issuers' canonical names."""

    def __init__(self, aliases: dict[str, str]):
        super().__init__()
        self._aliases = aliases

    def issuer_info(self, iss):
        return _IssuerInfo(iss, self._aliases.get(iss)) if iss in self._aliases else None


def test_an_alias_of_a_canonical_issuer_verifies_with_its_own_keys_and_names_it(key):
    trust = DirectoryTrust({ISS: CANONICAL})
    trust.add_jwks({"keys": [public_jwk(key)]}, issuer=ISS, scheme="shc")
    decoded = accepted_and_guarded(card(), key, trust, "shc_issuer_alias")
    assert decoded.issuer == ISS and decoded.details["canonical_issuer"] == CANONICAL
    assert CANONICAL in decoded.warnings[0]["message"]


def test_the_canonical_issuers_keys_do_not_sign_for_an_alias(key):
    """The binding of a key to its issuer is not relaxed: an alias's card must be signed by a
    key trusted for the alias itself."""
    trust = DirectoryTrust({OTHER_ISS: CANONICAL})
    trust.add_jwks({"keys": [public_jwk(key)]}, issuer=CANONICAL, scheme="shc")
    trust.add_jwks({"keys": [public_jwk(ec.generate_private_key(ec.SECP256R1()))]},
                   issuer=OTHER_ISS, scheme="shc")
    assert reason_of(card(iss=OTHER_ISS)(key), trust, AT) == "unknown_key"


@pytest.mark.parametrize("layout", ["in-order", "reversed", "tabs-and-spaces",
                                    "leading-zeros", "one-scanned-twice"])
def test_chunk_variations(key, layout):
    def make(signing_key):
        lines = chunked(make_jws(claims(exp=EXP), signing_key), 3).splitlines()
        if layout == "reversed":
            lines.reverse()
        if layout == "leading-zeros":
            lines = [line.replace(f"/{i}/3/", f"/0{i}/03/", 1)
                     for i, line in enumerate(lines, start=1)]
        if layout == "one-scanned-twice":
            lines = lines + [lines[1]]
        return ("\t  " if layout == "tabs-and-spaces" else "\n").join(lines)
    warning = "shc_duplicate_chunk" if layout == "one-scanned-twice" else None
    decoded = accepted_and_guarded(make, key, trust_for(key), warning)
    assert decoded.details["chunks"] == 3


def _bundle_with_name(name) -> dict:
    bundle = json.loads(json.dumps(BUNDLE))
    bundle["entry"][0]["resource"]["name"] = name
    return bundle


@pytest.mark.parametrize("name, family, given", [
    ([{"family": ["Chan"], "given": ["Tai", "Man"]}], "Chan", "Tai Man"),
    ([{"family": "Chan", "given": "Tai Man"}], "Chan", "Tai Man"),
    ({"family": "Chan", "given": ["Tai", "Man"]}, "Chan", "Tai Man"),
])
def test_patient_names_in_other_shapes(key, name, family, given):
    decoded = accepted_and_guarded(card(bundle=_bundle_with_name(name)), key, trust_for(key),
                                   "shc_name_shape")
    subject = decoded.record.subject
    assert (subject.family_name, subject.given_name) == (family, given)
    assert subject.masked_name == "T*i M*n C**n"


def test_a_name_in_native_script_is_kept_and_masked_as_written(key):
    bundle = _bundle_with_name([{"family": "陳", "given": ["大文"]}])
    decoded = accepted_and_guarded(card(bundle=bundle), key, trust_for(key), None)
    assert decoded.record.subject.name == "陳大文"
    assert decoded.record.subject.masked_name == "陳*文"


needs_directory_import = pytest.mark.skipif(
    not hasattr(TrustStore, "issuer_info"),
    reason="reading VCI directory snapshots into the trust store is issue 9 item 1 (branch "
           "trust-import); this runs once both are merged")


@needs_directory_import
def test_a_vci_directory_alias_verifies_through_the_real_import_path(key, tmp_path):
    """A snapshot in the VCI directory's own shape (``issuerInfo``), read by the trust store's
    importer: the alias's card verifies with its own keys and names its canonical issuer."""
    snapshot = {"directory": "https://example.org/vci", "time": "2026-11-27T00:00:00Z",
                "issuerInfo": [{"issuer": {"iss": ISS, "name": "Alias of Example",
                                           "canonical_iss": CANONICAL},
                                "keys": [public_jwk(key, use="sig", alg="ES256")],
                                "lastRetrieved": "2026-11-27T00:00:00Z"}]}
    path = tmp_path / "vci-snapshot.json"
    path.write_text(json.dumps(snapshot))
    trust = TrustStore()
    trust.load_path(path)
    decoded = accepted_and_guarded(card(), key, trust, "shc_issuer_alias")
    assert decoded.details["canonical_issuer"] == CANONICAL
